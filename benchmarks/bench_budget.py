"""Video token budget: prefill time and video tokens for 8/16/32/64 frames, without pooling, with 2x2 average pooling
and with SlowFast (every 4th frame pooled 2x2, the others 4x4), temporal attention on (windows of 8 frames).

    python benchmarks/bench_budget.py                           # CPU, float32: tiny and small configs
    python benchmarks/bench_budget.py --config small --frames 8 16 --repeats 5
    python benchmarks/bench_budget.py --config 7b --device cuda --dtype bfloat16   # GPU: 7B-shaped random weights

"prefill" is one forward pass over the whole prompt (video tower + projector + pooling + language model, logits for
the last position only): the time to the first generated token. "vision" is the video tower + projector + pooling
alone (`get_video_features`). Times are medians over `--repeats` rounds (the fastest prefill is shown too); the
cells are interleaved within each round so that load from other processes hits every cell alike. The 7B mode builds
the model on the meta device and materialises random weights directly on the target device (about 16 GB in bf16);
its embedding has the tiny tokenizer's 320 rows instead of 32003 (irrelevant for prefill time, logits are computed
for one position).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.models.videollava.configuration_videollava import video_token_count
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

SHAPES = {
    # 32-px towers (patch 8: 16 patches + CLS per frame), 2-layer Llama hidden 64: the test-suite model
    "tiny": {"vision": {}, "text": {}},
    # real 224-px geometry (patch 14: 256 patches + CLS per frame) at reduced width and depth
    "small": {
        "vision": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 4,
                   "image_size": 224, "patch_size": 14},
        "text": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
                 "num_key_value_heads": 4},
    },
    # Video-LLaVA-7B: ViT-L/14 towers with temporal attention, Vicuna-7B
    "7b": {
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "image_size": 224, "patch_size": 14},
        "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 32},
    },
}
MODES = {
    "off": {},
    "pool p=2": {"video_pooling": "average", "video_pool_stride": 2},
    "SlowFast s=4 p=2": {"video_pooling": "average", "video_pool_stride": 2, "video_slowfast_every": 4},
}
CONTEXT = 4096  # Vicuna-7B v1.5's context length
PROMPT = "USER: <video>\nWhat happens in this video? ASSISTANT:"


def build(shape: str, device: str, dtype: torch.dtype):
    """A random-weight model of `shape` (temporal attention over windows of 8 frames) and its processor."""
    tokenizer = tiny_tokenizer()
    text = {**SHAPES[shape]["text"], "max_position_embeddings": 32768}  # 64 unpooled 224-px frames: 16448 tokens
    config = tiny_config(tokenizer, vision=SHAPES[shape]["vision"], text=text, video_temporal_attention=True,
                         num_frames=8)
    torch.manual_seed(0)
    if shape == "7b":
        with torch.device("meta"):
            model = VideoLlavaForConditionalGeneration(config)
        # dtype first (still on meta, nothing allocated), then storage directly on the target device
        model = model.to(dtype).to_empty(device=device)
        with torch.no_grad():
            for param in model.parameters():
                param.normal_(0.0, 0.02)
    else:
        model = VideoLlavaForConditionalGeneration(config).to(device=device, dtype=dtype)
    return model.eval(), tiny_processor(config, tokenizer)


def make_inputs(model, processor, frames: int, mode: dict, device: str, dtype: torch.dtype) -> dict:
    """input_ids with the prompt's video placeholders expanded for this budget, plus random frames."""
    pooling = {"pooling": mode.get("video_pooling"), "stride": mode.get("video_pool_stride"),
               "slowfast_every": mode.get("video_slowfast_every")}
    text = processor.expand_placeholders(PROMPT, frames, **pooling)
    ids = processor.tokenizer(text, return_tensors="pt")["input_ids"].to(device)
    side = model.config.vision_config.image_size
    pixels = torch.randn(1, frames, 3, side, side, device=device, dtype=dtype)
    return {"input_ids": ids, "pixel_values_videos": pixels, **mode}


def video_tokens(model, frames: int, mode: dict) -> int:
    config = model.config
    options = config.video_pooling_options(pooling=mode.get("video_pooling"), stride=mode.get("video_pool_stride"),
                                           slowfast_every=mode.get("video_slowfast_every"))
    return video_token_count(config.num_patches, frames, config.video_feature_select_strategy, **options)


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_shape(shape: str, frame_counts: list[int], mode_names: list[str], repeats: int, device: str,
              dtype: torch.dtype) -> list[dict]:
    model, processor = build(shape, device, dtype)
    cells = []
    for frames in frame_counts:
        for name in mode_names:
            inputs = make_inputs(model, processor, frames, MODES[name], device, dtype)
            expected = video_tokens(model, frames, MODES[name])
            found = int((inputs["input_ids"] == model.config.video_token_index).sum())
            if found != expected:
                raise RuntimeError(f"{shape}/{frames}/{name}: prompt has {found} video tokens, formula says {expected}")
            cells.append({"config": shape, "frames": frames, "mode": name, "inputs": inputs, "video_tokens": expected,
                          "prompt_tokens": inputs["input_ids"].shape[1], "prefill": [], "vision": []})
    pooling_keys = ("video_pooling", "video_pool_stride", "video_slowfast_every")

    def prefill(cell):
        return lambda: model(**cell["inputs"], use_cache=True, logits_to_keep=1)

    def vision(cell):
        pooling = {k: v for k, v in cell["inputs"].items() if k in pooling_keys}
        return lambda: model.model.get_video_features(cell["inputs"]["pixel_values_videos"], **pooling).pooler_output

    with torch.inference_mode():
        for cell in cells:  # warm-up
            prefill(cell)()
        for _ in range(repeats):
            for cell in cells:
                cell["prefill"].append(timed(prefill(cell), device))
                cell["vision"].append(timed(vision(cell), device))
    del model
    return cells


def table(cells: list[dict]) -> str:
    off = {(c["config"], c["frames"]): statistics.median(c["prefill"]) for c in cells if c["mode"] == "off"}
    lines = [
        "| config | frames | video features | video tokens | prompt tokens | fits 4K | vision ms | prefill ms | "
        "prefill min ms | prefill vs off |",
        "|---|---:|---|---:|---:|:-:|---:|---:|---:|---:|",
    ]
    for c in cells:
        pre, vis = statistics.median(c["prefill"]) * 1e3, statistics.median(c["vision"]) * 1e3
        base = off.get((c["config"], c["frames"]))
        ratio = f"{pre / (base * 1e3):.2f}x" if base else "-"
        fits = "yes" if c["prompt_tokens"] <= CONTEXT else "no"
        lines.append(f"| {c['config']} | {c['frames']} | {c['mode']} | {c['video_tokens']} | {c['prompt_tokens']} | "
                     f"{fits} | {vis:.1f} | {pre:.1f} | {min(c['prefill']) * 1e3:.1f} | {ratio} |")
    return "\n".join(lines)


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = f"{names[0]}, {len(names)} logical cores" if names else platform.processor()
    except OSError:
        cpu = platform.processor()
    return f"{cpu}, torch {torch.__version__} with {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", choices=sorted(SHAPES), default=["tiny", "small"],
                        help="model shapes to measure (default: tiny small; 7b needs a GPU)")
    parser.add_argument("--frames", nargs="+", type=int, default=[8, 16, 32, 64], help="frame counts")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="token budget modes")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per cell (the median is reported)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="weights' dtype")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json-out", default=None, help="also write every cell's raw timings (seconds) to this file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device on this machine; run on a GPU host or use --device cpu.")
    dtype = getattr(torch, args.dtype)
    cells = []
    for shape in args.config:
        cells += run_shape(shape, args.frames, args.modes, args.repeats, args.device, dtype)
    print(f"{datetime.date.today()} - {machine(args.device)} - {args.dtype}, median of {args.repeats} rounds\n")
    print(table(cells))
    if args.json_out:
        raw = [{k: v for k, v in c.items() if k != "inputs"} for c in cells]
        with open(args.json_out, "w", encoding="utf-8") as sink:
            json.dump({"machine": machine(args.device), "dtype": args.dtype, "cells": raw}, sink, indent=1)


if __name__ == "__main__":
    main()
