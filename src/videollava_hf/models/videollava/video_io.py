# Copyright 2025 The videollava-hf authors. Apache-2.0.
"""Video reading for Video-LLaVA: frame-accurate, and decoding only what is needed.

The video processor, the pipeline, the CLI and the training data all turn videos into frames with
:func:`load_video`. It returns ``(frames, metadata)`` where ``frames`` is a ``(F, H, W, 3)`` uint8
RGB array in temporal order.

How a container (MP4, MKV, WebM, ...) is read
---------------------------------------------
1. Build a *frame index*: the presentation timestamp (pts) of every frame, sorted, plus the
   keyframes. For MP4/MOV it comes from the container's sample table (no I/O beyond the header);
   otherwise -- or when that table cannot be trusted, e.g. WebM/MKV report 0 frames -- it comes
   from demuxing every packet *without decoding*. Frame ``i`` is the frame with the i-th smallest
   pts, which is exactly the i-th frame of a full sequential decode.
2. Choose frame indices with the requested policy (:func:`sample_frame_indices`).
3. For each wanted frame, seek to the last keyframe at or before it and decode forward until the
   frame with that pts arrives. When the next wanted frame lies in the same GOP (no keyframe in
   between, or only a few frames away) the decoder simply keeps going instead of seeking again;
   when a seek follows anyway, the decoder is drained right after the wanted packet so that no
   frames are decoded ahead. Unwanted non-reference frames (H.264, MPEG-1/2/4) are dropped
   without decoding, and only kept frames are converted to RGB.
4. Every decoded frame is checked against the index. Anything unexpected (a pts that is not in
   the index, a seek that lands after the wanted frame, a frame the decoder never produced) falls
   back to a slower exact path: seeking by the other timestamp or from an earlier keyframe, a
   fresh index from a packet scan, a linear decode that picks frames by pts, and for streams
   without usable timestamps a decode that counts frames.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np

from .media_limits import MediaLimits, pixels_problem, raise_hint
from .video_sources import (
    ACCEPTED_SOURCES,
    ContainerSource,
    FrameSequenceSource,
    VideoDecodeError,
    resolve_source,
)


logger = logging.getLogger(__name__)

# Timestamps closer than this (seconds) are considered equal; protects "frame displayed at t"
# lookups from float round-off (e.g. 0.5 s vs. 15 / 30 s). Far below any real frame interval.
_TIME_EPS = 1e-7
# Keep decoding forward through a keyframe instead of seeking when at most this many frames lie
# between the current position and the keyframe: a seek flushes the (threaded) decoder, which
# costs about as much as decoding a few small frames.
_FORWARD_DECODE_SLACK = 4
# How many earlier keyframes to try when a seek lands after the wanted frame (after trying the
# keyframe's other timestamp), before giving up on seeking and decoding linearly from the start.
_SEEK_RETRIES = 2
# Packets read from the start to validate an index derived from the MP4 sample table.
_INDEX_PROBE_PACKETS = 24  # > the 16 frames H.264/HEVC may reorder
# Decoded frames larger than this are refused whatever the limits say: FFmpeg cannot produce them sanely.
_MAX_FRAME_PIXELS = 1 << 28
# Corrupt packets tolerated before a decode is declared hopeless.
_MAX_BAD_PACKETS = 64
# Codecs whose non-reference frames can be dropped unseen (FFmpeg skip_frame="NONREF"): in H.264
# nal_ref_idc == 0 guarantees no other frame predicts from it, and MPEG-1/2/4 part 2 B-frames are
# never references. Not HEVC: its "sub-layer non-reference" pictures may still be referenced by
# higher temporal layers. Dropping unwanted B-frames saves ~30-40% of the decoding on typical clips.
_NONREF_SKIP_CODECS = frozenset({"h264", "mpeg4", "mpeg2video", "mpeg1video"})
# AVIndexEntry.flags bits (libavformat/avformat.h).
_AVINDEX_KEYFRAME = 0x0001
_AVINDEX_DISCARD_FRAME = 0x0002
# Lower bound for "every frame is trusted" (no seek happened).
_MIN_PTS = -(1 << 62)


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass
class VideoMetadata:
    """What :func:`load_video` read, and how.

    Attributes:
        source: The source as text: a quoted path or URL, or ``"<bytes>"``, ``"<array>"``, ...
        indices: Chosen frame indices in the source's frame numbering (presentation order).
        timestamps: Presentation time in seconds of each returned frame, relative to the first
            frame of the video. ``nan`` for frame lists/arrays, which carry no timing.
        fps: Average frame rate of the source, ``None`` for frame lists/arrays.
        duration: Duration in seconds (``None`` for frame lists/arrays).
        total_frames: Number of frames in the source.
        width: Width of the returned frames (after applying rotation metadata).
        height: Height of the returned frames (after applying rotation metadata).
        repeated_frames: ``True`` when some index appears more than once, i.e. the source has fewer
            distinct frames than requested (the original Video-LLaVA sampler repeats frames too).
        policy: ``"uniform"``, ``"fps"``, ``"indices"`` or ``"all"``.
        rotation: Degrees the decoded frames were rotated counter-clockwise to display upright.
        codec: Video codec name (``None`` for frame lists/arrays).
        requested_frames: Frames asked for with the uniform policy (``num_frames``), else ``None``.
        warnings: What the caller should tell the user, e.g. that a short video's frames were repeated.
    """

    source: str
    indices: list[int]
    timestamps: list[float]
    fps: float | None
    duration: float | None
    total_frames: int
    width: int
    height: int
    repeated_frames: bool
    policy: str
    rotation: int = 0
    codec: str | None = None
    requested_frames: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _check_positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (0 < value < math.inf):
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
    return float(value)


def _thin(indices: np.ndarray, max_frames: int | None) -> np.ndarray:
    """Keep at most ``max_frames`` of ``indices``, spread uniformly (first and last kept)."""
    if max_frames is None or len(indices) <= max_frames:
        return indices
    return indices[np.linspace(0, len(indices) - 1, max_frames, dtype=int)]


def _fps_positions(frame_times: np.ndarray, start_time: float, end_time: float, fps: float) -> np.ndarray:
    """Positions in ``frame_times`` of the frames on screen at ``start_time + k / fps``.

    ``frame_times`` are sorted presentation times of the frames in the window; sample times stop
    before ``end_time``. Each frame is picked at most once (asking for more than the source rate
    returns every frame once). Computed per frame, not per sample time, so the cost is O(frames)
    even for absurd ``fps`` values.
    """
    last_sample = max(math.ceil((end_time - start_time) * fps - 1e-9) - 1, 0)
    # The first sample time at or after each frame's start (clamped to the window start) ...
    first_sample = np.maximum(np.ceil((frame_times - _TIME_EPS - start_time) * fps), 0)
    # ... picks the frame if it comes before the next frame starts and inside the window.
    next_start = np.append(frame_times[1:], np.inf)
    picked = (first_sample <= last_sample) & (start_time + first_sample / fps < next_start - _TIME_EPS)
    return np.flatnonzero(picked)


def sample_frame_indices(
    total_frames: int,
    num_frames: int | None = 8,
    *,
    fps: float | None = None,
    source_fps: float | None = None,
    max_frames: int | None = None,
    start_frame: int = 0,
    end_frame: int | None = None,
) -> np.ndarray:
    """Choose which frames of a video to read.

    The window is ``[start_frame, end_frame)`` (``end_frame`` defaults to ``total_frames``).

    * Default (uniform) -- the original Video-LLaVA policy::

          np.linspace(start_frame, end_frame - 1, num_frames, dtype=int)

      It includes the first and the last frame of the window, and repeats indices when the window
      has fewer than ``num_frames`` frames (``max_frames`` lowers ``num_frames`` if smaller).
    * ``fps=x`` -- one frame every ``1 / x`` seconds of the window, starting at its first frame:
      frame ``start_frame + floor(k * source_fps / x)`` for each ``k`` that stays inside the window.
      Needs ``source_fps``; ``num_frames`` is ignored; never repeats a frame (asking for more than
      the source rate gives every frame once). At most ``max_frames`` frames are kept, thinned
      uniformly.
    * ``num_frames=None`` and no ``fps`` -- every frame of the window, thinned to ``max_frames``.

    Returns:
        ``np.ndarray`` of int64 frame indices, sorted.
    """
    total_frames = _check_positive_int("total_frames", total_frames)
    end_frame = total_frames if end_frame is None else int(end_frame)
    if not 0 <= int(start_frame) < end_frame <= total_frames:
        raise ValueError(
            f"Frame window [start_frame={start_frame}, end_frame={end_frame}) is empty or outside the video's "
            f"{total_frames} frames; need 0 <= start_frame < end_frame <= total_frames."
        )
    start_frame = int(start_frame)
    if max_frames is not None:
        max_frames = _check_positive_int("max_frames", max_frames)
    if fps is not None:
        fps = _check_positive_float("fps", fps)
        if source_fps is None:
            raise ValueError("Sampling with `fps` needs `source_fps`, the frame rate of the video.")
        source_fps = _check_positive_float("source_fps", source_fps)
        length = end_frame - start_frame
        frame_times = np.arange(length, dtype=np.float64) / source_fps
        positions = _fps_positions(frame_times, 0.0, length / source_fps, fps)
        return _thin(start_frame + positions.astype(np.int64), max_frames)
    if num_frames is None:
        return _thin(np.arange(start_frame, end_frame, dtype=np.int64), max_frames)
    num_frames = _check_positive_int("num_frames", num_frames)
    if max_frames is not None:
        num_frames = min(num_frames, max_frames)
    return np.linspace(start_frame, end_frame - 1, num_frames, dtype=int).astype(np.int64)


@dataclass(frozen=True)
class _Request:
    """The sampling arguments of one :func:`load_video` call, validated."""

    num_frames: int | None
    fps: float | None
    max_frames: int | None
    indices: tuple[int, ...] | None
    clip_start: float | None
    clip_end: float | None
    limits: MediaLimits = MediaLimits()

    @property
    def policy(self) -> str:
        if self.indices is not None:
            return "indices"
        if self.fps is not None:
            return "fps"
        return "all" if self.num_frames is None else "uniform"

    @property
    def needs_time(self) -> bool:
        return self.fps is not None or self.clip_start is not None or self.clip_end is not None

    def choose(self, total: int, frame_times: np.ndarray | None, end_time: float | None, source: str) -> np.ndarray:
        """Frame indices for a source of ``total`` frames whose sorted times (seconds) are ``frame_times``."""
        if self.indices is not None:
            bad = [i for i in self.indices if not 0 <= i < total]
            if bad:
                raise ValueError(
                    f"Frame indices {bad[:10]} are out of range for video {source} with {total} frames; "
                    f"valid indices are 0..{total - 1}."
                )
            return np.asarray(self.indices, dtype=np.int64)
        if self.needs_time and frame_times is None:
            raise ValueError(
                f"`fps`, `clip_start` and `clip_end` need frame timing, which {source} does not have "
                "(frame arrays and lists carry no frame rate). Use `num_frames` or `indices` instead."
            )
        start, end = 0, total
        if frame_times is not None and (self.clip_start is not None or self.clip_end is not None):
            start, end = self._clip_window(frame_times, end_time, source)
        if self.fps is None:
            return sample_frame_indices(
                total, self.num_frames, max_frames=self.max_frames, start_frame=start, end_frame=end
            )
        # Timestamp-based so that variable-frame-rate videos are sampled by real time; for constant
        # frame rates this equals sample_frame_indices(fps=...).
        window_start = frame_times[start] if self.clip_start is None else max(self.clip_start, frame_times[start])
        window_end = self.clip_end if self.clip_end is not None else end_time
        if end < total:
            window_end = min(window_end, frame_times[end])
        positions = _fps_positions(frame_times[start:end], window_start, window_end, self.fps)
        return _thin(start + positions.astype(np.int64), self.max_frames)

    def _clip_window(self, frame_times: np.ndarray, end_time: float, source: str) -> tuple[int, int]:
        clip_start = 0.0 if self.clip_start is None else self.clip_start
        clip_end = end_time if self.clip_end is None else self.clip_end
        if clip_start >= end_time:
            raise ValueError(
                f"clip_start={clip_start:g} s is at or after the end of video {source} ({end_time:g} s long)."
            )
        # First frame: the one on screen at clip_start. End: frames that start before clip_end.
        start = max(0, int(np.searchsorted(frame_times, clip_start + _TIME_EPS, side="right")) - 1)
        end = int(np.searchsorted(frame_times, clip_end - _TIME_EPS, side="left"))
        return start, max(end, start + 1)


def _make_request(
    num_frames: int | None,
    fps: float | None,
    max_frames: int | None,
    indices: Sequence[int] | None,
    clip_start: float | None,
    clip_end: float | None,
    limits: MediaLimits | Mapping[str, Any] | None = None,
) -> _Request:
    if num_frames is not None:
        num_frames = _check_positive_int("num_frames", num_frames)
    if fps is not None:
        fps = _check_positive_float("fps", fps)
    if max_frames is not None:
        max_frames = _check_positive_int("max_frames", max_frames)
    for name, value in (("clip_start", clip_start), ("clip_end", clip_end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                  or not 0 <= value < math.inf):
            raise ValueError(f"`{name}` must be a non-negative number of seconds, got {value!r}.")
    if clip_start is not None and clip_end is not None and clip_end <= clip_start:
        raise ValueError(f"`clip_end` ({clip_end}) must be greater than `clip_start` ({clip_start}).")
    if indices is not None:
        if fps is not None or clip_start is not None or clip_end is not None:
            raise ValueError(
                "`indices` selects frames explicitly and cannot be combined with `fps`, `clip_start` or `clip_end`."
            )
        values = np.asarray(indices)
        if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"`indices` must be a non-empty 1-D sequence of integers, got {indices!r}.")
        indices = tuple(int(i) for i in values)
    return _Request(
        num_frames, fps, max_frames, indices,
        None if clip_start is None else float(clip_start),
        None if clip_end is None else float(clip_end),
        MediaLimits.resolve(limits),
    )


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def load_video(
    source: Any,
    *,
    num_frames: int | None = 8,
    fps: float | None = None,
    max_frames: int | None = None,
    indices: Sequence[int] | None = None,
    clip_start: float | None = None,
    clip_end: float | None = None,
    timeout: float = 60.0,
    limits: MediaLimits | Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, VideoMetadata]:
    """Read frames from a video.

    Args:
        source: A local path (``str``/``os.PathLike``), a ``file://`` or ``http(s)://`` URL (read as
            a stream; HTTP range requests are used to seek), a ``data:`` URL, a ``datasets`` cell
            (``{"bytes": ..., "path": ...}`` as ``Video(decode=False)`` columns hold them), ``bytes``, a binary file-like object
            (non-seekable ones are buffered in memory), a numpy array or torch tensor of uint8 RGB
            frames shaped ``(F, H, W, 3)`` or ``(F, 3, H, W)`` (a dimension of size 3 in both places
            is read as channels-last), a list of ``PIL.Image.Image``, a list of ``(H, W, 3)`` or
            ``(3, H, W)`` uint8 arrays or tensors, or a list of frame image paths (read with Pillow,
            EXIF orientation applied).
        num_frames: Frames to sample uniformly with the original Video-LLaVA formula
            ``np.linspace(start, end - 1, num_frames, dtype=int)``. ``None`` reads every frame.
        fps: Instead of ``num_frames``, one frame every ``1 / fps`` seconds (by presentation time,
            so variable-frame-rate videos are handled). Needs a container source.
        max_frames: Upper bound on the number of frames, applied by uniform thinning.
        indices: Explicit frame indices (presentation order, 0-based); frames come back in this
            order, repeats allowed.
        clip_start: Only sample from the frame on screen at this time (seconds from the first frame).
        clip_end: Only sample frames that start before this time (seconds).
        timeout: Seconds after which opening, reading or decoding is abandoned with a
            :class:`VideoDecodeError` (also the network timeout of URL sources).
        limits: Media limits (``max_pixels``, ``max_decoded_frames``, ``max_duration``), a dict or
            a :class:`~.media_limits.MediaLimits`; checked from the header before decoding. Default:
            8192 x 8192 pixels per frame, 1024 frames, 4 hours.

    Short videos: when the source has fewer frames than ``num_frames``, the original Video-LLaVA
    sampler's indices ``np.linspace(0, n - 1, num_frames, dtype=int)`` repeat frames. That is kept
    (the model always sees ``num_frames`` frames), and said: ``metadata.repeated_frames`` is True,
    ``metadata.warnings`` holds a sentence and a :class:`ShortVideoWarning` is issued.

    Returns:
        ``(frames, metadata)``: a ``(F, H, W, 3)`` uint8 RGB array in temporal order (or in the
        order of ``indices``) and a :class:`VideoMetadata`. Rotation metadata of the container
        (display matrix) is applied, so frames come out upright.

    Raises:
        VideoDecodeError: the source cannot be opened or decoded (missing or empty file, no video
            stream, corrupted or truncated data, timeout); the message names the source.
        TypeError: the source is of an unsupported type.
        ValueError: invalid sampling arguments (e.g. indices outside the video).
    """
    request = _make_request(num_frames, fps, max_frames, indices, clip_start, clip_end, limits)
    timeout = _check_positive_float("timeout", timeout)
    resolved = resolve_source(source, timeout, request.limits)
    if isinstance(resolved, FrameSequenceSource):
        return _load_frame_sequence(resolved, request)
    return _load_container(resolved, request, _Deadline(timeout, resolved.description))


def _load_frame_sequence(source: FrameSequenceSource, request: _Request) -> tuple[np.ndarray, VideoMetadata]:
    chosen = request.choose(source.num_frames, None, None, source.description)
    _check_frame_count(len(chosen), request, source.description)
    frames = source.take(chosen)
    return frames, _with_warnings(request, VideoMetadata(
        source=source.description,
        indices=chosen.tolist(),
        timestamps=[math.nan] * len(chosen),
        fps=None,
        duration=None,
        total_frames=source.num_frames,
        width=int(frames.shape[2]),
        height=int(frames.shape[1]),
        repeated_frames=len(np.unique(chosen)) < len(chosen),
        policy=request.policy,
    ))


class ShortVideoWarning(UserWarning):
    """A video has fewer frames than requested; frames were repeated (see :func:`load_video`)."""


def _with_warnings(request: _Request, metadata: VideoMetadata) -> VideoMetadata:
    """Fill in `requested_frames` and `warnings`, and issue the warnings (the CLI prints them)."""
    if request.policy == "uniform":
        metadata.requested_frames = request.num_frames
    distinct = len(set(metadata.indices))
    if metadata.repeated_frames and request.policy == "uniform":
        message = (
            f"video {metadata.source} has {metadata.total_frames} frame(s) but {len(metadata.indices)} were "
            f"requested; frames were repeated to fill them (indices {metadata.indices}), as the original "
            f"Video-LLaVA sampler does, so the model sees {distinct} distinct frame(s)"
        )
        if metadata.codec is not None:  # a container: its header or index may be what is short
            message += "; if the video should be longer, its header or index is damaged (re-export it)"
        metadata.warnings.append(message)
        warnings.warn(message, ShortVideoWarning, stacklevel=4)
    return metadata


def _check_frame_count(count: int, request: _Request, source: str) -> None:
    limit = request.limits.max_decoded_frames
    if limit is not None and count > limit:
        raise VideoDecodeError(
            source, f"{count} frames would be read, limit {int(limit)} (max_decoded_frames)",
            raise_hint("max_decoded_frames"),
        )


def _check_duration(duration: float | None, request: _Request, source: str, where: str) -> None:
    limit = request.limits.max_duration
    if limit is not None and duration is not None and math.isfinite(duration) and duration > limit:
        raise VideoDecodeError(
            source, f"{where} a duration of {duration:,.1f} s, limit {limit:,.0f} s (max_duration)",
            raise_hint("max_duration"),
        )


def _check_header(container: Any, stream: Any, request: _Request, source: str) -> None:
    """Refuse from the header alone, before any packet is read: frame size and announced duration."""
    context = stream.codec_context
    width, height = int(context.width or 0), int(context.height or 0)
    problem = pixels_problem(width, height, request.limits.max_pixels, "each frame")
    if problem:
        raise VideoDecodeError(source, problem + " (from the header)", raise_hint("max_pixels"))
    seconds = None
    if stream.duration is not None and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    _check_duration(seconds, request, source, "the header gives")


# --------------------------------------------------------------------------------------------
# Container reading
# --------------------------------------------------------------------------------------------


class _Deadline:
    """Wall-clock budget of one load_video call, checked inside every demux/decode loop."""

    def __init__(self, seconds: float, source: str) -> None:
        self.seconds = seconds
        self.source = source
        self.expires = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.expires:
            raise VideoDecodeError(
                self.source, f"reading took longer than timeout={self.seconds:g} s", "Raise `timeout` for long videos"
            )


class _NeedsCounting(Exception):
    """Frames cannot be identified by timestamp (missing/duplicate pts, or the decoder disagrees)."""


@dataclass
class _FrameIndex:
    """Presentation timestamps of all frames and the keyframes to seek to, in stream time_base."""

    pts: np.ndarray  # int64, sorted: pts[i] is frame i
    key_pts: np.ndarray  # int64, sorted: pts of each keyframe (estimated for sample-table indexes)
    # int64, aligned with key_pts: decode timestamp of each keyframe. Demuxers disagree on what a
    # seek timestamp means: MP4 and Matroska compare pts, MPEG-TS and AVI dts (<= pts); the
    # reader tries one and, if the seek lands after the keyframe, the other.
    key_dts: np.ndarray
    exact: bool  # built from a packet scan (True) or derived from the MP4 sample table (False)

    @staticmethod
    def keyframes(key_pts: np.ndarray, key_dts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keyframe arrays sorted by pts, one entry per pts."""
        key_pts, first = np.unique(key_pts, return_index=True)
        return key_pts, key_dts[first]


@dataclass
class _StreamInfo:
    time_base: Fraction
    fps: float | None
    codec: str | None


@contextlib.contextmanager
def _open_video(source: ContainerSource, request: _Request | None = None) -> Iterator[tuple[Any, Any]]:
    container = source.open()
    try:
        stream = _pick_video_stream(container, source.description)
        if request is not None:
            _check_header(container, stream, request, source.description)
        yield container, stream
    finally:
        container.close()


def _pick_video_stream(container: Any, source: str) -> Any:
    # Cover art in audio files is a one-frame "video" stream flagged attached_pic: not a video.
    candidates = [
        stream for stream in container.streams.video
        if not stream.disposition & av.stream.Disposition.attached_pic
    ]
    if not candidates:
        found = sorted({stream.type for stream in container.streams})
        if not found:  # nothing at all: a damaged header, not an audio file
            raise VideoDecodeError(
                source,
                f"FFmpeg opened it as {container.format.name!r} but found no streams at all",
                "The file is probably corrupted or not a media file",
            )
        hint = ("Pass a video file; audio-only files have nothing to decode into frames" if found == ["audio"]
                else "Pass a file with a video stream")
        raise VideoDecodeError(source, f"it has no video stream (streams found: {', '.join(found)})", hint)
    stream = candidates[0]
    if stream.codec_context is None:
        raise VideoDecodeError(
            source,
            "FFmpeg has no decoder for its video codec (unknown or damaged codec header)",
            "Re-encode the video, e.g. to H.264",
        )
    # Frame + slice threading: decoding is the dominant cost. Must be set before the first decode.
    stream.thread_type = "AUTO"
    # Let the demuxer skip the payload of other streams (audio, subtitles) instead of reading it.
    for other in container.streams:
        if other.index != stream.index:
            other.discard = av.stream.Discard.all
    return stream


def _stream_info(stream: Any, source: str) -> _StreamInfo:
    if not stream.time_base:
        raise VideoDecodeError(source, "the video stream has no time base (broken container header)")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate and 0 < float(rate) < math.inf else None
    return _StreamInfo(Fraction(stream.time_base), fps, stream.codec_context.name)


def _is_mp4(container: Any) -> bool:
    return bool(set(container.format.name.split(",")) & {"mov", "mp4"})


# ---- frame index --------------------------------------------------------------------------


def _index_from_sample_table(container: Any, stream: Any, deadline: _Deadline) -> _FrameIndex | None:
    """Frame index from an MP4/MOV sample table, without reading the file's packets.

    FFmpeg's MP4 index holds every sample's *decode* timestamp and keyframe flag, but not its
    presentation timestamp. For streams with a constant decode delay (all constant-frame-rate
    video, and any video without B-frames) the sorted pts are the sorted dts plus a constant,
    which is measured on the first packets. The estimate is checked against those packets here
    and against every decoded frame later; any disagreement means a full packet scan instead.
    Returns None when the table is not usable (it is then empty, partial or inconsistent).
    """
    count = len(stream.index_entries)
    if not count or (stream.frames and count != stream.frames):
        return None  # e.g. fragmented MP4, whose table fills in only while demuxing
    # One slice call plus attrgetter maps: ~5x faster than a per-entry Python loop (18k entries
    # for 10 minutes at 30 fps).
    entries = stream.index_entries[0:count]
    dts = np.fromiter(map(operator.attrgetter("timestamp"), entries), dtype=np.int64, count=count)
    flags = np.fromiter(map(operator.attrgetter("flags"), entries), dtype=np.int64, count=count)
    is_key, discard = (flags & _AVINDEX_KEYFRAME) != 0, (flags & _AVINDEX_DISCARD_FRAME) != 0
    if np.any(np.diff(dts) <= 0) or not is_key.any() or discard.all():
        return None
    probe: list[Any] = []
    for packet in container.demux(stream):
        deadline.check()
        if packet.size:
            probe.append(packet)
        if len(probe) >= _INDEX_PROBE_PACKETS or not packet.size:
            break
    if not probe or len(probe) > count or any(p.pts is None or p.dts != dts[i] for i, p in enumerate(probe)):
        return None  # the packets are not the samples the table describes
    shown = [p.pts for p in probe if not p.is_discard]
    if not shown:
        return None
    offset = min(shown) - int(dts[~discard][0])
    frame_pts = dts[~discard] + offset
    if not np.isin(shown, frame_pts).all():
        return None  # the decode delay varies (e.g. variable frame rate with B-frames)
    key_pts, key_dts = _FrameIndex.keyframes(dts[is_key] + offset, dts[is_key])
    return _FrameIndex(frame_pts, key_pts, key_dts, exact=False)


def _index_from_packet_scan(container: Any, stream: Any, deadline: _Deadline, source: str) -> _FrameIndex | None:
    """Frame index from demuxing every packet without decoding. None when timestamps are unusable."""
    pts_list: list[int] = []
    keys: list[tuple[int, int]] = []
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count % 256 == 0:
                deadline.check()
            if not packet.size:
                continue
            if packet.pts is None:
                return None
            if packet.is_keyframe:
                keys.append((packet.pts, packet.pts if packet.dts is None else min(packet.dts, packet.pts)))
            if not packet.is_discard:
                pts_list.append(packet.pts)
    except av.error.ExitError:
        raise
    except av.error.FFmpegError as error:
        # A damaged or truncated tail: index what could be read, as a sequential decode would.
        logger.warning("Video %s: demuxing stopped early (%s); using the %d frames before that.",
                       source, error, len(pts_list))
    if not pts_list or not keys:
        return None
    frame_pts = np.sort(np.asarray(pts_list, dtype=np.int64))
    if np.any(np.diff(frame_pts) == 0):
        return None  # duplicate timestamps: frames cannot be told apart by pts
    key_pts, key_dts = _FrameIndex.keyframes(*np.asarray(keys, dtype=np.int64).T)
    return _FrameIndex(frame_pts, key_pts, key_dts, exact=True)


def _index_container(
    container: Any, stream: Any, deadline: _Deadline, source: str, use_sample_table: bool
) -> _FrameIndex | None:
    """Index an open container. None means: the sample table was unusable after reading some
    packets, so a packet scan needs a freshly opened container."""
    if use_sample_table and _is_mp4(container):
        index = _index_from_sample_table(container, stream, deadline)
        if index is not None:
            logger.debug("Video %s: %d frames indexed from the MP4 sample table.", source, len(index.pts))
        return index
    index = _scan(container, stream, deadline, source)
    if index is None:
        raise _NeedsCounting("packet timestamps are missing or not unique")
    return index


def _scan(container: Any, stream: Any, deadline: _Deadline, source: str) -> _FrameIndex | None:
    index = _index_from_packet_scan(container, stream, deadline, source)
    if index is not None:
        logger.debug("Video %s: %d frames indexed by a packet scan.", source, len(index.pts))
    return index


# ---- decoding -----------------------------------------------------------------------------


class _Converter:
    """Decoded frame -> upright RGB array; rotation and output size are fixed by the first frame."""

    def __init__(self, source: str, limits: MediaLimits) -> None:
        self.source = source
        self.limits = limits
        self.rotation = 0
        self.size: tuple[int, int] | None = None

    def __call__(self, frame: Any) -> np.ndarray:
        if not 0 < frame.width * frame.height <= _MAX_FRAME_PIXELS:
            raise VideoDecodeError(self.source, f"decoded a frame of implausible size {frame.width}x{frame.height}")
        problem = pixels_problem(frame.width, frame.height, self.limits.max_pixels, "a decoded frame")
        if problem:  # the header said less (or nothing): a resolution change mid-stream
            raise VideoDecodeError(self.source, problem, raise_hint("max_pixels"))
        if self.size is None:
            self.size = (frame.width, frame.height)
            self.rotation = _frame_rotation(frame, self.source)
        if (frame.width, frame.height) == self.size:
            array = frame.to_ndarray(format="rgb24")
        else:  # the resolution changes mid-stream: keep one output size so frames can be stacked
            array = frame.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1])
        return np.rot90(array, k=self.rotation // 90) if self.rotation else array


def _frame_rotation(frame: Any, source: str) -> int:
    """Counter-clockwise rotation (0, 90, 180 or 270 degrees) that displays the frame upright.

    FFmpeg attaches the container's display matrix (MP4 ``tkhd`` matrix, Matroska projection) to
    decoded frames; PyAV exposes its rotation as ``VideoFrame.rotation``: the angle in [-180, 180]
    by which the matrix rotates the frame counter-clockwise. Players apply exactly that, and so do
    we with ``np.rot90(frame, k=angle // 90)``. Flips in the matrix are not applied; angles that
    are not multiples of 90 are ignored with a warning.
    """
    try:
        angle = int(round(frame.rotation or 0))
    except (AttributeError, TypeError, ValueError):
        return 0
    if angle % 90:
        logger.warning("Video %s: ignoring display rotation of %d degrees (not a multiple of 90).", source, angle)
        return 0
    return angle % 360


class _Decoder:
    """Demux + decode loop over one open container: deadline checks, damaged-packet tolerance."""

    def __init__(self, container: Any, stream: Any, deadline: _Deadline, source: str) -> None:
        self.container = container
        self.stream = stream
        self.deadline = deadline
        self.source = source
        self.bad_packets = 0
        # After a seek, frames with pts below this are not trusted (see frames()).
        self.safe_from: int | None = None
        # When set, non-reference frames whose pts is not in it are dropped without decoding.
        self.keep_only: set[int] | None = None
        self._can_skip = stream.codec_context.name in _NONREF_SKIP_CODECS
        self._skip_mode = "DEFAULT"
        # When set, the decoder is drained right after the packet with this pts was sent and
        # frames() ends: used when the next step is a seek anyway, so that the frames a threaded,
        # reordering decoder would otherwise decode ahead are never decoded.
        self.drain_after: int | None = None

    def _set_skip(self, packet: Any) -> None:
        # FFmpeg copies skip_frame into the worker context per packet, so this is exact per frame
        # even with frame threading.
        mode = "NONREF" if packet.pts is not None and packet.pts not in self.keep_only else "DEFAULT"
        if mode != self._skip_mode:
            self.stream.codec_context.skip_frame = mode
            self._skip_mode = mode

    def seek(self, timestamp: int) -> None:
        self.container.seek(timestamp, stream=self.stream, backward=True, any_frame=False)

    def frames(self, *, after_seek: bool) -> Iterator[Any]:
        """Decoded frames from the current position, in presentation order."""
        self.safe_from = None if after_seek else _MIN_PTS
        demuxer = self.container.demux(self.stream)
        try:
            for packet in demuxer:
                self.deadline.check()
                if self.safe_from is None:
                    if not packet.size or not packet.is_keyframe or packet.pts is None:
                        continue  # the seek landed mid-GOP: start at the next keyframe
                    # Open-GOP "leading" frames (pts before their keyframe) reference the previous
                    # GOP, which was skipped by seeking; only frames from the keyframe on are exact.
                    self.safe_from = packet.pts
                if self._can_skip and self.keep_only is not None and packet.size:
                    self._set_skip(packet)
                yield from self._decode(packet)
                if self.drain_after is not None and packet.pts == self.drain_after:
                    yield from self._decode(None)
                    return
        except av.error.ExitError:
            raise
        except av.error.FFmpegError as error:
            logger.warning("Video %s: demuxing stopped early (%s).", self.source, error)
            yield from self._decode(None)  # drain the frames the decoder still holds
        finally:
            demuxer.close()

    def _decode(self, packet: Any) -> list[Any]:
        try:
            return packet.decode() if packet is not None else self.stream.codec_context.decode(None)
        except av.error.ExitError:
            raise
        except av.error.FFmpegError as error:
            # Skip a damaged packet like a player would; frames it carried are reported missing
            # later if they were wanted.
            self.bad_packets += 1
            if self.bad_packets > _MAX_BAD_PACKETS:
                raise VideoDecodeError(
                    self.source, f"more than {_MAX_BAD_PACKETS} packets failed to decode (last error: {error})",
                    "The file is probably corrupted",
                ) from error
            return []


class _Grabber:
    """Decodes the frames with given pts, seeking only when that saves work."""

    def __init__(self, decoder: _Decoder, index: _FrameIndex, convert: _Converter) -> None:
        self.decoder = decoder
        self.index = index
        self.convert = convert
        self._frames: Iterator[Any] | None = None
        self._last_pts: int | None = None  # pts of the last frame the decoder produced
        self._seek_by_dts = False  # switched on when this demuxer proves to seek by dts

    def grab(self, targets: Sequence[int], found: dict[int, np.ndarray]) -> None:
        """Decode the frames with pts in ``targets`` (sorted) into ``found`` (pts -> RGB array)."""
        wanted = set(targets)
        # Frames still to find; shared with the decoder so it can drop other non-reference frames.
        self.decoder.keep_only = wanted - found.keys()
        try:
            for position, target in enumerate(targets):
                if target in found:
                    continue
                key = self._keyframe_before(target)
                following = targets[position + 1] if position + 1 < len(targets) else None
                # Drain early when the next target needs a seek anyway (or there is none).
                if following is None or not self._cheaper_to_continue(target, following):
                    self.decoder.drain_after = target
                else:
                    self.decoder.drain_after = None
                if self._can_continue_to(target, key):
                    self._decode_until(target, wanted, found)
                for by_dts, keyframe in self._seek_plan(key):
                    if target in found:
                        break
                    timestamps = self.index.key_dts if by_dts else self.index.key_pts
                    self._restart(after_seek=True, seek_to=int(timestamps[keyframe]))
                    self._decode_until(target, wanted, found)
                    if target in found and by_dts != self._seek_by_dts:
                        self._seek_by_dts = by_dts  # remember what works for this demuxer
        finally:
            self._stop()

    def _seek_plan(self, key: int) -> list[tuple[bool, int]]:
        """(seek by dts?, keyframe) pairs to try in turn.

        A seek can land after the wanted frame: the demuxer compares the other kind of timestamp,
        a keyframe pts was only estimated, or the frame is an open-GOP leading frame. Then try the
        keyframe's other timestamp, then earlier keyframes.
        """
        if key < 0:
            return []
        preferred = self._seek_by_dts
        plan = [(preferred, key)]
        if self.index.key_dts[key] != self.index.key_pts[key]:
            plan.append((not preferred, key))
        plan += [(preferred, key - back) for back in range(1, _SEEK_RETRIES + 1) if key - back >= 0]
        return plan

    def grab_linear(self, targets: Sequence[int], found: dict[int, np.ndarray]) -> None:
        """Like grab() but decodes from the current position (a fresh container) without seeking."""
        wanted = set(targets)
        try:
            self._restart(after_seek=False)
            for target in targets:
                if target not in found:
                    self._decode_until(target, wanted, found)
        finally:
            self._stop()

    def _known(self, pts: int) -> bool:
        position = int(np.searchsorted(self.index.pts, pts))
        return position < len(self.index.pts) and int(self.index.pts[position]) == pts

    def _keyframe_before(self, target: int) -> int:
        return int(np.searchsorted(self.index.key_pts, target, side="right")) - 1

    def _cheaper_to_continue(self, current: int, target: int) -> bool:
        """Whether decoding on from frame ``current`` to ``target`` beats seeking to its keyframe."""
        key_pts = int(self.index.key_pts[max(self._keyframe_before(target), 0)])
        if key_pts <= current:
            return True  # same GOP: decoding forward is the cheapest way there
        pts = self.index.pts
        between = int(np.searchsorted(pts, key_pts)) - int(np.searchsorted(pts, current)) - 1
        return between <= _FORWARD_DECODE_SLACK

    def _can_continue_to(self, target: int, key: int) -> bool:
        if self._frames is None or self._last_pts is None or self._last_pts >= target:
            return False
        if self.decoder.safe_from is None or target < self.decoder.safe_from:
            return False
        return self._cheaper_to_continue(self._last_pts, target)

    def _restart(self, *, after_seek: bool, seek_to: int | None = None) -> None:
        self._stop()
        if seek_to is not None:
            self.decoder.seek(seek_to)
        self._frames = self.decoder.frames(after_seek=after_seek)
        self._last_pts = None

    def _stop(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None

    def _decode_until(self, target: int, wanted: set[int], found: dict[int, np.ndarray]) -> None:
        if self._frames is None:
            return
        for frame in self._frames:
            pts = frame.pts
            if pts is None or not self._known(pts):
                raise _NeedsCounting(f"the decoder produced a frame with pts={pts}, which no packet carries")
            self._last_pts = pts
            safe_from = self.decoder.safe_from
            if safe_from is None or pts < safe_from:
                continue
            if pts in wanted and pts not in found:
                found[pts] = self.convert(frame)
                if self.decoder.keep_only is not None:
                    self.decoder.keep_only.discard(pts)
            if pts >= target:
                return
        self._frames = None  # end of stream


# ---- the three ways of reading a container, from fastest to most forgiving ----------------


def _load_container(
    source: ContainerSource, request: _Request, deadline: _Deadline
) -> tuple[np.ndarray, VideoMetadata]:
    try:
        try:
            return _load_by_pts(source, request, deadline)
        except _NeedsCounting as reason:
            logger.info("Video %s: %s; decoding sequentially and counting frames.", source.description, reason)
            return _load_by_count(source, request, deadline)
    except av.error.ExitError as error:  # FFmpeg's interrupt callback fired (network timeout)
        raise VideoDecodeError(source.description, f"reading timed out ({error})", "Raise `timeout`") from error
    except (av.error.FFmpegError, OSError) as error:
        raise VideoDecodeError(source.description, f"decoding failed ({error})") from error


def _load_by_pts(source: ContainerSource, request: _Request, deadline: _Deadline) -> tuple[np.ndarray, VideoMetadata]:
    # One opened container serves both indexing and seeking, so a URL is requested as few times as
    # possible. A second, freshly opened one is needed only when the MP4 sample table turns out
    # to be unusable (then every packet is scanned instead).
    use_sample_table = True
    for _ in range(2):
        with _open_video(source, request) as (container, stream):
            info = _stream_info(stream, source.description)
            index = _index_container(container, stream, deadline, source.description, use_sample_table)
            if index is not None:
                try:
                    return _read_indexed(source, request, deadline, index, info, container, stream)
                except _NeedsCounting as reason:
                    if index.exact:
                        raise
                    logger.info("Video %s: MP4 sample table disagrees with the stream (%s); scanning packets.",
                                source.description, reason)
        use_sample_table = False
    raise _NeedsCounting("the frame index could not be built")


def _read_indexed(
    source: ContainerSource, request: _Request, deadline: _Deadline, index: _FrameIndex, info: _StreamInfo,
    container: Any, stream: Any,
) -> tuple[np.ndarray, VideoMetadata]:
    """Seek-and-decode the chosen frames; decode linearly (by pts) what seeking did not reach."""
    total = len(index.pts)
    # Scale by numerator / denominator (one rounding) rather than by float(time_base), so that
    # e.g. frame 69 at 25 fps is 2.76 s, not 2.7600000000000002 s.
    ticks = (index.pts - index.pts[0]).astype(np.float64)
    times = ticks * info.time_base.numerator / info.time_base.denominator
    frame_duration = float(np.median(np.diff(times))) if total > 1 else (1.0 / info.fps if info.fps else 0.0)
    duration = float(times[-1]) + frame_duration
    _check_duration(duration, request, source.description, "its frames span")
    chosen = request.choose(total, times, duration, source.description)
    _check_frame_count(len(chosen), request, source.description)
    targets = np.unique(index.pts[chosen]).tolist()
    convert = _Converter(source.description, request.limits)
    found: dict[int, np.ndarray] = {}
    try:
        _Grabber(_Decoder(container, stream, deadline, source.description), index, convert).grab(targets, found)
    except av.error.ExitError:
        raise
    except av.error.FFmpegError as error:  # typically a stream that cannot seek (e.g. HTTP without ranges)
        logger.info("Video %s: seeking failed (%s); decoding linearly.", source.description, error)
    missing = [t for t in targets if t not in found]
    if missing:
        logger.info("Video %s: %d frame(s) not reached by seeking; decoding linearly.",
                    source.description, len(missing))
        with _open_video(source) as (container, stream):
            _Grabber(_Decoder(container, stream, deadline, source.description), index, convert).grab_linear(
                missing, found
            )
    lost = [i for i in np.unique(chosen).tolist() if int(index.pts[i]) not in found]
    if lost:
        raise VideoDecodeError(
            source.description,
            f"frame(s) {lost[:10]} of {total} could not be decoded",
            "The file is probably truncated or corrupted",
        )
    frames = np.stack([found[int(index.pts[i])] for i in chosen.tolist()])
    fps = info.fps or (total / duration if duration > 0 else None)
    return frames, _container_metadata(source, request, chosen, times[chosen], fps, duration, total, frames,
                                       convert, info)


def _load_by_count(source: ContainerSource, request: _Request, deadline: _Deadline) -> tuple[np.ndarray, VideoMetadata]:
    """Exact fallback for streams without usable timestamps: decode everything and count frames.

    Two passes (count, then collect) keep memory bounded by the selected frames.
    """
    frame_times: list[float | None] = []
    with _open_video(source, request) as (container, stream):
        info = _stream_info(stream, source.description)
        for frame in _Decoder(container, stream, deadline, source.description).frames(after_seek=False):
            frame_times.append(frame.time)
    total = len(frame_times)
    if total == 0:
        raise VideoDecodeError(source.description, "the video stream contains no decodable frames",
                               "The file is probably truncated or corrupted")
    times, duration = _counted_frame_times(frame_times, info.fps)
    _check_duration(duration, request, source.description, "its frames span")
    chosen = request.choose(total, times, duration, source.description)
    _check_frame_count(len(chosen), request, source.description)
    wanted = set(chosen.tolist())
    convert = _Converter(source.description, request.limits)
    found: dict[int, np.ndarray] = {}
    with _open_video(source) as (container, stream):
        decoder = _Decoder(container, stream, deadline, source.description)
        for position, frame in enumerate(decoder.frames(after_seek=False)):
            if position in wanted:
                found[position] = convert(frame)
                if len(found) == len(wanted):
                    break
    lost = sorted(wanted - found.keys())
    if lost:
        raise VideoDecodeError(source.description, f"frame(s) {lost[:10]} of {total} could not be decoded on a "
                               "second pass (the decoder output is not reproducible on this file)")
    frames = np.stack([found[i] for i in chosen.tolist()])
    picked_times = times[chosen] if times is not None else np.full(len(chosen), math.nan)
    return frames, _container_metadata(source, request, chosen, picked_times, info.fps, duration, total, frames,
                                       convert, info)


def _counted_frame_times(frame_times: list[float | None], fps: float | None) -> tuple[np.ndarray | None, float | None]:
    """Frame times (s, from the first frame) and duration for a counted decode, if knowable."""
    total = len(frame_times)
    if None not in frame_times and np.all(np.diff(np.asarray(frame_times, dtype=np.float64)) > 0):
        times = np.asarray(frame_times, dtype=np.float64) - frame_times[0]
    elif fps:
        times = np.arange(total, dtype=np.float64) / fps
    else:
        return None, None
    if fps:
        last_duration = 1.0 / fps
    else:
        last_duration = float(np.median(np.diff(times))) if total > 1 else 0.0
    return times, float(times[-1]) + last_duration


def _container_metadata(
    source: ContainerSource, request: _Request, chosen: np.ndarray, times: np.ndarray, fps: float | None,
    duration: float | None, total: int, frames: np.ndarray, convert: _Converter, info: _StreamInfo,
) -> VideoMetadata:
    return _with_warnings(request, VideoMetadata(
        source=source.description,
        indices=chosen.tolist(),
        timestamps=[float(t) for t in times],
        fps=fps,
        duration=duration,
        total_frames=total,
        width=int(frames.shape[2]),
        height=int(frames.shape[1]),
        repeated_frames=len(np.unique(chosen)) < len(chosen),
        policy=request.policy,
        rotation=convert.rotation,
        codec=info.codec,
    ))


__all__ = [
    "ACCEPTED_SOURCES",
    "ShortVideoWarning",
    "VideoDecodeError",
    "VideoMetadata",
    "load_video",
    "sample_frame_indices",
]
