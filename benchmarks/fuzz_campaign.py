"""Fuzz campaign: mutated videos and images decoded by our reader, with plain PyAV and decord (videos) and plain
Pillow (images) as anchors, measured in the same run on the same files.

Every case is decoded in a worker subprocess capped at --memory-gb of address space (RLIMIT_AS) with a --timeout
per case (see modeling_tests/fuzz_media.py for the seeds, the mutations and the outcome classes). Prints one table
row per decoder: cases, ok, clean errors, unexpected exceptions, crashes, hangs, max and p99 seconds; --json writes
the numbers and every non-clean case.

    python benchmarks/fuzz_campaign.py --per-seed 28 --json fuzz.json    # ~450 video cases + 200 image cases

decord is optional (`pip install decord`); without it that row is left out and said so.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "modeling_tests"))
sys.path.insert(0, str(REPO / "src"))

from fuzz_media import Runner, summarise, write_cases, write_seeds  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-seed", type=int, default=28, help="mutated cases per seed file (default 28)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--memory-gb", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--update-docs", type=Path, default=None,
                        help="rewrite the table between <!-- fuzz-table --> markers of this file (docs/reliability.md)")
    args = parser.parse_args(argv)

    # Not imported here: decord bundles its own FFmpeg libraries, which break PyAV's encoders in the same process
    # (the seeds are written with PyAV). Each decoder runs in its own worker process.
    if importlib.util.find_spec("decord") is not None:
        video_decoders = ["ours", "pyav", "decord"]
    else:
        print("decord is not installed: its row is left out (pip install decord)", file=sys.stderr)
        video_decoders = ["ours", "pyav"]
    memory = int(args.memory_gb * (1 << 30))
    with tempfile.TemporaryDirectory() as tmp:
        seeds = write_seeds(Path(tmp) / "seeds")
        cases = write_cases(seeds, Path(tmp) / "cases", args.per_seed, seed=args.seed)
        plan = {("video", d): [c for c in cases if c.kind == "video"] for d in video_decoders}
        plan.update({("image", d): [c for c in cases if c.kind == "image"] for d in ("ours", "pillow")})
        rows, failures = {}, {}
        for (kind, decoder), todo in plan.items():
            runner = Runner(memory_bytes=memory, case_timeout=args.timeout)
            start = time.perf_counter()
            try:
                results = [(case, runner.run(case, decoder)) for case in todo]
            finally:
                runner.close()
            rows[f"{kind}/{decoder}"] = {**summarise([r for _, r in results]), "wall_s": time.perf_counter() - start}
            failures[f"{kind}/{decoder}"] = [
                {"case": c.path.name, "seed": c.seed, "mutation": c.mutation, **r}
                for c, r in results if r["outcome"] not in ("ok", "clean")
            ]
    header = f"{'reader':<14}{'cases':>6}{'ok':>6}{'clean':>7}{'unexp.':>7}{'crash':>6}{'hang':>5}{'max s':>8}{'p99 s':>8}"
    print(header)
    for name, row in rows.items():
        print(f"{name:<14}{row['cases']:>6}{row['ok']:>6}{row['clean']:>7}{row['unexpected'] + row['malformed']:>7}"
              f"{row['crash']:>6}{row['hang']:>5}{row['max_s']:>8.3f}{row['p99_s']:>8.3f}")
    for name, bad in failures.items():
        for item in bad[:5]:
            print(f"  {name}: {item['outcome']} on {item['case']} ({item.get('error', '')[:120]})")
    if args.update_docs:
        _update_docs(args.update_docs, rows)
    if args.json:
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        args.json.write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": machine,
                                         "per_seed": args.per_seed, "rows": rows, "failures": failures}, indent=1))
    return 0


NAMES = {"video/ours": "ours, videos", "video/pyav": "plain PyAV, videos", "video/decord": "decord, videos",
         "image/ours": "ours, images", "image/pillow": "plain Pillow, images"}


def _update_docs(path: Path, rows: dict) -> None:
    lines = ["<!-- fuzz-table -->",
             "| reader | cases | ok | clean errors | unexpected | crashes | hangs | max s | p99 s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {NAMES[name]} | {row['cases']} | {row['ok']} | {row['clean']} | "
                     f"{row['unexpected'] + row['malformed']} | {row['crash']} | {row['hang']} | {row['max_s']:.2f} | "
                     f"{row['p99_s']:.3f} |")
    lines.append("<!-- /fuzz-table -->")
    text = path.read_text()
    start, end = text.index("<!-- fuzz-table -->"), text.index("<!-- /fuzz-table -->") + len("<!-- /fuzz-table -->")
    path.write_text(text[:start] + "\n".join(lines) + text[end:])


if __name__ == "__main__":
    sys.exit(main())
