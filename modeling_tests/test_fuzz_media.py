"""Bounded fuzzing of the media readers (issue 15): mutated videos of every container the tests generate and images
of every format Pillow writes, each decoded in a worker subprocess with a memory cap (RLIMIT_AS) and a per-case time
limit. Only clean errors or well-formed frames are allowed: no crash, no hang, no unexpected exception type.

About a minute on 2 cores; the larger campaign with decord and plain PyAV as anchors is benchmarks/fuzz_campaign.py
(results in docs/reliability.md)."""

from __future__ import annotations

from collections import Counter

import pytest

from fuzz_media import MUTATIONS, Runner, summarise, write_cases, write_seeds

# One seed per container (MP4, Matroska, WebM, AVI, MPEG-TS, raw H.264) plus an odd size and the short clips.
VIDEO_SEEDS = ["h264_bframes.mp4", "h264_opengop.mkv", "vp9.webm", "mpeg4_bframes.avi", "mpeg2.ts", "raw.h264",
               "odd_641x359.mp4", "three_frames.mp4"]
PER_SEED = len(MUTATIONS)  # one case per mutation kind


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    seeds = write_seeds(root / "seeds", VIDEO_SEEDS)
    cases = write_cases(seeds, root / "cases", PER_SEED, seed=15)
    runner = Runner(memory_bytes=3 << 30, case_timeout=30.0)
    try:
        results = [(case, runner.run(case, "ours")) for case in cases]
    finally:
        runner.close()
    return seeds, results


def test_every_container_and_image_format_is_fuzzed(fuzz_results):
    seeds, results = fuzz_results
    suffixes = {path.suffix for path, _ in seeds}
    assert {".mp4", ".mkv", ".webm", ".avi", ".ts", ".h264", ".png", ".jpg", ".gif", ".bmp", ".webp", ".tiff"} <= suffixes
    assert len(results) == len(seeds) * PER_SEED
    by_outcome = Counter(result["outcome"] for _, result in results)
    assert by_outcome["ok"] > 0 and by_outcome["clean"] > 0  # the mutations both break files and leave some readable


def test_only_clean_errors_or_well_formed_frames(fuzz_results):
    _, results = fuzz_results
    bad = [(case.path.name, result) for case, result in results if result["outcome"] not in ("ok", "clean")]
    assert bad == [], bad
    summary = summarise([result for _, result in results])
    assert summary["max_s"] < 30
