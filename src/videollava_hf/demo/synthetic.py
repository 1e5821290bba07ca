"""Deterministic synthetic media for the tiny Video-LLaVA demo model.

The demo model gets "its own small visual world": one to three flat shapes on a
plain background, each with a colour, a shape and a motion. Everything is
derived from integer seeds, so the same seed always yields the same records and
the same pixels, and a held-out split is simply a different seed.

Design
------
* :class:`SceneSpec` fully describes a scene; :func:`render_video` /
  :func:`render_image` turn it into ``uint8`` arrays. All randomness inside a
  render (background shade, colour jitter, positions, pixel noise) comes from
  ``SceneSpec.seed``.
* :func:`plan_samples` builds the conversation records and the specs without
  rendering anything (cheap); :func:`generate_records` also renders and returns
  ``(records, media)`` where ``media`` maps each record's relative media path
  (the value of its ``"video"`` / ``"image"`` key) to the rendered array.
  :func:`write_dataset` renders one sample at a time and writes it to disk, so
  large datasets never sit in memory.
* Records use the original Video-LLaVA / LLaVA conversation format::

      {"id": "...", "video": "videos/....mp4",
       "conversations": [{"from": "human", "value": "<video>\\nWhat colour is the shape?"},
                         {"from": "gpt", "value": "red"}],
       "question_type": "colour", "question_types": ["colour"],
       "scene": {"colour": "red", "shape": "circle", ...}}

  ``question_type`` is the first turn's type (for per-type accuracy);
  ``question_types`` lists every turn's type; ``scene`` is the spec as a dict.

Answer vocabulary (see :data:`ANSWER_VOCAB`): colours ``red green blue yellow
purple orange``; shapes ``circle square triangle``; motion ``left right up down
still growing shrinking``; moves ``yes no`` (growing/shrinking count as "yes");
count ``one two three``. Images only get colour/shape/count questions.

CLI: ``python -m videollava_hf.demo.synthetic --out DIR --videos N --images M --seed S``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

Kind = Literal["video", "image"]

# Saturated colours spaced far apart in RGB so they stay distinguishable after
# downscaling to 32-48 px, chroma subsampling and the per-scene jitter below.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 175, 60),
    "blue": (45, 85, 230),
    "yellow": (235, 220, 45),
    "purple": (145, 55, 200),
    "orange": (245, 135, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Motion names double as the answers to "motion" questions.
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still", "growing", "shrinking")
# Several shapes sit side by side in columns; only vertical motion (or none)
# keeps them from colliding, so multi-shape scenes are limited to these.
MULTI_SHAPE_MOTIONS: tuple[str, ...] = ("still", "up", "down")
MAX_COUNT = 3
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three")
# Background grey-level ranges (inclusive); the exact shade is drawn per scene.
BACKGROUNDS: dict[str, tuple[int, int]] = {"dark": (35, 65), "light": (195, 235)}

QUESTION_TYPES: tuple[str, ...] = ("colour", "shape", "motion", "moves", "count")
VIDEO_QUESTION_TYPES: tuple[str, ...] = QUESTION_TYPES
IMAGE_QUESTION_TYPES: tuple[str, ...] = ("colour", "shape", "count")
ANSWER_VOCAB: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "motion": MOTIONS,
    "moves": ("yes", "no"),
    "count": COUNT_WORDS,
}
VIDEO_TOKEN = "<video>"
IMAGE_TOKEN = "<image>"
DEFAULT_FPS = 8
DEFAULT_MULTI_TURN_PROB = 0.25

# Each paraphrase is a (singular, plural) pair so multi-shape scenes read naturally.
QUESTION_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "colour": (
        ("What colour is the shape?", "What colour are the shapes?"),
        ("What is the colour of the shape?", "What is the colour of the shapes?"),
        ("Which colour does the object have?", "Which colour do the objects have?"),
    ),
    "shape": (
        ("What shape is it?", "What shape are they?"),
        ("Which shape is shown?", "Which shape is shown?"),
        ("What kind of shape is the object?", "What kind of shape are the objects?"),
    ),
    "motion": (
        ("Which way does the shape move?", "Which way do the shapes move?"),
        ("How does the shape move?", "How do the shapes move?"),
        ("Describe the motion of the object.", "Describe the motion of the objects."),
    ),
    "moves": (
        ("Does the shape move?", "Do the shapes move?"),
        ("Is the object moving?", "Are the objects moving?"),
        ("Is there any motion in the video?", "Is there any motion in the video?"),
    ),
    "count": (
        ("How many shapes are there?", "How many shapes are there?"),
        ("How many objects can you see?", "How many objects can you see?"),
        ("Count the shapes.", "Count the shapes."),
    ),
}

# Geometry, in fractions of the frame side. Base diameters keep one shape
# >= ~8 px and three shapes >= ~6 px wide at 32 px while leaving gaps between
# columns; travel ~0.5 makes motion obvious between first and last frame.
_BASE_DIAMETER: dict[int, float] = {1: 0.28, 2: 0.24, 3: 0.20}
_SIZE_JITTER = 0.08
_GROW_DIAMETERS = (0.15, 0.40)  # >= 2.3x even after jitter
_TRAVEL_RANGE = (0.46, 0.54)
_NOISE_STD = 3.0
_COLOUR_JITTER = 12
_MIN_SIZE = 16


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one scene; ``seed`` drives all jitter and noise."""

    colour: str
    shape: str
    motion: str = "still"
    count: int = 1
    background: str = "dark"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("colour", self.colour, tuple(COLOURS))
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("motion", self.motion, MOTIONS)
        _check_choice("background", self.background, tuple(BACKGROUNDS))
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be an int in 1..{MAX_COUNT}, got {self.count!r}")
        if self.count > 1 and self.motion not in MULTI_SHAPE_MOTIONS:
            raise ValueError(
                f"scenes with {self.count} shapes only support motions {MULTI_SHAPE_MOTIONS}, "
                f"got {self.motion!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")


@dataclass(frozen=True)
class SyntheticSample:
    """A planned (not yet rendered) sample: its record, scene and media kind."""

    record: dict[str, Any]
    spec: SceneSpec
    kind: Kind

    @property
    def media_path(self) -> str:
        """Relative media path as stored in the record."""
        return str(self.record[self.kind])


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {tuple(allowed)}")


def _check_kind(kind: str) -> None:
    _check_choice("kind", kind, ("video", "image"))


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < _MIN_SIZE:
        raise ValueError(f"size must be an int >= {_MIN_SIZE}, got {size!r}")


# ---------------------------------------------------------------------------
# Scene sampling
# ---------------------------------------------------------------------------


def sample_spec(
    rng: np.random.Generator,
    kind: Kind = "video",
    *,
    count: int | None = None,
    motion: str | None = None,
) -> SceneSpec:
    """Draw a random scene from ``rng``.

    ``count=None`` draws 1..MAX_COUNT uniformly; ``motion=None`` draws uniformly
    from the motions allowed for the kind and count (images are always still).
    """
    _check_kind(kind)
    if count is None:
        count = int(rng.integers(1, MAX_COUNT + 1))
    if kind == "image":
        if motion not in (None, "still"):
            raise ValueError(f"images are still scenes; got motion {motion!r}")
        motion = "still"
    elif motion is None:
        allowed = MOTIONS if count == 1 else MULTI_SHAPE_MOTIONS
        motion = allowed[int(rng.integers(len(allowed)))]
    return SceneSpec(
        colour=_pick(rng, tuple(COLOURS)),
        shape=_pick(rng, SHAPES),
        motion=motion,
        count=count,
        background=_pick(rng, tuple(BACKGROUNDS)),
        seed=int(rng.integers(2**31 - 1)),
    )


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _single_track(motion: str, rng: np.random.Generator) -> np.ndarray:
    """(2, 3) array: (cx, cy, diameter) at the first and last frame."""
    diameter = _BASE_DIAMETER[1] * rng.uniform(1 - _SIZE_JITTER, 1 + _SIZE_JITTER)
    if motion == "still":
        cx, cy = 0.5 + rng.uniform(-0.12, 0.12, size=2)
        return np.array([[cx, cy, diameter], [cx, cy, diameter]])
    if motion in ("growing", "shrinking"):
        cx, cy = 0.5 + rng.uniform(-0.06, 0.06, size=2)
        small, big = np.array(_GROW_DIAMETERS) * rng.uniform(0.93, 1.07, size=2)
        first, last = (small, big) if motion == "growing" else (big, small)
        return np.array([[cx, cy, first], [cx, cy, last]])
    mid = 0.5 + rng.uniform(-0.03, 0.03)
    across = 0.5 + rng.uniform(-0.15, 0.15)
    half = rng.uniform(*_TRAVEL_RANGE) / 2
    # Image coordinates: x grows to the right, y grows downwards.
    sign = 1.0 if motion in ("right", "down") else -1.0
    first, last = mid - sign * half, mid + sign * half
    if motion in ("left", "right"):
        return np.array([[first, across, diameter], [last, across, diameter]])
    return np.array([[across, first, diameter], [across, last, diameter]])


def _multi_tracks(count: int, motion: str, rng: np.random.Generator) -> np.ndarray:
    """(count, 2, 3) tracks for shapes laid out in vertical columns."""
    half = rng.uniform(*_TRAVEL_RANGE) / 2
    sign = 1.0 if motion == "down" else -1.0
    tracks = []
    for i in range(count):
        cx = (i + 0.5) / count + rng.uniform(-0.015, 0.015)
        diameter = _BASE_DIAMETER[count] * rng.uniform(1 - _SIZE_JITTER, 1 + _SIZE_JITTER)
        if motion == "still":
            cy = 0.5 + rng.uniform(-0.2, 0.2)
            first = last = cy
        else:
            mid = 0.5 + rng.uniform(-0.03, 0.03)
            first, last = mid - sign * half, mid + sign * half
        tracks.append([[cx, first, diameter], [cx, last, diameter]])
    return np.array(tracks)


def _tracks(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.count == 1:
        return _single_track(spec.motion, rng)[None]
    return _multi_tracks(spec.count, spec.motion, rng)


def _shape_mask(
    shape: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, diameter: float
) -> np.ndarray:
    """Boolean (H, W) mask; ``xs`` is (1, W) and ``ys`` is (H, 1) pixel centres."""
    r = diameter / 2
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        # 0.886 r gives the square the same area as the circle.
        half = 0.886 * r
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # Upward-pointing triangle, enlarged so its area is close to the others.
    top, bottom, half_base = -1.15 * r, 0.85 * r, 1.15 * r
    inside_rows = (dy >= top) & (dy <= bottom)
    return inside_rows & (np.abs(dx) <= half_base * (dy - top) / (bottom - top))


def _render(spec: SceneSpec, num_frames: int, size: int) -> np.ndarray:
    # Draw order is fixed (background, colour, geometry, noise) so the geometry
    # of a scene does not depend on num_frames or size.
    rng = np.random.default_rng(spec.seed)
    lo, hi = BACKGROUNDS[spec.background]
    background = rng.integers(lo, hi + 1) + rng.integers(-4, 5, size=3)
    colour = np.array(COLOURS[spec.colour]) + rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
    tracks = _tracks(spec, rng)
    noise = rng.normal(0.0, _NOISE_STD, size=(num_frames, size, size, 3))

    coords = (np.arange(size) + 0.5) / size
    xs, ys = coords[None, :], coords[:, None]
    times = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    frames = np.empty((num_frames, size, size, 3), dtype=np.float64)
    frames[:] = background
    for frame, t in zip(frames, times):
        for start, end in tracks:
            cx, cy, diameter = start + t * (end - start)
            frame[_shape_mask(spec.shape, xs, ys, cx, cy, diameter)] = colour
    frames += noise
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render_video(spec: SceneSpec, num_frames: int = 16, size: int = 96) -> np.ndarray:
    """Render ``spec`` as a ``(num_frames, size, size, 3)`` uint8 RGB clip."""
    _check_size(size)
    if not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"num_frames must be an int >= 2, got {num_frames!r}")
    return _render(spec, num_frames, size)


def render_image(spec: SceneSpec, size: int = 96) -> np.ndarray:
    """Render a still ``spec`` as a ``(size, size, 3)`` uint8 RGB image."""
    _check_size(size)
    if spec.motion != "still":
        raise ValueError(f"images are still scenes; got motion {spec.motion!r}")
    return _render(spec, 1, size)[0]


# ---------------------------------------------------------------------------
# Questions and records
# ---------------------------------------------------------------------------


def answer_for(spec: SceneSpec, question_type: str) -> str:
    """The canonical answer word for ``question_type`` about ``spec``."""
    _check_choice("question_type", question_type, QUESTION_TYPES)
    if question_type == "colour":
        return spec.colour
    if question_type == "shape":
        return spec.shape
    if question_type == "motion":
        return spec.motion
    if question_type == "moves":
        return "no" if spec.motion == "still" else "yes"
    return COUNT_WORDS[spec.count - 1]


def question_for(spec: SceneSpec, question_type: str, variant: int = 0) -> str:
    """Paraphrase number ``variant`` (modulo the number available) of a question."""
    _check_choice("question_type", question_type, QUESTION_TYPES)
    templates = QUESTION_TEMPLATES[question_type]
    singular, plural = templates[variant % len(templates)]
    return singular if spec.count == 1 else plural


def _spec_for_question(rng: np.random.Generator, kind: Kind, question_type: str) -> SceneSpec:
    # Only counting questions get multi-shape scenes so every other question
    # is about a single, unambiguous shape.
    count = int(rng.integers(1, MAX_COUNT + 1)) if question_type == "count" else 1
    motion: str | None = None
    if kind == "video" and question_type == "moves":
        # Balance yes/no: otherwise "still" would be only 1/7 of the answers.
        if rng.random() < 0.5:
            motion = "still"
        else:
            moving = [m for m in (MOTIONS if count == 1 else MULTI_SHAPE_MOTIONS) if m != "still"]
            motion = _pick(rng, moving)
    return sample_spec(rng, kind, count=count, motion=motion)


def _conversation(
    rng: np.random.Generator, spec: SceneSpec, kind: Kind, question_types: Sequence[str]
) -> list[dict[str, str]]:
    token = VIDEO_TOKEN if kind == "video" else IMAGE_TOKEN
    turns: list[dict[str, str]] = []
    for i, question_type in enumerate(question_types):
        variant = int(rng.integers(len(QUESTION_TEMPLATES[question_type])))
        # Only the first human turn carries the media placeholder (LLaVA convention).
        prefix = f"{token}\n" if i == 0 else ""
        turns.append({"from": "human", "value": prefix + question_for(spec, question_type, variant)})
        turns.append({"from": "gpt", "value": answer_for(spec, question_type)})
    return turns


def _plan_one(
    rng: np.random.Generator, kind: Kind, sample_id: str, multi_turn_prob: float
) -> SyntheticSample:
    allowed = VIDEO_QUESTION_TYPES if kind == "video" else IMAGE_QUESTION_TYPES
    first = _pick(rng, allowed)
    spec = _spec_for_question(rng, kind, first)
    question_types = [first]
    # Optional second turn: a different question about the same scene.
    if rng.random() < multi_turn_prob:
        question_types.append(_pick(rng, [q for q in allowed if q != first]))
    extension = "mp4" if kind == "video" else "png"
    record: dict[str, Any] = {
        "id": sample_id,
        kind: f"{kind}s/{sample_id}.{extension}",
        "conversations": _conversation(rng, spec, kind, question_types),
        "question_type": first,
        "question_types": question_types,
        "scene": asdict(spec),
    }
    return SyntheticSample(record=record, spec=spec, kind=kind)


def plan_samples(
    num_videos: int,
    num_images: int,
    seed: int,
    *,
    multi_turn_prob: float = DEFAULT_MULTI_TURN_PROB,
) -> list[SyntheticSample]:
    """Plan ``num_videos`` video then ``num_images`` image samples without rendering."""
    for name, value in (("num_videos", num_videos), ("num_images", num_images), ("seed", seed)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if not 0.0 <= multi_turn_prob <= 1.0:
        raise ValueError(f"multi_turn_prob must be in [0, 1], got {multi_turn_prob!r}")
    rng = np.random.default_rng(seed)
    samples = [
        _plan_one(rng, "video", f"synth-s{seed}-video-{i:06d}", multi_turn_prob)
        for i in range(num_videos)
    ]
    samples += [
        _plan_one(rng, "image", f"synth-s{seed}-image-{i:06d}", multi_turn_prob)
        for i in range(num_images)
    ]
    return samples


def render_sample(sample: SyntheticSample, num_frames: int = 16, size: int = 96) -> np.ndarray:
    """Render a planned sample (video clip or image)."""
    if sample.kind == "video":
        return render_video(sample.spec, num_frames=num_frames, size=size)
    return render_image(sample.spec, size=size)


def generate_records(
    num_videos: int,
    num_images: int,
    seed: int,
    *,
    num_frames: int = 16,
    size: int = 96,
    multi_turn_prob: float = DEFAULT_MULTI_TURN_PROB,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Return ``(records, media)``; ``media[record["video" or "image"]]`` is the array.

    Everything is held in memory: use :func:`write_dataset` for large sets.
    """
    samples = plan_samples(num_videos, num_images, seed, multi_turn_prob=multi_turn_prob)
    records = [sample.record for sample in samples]
    media = {sample.media_path: render_sample(sample, num_frames, size) for sample in samples}
    return records, media


# ---------------------------------------------------------------------------
# Writing to disk
# ---------------------------------------------------------------------------


def _pick_codec() -> str:
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
        except ValueError:  # UnknownCodecError: this FFmpeg build lacks the encoder
            continue
        return name
    raise RuntimeError("PyAV has neither the libx264 nor the mpeg4 encoder")


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = DEFAULT_FPS, codec: str | None = None) -> str:
    """Encode ``(F, H, W, 3)`` uint8 RGB frames to MP4 (yuv420p); returns the codec used."""
    import av

    if not isinstance(fps, int) or fps < 1:
        raise ValueError(f"fps must be a positive int, got {fps!r}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even frame sides, got {height}x{width}")
    codec = codec or _pick_codec()
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            # crf 16 is near-lossless so tiny frames keep crisp colours and
            # edges. zerolatency turns off the lookahead/mb-tree rate control:
            # with it, identical input was observed to encode differently from
            # run to run under CPU load, breaking reproducibility.
            stream.options = {"crf": "16", "tune": "zerolatency"}
        else:
            stream.bit_rate = 4_000_000
        time_base = Fraction(1, fps)
        for index, array in enumerate(frames):
            # Explicit single-threaded conversion and explicit timestamps: the
            # implicit ones inside encode() also made the output vary.
            frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p", threads=1)
            frame.pts, frame.time_base = index, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():  # flush delayed frames
            container.mux(packet)
    return codec


def write_dataset(
    out_dir: str | Path,
    num_videos: int,
    num_images: int,
    seed: int,
    num_frames: int = 16,
    size: int = 96,
    *,
    json_name: str = "train.json",
    fps: int = DEFAULT_FPS,
    multi_turn_prob: float = DEFAULT_MULTI_TURN_PROB,
) -> Path:
    """Write media under ``out_dir`` (videos/*.mp4, images/*.png) plus the JSON records.

    Returns the path of the JSON file (a list of records, media paths relative to
    ``out_dir``). Samples are rendered and written one at a time.
    """
    from PIL import Image

    _check_size(size)
    # Validate up front so a bad argument never leaves a half-written dataset.
    if num_videos and size % 2:
        raise ValueError(f"video size must be even for yuv420p, got {size}")
    if num_videos and (not isinstance(num_frames, int) or num_frames < 2):
        raise ValueError(f"num_frames must be an int >= 2, got {num_frames!r}")
    if Path(json_name).name != json_name or not json_name:
        raise ValueError(f"json_name must be a plain file name, got {json_name!r}")
    samples = plan_samples(num_videos, num_images, seed, multi_turn_prob=multi_turn_prob)
    out = Path(out_dir)
    codec = _pick_codec() if num_videos else None
    for sample in samples:
        target = out / sample.media_path
        target.parent.mkdir(parents=True, exist_ok=True)
        array = render_sample(sample, num_frames, size)
        if sample.kind == "video":
            write_mp4(target, array, fps=fps, codec=codec)
        else:
            Image.fromarray(array).save(target, format="PNG")
    json_path = out / json_name
    json_path.write_text(json.dumps([s.record for s in samples], indent=1) + "\n", encoding="utf-8")
    return json_path


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m videollava_hf.demo.synthetic",
        description="Write a deterministic synthetic shapes dataset in Video-LLaVA conversation format.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory (created if missing)")
    parser.add_argument("--videos", type=int, default=100, help="number of video samples")
    parser.add_argument("--images", type=int, default=100, help="number of image samples")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; use a different one for held-out data")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--size", type=int, default=96, help="frame side in pixels (even)")
    parser.add_argument("--fps", type=int, default=DEFAULT_FPS, help="video frame rate")
    parser.add_argument("--json-name", default="train.json", help="name of the records file inside --out")
    parser.add_argument(
        "--multi-turn-prob",
        type=float,
        default=DEFAULT_MULTI_TURN_PROB,
        help="probability that a record gets a second question/answer turn",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; writes the dataset and reports the JSON path on stdout."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        json_path = write_dataset(
            args.out,
            args.videos,
            args.images,
            args.seed,
            num_frames=args.frames,
            size=args.size,
            json_name=args.json_name,
            fps=args.fps,
            multi_turn_prob=args.multi_turn_prob,
        )
    except ValueError as error:  # bad arguments: report like argparse does, no traceback
        parser.error(str(error))
    sys.stdout.write(f"{json_path}\n")
    return 0


__all__ = [
    "ANSWER_VOCAB",
    "BACKGROUNDS",
    "COLOURS",
    "COUNT_WORDS",
    "DEFAULT_FPS",
    "DEFAULT_MULTI_TURN_PROB",
    "IMAGE_QUESTION_TYPES",
    "IMAGE_TOKEN",
    "MAX_COUNT",
    "MOTIONS",
    "MULTI_SHAPE_MOTIONS",
    "QUESTION_TEMPLATES",
    "QUESTION_TYPES",
    "SHAPES",
    "SceneSpec",
    "SyntheticSample",
    "VIDEO_QUESTION_TYPES",
    "VIDEO_TOKEN",
    "answer_for",
    "generate_records",
    "main",
    "plan_samples",
    "question_for",
    "render_image",
    "render_sample",
    "render_video",
    "sample_spec",
    "write_dataset",
    "write_mp4",
]


if __name__ == "__main__":
    raise SystemExit(main())
