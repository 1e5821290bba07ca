"""Benchmark: reading 8 uniformly spaced frames from a video.

Compares, in one run and on the same files:

  (a) the decode-everything loop from the Transformers Video-LLaVA docs (decode frames in order
      until the last wanted index, keep the wanted ones; indices = arange(0, total, total / 8)),
  (b) ``transformers.video_utils.load_video(path, num_frames=8, backend="pyav")``,
  (c) ``videollava_hf.models.videollava.video_io.load_video(path, num_frames=8)`` (frame-accurate),
  (d) a floor: seek to the keyframe before each of the 8 target times and decode one frame.

Clips: the real clips in ``../shared/fixtures/`` and synthetic H.264 clips generated once with
PyAV into ``<repo>/.bench_cache/`` (10 min 1280x720 30 fps with GOP 250 and GOP 30, 2 min
1920x1080 30 fps). ``--quick`` uses 30 s / 20 s versions for a smoke run.

Usage::

    python benchmarks/bench_video.py [--quick] [--repeats 3] [--update-docs docs/performance.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from videollava_hf.models.videollava.video_io import load_video  # noqa: E402


SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
CACHE = REPO / ".bench_cache"
SECTION = "## Video decoding (8 uniform frames)"
COUNTER_BITS = 16


# --------------------------------------------------------------------------------------------
# Synthetic clips
# --------------------------------------------------------------------------------------------


def synthetic_clip(seconds: int, width: int, height: int, fps: int, gop: int) -> Path:
    """Generate (once) an H.264 clip: a panning noise texture, a moving box and a frame counter."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"synthetic_{width}x{height}_{fps}fps_{seconds}s_gop{gop}.mp4"
    if path.exists() and path.stat().st_size > 0:
        return path
    partial = path.with_suffix(".partial.mp4")
    started = time.perf_counter()
    container = av.open(str(partial), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    # ultrafast keeps generation quick; a fixed keyint (no scene cuts) makes the GOP exact.
    stream.options = {"preset": "ultrafast", "crf": "23", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
    rng = np.random.default_rng(0)
    texture = np.kron(rng.integers(16, 236, (height // 8 + 1, width // 8 + 1), dtype=np.uint8),
                      np.ones((8, 8), np.uint8))[:height, :width]
    texture = np.concatenate([texture, texture], axis=1)  # lets the texture pan without wrapping logic
    chroma = np.full((height // 2, width), 128, np.uint8)
    block = width // (COUNTER_BITS + 2)
    for number in range(seconds * fps):
        offset = (number * 4) % width
        luma = texture[:, offset: offset + width].copy()
        x, y = (number * 7) % (width - 160), (number * 3) % (height - 160)
        luma[y: y + 160, x: x + 160] = 235
        for bit in range(COUNTER_BITS):  # frame number, so the benchmark can check it got the right frames
            luma[8: 8 + block, (bit + 1) * block: (bit + 2) * block] = 235 if (number >> bit) & 1 else 16
        frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    partial.rename(path)
    print(f"generated {path.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def read_counter(rgb: np.ndarray) -> int:
    width = rgb.shape[1]
    block = width // (COUNTER_BITS + 2)
    row = rgb[8 + block // 2, :, :].astype(np.float32).mean(axis=-1)
    return sum(1 << bit for bit in range(COUNTER_BITS) if row[(bit + 1) * block + block // 2] > 127)


# --------------------------------------------------------------------------------------------
# The four readers
# --------------------------------------------------------------------------------------------


def docs_loop(path: Path) -> np.ndarray:
    """(a) Verbatim logic of the Transformers Video-LLaVA docs example."""
    container = av.open(str(path))
    total_frames = container.streams.video[0].frames
    indices = np.arange(0, total_frames, total_frames / 8).astype(int)
    frames = []
    container.seek(0)
    start_index, end_index = indices[0], indices[-1]
    for i, frame in enumerate(container.decode(video=0)):
        if i > end_index:
            break
        if i >= start_index and i in indices:
            frames.append(frame)
    container.close()
    return np.stack([x.to_ndarray(format="rgb24") for x in frames])


def transformers_loader(path: Path) -> np.ndarray:
    """(b) transformers.video_utils.load_video with the PyAV backend."""
    from transformers.video_utils import load_video as hf_load_video

    video, _ = hf_load_video(str(path), num_frames=8, backend="pyav")
    return video


def ours(path: Path) -> np.ndarray:
    """(c) This package."""
    frames, _ = load_video(path, num_frames=8)
    return frames


def keyframe_floor(path: Path) -> np.ndarray:
    """(d) Lower bound for 8 seeks: the keyframe before each target time, one decoded frame each."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
    frames = []
    for seconds in np.linspace(0, duration * (1 - 1e-3), 8):
        container.seek(int(seconds / stream.time_base), stream=stream, backward=True)
        frame = next(container.decode(stream))
        frames.append(frame.to_ndarray(format="rgb24"))
    container.close()
    return np.stack(frames)


METHODS: dict[str, Callable[[Path], np.ndarray]] = {
    "a": docs_loop,
    "b": transformers_loader,
    "c": ours,
    "d": keyframe_floor,
}


Result = tuple[float | str, float | str, np.ndarray | None]  # (wall s or error, CPU s or error, frames)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def measure(path: Path, repeats: int) -> dict[str, Result]:
    """Best wall time and best CPU time of each method over ``repeats`` rounds, or an error string.

    Methods are interleaved (a, b, c, d, a, b, c, d, ...) so that a busy neighbour slows all of
    them alike, and the best run is reported because the machines this runs on are often shared:
    slower runs measure the neighbours, not the reader. CPU time (user + system, all decoder
    threads) is much less sensitive to neighbours than wall time. A method taking > 10 s runs once.
    """
    walls: dict[str, list[float]] = {key: [] for key in METHODS}
    cpus: dict[str, list[float]] = {key: [] for key in METHODS}
    outputs: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for key, method in METHODS.items():
            if key in errors or (walls[key] and max(walls[key]) > 10):
                continue
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            try:
                outputs[key] = method(path)
            except Exception as error:  # the benchmark reports failures of other readers instead of stopping
                errors[key] = f"error: {type(error).__name__}: {str(error)[:60]}"
                continue
            walls[key].append(time.perf_counter() - started)
            cpus[key].append(_cpu_seconds() - cpu_started)
    return {
        key: (errors[key], errors[key], None) if key in errors else (min(walls[key]), min(cpus[key]), outputs[key])
        for key in METHODS
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def clip_label(path: Path) -> str:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        frames = stream.frames
        gop = _gop_length(container, stream)
        return f"{path.name} ({stream.width}x{stream.height}, {seconds:.0f} s, {frames} frames, GOP {gop})"


def _gop_length(container, stream) -> str:
    keys = [entry for entry in stream.index_entries if entry.is_keyframe]
    if not keys:
        return "?"
    return str(round(len(stream.index_entries) / len(keys)))


def fmt_seconds(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3f}"


def fmt_ratio(numerator: float | str, denominator: float | str) -> str:
    if isinstance(numerator, str) or isinstance(denominator, str) or denominator <= 0:
        return "n/a"
    return f"{numerator / denominator:.1f}x"


def machine_line() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")),
                     platform.processor())
    except OSError:
        model = platform.processor()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cores}-core CPU ({model}), Python {platform.python_version()}, PyAV {av.__version__}, "
            f"FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}")


def _load_average() -> str:
    try:
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def run(quick: bool, repeats: int) -> str:
    clips = [p for p in (SHARED_FIXTURES / "sample_demo_1.mp4", SHARED_FIXTURES / "sample_demo_3.mp4") if p.exists()]
    long_seconds, hd_seconds = (30, 20) if quick else (600, 120)
    synthetic = [
        synthetic_clip(long_seconds, 1280, 720, 30, 250),
        synthetic_clip(long_seconds, 1280, 720, 30, 30),
        synthetic_clip(hd_seconds, 1920, 1080, 30, 250),
    ]
    load_at_start = _load_average()
    wall_rows, cpu_rows = [], []
    for path in clips + synthetic:
        ours(path)  # warm the page cache and imports so that no method pays for them alone
        results = measure(path, repeats)
        print(path.name, {key: fmt_seconds(wall) for key, (wall, _, _) in results.items()}, file=sys.stderr)
        check = ""
        if path in synthetic and results["c"][2] is not None:
            with av.open(str(path)) as container:
                total = container.streams.video[0].frames
            expected = np.linspace(0, total - 1, 8, dtype=int).tolist()
            got = [read_counter(frame) for frame in results["c"][2]]
            check = "exact frames" if got == expected else f"WRONG FRAMES {got} != {expected}"
        for rows, column in ((wall_rows, 0), (cpu_rows, 1)):
            a, b, c, d = (results[key][column] for key in "abcd")
            row = (f"| {clip_label(path)} | {fmt_seconds(a)} | {fmt_seconds(b)} | {fmt_seconds(c)} | {fmt_seconds(d)} "
                   f"| {fmt_ratio(a, c)} | {fmt_ratio(b, c)} | {fmt_ratio(c, d)} |")
            rows.append(row + (f" {check} |" if column == 0 else ""))
    names = "(a) docs loop | (b) transformers load_video | (c) videollava_hf | (d) keyframe floor | a/c | b/c | c/d |"
    date = subprocess.run(["date"], capture_output=True, text=True, check=False).stdout.strip() or str(
        datetime.datetime.now())
    return (
        f"{SECTION}\n\n"
        f"Machine: {machine_line()}. Date: {date}. Mode: {'quick' if quick else 'full'}, "
        f"best of {repeats} runs (1 run when a run takes > 10 s), methods interleaved per clip. "
        f"Load average at start: {load_at_start}.\n\n"
        "(a) decode-everything loop of the Transformers Video-LLaVA docs; (b) "
        "`transformers.video_utils.load_video(path, num_frames=8, backend=\"pyav\")`; (c) "
        "`videollava_hf.models.videollava.video_io.load_video(path, num_frames=8)` (frame-accurate); (d) floor: seek to the keyframe "
        "before each of 8 target times and decode one frame. (a) and (b) sample frames `i * n / 8` (i = 0..7), "
        "(c) the original `linspace(0, n - 1, 8)` (which includes the last frame).\n\n"
        "Wall-clock seconds:\n\n"
        f"| clip | {names} (c) frame check |\n|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(wall_rows)
        + "\n\nCPU seconds (user + system, all threads; less sensitive to other load on the machine):\n\n"
        f"| clip | {names}\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(cpu_rows) + "\n\n" + NOTES
    )


NOTES = """\
Reading the ratios: (d) returns the keyframe before each requested time, up to a GOP away from it;
(c) returns exactly the requested frames, so it must decode from that keyframe to each target --
on average half a GOP per target (about 125 frames at GOP 250, 15 at GOP 30). That decoding work,
not overhead, is why c/d grows with the GOP length: at GOP 250 no frame-accurate reader can get
within 2x of (d). (a) and (b) decode every frame up to the last wanted one, so their cost grows
with the video's length instead. On the short real clips (a single GOP each) every reader decodes
the clip front to back; (c) decodes fewer frames (unwanted non-reference B-frames are dropped
undecoded) on two frame threads, which shows in wall time, while its CPU time stays about that
of (a): frame threading costs some CPU of its own.
"""


def update_docs(markdown: str, target: Path) -> None:
    """Insert or replace this benchmark's section in ``target``, leaving other sections alone."""
    text = target.read_text() if target.exists() else "# Performance\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + markdown
    else:
        following = text.find("\n## ", start + len(SECTION))
        end = len(text) if following == -1 else following + 1
        text = text[:start] + markdown + ("\n" + text[end:] if following != -1 else "")
    target.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short synthetic clips (smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (the best is reported)")
    parser.add_argument("--update-docs", type=Path, default=None, help="write the section into this markdown file")
    args = parser.parse_args()
    markdown = run(args.quick, args.repeats)
    print(markdown)
    if args.update_docs is not None:
        update_docs(markdown, args.update_docs)


if __name__ == "__main__":
    main()
