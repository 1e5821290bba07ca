"""Build the shipped demo model: generate the synthetic shapes world, train a tiny Video-LLaVA on images and
videos jointly with the project's own training code, evaluate it on a held-out set (another seed), and copy it into
the package (src/videollava_hf/demo/model/).

    python demo/build_demo_model.py                       # the shipped model (joint image + video training)
    python demo/build_demo_model.py --videos-only --no-install --out runs/videos_only   # the ablation

Everything is seeded; on a 2-core CPU it takes about 15 minutes (one thread).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.demo.synthetic import generate_records, write_dataset, write_mp4, render_video, SceneSpec
from videollava_hf.demo import (
    demo_config,
    demo_model_dir,
    demo_processor,
    demo_tokenizer,
    evaluate_synthetic,
    sample_video_path,
)
from videollava_hf.training import DataArguments, ModelArguments, VideoLlavaTrainingArguments, train

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SCENE = SceneSpec(colour="red", shape="circle", motion="right", seed=7)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "runs" / "demo"), help="work directory (data, checkpoints)")
    parser.add_argument("--train-videos", type=int, default=2000, help="synthetic training videos")
    parser.add_argument("--train-images", type=int, default=600, help="synthetic training images")
    parser.add_argument("--heldout-videos", type=int, default=350, help="held-out videos (seed 1)")
    parser.add_argument("--heldout-images", type=int, default=150, help="held-out images (seed 1)")
    parser.add_argument("--epochs", type=float, default=5.0, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=16, help="per-device batch size")
    parser.add_argument("--lr", type=float, default=5e-4,
                        help="peak learning rate (cosine, 3%% warmup); from-scratch runs at >= 1.5e-3 never learned "
                             "to look at the media")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for a model this small, above all on a busy machine)")
    parser.add_argument("--videos-only", action="store_true", help="ablation: train on the videos only")
    parser.add_argument("--no-install", action="store_true", help="do not copy the result into the package")
    parser.add_argument("--init-from", default=None,
                        help="continue training from this checkpoint directory instead of a fresh random model")
    parser.add_argument("--seed", type=int, default=0, help="training seed (data seed 0, held-out seed 1)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    train_json = data_dir / "train.json"
    if not train_json.exists():
        write_dataset(data_dir, args.train_videos, 0 if args.videos_only else args.train_images, seed=0,
                      num_frames=16, size=64)

    # 1. A fresh tiny Video-LLaVA with a tokenizer trained on the synthetic world's vocabulary.
    tokenizer = demo_tokenizer()
    config = demo_config(tokenizer)
    init_dir = Path(args.init_from) if args.init_from else work / "init"
    if not args.init_from:
        VideoLlavaForConditionalGeneration(config).save_pretrained(init_dir)
        demo_processor(config, tokenizer).save_pretrained(init_dir)

    # 2. Train everything: at this scale there are no pretrained LanguageBind towers to freeze, so the towers
    #    learn too (the real recipe keeps them frozen; see docs/training.md).
    start = time.time()
    outcome = train(
        ModelArguments(model_name_or_path=str(init_dir), train_image_tower=True, train_video_tower=True),
        DataArguments(data_path=[str(train_json)], media_root=str(data_dir)),
        VideoLlavaTrainingArguments(
            output_dir=str(work / "trained"), stage="finetune", num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size, learning_rate=args.lr, lr_scheduler_type="cosine",
            warmup_steps=0.03, weight_decay=0.0, logging_steps=25, save_strategy="no", seed=args.seed,
            dataloader_num_workers=0, use_cpu=True, report_to="none", model_max_length=1024,
            write_model_card=False,
        ),
    )
    minutes = (time.time() - start) / 60

    # 3. Held-out evaluation on another seed.
    model = VideoLlavaForConditionalGeneration.from_pretrained(outcome.output_dir).eval()
    processor = demo_processor(model.config, tokenizer)
    records, media = generate_records(args.heldout_videos, args.heldout_images, seed=1, num_frames=16, size=64)
    result = evaluate_synthetic(model, processor, records, media)
    result.update(train_minutes=round(minutes, 1), videos_only=args.videos_only,
                  train_loss=outcome.metrics.get("train_loss"))
    (work / "heldout_metrics.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))

    # 4. Install into the package, with a sample clip for the README's first command.
    if not args.no_install:
        target = demo_model_dir()
        shutil.rmtree(target, ignore_errors=True)
        model.save_pretrained(target)
        processor.save_pretrained(target)
        (target / "heldout_metrics.json").write_text(json.dumps(result, indent=2))
        sample = sample_video_path()
        sample.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(sample, render_video(SAMPLE_SCENE, num_frames=16, size=64))
        print(f"installed into {target}")


if __name__ == "__main__":
    main()
