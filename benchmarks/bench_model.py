"""Forward and generate time of one 8-frame video prompt: videollava_hf vs Transformers' built-in Video-LLaVA on
the same random weights (the built-in's checkpoint loaded into ours), plus how often the video tower runs.

    python benchmarks/bench_model.py                 # CPU: tiny and small configs, float32
    python benchmarks/bench_model.py --config 7b     # a 7B-shaped config (GPU, bf16, SDPA); needs ~16 GB

Prints a markdown table with the ratio ours / built-in (target <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from transformers import VideoLlavaConfig as BuiltinConfig
from transformers import VideoLlavaForConditionalGeneration as BuiltinModel

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

SHAPES = {
    # 32-px towers, 2-layer Llama: the test-suite model
    "tiny": {"vision": {}, "text": {}},
    # real video geometry (224 px, patch 14: 8 x 257 = 2056 video tokens) at reduced width and depth
    "small": {
        "vision": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 4,
                   "image_size": 224, "patch_size": 14},
        "text": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
                 "num_key_value_heads": 4},
    },
    # Video-LLaVA-7B's shapes: ViT-L/14 towers and Vicuna-7B
    "7b": {
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "image_size": 224, "patch_size": 14},
        "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 32},
    },
}


def build(shape: str, device: str, dtype: torch.dtype, workdir: str):
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, vision=SHAPES[shape]["vision"], text=SHAPES[shape]["text"],
                         video_temporal_attention=False)
    builtin_config = BuiltinConfig(
        vision_config=config.vision_config.to_dict(), text_config=config.text_config.to_dict(),
        image_token_index=config.image_token_index, video_token_index=config.video_token_index,
    )
    torch.manual_seed(0)
    with torch.device("meta" if shape == "7b" else "cpu"):
        builtin = BuiltinModel(builtin_config)
    if shape == "7b":  # materialise random weights directly on the target device
        builtin = builtin.to_empty(device=device)
        for p in builtin.parameters():
            torch.nn.init.normal_(p, std=0.02)
    builtin.save_pretrained(workdir)
    kwargs = {"dtype": dtype, "attn_implementation": "sdpa"}
    builtin = BuiltinModel.from_pretrained(workdir, **kwargs).to(device).eval()
    ours = VideoLlavaForConditionalGeneration.from_pretrained(workdir, **kwargs).to(device).eval()
    processor = tiny_processor(config, tokenizer)
    side = config.vision_config.image_size
    text = processor.expand_placeholders("USER: <video>\nWhat happens in this video? ASSISTANT:")
    inputs = tokenizer(text, return_tensors="pt").to(device)
    inputs["pixel_values_videos"] = torch.randn(1, 8, 3, side, side, device=device, dtype=dtype)
    return builtin, ours, inputs


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def tower_calls(model, tower, inputs) -> int:
    count = [0]
    handle = tower.register_forward_hook(lambda *a: count.__setitem__(0, count[0] + 1))
    model.generate(**inputs, max_new_tokens=32, min_new_tokens=32, do_sample=False)
    handle.remove()
    return count[0]


def run(shape: str, device: str, dtype: torch.dtype, repeats: int) -> list[str]:
    with tempfile.TemporaryDirectory() as workdir, torch.inference_mode():
        builtin, ours, inputs = build(shape, device, dtype, workdir)
        gen = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False)
        rows = []
        for name, fn_b, fn_o in (
            ("forward", lambda: builtin(**inputs), lambda: ours(**inputs)),
            ("generate 32", lambda: builtin.generate(**inputs, **gen), lambda: ours.generate(**inputs, **gen)),
        ):
            t_b, t_o = timed(fn_b, repeats, device), timed(fn_o, repeats, device)
            rows.append(f"| {shape} | {device} {str(dtype).replace('torch.', '')} | {name} | {t_b * 1000:.1f} | "
                        f"{t_o * 1000:.1f} | {t_o / t_b:.3f} |")
        calls_b = tower_calls(builtin, builtin.model.video_tower, inputs)
        calls_o = tower_calls(ours, ours.model.video_tower, inputs)
        rows.append(f"| {shape} | | video-tower calls per generate | {calls_b} | {calls_o} | |")
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["tiny", "small"], choices=sorted(SHAPES),
                        help="model shapes to benchmark")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 (default: bf16 on cuda, fp32 on cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device == "cuda" else torch.float32)
    print("| config | device | step | built-in (ms) | ours (ms) | ours / built-in |")
    print("|---|---|---|---|---|---|")
    for shape in args.config:
        for row in run(shape, args.device, dtype, args.repeats):
            print(row, flush=True)


if __name__ == "__main__":
    main()
