"""Mutation fuzzing of the media readers, shared by the suite's bounded test (test_fuzz_media.py) and the larger
campaign (benchmarks/fuzz_campaign.py).

Seeds are the generated videos of every container in video_fixtures.SPECS and images of every format Pillow writes
here (PNG, JPEG, GIF, BMP, WebP, TIFF). Each mutation (byte flips, truncation, a patched header, a moved or
duplicated block, zeroed or inserted bytes) is written to a file and decoded in a *worker subprocess* whose address
space is capped with `resource.setrlimit(RLIMIT_AS)`; the parent gives each case a wall-clock limit. Outcomes:

    ok          frames (or an image) came back, and they are well formed (count, shape, dtype)
    clean       a documented error: VideoDecodeError / MediaLimitError / ValueError for our reader, any Python
                exception for the anchors (plain PyAV, decord)
    unexpected  our reader raised another exception type (a bug, though not a crash)
    crash       the worker process died (abort, segfault, out of memory)
    hang        no answer within the case's time limit (the worker is killed and restarted)

The worker imports only the reader's files (models/videollava is a flat unit with sibling imports) so it starts in
a fraction of a second and its memory cap is not spent on torch.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
UNIT = HERE.parent / "src" / "videollava_hf" / "models" / "videollava"
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP", "tiff": "TIFF"}
MUTATIONS = ("flip", "truncate", "header", "move", "zero", "insert", "duplicate", "field")
# Boxes and chunks whose fields give sizes, counts, offsets and dimensions (MP4/MOV, AVI, PNG, GIF, WebP, TIFF):
# the "field" mutation overwrites the bytes after one of them with extreme values.
FIELD_TAGS = (b"stsz", b"stts", b"stsc", b"stco", b"ctts", b"stss", b"avcC", b"hvcC", b"mdhd", b"tkhd", b"elst",
              b"mvhd", b"moov", b"mdat", b"avih", b"strh", b"strf", b"idx1", b"movi", b"IHDR", b"IDAT", b"VP8 ",
              b"VP8L", b"NETSCAPE", b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67", b"\x16\x54\xae\x6b")
NUM_FRAMES = 8


# --- seeds and mutations -------------------------------------------------------------------------------------------


def write_seeds(directory: Path, video_names: list[str] | None = None) -> list[tuple[Path, str]]:
    """Seed files: (path, "video" | "image")."""
    from PIL import Image

    from video_fixtures import SPECS, frame_image, write_video

    import av

    directory.mkdir(parents=True, exist_ok=True)
    seeds = []
    for name, spec in SPECS.items():
        if (video_names is None or name in video_names) and spec.codec in av.codecs_available:
            seeds.append((write_video(directory / name, spec), "video"))
    picture = frame_image(5, 96, 64)
    for suffix, fmt in IMAGE_FORMATS.items():
        path = directory / f"seed.{suffix}"
        if fmt == "GIF":  # animated: the video path reads GIFs
            frames = [Image.fromarray(frame_image(i, 96, 64)) for i in range(4)]
            frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)
            seeds.append((path, "video"))
            path = directory / "still.gif"
            frames[0].save(path)
        else:
            Image.fromarray(picture).save(path, format=fmt)
        seeds.append((path, "image"))
    return seeds


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One mutation of `data`."""
    buf = bytearray(data)
    n = len(buf)
    if kind == "flip":  # a few random bytes anywhere
        for pos in rng.integers(0, n, size=int(rng.integers(1, 16))):
            buf[pos] ^= int(rng.integers(1, 256))
    elif kind == "truncate":
        return bytes(buf[: int(rng.integers(1, n))])
    elif kind == "header":  # sizes, counts and dimensions live in the first bytes of every format
        end = min(n, 512)
        for pos in rng.integers(0, end, size=int(rng.integers(1, 8))):
            buf[pos] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80, int(rng.integers(0, 256))]))
    elif kind == "move":  # cut a block and paste it elsewhere (atoms / chunks out of place)
        start = int(rng.integers(0, n))
        block = buf[start : start + int(rng.integers(1, max(2, n // 8)))]
        del buf[start : start + len(block)]
        at = int(rng.integers(0, len(buf) + 1))
        buf[at:at] = block
    elif kind == "zero":
        start = int(rng.integers(0, n))
        length = min(int(rng.integers(1, 256)), n - start)
        buf[start : start + length] = bytes(length)
    elif kind == "insert":
        at = int(rng.integers(0, n))
        buf[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == "duplicate":
        start = int(rng.integers(0, n))
        block = buf[start : start + int(rng.integers(1, max(2, n // 4)))]
        buf[start:start] = block
    elif kind == "field":
        found = [i for tag in FIELD_TAGS for i in _occurrences(data, tag)]
        at = int(rng.choice(found)) + 4 if found else int(rng.integers(0, n))
        for offset in range(0, 16, 4):
            value = int(rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0, 1, int(rng.integers(0, 1 << 32))]))
            buf[at + offset : at + offset + 4] = value.to_bytes(4, "big")[: max(0, min(4, n - at - offset))]
    else:
        raise ValueError(kind)
    return bytes(buf)


def _occurrences(data: bytes, tag: bytes) -> list[int]:
    found, start = [], data.find(tag)
    while start != -1 and len(found) < 64:
        found.append(start)
        start = data.find(tag, start + 1)
    return found


@dataclass
class Case:
    path: Path
    kind: str  # "video" | "image"
    seed: str
    mutation: str


def write_cases(seeds: list[tuple[Path, str]], directory: Path, per_seed: int, seed: int = 0) -> list[Case]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cases = []
    for path, kind in seeds:
        data = path.read_bytes()
        for i in range(per_seed):
            mutation = MUTATIONS[i % len(MUTATIONS)]
            target = directory / f"{path.stem}_{i:03d}_{mutation}{path.suffix}"
            target.write_bytes(mutate(data, mutation, rng))
            cases.append(Case(target, kind, path.name, mutation))
    return cases


# --- the worker (runs in the capped subprocess) --------------------------------------------------------------------


def _import_unit():
    """The reader's flat module folder as a package of its own: no torch, no transformers."""
    import importlib
    import types

    package = types.ModuleType("vlhf_unit")
    package.__path__ = [str(UNIT)]
    sys.modules["vlhf_unit"] = package
    return importlib.import_module("vlhf_unit.video_io"), importlib.import_module("vlhf_unit.media_io")


def _decode_ours(path: str, kind: str, video_io, media_io) -> dict:
    if kind == "image":
        try:
            image = media_io.load_image(path)
        except (ValueError, OSError) as err:  # UnidentifiedImageError is an OSError; MediaLimitError a ValueError
            return {"outcome": "clean", "error": f"{type(err).__name__}: {str(err)[:200]}"}
        except Exception as err:  # noqa: BLE001 - the point is to count anything else
            return {"outcome": "unexpected", "error": f"{type(err).__name__}: {str(err)[:200]}"}
        ok = image.mode == "RGB" and image.width > 0 and image.height > 0
        return {"outcome": "ok" if ok else "malformed", "shape": [image.height, image.width]}
    try:
        frames, meta = video_io.load_video(path, num_frames=NUM_FRAMES, timeout=10)
    except ValueError as err:  # VideoDecodeError, MediaLimitError
        return {"outcome": "clean", "error": f"{type(err).__name__}: {str(err)[:200]}"}
    except Exception as err:  # noqa: BLE001
        return {"outcome": "unexpected", "error": f"{type(err).__name__}: {str(err)[:200]}"}
    ok = (frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == NUM_FRAMES and frames.shape[-1] == 3
          and len(meta.indices) == NUM_FRAMES and all(0 <= i < meta.total_frames for i in meta.indices))
    return {"outcome": "ok" if ok else "malformed", "shape": list(frames.shape)}


def _decode_pyav(path: str, kind: str) -> dict:
    """Plain PyAV, as a user would write it: decode every frame of the first video stream."""
    import av

    try:
        count = 0
        with av.open(path, timeout=10) as container:
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")
                count += 1
        return {"outcome": "ok" if count else "clean", "frames": count}
    except Exception as err:  # noqa: BLE001 - any Python exception is a clean failure for an anchor
        return {"outcome": "clean", "error": f"{type(err).__name__}: {str(err)[:200]}"}


def _decode_decord(path: str, kind: str) -> dict:
    """decord, as Video-LLaVA's original code uses it: VideoReader + get_batch of uniform indices."""
    import decord

    try:
        reader = decord.VideoReader(path, num_threads=1)
        total = len(reader)
        indices = np.linspace(0, total - 1, NUM_FRAMES, dtype=int).tolist()
        frames = reader.get_batch(indices).asnumpy()
        return {"outcome": "ok", "shape": list(frames.shape)}
    except Exception as err:  # noqa: BLE001
        return {"outcome": "clean", "error": f"{type(err).__name__}: {str(err)[:200]}"}


def _decode_pillow(path: str, kind: str) -> dict:
    """Plain Pillow, as a user would write it: open and convert to RGB."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.convert("RGB")
        return {"outcome": "ok"}
    except Exception as err:  # noqa: BLE001
        return {"outcome": "clean", "error": f"{type(err).__name__}: {str(err)[:200]}"}


def worker(memory_bytes: int) -> None:
    """Read {"path", "kind", "decoder"} lines on stdin, answer one JSON line each on stdout."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Answers go to a private copy of stdout; native code that prints (FFmpeg, decord) lands on stderr instead.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    video_io = media_io = None
    for line in sys.stdin:
        job = json.loads(line)
        # Imports happen before the clock starts: the times are per decode, not per process start.
        if job["decoder"] == "ours" and video_io is None:
            video_io, media_io = _import_unit()
        elif job["decoder"] in ("pyav", "decord", "pillow"):
            importlib.import_module({"pyav": "av", "decord": "decord", "pillow": "PIL.Image"}[job["decoder"]])
        start = time.perf_counter()
        if job["decoder"] == "ours":
            result = _decode_ours(job["path"], job["kind"], video_io, media_io)
        elif job["decoder"] == "pyav":
            result = _decode_pyav(job["path"], job["kind"])
        elif job["decoder"] == "pillow":
            result = _decode_pillow(job["path"], job["kind"])
        else:
            result = _decode_decord(job["path"], job["kind"])
        result["seconds"] = time.perf_counter() - start
        answers.write(json.dumps(result) + "\n")
        answers.flush()


# --- the parent ----------------------------------------------------------------------------------------------------


class Runner:
    """One worker subprocess at a time; restarted after a crash or a hang."""

    def __init__(self, memory_bytes: int = 3 << 30, case_timeout: float = 30.0) -> None:
        self.memory_bytes = memory_bytes
        self.case_timeout = case_timeout
        self.process: subprocess.Popen | None = None

    def _start(self) -> None:
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import fuzz_media; fuzz_media.worker({self.memory_bytes})"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env)

    def _stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def run(self, case: Case, decoder: str) -> dict:
        if self.process is None or self.process.poll() is not None:
            self._start()
        job = {"path": str(case.path), "kind": case.kind, "decoder": decoder}
        start = time.perf_counter()
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self._stop()
            return {"outcome": "crash", "seconds": 0.0, "error": "worker gone before the case"}
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=self.case_timeout)
        selector.close()
        if not ready:
            self._stop()
            return {"outcome": "hang", "seconds": time.perf_counter() - start}
        line = self.process.stdout.readline()
        if not line:  # EOF: the worker died on this case
            code = self.process.wait()
            self.process = None
            return {"outcome": "crash", "seconds": time.perf_counter() - start, "error": f"exit status {code}"}
        return json.loads(line)

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=10)
            self.process = None


def summarise(results: list[dict]) -> dict:
    times = np.array([r["seconds"] for r in results]) if results else np.zeros(1)
    counts = {k: sum(r["outcome"] == k for r in results) for k in ("ok", "clean", "unexpected", "malformed",
                                                                    "crash", "hang")}
    return {"cases": len(results), **counts, "max_s": float(times.max()), "p99_s": float(np.percentile(times, 99))}


__all__ = ["Case", "MUTATIONS", "Runner", "mutate", "summarise", "worker", "write_cases", "write_seeds"]
