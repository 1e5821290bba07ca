"""Tests for the deterministic synthetic shapes world (videollava_hf.demo.synthetic)."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videollava_hf.demo import synthetic as syn

SIZE = 64
FRAMES = 8


# --- helpers -----------------------------------------------------------------


def foreground(frame: np.ndarray, threshold: int = 40) -> np.ndarray:
    """Pixels that differ clearly from the background (median of the border)."""
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]]).astype(int)
    background = np.median(border, axis=0)
    return np.abs(frame.astype(int) - background).max(axis=-1) > threshold


def blobs(mask: np.ndarray, min_pixels: int = 4) -> list[int]:
    """Sizes of 4-connected blobs (tiny specks from compression are ignored)."""
    seen = np.zeros_like(mask, dtype=bool)
    sizes = []
    height, width = mask.shape
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        seen[y, x] = True
        queue, size = deque([(y, x)]), 0
        while queue:
            cy, cx = queue.popleft()
            size += 1
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if size >= min_pixels:
            sizes.append(size)
    return sizes


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def assert_motion(video: np.ndarray, motion: str) -> None:
    """The named motion is visible between the first and last frame."""
    first, last = foreground(video[0]), foreground(video[-1])
    size = video.shape[1]
    dx, dy = centroid(last) - centroid(first)
    expected = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
    if motion in expected:
        ex, ey = expected[motion]
        along, across = (dx * ex + dy * ey), abs(dx * ey) + abs(dy * ex)
        assert along > 0.35 * size, (motion, dx, dy)
        assert across < 0.05 * size, (motion, dx, dy)
        return
    assert np.hypot(dx, dy) < 0.05 * size, (motion, dx, dy)
    linear_ratio = np.sqrt(last.sum() / first.sum())
    if motion == "growing":
        assert linear_ratio >= 2.0, linear_ratio
    elif motion == "shrinking":
        assert linear_ratio <= 0.5, linear_ratio
    else:
        assert 0.9 < linear_ratio < 1.1, linear_ratio


def nearest_colour(frame: np.ndarray) -> str:
    mean = frame[foreground(frame)].astype(float).mean(axis=0)
    return min(syn.COLOURS, key=lambda name: np.linalg.norm(mean - np.array(syn.COLOURS[name])))


def decode_mp4(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        # Single-threaded colour conversion keeps decoding bit-reproducible.
        return np.stack([f.reformat(format="rgb24", threads=1).to_ndarray() for f in container.decode(video=0)])


# --- rendering ---------------------------------------------------------------


def test_render_shapes_and_dtype() -> None:
    spec = syn.SceneSpec("red", "circle", "left", seed=1)
    video = syn.render_video(spec, num_frames=FRAMES, size=SIZE)
    assert video.shape == (FRAMES, SIZE, SIZE, 3) and video.dtype == np.uint8
    image = syn.render_image(syn.SceneSpec("blue", "square", seed=2), size=48)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8


def test_render_is_deterministic_and_seed_dependent() -> None:
    spec = syn.SceneSpec("green", "triangle", "up", seed=7)
    a = syn.render_video(spec, FRAMES, SIZE)
    np.testing.assert_array_equal(a, syn.render_video(spec, FRAMES, SIZE))
    other = syn.SceneSpec("green", "triangle", "up", seed=8)
    assert not np.array_equal(a, syn.render_video(other, FRAMES, SIZE))
    # Noise makes the task non-trivial: the background is not a single value.
    assert len(np.unique(a[0][~foreground(a[0])].reshape(-1, 3), axis=0)) > 10


@pytest.mark.parametrize("motion", syn.MOTIONS)
@pytest.mark.parametrize("shape", syn.SHAPES)
def test_motion_is_visible(motion: str, shape: str) -> None:
    for seed in range(3):
        background = "dark" if seed % 2 else "light"
        spec = syn.SceneSpec("orange", shape, motion, background=background, seed=seed)
        assert_motion(syn.render_video(spec, FRAMES, SIZE), motion)


@pytest.mark.parametrize("motion", ["up", "down"])
def test_multi_shape_motion_is_visible(motion: str) -> None:
    spec = syn.SceneSpec("purple", "square", motion, count=3, seed=5)
    assert_motion(syn.render_video(spec, FRAMES, SIZE), motion)


@pytest.mark.parametrize("colour", list(syn.COLOURS))
def test_colour_is_the_named_one(colour: str) -> None:
    for seed, (shape, background) in enumerate(
        [(s, b) for s in syn.SHAPES for b in syn.BACKGROUNDS]
    ):
        image = syn.render_image(syn.SceneSpec(colour, shape, background=background, seed=seed), SIZE)
        assert nearest_colour(image) == colour
        # Also after the downscale the demo towers apply.
        small = np.asarray(Image.fromarray(image).resize((32, 32)))
        assert nearest_colour(small) == colour


@pytest.mark.parametrize("count", [1, 2, 3])
def test_count_matches_blobs(count: int) -> None:
    motions = syn.MOTIONS if count == 1 else syn.MULTI_SHAPE_MOTIONS
    for seed in range(6):
        spec = syn.SceneSpec(
            list(syn.COLOURS)[seed % 6],
            syn.SHAPES[seed % 3],
            motions[seed % len(motions)],
            count=count,
            background="light" if seed % 2 else "dark",
            seed=seed,
        )
        video = syn.render_video(spec, FRAMES, SIZE)
        for frame in (video[0], video[-1]):
            assert len(blobs(foreground(frame))) == count, (spec, blobs(foreground(frame)))
        # Shapes stay recognisable (several pixels across) at the towers' 32 px input.
        small = syn.render_video(spec, FRAMES, 32)
        for frame in small:
            sizes = blobs(foreground(frame))
            assert len(sizes) == count and min(sizes) >= 9, (spec, sizes)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="colour"):
        syn.SceneSpec("pink", "circle")
    with pytest.raises(ValueError, match="shape"):
        syn.SceneSpec("red", "hexagon")
    with pytest.raises(ValueError, match="motion"):
        syn.SceneSpec("red", "circle", "sideways")
    with pytest.raises(ValueError, match="count"):
        syn.SceneSpec("red", "circle", count=4)
    with pytest.raises(ValueError, match="shapes only support"):
        syn.SceneSpec("red", "circle", "left", count=2)
    with pytest.raises(ValueError, match="still"):
        syn.render_image(syn.SceneSpec("red", "circle", "left"))
    with pytest.raises(ValueError, match="num_frames"):
        syn.render_video(syn.SceneSpec("red", "circle"), num_frames=1)
    with pytest.raises(ValueError, match="kind"):
        syn.sample_spec(np.random.default_rng(0), "audio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="even"):
        syn.write_mp4("unused.mp4", np.zeros((2, 33, 33, 3), np.uint8))


# --- records -----------------------------------------------------------------


def test_sample_spec_respects_kind() -> None:
    rng = np.random.default_rng(0)
    specs = [syn.sample_spec(rng, "image") for _ in range(20)]
    assert all(s.motion == "still" for s in specs)
    videos = [syn.sample_spec(rng, "video", count=1) for _ in range(60)]
    assert {s.motion for s in videos} == set(syn.MOTIONS)


def test_records_are_deterministic_and_seed_dependent() -> None:
    records_a, media_a = syn.generate_records(6, 4, seed=3, num_frames=FRAMES, size=SIZE)
    records_b, media_b = syn.generate_records(6, 4, seed=3, num_frames=FRAMES, size=SIZE)
    assert records_a == records_b
    assert media_a.keys() == media_b.keys()
    for key in media_a:
        np.testing.assert_array_equal(media_a[key], media_b[key])
    records_c, media_c = syn.generate_records(6, 4, seed=4, num_frames=FRAMES, size=SIZE)
    assert [r["scene"] for r in records_c] != [r["scene"] for r in records_a]
    assert not set(media_c) & set(media_a)  # ids embed the seed: splits never collide


def test_records_follow_llava_format() -> None:
    records, media = syn.generate_records(120, 60, seed=0, num_frames=2, size=32, multi_turn_prob=0.5)
    assert records == json.loads(json.dumps(records))
    assert len({r["id"] for r in records}) == len(records)
    seen_types: dict[str, set[str]] = {"video": set(), "image": set()}
    seen_questions = set()
    for record in records:
        kind = "video" if "video" in record else "image"
        assert ("image" in record) != ("video" in record)
        assert record[kind] in media
        assert media[record[kind]].ndim == (4 if kind == "video" else 3)
        convs = record["conversations"]
        assert len(convs) == 2 * len(record["question_types"]) and len(convs) in (2, 4)
        assert [c["from"] for c in convs] == ["human", "gpt"] * (len(convs) // 2)
        token = "<video>\n" if kind == "video" else "<image>\n"
        assert convs[0]["value"].startswith(token)
        assert all("<video>" not in c["value"] and "<image>" not in c["value"] for c in convs[1:])
        assert record["question_type"] == record["question_types"][0]
        spec = syn.SceneSpec(**record["scene"])
        for qtype, answer in zip(record["question_types"], convs[1::2]):
            assert answer["value"] in syn.ANSWER_VOCAB[qtype]
            assert answer["value"] == syn.answer_for(spec, qtype)
            seen_types[kind].add(qtype)
        seen_questions.update(c["value"].removeprefix(token) for c in convs[0::2])
    assert seen_types["video"] == set(syn.VIDEO_QUESTION_TYPES)
    # Images never get motion questions.
    assert seen_types["image"] == set(syn.IMAGE_QUESTION_TYPES)
    assert not seen_types["image"] & {"motion", "moves"}
    assert len(seen_questions) >= 2 * len(syn.QUESTION_TYPES)  # paraphrases are used


def test_answer_vocabulary() -> None:
    assert syn.ANSWER_VOCAB["motion"] == ("left", "right", "up", "down", "still", "growing", "shrinking")
    assert syn.ANSWER_VOCAB["count"] == ("one", "two", "three")
    assert syn.ANSWER_VOCAB["moves"] == ("yes", "no")
    assert syn.answer_for(syn.SceneSpec("red", "circle", "growing"), "moves") == "yes"
    assert syn.answer_for(syn.SceneSpec("red", "circle", count=2), "count") == "two"
    assert "shapes" in syn.question_for(syn.SceneSpec("red", "circle", count=2), "colour")


# --- disk --------------------------------------------------------------------


def test_write_dataset_roundtrip(tmp_path: Path) -> None:
    json_path = syn.write_dataset(tmp_path / "a", 4, 2, seed=11, num_frames=FRAMES, size=SIZE)
    assert json_path == tmp_path / "a" / "train.json"
    records = json.loads(json_path.read_text())
    planned, media = syn.generate_records(4, 2, seed=11, num_frames=FRAMES, size=SIZE)
    assert records == planned
    for record in records:
        spec = syn.SceneSpec(**record["scene"])
        if "image" in record:
            image = np.asarray(Image.open(json_path.parent / record["image"]).convert("RGB"))
            np.testing.assert_array_equal(image, media[record["image"]])  # PNG is lossless
            continue
        video = decode_mp4(json_path.parent / record["video"])
        assert video.shape == (FRAMES, SIZE, SIZE, 3)
        assert_motion(video, spec.motion)
        assert nearest_colour(video[0]) == spec.colour
        assert len(blobs(foreground(video[0]))) == spec.count
        # Lossy, but close to the rendered frames.
        assert np.abs(video.astype(int) - media[record["video"]]).mean() < 6

    # Same seed -> identical decoded media (encoding is deterministic too).
    again = syn.write_dataset(tmp_path / "b", 4, 2, seed=11, num_frames=FRAMES, size=SIZE, json_name="val.json")
    assert json.loads(again.read_text()) == records
    for record in records:
        if "video" in record:
            np.testing.assert_array_equal(
                decode_mp4(tmp_path / "a" / record["video"]), decode_mp4(tmp_path / "b" / record["video"])
            )


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_write_mp4_codecs(tmp_path: Path, codec: str) -> None:
    spec = syn.SceneSpec("blue", "square", "right", background="light", seed=9)
    video = syn.render_video(spec, FRAMES, SIZE)
    assert syn.write_mp4(tmp_path / "clip.mp4", video, codec=codec) == codec
    decoded = decode_mp4(tmp_path / "clip.mp4")
    assert decoded.shape == video.shape
    assert_motion(decoded, "right")
    assert nearest_colour(decoded[-1]) == "blue"


def test_write_dataset_rejects_odd_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        syn.write_dataset(tmp_path, 1, 0, seed=0, size=63)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert syn.main(["--out", str(out), "--videos", "2", "--images", "1", "--seed", "5",
                     "--frames", "4", "--size", "32"]) == 0
    json_path = Path(capsys.readouterr().out.strip())
    assert json_path == out / "train.json"
    records = json.loads(json_path.read_text())
    assert len(records) == 3
    assert all((out / (r.get("video") or r["image"])).is_file() for r in records)
