"""Small synthetic videos for the video reader tests, written with PyAV.

Every frame shows its own presentation index as a row of black/white blocks (bit 0 on the left),
on a background whose colour also changes per frame, so a wrong frame is visible both to the
tests (``read_frame_number``) and to a human looking at a dumped frame.
"""

from __future__ import annotations

import fractions
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np


BITS = 10  # frame numbers up to 1023


def frame_image(number: int, width: int, height: int) -> np.ndarray:
    """RGB frame showing ``number``: a top row of BITS blocks (white = 1) over a coloured background."""
    image = np.empty((height, width, 3), np.uint8)
    image[...] = ((number * 37) % 200 + 30, (number * 91) % 200 + 30, (number * 53) % 200 + 30)
    # A bright bar that moves, so consecutive frames really differ in motion, not just colour.
    x = (number * 5) % max(1, width - width // 8)
    image[height // 2:, x: x + width // 8] = 250
    block = width // BITS
    for bit in range(BITS):
        image[: height // 3, bit * block: (bit + 1) * block] = 255 if (number >> bit) & 1 else 0
    return image


def read_frame_number(image: np.ndarray) -> int:
    """Inverse of frame_image (robust to compression): the number shown by an upright RGB frame."""
    height, width = image.shape[:2]
    block = width // BITS
    row = image[height // 6, :, :].astype(np.float32).mean(axis=-1)
    return sum(1 << bit for bit in range(BITS) if row[bit * block + block // 2] > 127)


@dataclass
class VideoSpec:
    codec: str
    container: str  # PyAV format name
    suffix: str
    frames: int = 48
    width: int = 160
    height: int = 96
    rate: int = 25
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=dict)
    # Presentation time of frame i, in units of 1/rate; None = constant frame rate.
    pts_of: Callable[[int], int] | None = None
    rotation: int | None = None


def _vfr_pts(i: int) -> int:
    # Irregular gaps of 1, 2, 3, 1, 2, 3, ... frame periods.
    return sum(1 + k % 3 for k in range(i))


SPECS: dict[str, VideoSpec] = {
    # H.264 with B-frames (b-pyramid) and a short GOP, so seeking and reordering both matter.
    "h264_bframes.mp4": VideoSpec("libx264", "mp4", ".mp4", frames=75,
                                  options={"g": "10", "bf": "3", "crf": "18", "preset": "veryfast"}),
    # Open GOP: leading B-frames after a non-IDR keyframe reference the previous GOP.
    "h264_opengop.mkv": VideoSpec("libx264", "matroska", ".mkv", frames=60,
                                  options={"g": "12", "bf": "3", "crf": "18", "x264-params": "open-gop=1"}),
    "hevc.mp4": VideoSpec("libx265", "mp4", ".mp4", frames=40,
                          options={"crf": "20", "preset": "ultrafast",
                                   "x265-params": "log-level=error:keyint=12:min-keyint=12:bframes=3"}),
    # WebM reports 0 frames: the reader must count them by demuxing.
    "vp9.webm": VideoSpec("libvpx-vp9", "webm", ".webm", frames=40,
                          options={"g": "15", "deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}),
    "mpeg4.mp4": VideoSpec("mpeg4", "mp4", ".mp4", frames=50, options={"g": "12", "bf": "2", "qscale": "3"}),
    # AVI has no presentation timestamps for B-frames: exercises the frame-counting fallback.
    "mpeg4_bframes.avi": VideoSpec("mpeg4", "avi", ".avi", frames=50, options={"g": "12", "bf": "2", "qscale": "3"}),
    # MPEG-TS has no index; its demuxer seeks by decode timestamp with a binary search.
    "h264_bframes.ts": VideoSpec("libx264", "mpegts", ".ts", frames=60, options={"g": "10", "bf": "2", "crf": "18"}),
    "mpeg2.ts": VideoSpec("mpeg2video", "mpegts", ".ts", frames=60, options={"g": "12", "bf": "2", "qscale": "3"}),
    # A raw H.264 elementary stream has no timestamps at all: exercises the frame-counting path.
    "raw.h264": VideoSpec("libx264", "h264", ".h264", frames=40, options={"g": "10", "bf": "2", "crf": "18"}),
    "h264.mkv": VideoSpec("libx264", "matroska", ".mkv", frames=60, options={"g": "10", "bf": "2", "crf": "18"}),
    "vfr.mp4": VideoSpec("libx264", "mp4", ".mp4", frames=45, pts_of=_vfr_pts,
                         options={"g": "8", "bf": "2", "crf": "18"}),
    "vfr.mkv": VideoSpec("libx264", "matroska", ".mkv", frames=45, pts_of=_vfr_pts,
                         options={"g": "8", "bf": "0", "crf": "18"}),
    "rotate90.mp4": VideoSpec("libx264", "mp4", ".mp4", frames=20, rotation=90, options={"g": "5", "crf": "18"}),
    "rotate270.mp4": VideoSpec("libx264", "mp4", ".mp4", frames=20, rotation=-90, options={"g": "5", "crf": "18"}),
    # libx264 refuses odd sizes with 4:2:0 chroma; 4:4:4 has no such constraint.
    "odd_641x359.mp4": VideoSpec("libx264", "mp4", ".mp4", frames=12, width=641, height=359, pix_fmt="yuv444p",
                                 options={"g": "4", "bf": "2", "crf": "18"}),
    "odd_641x359.webm": VideoSpec("libvpx-vp9", "webm", ".webm", frames=8, width=641, height=359,
                                  options={"g": "4", "deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}),
    "three_frames.mp4": VideoSpec("libx264", "mp4", ".mp4", frames=3, options={"crf": "18"}),
    "one_frame.mp4": VideoSpec("libx264", "mp4", ".mp4", frames=1, options={"crf": "18"}),
}


def write_video(path: Path, spec: VideoSpec) -> Path:
    container = av.open(str(path), "w", format=spec.container)
    stream = container.add_stream(spec.codec, rate=spec.rate)
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, spec.pix_fmt
    stream.options = dict(spec.options)
    if spec.rotation is not None:
        stream.set_display_rotation(spec.rotation)
    if spec.pts_of is not None:
        stream.time_base = fractions.Fraction(1, spec.rate)
    for number in range(spec.frames):
        frame = av.VideoFrame.from_ndarray(frame_image(number, spec.width, spec.height), format="rgb24")
        if spec.pts_of is not None:
            frame.pts = spec.pts_of(number)
            frame.time_base = fractions.Fraction(1, spec.rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_audio_only(path: Path) -> Path:
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_stream("aac", rate=16000)
    samples = (np.sin(np.arange(16000) / 10.0) * 0.3).astype(np.float32)[None, :]
    for start in range(0, 16000, 1024):
        frame = av.AudioFrame.from_ndarray(samples[:, start: start + 1024].copy(), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def remux_head(source: Path, target: Path, max_packets: int) -> Path:
    """Copy the first ``max_packets`` video packets of ``source`` into a new MP4 (no re-encoding)."""
    with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        count = 0
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
            count += 1
            if count >= max_packets:
                break
    return target


def generate_all(directory: Path) -> dict[str, Path]:
    """Write every fixture into ``directory``; returns name -> path. Codecs PyAV lacks are left out."""
    paths: dict[str, Path] = {}
    for name, spec in SPECS.items():
        if spec.codec not in av.codecs_available:
            continue
        paths[name] = write_video(directory / name, spec)
    paths["audio_only.m4a"] = write_audio_only(directory / "audio_only.m4a")
    empty = directory / "empty.mp4"
    empty.write_bytes(b"")
    paths["empty.mp4"] = empty
    whole = paths["h264_bframes.mp4"].read_bytes()
    # MP4 written by PyAV keeps its index (moov) at the end: cutting the file loses it.
    truncated = directory / "truncated.mp4"
    truncated.write_bytes(whole[: len(whole) // 2])
    paths["truncated.mp4"] = truncated
    # Matroska has its headers at the front: a cut file still holds the frames before the cut.
    mkv = paths["h264.mkv"].read_bytes()
    truncated_mkv = directory / "truncated.mkv"
    truncated_mkv.write_bytes(mkv[: len(mkv) * 2 // 3])
    paths["truncated.mkv"] = truncated_mkv
    garbage = directory / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    paths["garbage.mp4"] = garbage
    corrupted = bytearray(whole)
    corrupted[: 64] = bytes(64)  # destroy the ftyp box and the start of the file
    header_corrupted = directory / "corrupted_header.mp4"
    header_corrupted.write_bytes(bytes(corrupted))
    paths["corrupted_header.mp4"] = header_corrupted
    return paths


def reference_decode(data: Path | bytes, indices: Sequence[int] | None = None) -> tuple[list[np.ndarray], int]:
    """Oracle: decode every frame sequentially in presentation order, return the ones at ``indices``.

    Returns (frames at indices -- or all frames if indices is None --, total frame count). Rotation
    metadata is not applied here.
    """
    wanted = None if indices is None else set(int(i) for i in indices)
    kept: dict[int, np.ndarray] = {}
    total = 0
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with av.open(source) as container:
        for position, frame in enumerate(container.decode(video=0)):
            if wanted is None or position in wanted:
                kept[position] = frame.to_ndarray(format="rgb24")
            total = position + 1
    if indices is None:
        return [kept[i] for i in range(total)], total
    return [kept[int(i)] for i in indices if int(i) in kept], total
