"""Accuracy of a (demo) model on a held-out synthetic shapes set, per question type, and how accuracy and latency
change with the frame count and the video token budget.

    python benchmarks/eval_demo.py --model runs/tiny            # writes a held-out set (seed 1000) and evaluates
    python benchmarks/eval_demo.py --model DIR --data heldout/heldout.json --frames 4 8 16

The held-out set is written with `videollava_hf.demo.synthetic.write_dataset` from a seed that must differ from the
training data's (`--train-seed`, 0 by default as in recipes/tiny.yaml), single-turn, 16-frame clips. Every cell
of the grid (frames x budget) is one `videollava_hf.evaluation.evaluate` run (greedy, fresh output folder);
"s / question" is its wall time per question including video decoding and preprocessing. Prints two markdown
tables: per-question-type accuracy at the model's own setting (its num_frames, no pooling) and the grid.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

MODES = {
    "off": {},
    "pool": {"video_pooling": "average", "video_pool_stride": 2},
    "slowfast": {"video_pooling": "average", "video_pool_stride": 2, "video_slowfast_every": 4},
}
MODE_LABELS = {"off": "off", "pool": "pool p=2", "slowfast": "SlowFast s=4 p=2"}


def held_out_set(work: Path, args: argparse.Namespace) -> Path:
    """Write the synthetic held-out set (or reuse --data)."""
    from videollava_hf.demo.synthetic import write_dataset

    if args.data is not None:
        return Path(args.data)
    if args.seed == args.train_seed:
        raise SystemExit(f"--seed {args.seed} is the training seed; a held-out set needs a different one.")
    return write_dataset(work / "heldout", args.videos, args.images, seed=args.seed, num_frames=16, size=args.size,
                         json_name="heldout.json", multi_turn_prob=0.0)


def run_grid(model, processor, samples, work: Path, args: argparse.Namespace) -> list[dict]:
    """One evaluate() per (frames, budget) cell -> [{"frames", "mode", "metrics"}]."""
    from videollava_hf.evaluation import GenerationSettings, evaluate

    cells = []
    for frames in args.frames:
        for mode in args.modes:
            settings = GenerationSettings(num_frames=frames, max_new_tokens=args.max_new_tokens, **MODES[mode])
            metrics = evaluate(model, processor, samples, work / f"f{frames}_{mode}", settings=settings,
                               batch_size=args.batch_size, progress=False, overwrite=True)
            cells.append({"frames": frames, "mode": mode, "metrics": metrics})
    return cells


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def type_table(metrics: dict) -> str:
    lines = ["| question type | questions | accuracy % |", "|---|---:|---:|"]
    for name, part in metrics["per_question_type"].items():
        lines.append(f"| {name} | {part['count']} | {_pct(part['accuracy'])} |")
    lines.append(f"| all | {metrics['count']} | {_pct(metrics['accuracy'])} |")
    return "\n".join(lines)


def grid_table(cells: list[dict]) -> str:
    types = sorted({t for c in cells for t in c["metrics"]["per_question_type"]})
    header = ["frames", "video features", "video tokens", "accuracy %", *types, "s / question"]
    lines = ["| " + " | ".join(header) + " |", "|---:|---|" + "---:|" * (len(header) - 2)]
    for c in cells:
        m = c["metrics"]
        tokens = "-" if m["mean_video_tokens"] is None else f"{m['mean_video_tokens']:.0f}"
        per_type = [_pct(m["per_question_type"].get(t, {}).get("accuracy")) for t in types]
        latency = m["timing"]["seconds_per_sample"]
        row = [str(c["frames"]), MODE_LABELS[c["mode"]], tokens, _pct(m["accuracy"]), *per_type,
               "-" if latency is None else f"{latency:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory (weights + processor)")
    parser.add_argument("--data", default=None, help="existing held-out JSON/JSONL (default: write a synthetic one)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the synthetic held-out set")
    parser.add_argument("--train-seed", type=int, default=0, help="seed of the training data (must differ)")
    parser.add_argument("--videos", type=int, default=60, help="held-out videos to write")
    parser.add_argument("--images", type=int, default=0, help="held-out images to write")
    parser.add_argument("--size", type=int, default=64, help="side of the synthetic frames in pixels (even)")
    parser.add_argument("--frames", nargs="+", type=int, default=[4, 8, 16], help="frame counts to compare")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="video token budgets")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="longest answer in tokens")
    parser.add_argument("--work", default=None, help="folder for the data and the runs (default: a temporary one)")
    parser.add_argument("--json-out", default=None, help="also write every cell's metrics to this JSON file")
    args = parser.parse_args(argv)

    import videollava_hf  # noqa: F401  (registers the Auto classes)
    from videollava_hf import VideoLlavaForConditionalGeneration
    from videollava_hf.evaluation import load_eval_dataset
    from videollava_hf.models.videollava.pipeline_video_text_to_text import load_processor

    model = VideoLlavaForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    processor = load_processor(args.model, config=model.config)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        samples = load_eval_dataset(held_out_set(work, args), cache_dir=str(work / "datasets_cache"))
        cells = run_grid(model, processor, samples, work / "runs", args)
    own = next((c for c in cells if c["frames"] == model.config.num_frames and c["mode"] == "off"), cells[0])
    print(f"Held-out questions: {len(samples)}; per question type at {own['frames']} frames, "
          f"{MODE_LABELS[own['mode']]}:\n")
    print(type_table(own["metrics"]))
    print("\nFrames and video token budget:\n")
    print(grid_table(cells))
    latencies = [c["metrics"]["timing"]["seconds_per_sample"] for c in cells]
    latencies = [t for t in latencies if t is not None]
    if latencies:
        print(f"\nmedian s / question over the grid: {statistics.median(latencies):.3f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(cells, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
