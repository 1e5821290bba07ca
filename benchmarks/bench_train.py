"""Training throughput (samples/s, tokens/s) and peak memory of Video-LLaVA fine-tuning steps.

Each step is what `videollava-hf train` does per batch: the collator (chat template, media preprocessing, label
masking; videos decoded from MP4 files when `--from-files`), forward with labels, backward, AdamW step. Steps are
timed after a few warm-up steps.

    python benchmarks/bench_train.py                          # CPU, tiny model: finetune / pretrain / LoRA rows
    python benchmarks/bench_train.py --model 7b --device cuda --dtype bfloat16 --activation-checkpointing \\
        --modes pretrain lora finetune --batch-size 4        # 7B-shaped config, random weights (GPU)

Peak memory: on CPU the process's peak resident set (ru_maxrss, includes the Python and library footprint; the
RSS before building the model is printed for reference); on CUDA `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from videollava_hf.demo.synthetic import generate_records, write_dataset
from videollava_hf import VideoLlavaProcessor
from videollava_hf.testing.tiny import tiny_config, tiny_tokenizer
from videollava_hf.training import (
    LoraSettings,
    VideoLlavaDataCollator,
    build_model_for_training,
    load_conversation_dataset,
)

# Video-LLaVA-7B's shapes: two ViT-L/14 towers at 224 px with temporal attention, Vicuna-7B (32003 rows).
SHAPES = {
    "tiny": {},
    "7b": {
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "image_size": 224, "patch_size": 14},
        "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 32, "vocab_size": 32003, "max_position_embeddings": 4096,
                 "rms_norm_eps": 1e-5},
    },
}
MODES = ("finetune", "pretrain", "lora")


def rss_mb() -> float:
    """Current resident set in MB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def build_rows(args, processor, workdir: Path) -> list[dict]:
    """Synthetic shape videos and images with QA conversations: 3 videos per image, as in mixed training data."""
    size = processor.image_processor.crop_size
    size += size % 2  # yuv420p needs even sides
    n_videos = max(args.batch_size * 3, 12)
    n_images = n_videos // 3
    if args.from_files:
        json_path = write_dataset(workdir, n_videos, n_images, seed=0, num_frames=16, size=size)
        dataset, _ = load_conversation_dataset(str(json_path), media_root=str(workdir), cache_dir=str(workdir / "c"))
        return [dataset[i] for i in range(len(dataset))]
    records, media = generate_records(n_videos, n_images, seed=0, num_frames=args.num_frames, size=size)
    return [{**r, "media": media[r.get("video") or r.get("image")]} for r in records]


def make_model(args, mode: str, tokenizer):
    shape = SHAPES[args.model]
    config = tiny_config(tokenizer, num_frames=args.num_frames, **({"vision": shape["vision"], "text": shape["text"]}
                                                                   if shape else {}))
    config._attn_implementation = "sdpa"
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    if args.model == "7b":  # random weights straight on the device, in the target dtype (no 28 GB fp32 copy)
        with torch.device(args.device):
            previous = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                model = build_model_for_training(config, "finetune" if mode == "lora" else mode,
                                                 lora=LoraSettings() if mode == "lora" else False)
            finally:
                torch.set_default_dtype(previous)
    else:
        model = build_model_for_training(config, "finetune" if mode == "lora" else mode,
                                         lora=LoraSettings(r=8, alpha=16) if mode == "lora" else False)
        model = model.to(args.device, dtype)
    if args.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train(), config


def bench_mode(args, mode: str, rows: list[dict], processor, tokenizer) -> dict:
    rss_before = rss_mb()
    model, config = make_model(args, mode, tokenizer)
    collator = VideoLlavaDataCollator(processor, model_max_length=4096, num_frames=args.num_frames)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=args.device == "cuda")
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_times, collate_times, tokens = [], [], []
    rng = np.random.default_rng(0)
    for step in range(args.warmup + args.steps):
        picked = rng.choice(len(rows), size=args.batch_size, replace=False)
        start = time.perf_counter()
        batch = collator([rows[i] for i in picked])
        collated = time.perf_counter()
        batch = {k: v.to(args.device) for k, v in batch.items()}
        autocast = args.dtype == "bfloat16" and args.device == "cuda"
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        end = time.perf_counter()
        if step >= args.warmup:
            step_times.append(end - start)
            collate_times.append(collated - start)
            tokens.append(int(batch["attention_mask"].sum()))
    step = statistics.median(step_times)
    result = {
        "mode": mode,
        "trainable": sum(p.numel() for p in params),
        "seq_len": statistics.mean(tokens) / args.batch_size,
        "samples_s": args.batch_size / step,
        "tokens_s": statistics.mean(tokens) / step,
        "step_ms": step * 1000,
        "collate_ms": statistics.median(collate_times) * 1000,
        "loss": float(loss),
    }
    if args.device == "cuda":
        result["peak"] = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB (CUDA allocated)"
    else:
        result["peak"] = f"{peak_rss_mb():.0f} MB RSS (before model: {rss_before:.0f} MB)"
    del model, optimizer
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(SHAPES), default="tiny", help="model shape (random weights)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weights dtype")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="stages to time")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--num-frames", type=int, default=None, help="frames per video (tiny: 4, 7b: 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute layers in backward")
    parser.add_argument("--from-files", action=argparse.BooleanOptionalAction, default=True,
                        help="decode MP4/PNG files in the collator (default) instead of in-memory arrays")
    parser.add_argument("--json", action="store_true", help="print one JSON result per mode (used internally)")
    args = parser.parse_args(argv)
    args.num_frames = args.num_frames or (4 if args.model == "tiny" else 8)
    return args


def run_here(args: argparse.Namespace) -> list[dict]:
    """Time the requested modes in this process."""
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = tiny_tokenizer()
    shape = SHAPES[args.model]
    config = tiny_config(tokenizer, num_frames=args.num_frames, **({"vision": shape["vision"], "text": shape["text"]}
                                                                   if shape else {}))
    processor = VideoLlavaProcessor.from_model_config(config, tokenizer)
    with tempfile.TemporaryDirectory() as workdir:
        rows = build_rows(args, processor, Path(workdir))
        return [bench_mode(args, mode, rows, processor, tokenizer) for mode in args.modes]


def run_isolated(argv: list[str], modes: list[str]) -> list[dict]:
    """One fresh process per mode, so each peak-memory figure belongs to that mode alone."""
    results = []
    for mode in modes:
        command = [sys.executable, __file__, *argv, "--modes", mode, "--json"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.json:
        for result in run_here(args):
            sys.stdout.write(json.dumps(result) + "\n")
        return 0
    if len(args.modes) > 1:
        base = [a for i, a in enumerate(argv) if not _is_modes_arg(argv, i)]
        results = run_isolated(base, args.modes)
    else:
        results = run_here(args)
    if args.device == "cuda":
        device = torch.cuda.get_device_name()
    else:
        device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    threads = args.threads or torch.get_num_threads()
    sys.stdout.write(
        f"\n{date.today()} | {device} | torch {torch.__version__} | {threads} CPU threads | "
        f"model {args.model} ({args.dtype}, {args.num_frames} frames"
        f"{', activation checkpointing' if args.activation_checkpointing else ''}) | batch {args.batch_size} | "
        f"{'media decoded from files' if args.from_files else 'in-memory media'} | "
        f"median of {args.steps} steps after {args.warmup} warm-up | "
        f"load average at the end {os.getloadavg()[0]:.1f}\n\n"
    )
    sys.stdout.write(
        "| mode | trainable params | mean seq len | samples/s | tokens/s | step (ms) | collate (ms) | peak memory |\n"
    )
    sys.stdout.write("|---|---|---|---|---|---|---|---|\n")
    for r in results:
        sys.stdout.write(
            f"| {r['mode']} | {r['trainable']:,} | {r['seq_len']:.0f} | {r['samples_s']:.1f} | {r['tokens_s']:.0f} | "
            f"{r['step_ms']:.0f} | {r['collate_ms']:.0f} | {r['peak']} |\n"
        )
    return 0


def _is_modes_arg(argv: list[str], index: int) -> bool:
    """True for `--modes` and the mode names that follow it."""
    if argv[index] == "--modes":
        return True
    j = index
    while j > 0 and argv[j] in MODES:
        j -= 1
    return j < index and argv[j] == "--modes"


if __name__ == "__main__":
    raise SystemExit(main())
