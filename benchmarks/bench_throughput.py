"""Batch-inference throughput: the same clips through every engine, plus each stage alone.

    python benchmarks/bench_throughput.py                     # CPU: 24 clips, a small random model
    python benchmarks/bench_throughput.py --clips 48 --no-ray

Stages (`videollava_hf.inference.generate`): decode+preprocess (`prepare`: read 8 frames, chat template,
processor) and model (`generate_batch`: left-padded greedy generate). Engines: `--num-workers 0` (both stages in
one process, one after the other), `--num-workers N` (DataLoader workers prepare while the model generates) and Ray
Data (`--engine ray`, local `ray.init`; its start-up is timed apart). The bound of a pipelined run is set by its
slowest stage: clips / max(stage seconds); the target is a pipelined run at >= 0.8 of it. All engines must give
the same answers (checked). `--device cuda --shape 7b` measures a 7B-shaped random-weight model in bf16 on a GPU
(clips/s, generated tokens/s and peak memory for batch sizes 1, 4 and 16).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.inference.engines import ModelSpec, answer_batches, batch_plan, prepared_batches
from videollava_hf.inference.generate import GenerationSettings, Request, generate_batch, prepare
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
SHAPES = {
    # 224 px frames (the real preprocessing cost), a model sized so that generating is about as slow as decoding
    "small": {"vision": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "image_size": 224, "patch_size": 32},
              "text": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
                       "num_attention_heads": 4, "num_key_value_heads": 4}},
    "7b": {"vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                      "num_attention_heads": 16, "image_size": 224, "patch_size": 14},
           "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 32}},
}


def build_model(shape: str, directory: Path, dtype: torch.dtype) -> Path:
    tokenizer = tiny_tokenizer()
    spec = SHAPES[shape]
    config = tiny_config(tokenizer)
    config.vision_config.update(spec["vision"])
    config.text_config.update(spec["text"])
    config = type(config).from_dict(config.to_dict())
    torch.manual_seed(0)
    model = VideoLlavaForConditionalGeneration(config).to(dtype).eval()
    model.save_pretrained(directory)
    tiny_processor(config, tokenizer).save_pretrained(directory)
    return directory


def make_clips(folder: Path, count: int, fixtures: Path) -> list[Request]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = [fixtures / "sample_demo_1.mp4", fixtures / "sample_demo_3.mp4"]
    requests = []
    for i in range(count):
        path = folder / f"clip_{i:04d}.mp4"
        shutil.copy(sources[i % 2], path)
        requests.append(Request(text="Describe this video.", video=str(path), name=path.name))
    return requests


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_local(model, processor, requests, plan, settings, num_workers):
    return [r for _, rs in answer_batches(requests, plan, settings, processor=processor, model=model,
                                          num_workers=num_workers) for r in rs]


def cpu_benchmark(args) -> dict:
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_throughput_"))
    try:
        model_dir = build_model(args.shape, work / "model", torch.float32)
        spec = ModelSpec(str(model_dir))
        model, processor = spec.load()
        requests = make_clips(work / "clips", args.clips, Path(args.fixtures))
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
        plan = batch_plan(len(requests), args.batch_size)
        run_local(model, processor, requests[: args.batch_size], batch_plan(args.batch_size, args.batch_size),
                  settings, 0)  # warm-up (allocator, first decode)

        t_prepare, prepared = timed(lambda: [[prepare(processor, requests[i], settings) for i in b] for b in plan])
        t_model, _ = timed(lambda: [generate_batch(model, processor, p, settings) for p in prepared])
        results, answers = {}, {}
        for workers in args.workers:
            seconds, answers[f"w{workers}"] = timed(
                lambda: run_local(model, processor, requests, plan, settings, workers))
            results[f"num_workers={workers}"] = seconds
        ray_start = None
        if args.ray:
            import ray

            from videollava_hf.inference.engines import quiet_ray

            ray_start, _ = timed(lambda: ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                                                  log_to_driver=False))
            quiet_ray()

            def on_ray():
                return [r for _, rs in answer_batches(requests, plan, settings, processor=processor,
                                                      engine="ray", spec=spec) for r in rs]

            seconds, answers["ray"] = timed(on_ray)
            results["ray (pipeline, incl. actor start)"] = seconds
            ray.shutdown()
        reference = answers[f"w{args.workers[0]}"]
        same = {name: rows == reference for name, rows in answers.items()}
        bound = max(t_prepare, t_model)
        return {
            "clips": len(requests), "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
            "threads": args.threads, "shape": args.shape,
            "stage_seconds": {"decode+preprocess": t_prepare, "model": t_model},
            "engine_seconds": results, "ray_init_seconds": ray_start,
            "bound_clips_per_s": len(requests) / bound,
            "clips_per_s": {k: len(requests) / v for k, v in results.items()},
            "fraction_of_bound": {k: (len(requests) / v) / (len(requests) / bound) for k, v in results.items()},
            "same_rows_as_num_workers_0": same,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def gpu_benchmark(args) -> dict:
    """7B-shaped random weights in bf16: clips/s, generated tokens/s, peak memory per batch size."""
    work = Path(tempfile.mkdtemp(prefix="bench_throughput_gpu_"))
    try:
        model_dir = build_model("7b", work / "model", torch.bfloat16)
        spec = ModelSpec(str(model_dir), device="cuda", dtype="bfloat16")
        model, processor = spec.load()
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
        rows = {}
        for batch_size in (1, 4, 16):
            requests = make_clips(work / f"clips{batch_size}", batch_size * 2, Path(args.fixtures))
            plan = batch_plan(len(requests), batch_size)
            prepared = [[prepare(processor, requests[i], settings) for i in b] for b in plan]
            generate_batch(model, processor, prepared[0], settings)  # warm-up
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            times = []
            for p in prepared:
                start = time.perf_counter()
                generate_batch(model, processor, p, settings)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            per_batch = statistics.median(times)
            rows[batch_size] = {"clips_per_s": batch_size / per_batch,
                                "tokens_per_s": batch_size * args.max_new_tokens / per_batch,
                                "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
        return {"gpu": torch.cuda.get_device_name(), "by_batch_size": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(result: dict) -> None:
    print(f"clips {result['clips']}, batch size {result['batch_size']}, {result['max_new_tokens']} new tokens, "
          f"torch threads {result['threads']}, shape {result['shape']}")
    for stage, seconds in result["stage_seconds"].items():
        print(f"  stage alone: {stage:18s} {seconds:7.2f} s  {result['clips'] / seconds:6.2f} clips/s")
    print(f"  bound (slowest stage): {result['bound_clips_per_s']:.2f} clips/s")
    first = next(iter(result["engine_seconds"]))
    for name, seconds in result["engine_seconds"].items():
        print(f"  {name:36s} {seconds:7.2f} s  {result['clips_per_s'][name]:6.2f} clips/s  "
              f"{result['fraction_of_bound'][name]:.2f} of bound  "
              f"{result['clips_per_s'][name] / result['clips_per_s'][first]:.2f}x vs {first}  "
              f"same rows: {result['same_rows_as_num_workers_0'].get(_answer_key(name))}")
    if result["ray_init_seconds"] is not None:
        print(f"  ray.init: {result['ray_init_seconds']:.2f} s (not counted above)")


def _answer_key(name: str) -> str:
    return "ray" if name.startswith("ray") else "w" + name.split("=")[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the model process")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--no-ray", dest="ray", action="store_false")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--fixtures", default=os.environ.get("VIDEOLLAVA_FIXTURES", str(FIXTURES)))
    parser.add_argument("--json", default=None, help="Also write the results to this file.")
    args = parser.parse_args()
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores",
              "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
    if args.device == "cuda":
        result.update(gpu_benchmark(args))
        print(json.dumps(result, indent=2))
    else:
        result.update(cpu_benchmark(args))
        print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
