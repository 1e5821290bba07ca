"""Tests for videollava_hf.models.videollava.video_io.

The central check is an oracle: for every fixture and sampling policy, the frames returned by
load_video must be pixel-identical to the frames at the same indices of a full sequential decode
(decode every frame in presentation order and number them). Synthetic fixtures also show their
frame number as a bit pattern, which gives a second, decoder-independent check.
"""

from __future__ import annotations

import functools
import http.server
import io
import logging
import socket
import threading
import time
import os
from pathlib import Path

import av
import numpy as np
import pytest

from videollava_hf.models.videollava.video_io import VideoDecodeError, VideoMetadata, load_video, sample_frame_indices

try:
    import video_fixtures as vf
except ImportError:  # modeling_tests imported as a package
    from modeling_tests import video_fixtures as vf


# ../shared/fixtures beside the checkout, or $VIDEOLLAVA_FIXTURES (as conftest's `fixtures_dir`)
REAL_CLIPS_DIR = Path(os.environ.get("VIDEOLLAVA_FIXTURES") or Path(__file__).resolve().parents[1].parent / "shared"
                      / "fixtures")
REAL_CLIPS = ["sample_demo_1.mp4", "sample_demo_3.mp4"]
SYNTHETIC = list(vf.SPECS)
LOGGER = "videollava_hf.models.videollava.video_io"


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return vf.generate_all(tmp_path_factory.mktemp("videos"))


@functools.lru_cache(maxsize=None)
def oracle(path: str) -> tuple[tuple[np.ndarray, ...], int]:
    """All frames of a full sequential decode (cached: several policies share one decode)."""
    frames, total = vf.reference_decode(Path(path))
    return tuple(frames), total


def video_path(videos: dict[str, Path], name: str) -> Path:
    if name in REAL_CLIPS:
        path = REAL_CLIPS_DIR / name
        if not path.exists():
            pytest.skip(f"real clip {path} is not available in this checkout")
        return path
    if name not in videos:
        pytest.skip(f"{name}: encoder {vf.SPECS[name].codec} is not available in this PyAV build")
    return videos[name]


def duration_of(name: str, total: int) -> float:
    spec = vf.SPECS.get(name)
    if spec is None:
        return 0.0
    last = spec.pts_of(total - 1) if spec.pts_of else total - 1
    return (last + 1) / spec.rate


def assert_matches_oracle(path: Path, frames: np.ndarray, meta: VideoMetadata, synthetic: bool) -> None:
    reference, total = oracle(str(path))
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
    assert frames.shape[0] == len(meta.indices) == len(meta.timestamps)
    assert meta.total_frames == total
    assert (meta.height, meta.width) == frames.shape[1:3]
    for position, (frame, index) in enumerate(zip(frames, meta.indices)):
        expected = np.rot90(reference[index], k=meta.rotation // 90)
        assert frame.shape == expected.shape, f"frame {position} (index {index}): {frame.shape} != {expected.shape}"
        if not np.array_equal(frame, expected):
            diff = np.abs(frame.astype(int) - expected.astype(int))
            raise AssertionError(
                f"{path.name}: returned frame {position} is not frame {index} of a sequential decode "
                f"({(diff > 0).mean():.1%} pixels differ, max diff {diff.max()})"
            )
    if synthetic:
        shown = [vf.read_frame_number(np.rot90(frame, k=-(meta.rotation // 90))) for frame in frames]
        assert shown == meta.indices, f"{path.name}: frames show numbers {shown}, expected {meta.indices}"


POLICIES = {
    "uniform8": lambda total, duration: {},
    "uniform3": lambda total, duration: {"num_frames": 3},
    "uniform_more_than_frames": lambda total, duration: {"num_frames": total + 5},
    "all": lambda total, duration: {"num_frames": None},
    "fps2": lambda total, duration: {"fps": 2.0},
    "fps_capped": lambda total, duration: {"fps": 10.0, "max_frames": 5},
    "indices": lambda total, duration: {"indices": [total - 1, 0, total // 2, total // 3, total // 2]},
    "clip": lambda total, duration: {"clip_start": duration * 0.3, "clip_end": duration * 0.8, "num_frames": 4},
}


# --------------------------------------------------------------------------------------------
# Frame accuracy against the sequential-decode oracle
# --------------------------------------------------------------------------------------------


FALLBACK_MESSAGES = ("decoding linearly", "counting frames", "disagrees")


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_matches_sequential_decode(videos, name, policy, caplog):
    path = video_path(videos, name)
    _, total = oracle(str(path))
    kwargs = POLICIES[policy](total, duration_of(name, total))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        frames, meta = load_video(path, **kwargs)
    assert_matches_oracle(path, frames, meta, synthetic=True)
    # The fast path (index + seek) must be what produced these frames, not a slow fallback --
    # except for the raw H.264 stream, which has no timestamps and must take the counting path.
    fallbacks = [r.getMessage() for r in caplog.records if any(m in r.getMessage() for m in FALLBACK_MESSAGES)]
    if name == "raw.h264":
        assert fallbacks and "counting frames" in fallbacks[0]
    else:
        assert not fallbacks, fallbacks
    if policy.startswith("uniform") or policy == "all":
        count = total if policy == "all" else kwargs.get("num_frames", 8)
        assert meta.indices == np.linspace(0, total - 1, count, dtype=int).tolist()
    if policy == "indices":
        assert meta.indices == kwargs["indices"]


@pytest.mark.parametrize("policy", ["uniform8", "uniform3", "fps2", "indices", "clip"])
@pytest.mark.parametrize("name", REAL_CLIPS)
def test_real_clips_match_sequential_decode(videos, name, policy):
    path = video_path(videos, name)
    _, total = oracle(str(path))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base)
    kwargs = POLICIES[policy](total, duration)
    frames, meta = load_video(path, **kwargs)
    assert_matches_oracle(path, frames, meta, synthetic=False)


def test_real_clip_metadata(videos):
    path = video_path(videos, "sample_demo_1.mp4")
    frames, meta = load_video(path)
    assert frames.shape == (8, 360, 640, 3)
    # The original Video-LLaVA sampler on a 243-frame clip.
    assert meta.indices == [0, 34, 69, 103, 138, 172, 207, 242]
    assert meta.total_frames == 243 and meta.fps == pytest.approx(25.0)
    assert meta.duration == pytest.approx(243 / 25)
    assert meta.timestamps == pytest.approx([i / 25 for i in meta.indices])
    assert (meta.width, meta.height, meta.rotation, meta.codec) == (640, 360, 0, "h264")
    assert meta.policy == "uniform" and meta.repeated_frames is False
    assert meta.source == repr(str(path))
    assert meta.to_dict()["indices"] == meta.indices


def test_variable_frame_rate_timestamps_and_fps_policy(videos):
    for name in ("vfr.mp4", "vfr.mkv"):
        path = video_path(videos, name)
        spec = vf.SPECS[name]
        frames, meta = load_video(path, fps=2.0)
        times = np.array([spec.pts_of(i) / spec.rate for i in range(spec.frames)])
        # The frame on screen at 0, 0.5, 1.0, ... s -- by real time, not by frame count.
        samples = np.arange(0, times[-1] + 1 / spec.rate, 0.5)
        expected = np.unique(np.searchsorted(times, samples + 1e-9, side="right") - 1).tolist()
        assert meta.indices == expected
        assert meta.timestamps == pytest.approx(times[expected].tolist(), abs=1e-3)
        assert_matches_oracle(path, frames, meta, synthetic=True)


def test_fewer_frames_than_requested_repeats_like_the_original(videos):
    path = video_path(videos, "three_frames.mp4")
    frames, meta = load_video(path, num_frames=8)
    assert meta.indices == np.linspace(0, 2, 8, dtype=int).tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    assert meta.repeated_frames is True and meta.total_frames == 3
    assert frames.shape[0] == 8
    assert np.array_equal(frames[0], frames[3]) and not np.array_equal(frames[0], frames[4])
    assert_matches_oracle(path, frames, meta, synthetic=True)
    _, meta = load_video(path, num_frames=3)
    assert meta.repeated_frames is False


def test_single_frame_video(videos):
    frames, meta = load_video(video_path(videos, "one_frame.mp4"))
    assert frames.shape == (8, 96, 160, 3) and meta.indices == [0] * 8 and meta.repeated_frames


@pytest.mark.parametrize("name,angle", [("rotate90.mp4", 90), ("rotate270.mp4", 270)])
def test_rotation_metadata_is_applied(videos, name, angle):
    path = video_path(videos, name)
    frames, meta = load_video(path, num_frames=4)
    spec = vf.SPECS[name]
    assert meta.rotation == angle
    # Coded 160x96; displayed rotated by a right angle.
    assert frames.shape == (4, spec.width, spec.height, 3) and (meta.width, meta.height) == (spec.height, spec.width)
    with av.open(str(path)) as container:
        raw = next(container.decode(video=0))
        assert raw.rotation % 360 == angle  # what FFmpeg reports for the display matrix
    assert_matches_oracle(path, frames, meta, synthetic=True)
    # Frame 0 shows the number 0, i.e. the counter blocks are all black, at the displayed "top" edge:
    # after a 90 degree counter-clockwise turn the coded top row is the displayed left column.
    upright = np.rot90(frames[0], k=-(angle // 90))
    assert vf.read_frame_number(upright) == 0


def test_odd_sizes(videos):
    for name in ("odd_641x359.mp4", "odd_641x359.webm"):
        frames, meta = load_video(video_path(videos, name), num_frames=4)
        assert frames.shape == (4, 359, 641, 3) and (meta.width, meta.height) == (641, 359)


def test_frame_index_comes_from_the_cheapest_trustworthy_source(videos, caplog):
    """MP4 uses its sample table; WebM/MKV (0 frames in the header) and VFR MP4 are scanned; AVI
    B-frames without usable timestamps still decode exactly (checked by the oracle tests)."""
    expectations = {
        "h264_bframes.mp4": "MP4 sample table",
        "vp9.webm": "packet scan",
        "h264.mkv": "packet scan",
        "vfr.mp4": "packet scan",
    }
    for name, how in expectations.items():
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            load_video(video_path(videos, name), num_frames=2)
        messages = " ".join(record.getMessage() for record in caplog.records)
        assert how in messages, f"{name}: expected an index from the {how}, log was: {messages!r}"
        assert "decoding linearly" not in messages and "counting frames" not in messages


class _DecodeCounter:
    """Counts seeks and frames the reader's decoder produces (white-box: proves what is decoded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from videollava_hf.models.videollava import video_io

        self.seeks = 0
        self.frames = 0
        original_seek, original_decode = video_io._Decoder.seek, video_io._Decoder._decode

        def seek(decoder, timestamp):
            self.seeks += 1
            return original_seek(decoder, timestamp)

        def decode(decoder, packet):
            frames = original_decode(decoder, packet)
            self.frames += len(frames)
            return frames

        monkeypatch.setattr(video_io._Decoder, "seek", seek)
        monkeypatch.setattr(video_io._Decoder, "_decode", decode)


def test_decodes_only_the_needed_gops(videos, monkeypatch):
    path = video_path(videos, "h264_bframes.mp4")  # 75 frames, a keyframe every 10
    counter = _DecodeCounter(monkeypatch)
    frames, meta = load_video(path, indices=[3, 72])
    assert counter.seeks == 2
    # Two GOPs of at most 10 frames, plus the few frames the (threaded, B-frame-reordering)
    # decoder has in flight when the target comes out; a full decode would be 73+.
    assert counter.frames <= 24, f"decoded {counter.frames} frames to return 2 (GOP of 10)"
    assert_matches_oracle(path, frames, meta, synthetic=True)


def test_keeps_decoding_forward_within_a_gop(videos, monkeypatch):
    path = video_path(videos, "h264_bframes.mp4")
    counter = _DecodeCounter(monkeypatch)
    load_video(path, indices=[1, 4, 8])  # one GOP: one seek, then straight on
    assert counter.seeks == 1
    counter.seeks = 0
    load_video(path, indices=[8, 11])  # keyframe 10 is only 1 frame past 8: no second seek
    assert counter.seeks == 1


def test_skips_unwanted_non_reference_frames(videos, monkeypatch):
    path = REAL_CLIPS_DIR / "sample_demo_1.mp4"  # one GOP of 243 frames with B-frames
    if not path.exists():
        pytest.skip(f"real clip {path} is not available")
    counter = _DecodeCounter(monkeypatch)
    frames, meta = load_video(path)
    # Every frame up to the last index must pass through the decoder, except unwanted B-frames
    # that no other frame references, which are dropped unseen.
    assert counter.frames < 0.7 * 243, f"decoded {counter.frames} of 243 frames"
    assert_matches_oracle(path, frames, meta, synthetic=False)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("total,count", [(243, 8), (100, 8), (8, 8), (3, 8), (1, 8), (1000, 1), (17, 16)])
def test_uniform_sampling_is_the_original_formula(total, count):
    indices = sample_frame_indices(total, count)
    assert indices.tolist() == np.linspace(0, total - 1, count, dtype=int).tolist()
    assert indices[0] == 0 and indices[-1] == total - 1 if count > 1 else indices[0] == 0
    assert indices.dtype == np.int64 and np.all(np.diff(indices) >= 0)


def test_uniform_sampling_known_values_and_window():
    assert sample_frame_indices(243, 8).tolist() == [0, 34, 69, 103, 138, 172, 207, 242]
    assert sample_frame_indices(100, 4, start_frame=10, end_frame=20).tolist() == [10, 13, 16, 19]
    assert sample_frame_indices(100, 8, max_frames=4).tolist() == np.linspace(0, 99, 4, dtype=int).tolist()
    assert sample_frame_indices(5, None).tolist() == [0, 1, 2, 3, 4]
    assert sample_frame_indices(100, None, max_frames=3).tolist() == [0, 49, 99]


def test_fps_sampling():
    # One frame every 0.5 s of a 25 fps video: floor(k * 12.5).
    assert sample_frame_indices(100, fps=2, source_fps=25).tolist() == [0, 12, 25, 37, 50, 62, 75, 87]
    # Asking for more than the source rate returns every frame once -- in O(frames), even for absurd rates.
    assert sample_frame_indices(10, fps=100, source_fps=25).tolist() == list(range(10))
    assert sample_frame_indices(100_000, fps=1e12, source_fps=30).tolist() == list(range(100_000))
    # Capped: uniformly thinned, first and last sample kept, a subset of the uncapped ones.
    full = sample_frame_indices(3000, fps=1, source_fps=30)
    capped = sample_frame_indices(3000, fps=1, source_fps=30, max_frames=7)
    assert len(full) == 100 and len(capped) == 7
    assert set(capped.tolist()) <= set(full.tolist()) and capped[0] == full[0] and capped[-1] == full[-1]
    # Inside a window.
    assert sample_frame_indices(100, fps=1, source_fps=10, start_frame=25, end_frame=60).tolist() == [25, 35, 45, 55]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"total_frames": 0}, "total_frames"),
        ({"total_frames": 10, "num_frames": 0}, "num_frames"),
        ({"total_frames": 10, "fps": 1.0}, "source_fps"),
        ({"total_frames": 10, "fps": -1.0, "source_fps": 25}, "fps"),
        ({"total_frames": 10, "start_frame": 5, "end_frame": 5}, "window"),
        ({"total_frames": 10, "end_frame": 11}, "window"),
        ({"total_frames": 10, "max_frames": 0}, "max_frames"),
    ],
)
def test_sampling_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_frame_indices(**kwargs)


def test_load_video_fps_policy_matches_sample_frame_indices_on_constant_rate(videos):
    path = video_path(videos, "h264_bframes.mp4")
    _, meta = load_video(path, fps=3.0, max_frames=6)
    assert meta.policy == "fps"
    assert meta.indices == sample_frame_indices(75, fps=3.0, source_fps=25, max_frames=6).tolist()


def test_clip_window_in_seconds(videos):
    path = video_path(videos, "h264_bframes.mp4")  # 25 fps, frame i starts at i / 25 s
    frames, meta = load_video(path, clip_start=1.0, clip_end=2.0, num_frames=5)
    # Frames 25..49 start inside [1.0 s, 2.0 s).
    assert meta.indices == np.linspace(25, 49, 5, dtype=int).tolist()
    assert all(1.0 - 1e-6 <= t < 2.0 for t in meta.timestamps)
    assert_matches_oracle(path, frames, meta, synthetic=True)
    # A start between two frames begins with the frame on screen at that time.
    _, meta = load_video(path, clip_start=1.03, clip_end=1.3, num_frames=None)
    assert meta.indices == [25, 26, 27, 28, 29, 30, 31, 32]
    _, meta = load_video(path, clip_start=2.0, fps=5.0)
    assert meta.indices == [50, 55, 60, 65, 70]
    with pytest.raises(ValueError, match="clip_start"):
        load_video(path, clip_start=10.0)


def test_explicit_indices(videos):
    path = video_path(videos, "h264_bframes.mp4")
    frames, meta = load_video(path, indices=[70, 2, 2])
    assert meta.indices == [70, 2, 2] and meta.policy == "indices" and meta.repeated_frames
    assert [vf.read_frame_number(frame) for frame in frames] == [70, 2, 2]
    with pytest.raises(ValueError, match=r"out of range .* 75 frames"):
        load_video(path, indices=[0, 75])
    with pytest.raises(ValueError, match="out of range"):
        load_video(path, indices=[-1])
    with pytest.raises(ValueError, match="cannot be combined"):
        load_video(path, indices=[1], fps=2.0)
    with pytest.raises(ValueError, match="non-empty"):
        load_video(path, indices=[])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_frames": 0}, "num_frames"),
        ({"fps": 0}, "fps"),
        ({"max_frames": -2}, "max_frames"),
        ({"clip_start": 2.0, "clip_end": 1.0}, "clip_end"),
        ({"clip_start": -1.0}, "clip_start"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_load_video_rejects_bad_arguments(videos, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_video(video_path(videos, "three_frames.mp4"), **kwargs)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


class _NonSeekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        chunk = self._inner.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_in_memory_and_url_sources_equal_the_path(videos):
    path = video_path(videos, "h264.mkv")
    expected, expected_meta = load_video(path, num_frames=5)
    data = path.read_bytes()
    with open(path, "rb") as handle:
        sources = {
            "str": str(path),
            "bytes": data,
            "bytearray": bytearray(data),
            "memoryview": memoryview(data),
            "BytesIO": io.BytesIO(data),
            "open file": handle,
            "non-seekable stream": _NonSeekable(data),
            "file URL": path.as_uri(),
        }
        for label, source in sources.items():
            frames, meta = load_video(source, num_frames=5)
            assert np.array_equal(frames, expected), label
            assert meta.indices == expected_meta.indices and meta.total_frames == 60, label
    assert load_video(data, num_frames=1)[1].source == "<bytes>"


def test_text_mode_file_is_rejected(videos, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with open(text) as handle, pytest.raises(TypeError, match="binary"):
        load_video(handle)


def _frames_from(name: str, videos) -> np.ndarray:
    frames, total = vf.reference_decode(video_path(videos, name))
    return np.stack(frames)


def test_numpy_and_torch_frame_arrays(videos):
    torch = pytest.importorskip("torch")
    array = _frames_from("h264_bframes.mp4", videos)  # (75, 96, 160, 3)
    expected_indices = np.linspace(0, 74, 8, dtype=int)
    for source in (array, array.transpose(0, 3, 1, 2).copy(), torch.from_numpy(array),
                   torch.from_numpy(array).permute(0, 3, 1, 2)):
        frames, meta = load_video(source)
        assert frames.shape == (8, 96, 160, 3) and frames.dtype == np.uint8
        assert np.array_equal(frames, array[expected_indices])
        assert meta.indices == expected_indices.tolist() and meta.total_frames == 75
        assert meta.fps is None and meta.duration is None and all(np.isnan(meta.timestamps))
    _, meta = load_video(torch.from_numpy(array))
    assert meta.source == "<tensor>"
    frames, meta = load_video(array[:3], num_frames=8)
    assert meta.indices == [0, 0, 0, 0, 1, 1, 1, 2] and meta.repeated_frames
    frames, meta = load_video(array, indices=[5, 1])
    assert np.array_equal(frames, array[[5, 1]])
    with pytest.raises(ValueError, match="frame timing"):
        load_video(array, fps=1.0)
    with pytest.raises(VideoDecodeError, match="uint8"):
        load_video(array.astype(np.float32))
    with pytest.raises(VideoDecodeError, match=r"\(F, H, W, 3\)"):
        load_video(array[0])
    with pytest.raises(VideoDecodeError, match="no frames"):
        load_video(array[:0])


def test_pil_image_lists_paths_and_array_lists(videos, tmp_path):
    from PIL import Image

    array = _frames_from("h264_bframes.mp4", videos)[:20]
    expected = array[np.linspace(0, 19, 8, dtype=int)]
    images = [Image.fromarray(frame) for frame in array]
    paths = []
    for number, image in enumerate(images):
        paths.append(tmp_path / f"frame_{number:03d}.png")
        image.save(paths[-1])
    import torch

    tensors = [torch.from_numpy(frame) for frame in array]
    channels_first = [torch.from_numpy(frame).permute(2, 0, 1) for frame in array]
    for source in (images, paths, [str(p) for p in paths], list(array), tensors, channels_first):
        frames, meta = load_video(source)
        assert np.array_equal(frames, expected), type(source[0])
        assert meta.total_frames == 20
    # Only the selected frame files are read: a missing unselected file does not matter ...
    paths[1].unlink()
    load_video(paths, indices=[0, 2])
    # ... a missing selected one is reported by name.
    with pytest.raises(VideoDecodeError, match="frame_001.png"):
        load_video(paths, indices=[1])
    with pytest.raises(VideoDecodeError, match="different sizes"):
        load_video([images[0], images[1].resize((10, 10))], num_frames=2)
    with pytest.raises(VideoDecodeError, match="empty"):
        load_video([])
    with pytest.raises(TypeError, match="Image"):
        load_video([images[0], 3])


@pytest.mark.parametrize("source", [42, None, {"video": "x.mp4"}, 3.5, object()])
def test_unsupported_source_types(source):
    with pytest.raises(TypeError, match=type(source).__name__) as error:
        load_video(source)
    assert "Accepted sources" in str(error.value)


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP range support (like real web servers) and a count of bytes sent."""

    bytes_sent = 0
    support_ranges = True

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        # Small send buffer: bytes_sent then tracks what the client actually reads more closely.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "not found")
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        header = self.headers.get("Range")
        if self.support_ranges and header and header.startswith("bytes="):
            first, _, last = header[6:].partition("-")
            start = int(first)
            end = min(int(last), len(data) - 1) if last else len(data) - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        if self.support_ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        try:
            for offset in range(start, end + 1, 65536):
                chunk = data[offset: min(offset + 65536, end + 1)]
                self.wfile.write(chunk)
                type(self).bytes_sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client closed early, as streaming readers do


def _serve(directory: Path, support_ranges: bool):
    handler = type("Handler", (_RangeHandler,), {"bytes_sent": 0, "support_ranges": support_ranges})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, handler, thread


@pytest.fixture()
def http_server(videos):
    servers = []

    def start(support_ranges: bool = True):
        server, handler, thread = _serve(next(iter(videos.values())).parent, support_ranges)
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("support_ranges", [True, False], ids=["ranges", "no-ranges"])
@pytest.mark.parametrize("name", ["h264_bframes.mp4", "vp9.webm", "h264.mkv"])
def test_http_source(videos, http_server, name, support_ranges):
    base, _ = http_server(support_ranges)
    path = video_path(videos, name)
    frames, meta = load_video(f"{base}/{name}", num_frames=6, timeout=20)
    assert meta.source == repr(f"{base}/{name}")
    assert_matches_oracle(path, frames, meta, synthetic=True)


def test_http_source_is_streamed_not_downloaded(videos, http_server):
    # A video followed by a 64 MiB top-level MP4 "free" box (valid MP4, like the padding some
    # muxers leave): a reader that downloads the file first fetches all of it, a streaming reader
    # fetches the header, the sample table and the packets it decodes.
    video = video_path(videos, "h264_bframes.mp4").read_bytes()
    padding = 64 << 20
    path = next(iter(videos.values())).parent / "padded.mp4"
    path.write_bytes(video + (padding + 8).to_bytes(4, "big") + b"free" + bytes(padding))
    base, handler = http_server(True)
    frames, meta = load_video(f"{base}/padded.mp4", indices=[3, 60], timeout=20)
    assert [vf.read_frame_number(frame) for frame in frames] == [3, 60] and meta.total_frames == 75
    # Bytes the server wrote, including what socket buffers absorbed before the client hung up.
    assert handler.bytes_sent < padding / 4, (handler.bytes_sent, path.stat().st_size)


def test_http_errors(http_server):
    base, _ = http_server(True)
    with pytest.raises(VideoDecodeError, match="missing.mp4"):
        load_video(f"{base}/missing.mp4", timeout=10)


def test_stalled_server_times_out():
    # Accepts connections (kernel backlog) but never answers.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        started = time.monotonic()
        with pytest.raises(VideoDecodeError, match="127.0.0.1"):
            load_video(f"http://127.0.0.1:{listener.getsockname()[1]}/video.mp4", timeout=1.0)
        assert time.monotonic() - started < 15
    finally:
        listener.close()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,match",
    [
        ("audio_only.m4a", r"no video stream .*audio"),
        ("empty.mp4", r"empty \(0 bytes\)"),
        ("truncated.mp4", "truncated|corrupted|no known container"),
        ("garbage.mp4", "no known container"),
        ("corrupted_header.mp4", "no known container|corrupted"),
    ],
)
def test_bad_files_raise_a_clear_error(videos, name, match):
    path = videos[name]
    with pytest.raises(VideoDecodeError, match=match) as error:
        load_video(path)
    assert str(path) in str(error.value) and error.value.source == repr(str(path))
    with pytest.raises(VideoDecodeError):
        load_video(path.read_bytes()) if path.stat().st_size else load_video(b"")


def test_missing_path_and_directory(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoDecodeError, match="does not exist") as error:
        load_video(missing)
    assert "nope.mp4" in str(error.value)
    with pytest.raises(VideoDecodeError, match="directory"):
        load_video(tmp_path)
    with pytest.raises(VideoDecodeError, match="scheme"):
        load_video("rtsp://127.0.0.1/stream")


def test_truncated_mkv_returns_what_is_readable_or_fails_cleanly(videos):
    path = videos["truncated.mkv"]
    try:
        frames, meta = load_video(path, num_frames=6)
    except VideoDecodeError as error:
        assert "truncated.mkv" in str(error)
    else:
        # Then the frames must be exactly those a sequential decode of the damaged file produces.
        assert meta.total_frames <= 60
        assert_matches_oracle(path, frames, meta, synthetic=False)


def test_timeout_is_enforced(videos):
    with pytest.raises(VideoDecodeError, match="timeout"):
        load_video(video_path(videos, "h264_bframes.mp4"), timeout=1e-9)


def test_error_is_a_value_error_and_picklable():
    import pickle

    error = VideoDecodeError("'a.mp4'", "it is broken", "Fix it")
    assert isinstance(error, ValueError)
    assert str(error) == "Cannot read video 'a.mp4': it is broken. Fix it"
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.source == "'a.mp4'"


# --------------------------------------------------------------------------------------------
# Fuzzing
# --------------------------------------------------------------------------------------------


def _mutations(data: bytes, count: int, seed: int):
    rng = np.random.default_rng(seed)
    for case in range(count):
        buffer = bytearray(data)
        kind = case % 4
        if kind == 0:  # flip a few random bytes
            for position in rng.integers(0, len(buffer), rng.integers(1, 16)):
                buffer[position] ^= int(rng.integers(1, 256))
        elif kind == 1:  # truncate
            buffer = buffer[: int(rng.integers(0, len(buffer)))]
        elif kind == 2:  # zero a range
            start = int(rng.integers(0, len(buffer)))
            buffer[start: start + int(rng.integers(1, 4096))] = bytes(min(len(buffer) - start, 4096))
        else:  # overwrite a range with random bytes
            start = int(rng.integers(0, len(buffer)))
            length = int(rng.integers(1, 512))
            length = min(length, len(buffer) - start)
            buffer[start: start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        yield kind, bytes(buffer)


def test_fuzzed_real_clip_fails_cleanly_or_returns_valid_frames(videos, tmp_path):
    source = REAL_CLIPS_DIR / "sample_demo_1.mp4"
    if not source.exists():
        pytest.skip(f"real clip {source} is not available")
    # The clip's first 30 packets, remuxed without re-encoding: a real bitstream, small enough to
    # decode hundreds of times.
    base = vf.remux_head(source, tmp_path / "head.mp4", max_packets=30).read_bytes()
    mkv = video_path(videos, "h264.mkv").read_bytes()
    outcomes = {"frames": 0, "error": 0}
    started = time.monotonic()
    cases = list(_mutations(base, 240, seed=0)) + list(_mutations(mkv, 80, seed=1))
    for case, (kind, data) in enumerate(cases):
        try:
            frames, meta = load_video(data, num_frames=4, timeout=10)
        except VideoDecodeError as error:
            assert str(error).startswith("Cannot read video <bytes>"), (case, kind, error)
            outcomes["error"] += 1
            continue
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == 4 and frames.shape[-1] == 3
        assert len(meta.indices) == 4 and all(0 <= i < meta.total_frames for i in meta.indices)
        assert (meta.height, meta.width) == frames.shape[1:3]
        outcomes["frames"] += 1
    elapsed = time.monotonic() - started
    # Both outcomes must occur, or the mutations are not exercising anything.
    assert outcomes["frames"] > 20 and outcomes["error"] > 20, outcomes
    assert elapsed < 60, f"fuzzing took {elapsed:.0f} s"
