"""Fine-tune Video-LLaVA with TRL's `SFTTrainer`: video and image chats, loss on the assistant's replies only, LoRA.

    python recipes/trl_sft.py --model CHECKPOINT --data train.jsonl --media-root media/ --output-dir out [--lora]

`--data` holds records in the project's training format (docs/training.md: {"video" | "image": path,
"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}). They become TRL's vision format: a
"messages" column (the video as a {"type": "video", "path": ...} content item, read by the processor) and an
"images" column (TRL fills each {"type": "image"} item from it; [] for video samples, which also tells TRL the
dataset is a vision one). TRL's own collator then calls `processor.apply_chat_template(...,
return_assistant_tokens_mask=True)`: the chat template's `{% generation %}` markers make every prompt and media
token -100 in `labels`.
"""

from __future__ import annotations

import argparse
import sys


def to_trl_rows(dataset) -> list[dict]:
    """Normalised conversation rows (`videollava_hf.training.load_conversation_dataset`) -> TRL vision rows."""
    from PIL import Image

    from videollava_hf.training.data import PLACEHOLDERS

    rows = []
    for row in dataset:
        kind, path = row["media_type"], row["media_path"]
        messages = []
        for turn in row["conversations"]:
            role = {"human": "user", "gpt": "assistant", "system": "system"}[turn["from"]]
            text = turn["value"]
            content = []
            if kind and PLACEHOLDERS[kind] in text:  # the record's one placeholder: a media item before the text
                text = text.replace(PLACEHOLDERS[kind], "").strip()
                content.append({"type": "video", "path": path} if kind == "video" else {"type": "image"})
            messages.append({"role": role, "content": content + [{"type": "text", "text": text}]})
        images = [Image.open(path).convert("RGB")] if kind == "image" else []
        rows.append({"messages": messages, "images": images})
    return rows


def build_trainer(model, processor, train_rows: list[dict], output_dir: str, lora: bool = False, **config):
    """An `SFTTrainer` with TRL's own collator and assistant-only loss; `config` overrides `SFTConfig` fields."""
    import datasets
    import torch
    from trl import SFTConfig, SFTTrainer

    settings = dict(
        output_dir=output_dir,
        assistant_only_loss=True,  # labels: -100 outside the {% generation %} spans (prompt, media, padding)
        max_length=None,  # never cut through a media run; drop long samples beforehand
        per_device_train_batch_size=2,
        learning_rate=2e-4 if lora else 2e-5,
        num_train_epochs=1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),  # TRL's default (True) fails on CPU
    )
    settings.update(config)
    peft_config = None
    if lora:
        from peft import LoraConfig

        # The language model's attention and MLP projections (the towers and the projector stay frozen).
        peft_config = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
            target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        )
    return SFTTrainer(
        model=model,
        args=SFTConfig(**settings),
        train_dataset=datasets.Dataset.from_list(train_rows),
        processing_class=processor,
        peft_config=peft_config,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Video-LLaVA checkpoint (directory or Hub id).")
    parser.add_argument("--data", required=True, nargs="+", help="JSON/JSONL files in the project's format.")
    parser.add_argument("--media-root", default=None, help="Directory relative media paths resolve against.")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--lora", action="store_true", help="Train LoRA adapters on the language model only.")
    parser.add_argument("--max-steps", type=int, default=-1)
    args = parser.parse_args(argv)

    import videollava_hf  # noqa: F401  (registers the classes)
    from videollava_hf import VideoLlavaForConditionalGeneration, VideoLlavaProcessor
    from videollava_hf.training import load_conversation_dataset

    model = VideoLlavaForConditionalGeneration.from_pretrained(args.model)
    processor = VideoLlavaProcessor.from_pretrained(args.model)
    dataset, _ = load_conversation_dataset(args.data, media_root=args.media_root)
    trainer = build_trainer(model, processor, to_trl_rows(dataset), args.output_dir, lora=args.lora,
                            max_steps=args.max_steps)
    trainer.train()
    trainer.save_model(args.output_dir)
    processor.save_pretrained(args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
