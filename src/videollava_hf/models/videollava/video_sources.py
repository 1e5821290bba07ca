# Copyright 2025 The videollava-hf authors. Apache-2.0.
"""Turn the many things a user may call "a video" into one of two source kinds.

:func:`videollava_hf.models.videollava.video_io.load_video` accepts paths, URLs, bytes, file objects, arrays, tensors
and lists of images. This module normalises all of them into either

* a :class:`ContainerSource` -- something FFmpeg (through PyAV) must demux and decode, described by
  a callable that opens a *fresh* container (the reader sometimes has to start over, e.g. when a
  stream cannot seek), or
* a :class:`FrameSequenceSource` -- frames that already exist in memory or as image files; these
  are indexed directly, and only the selected frames are converted or read from disk.

It also owns :class:`VideoDecodeError` so that both modules can raise it without a circular import.
"""

from __future__ import annotations

import io
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from .media_io import ImageDecodeError, describe_media, is_dataset_cell, load_image, unwrap_media


ACCEPTED_SOURCES = (
    "a local path (str or os.PathLike), a file://, http(s):// or data: URL, bytes/bytearray/memoryview, "
    "a datasets cell ({'bytes': ..., 'path': ...}, e.g. a Video(decode=False) column), "
    "a binary file-like object, a numpy.ndarray or torch.Tensor of shape (F, H, W, 3) or (F, 3, H, W) "
    "with dtype uint8, a list of PIL.Image.Image, a list of (H, W, 3) or (3, H, W) uint8 numpy arrays or "
    "torch tensors, or a list of frame image paths"
)


class VideoDecodeError(ValueError):
    """A video source could not be opened or decoded.

    The message names the source, what went wrong and, where possible, how to fix it. The pieces
    are also available as attributes so callers (e.g. a training data loader that skips broken
    clips) can log them in a structured way.
    """

    def __init__(self, source: str, problem: str, hint: str | None = None) -> None:
        self.source = source
        self.problem = problem
        self.hint = hint
        message = f"Cannot read video {source}: {problem}"
        if hint:
            message += f". {hint}"
        super().__init__(message)

    def __reduce__(self):  # keep the error picklable across DataLoader worker processes
        return (type(self), (self.source, self.problem, self.hint))


# Public home of the class is video_io; make reprs and tracebacks say so.
VideoDecodeError.__module__ = "videollava_hf.models.videollava.video_io"


@dataclass(frozen=True)
class ContainerSource:
    """Something PyAV must open. ``open()`` returns a new ``InputContainer`` on every call."""

    description: str
    open: Callable[[], Any]


@dataclass(frozen=True)
class FrameSequenceSource:
    """Frames that already exist; ``take(indices)`` returns ``(len(indices), H, W, 3)`` uint8 RGB."""

    description: str
    num_frames: int
    take: Callable[[np.ndarray], np.ndarray]


def describe(source: Any) -> str:
    """Short, log-friendly name of a source, used in errors and in ``VideoMetadata.source``."""
    if is_dataset_cell(source) or (isinstance(source, str) and source[:5].lower() == "data:"):
        return describe_media(source)
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, np.ndarray):
        return "<array>"
    if _is_torch_tensor(source):
        return "<tensor>"
    if isinstance(source, (list, tuple)):
        return "<frame list>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return f"<file {name!r}>"
    return f"<{type(source).__name__}>"


def resolve_source(source: Any, timeout: float, limits: Any = None) -> ContainerSource | FrameSequenceSource:
    """Classify ``source`` and prepare it for reading. Raises TypeError for unsupported types. ``limits``
    (:class:`~.media_limits.MediaLimits`) bound the frame images of a list of paths."""
    if is_dataset_cell(source) or (isinstance(source, str) and source[:5].lower() == "data:"):
        description = describe(source)
        try:
            source = unwrap_media(source)
        except ValueError as error:
            raise VideoDecodeError(description, str(error)) from error
        if isinstance(source, bytes):
            return _bytes_source(source, description, timeout)
    if isinstance(source, (str, os.PathLike)):
        return _resolve_path_or_url(source, timeout)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _bytes_source(bytes(source), "<bytes>", timeout)
    if isinstance(source, np.ndarray):
        return _array_source(source, "<array>")
    if _is_torch_tensor(source):
        return _tensor_source(source)
    if isinstance(source, (list, tuple)):
        return _list_source(source, limits)
    if callable(getattr(source, "read", None)):
        return _file_object_source(source, timeout)
    hint = ""
    if type(source).__module__.split(".")[0] == "torchcodec":  # what a decoded datasets Video() column holds
        hint = " For a datasets Video() column, cast it undecoded: ds.cast_column(name, datasets.Video(decode=False))."
    raise TypeError(
        f"load_video() cannot read a source of type {type(source).__module__}.{type(source).__qualname__}.{hint} "
        f"Accepted sources: {ACCEPTED_SOURCES}."
    )


# --------------------------------------------------------------------------------------------
# Container sources
# --------------------------------------------------------------------------------------------


def _open_container(target: Any, description: str, timeout: float) -> Any:
    """``av.open`` with every failure turned into a VideoDecodeError naming the source."""
    try:
        # The timeout arms FFmpeg's interrupt callback, so a stalled network read (or a
        # pathological probe) aborts instead of hanging the caller.
        # Damaged files can carry metadata that is not valid UTF-8; it must not stop decoding.
        return av.open(target, mode="r", timeout=(timeout, timeout), metadata_errors="replace")
    except FileNotFoundError as error:
        raise VideoDecodeError(description, "the file does not exist", "Check the path") from error
    except av.error.InvalidDataError as error:
        raise VideoDecodeError(
            description,
            "FFmpeg found no known container format in the data (not a video, or the header is corrupted)",
            "Check that the file is a complete video file (e.g. MP4, MKV, WebM, AVI, MOV)",
        ) from error
    except av.error.ExitError as error:  # raised when the interrupt callback fired
        raise VideoDecodeError(description, f"opening timed out after {timeout:g} s", "Raise `timeout`") from error
    except av.error.EOFError as error:  # AVERROR_EOF: the bytes end inside the container header
        raise VideoDecodeError(
            description,
            "the data ends before FFmpeg could read the container header (a truncated or incomplete file, or not "
            "a video)",
            "Re-download or re-export the video",
        ) from error
    except av.error.HTTPError as error:
        raise VideoDecodeError(description, f"the server refused the request ({error})", "Check the URL") from error
    except (av.error.FFmpegError, OSError) as error:
        # FFmpeg's strerror ("Input/output error", "End of file") rarely says why: on a local file it means damage.
        reason = getattr(error, "strerror", None) or str(error)
        raise VideoDecodeError(
            description, f"FFmpeg could not open it ({reason})", "The file is probably truncated or corrupted"
        ) from error


def _resolve_path_or_url(source: str | os.PathLike, timeout: float) -> ContainerSource:
    text = os.fspath(source)
    if isinstance(text, bytes):  # os.PathLike may return bytes
        text = os.fsdecode(text)
    scheme = urllib.parse.urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("http", "https"):
        description = repr(text)
        return ContainerSource(description, lambda: _open_container(text, description, timeout))
    if scheme == "file":
        parts = urllib.parse.urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise VideoDecodeError(
                repr(text), f"file:// URLs on another host ({parts.netloc!r}) are not supported", "Mount it locally"
            )
        text = urllib.request.url2pathname(parts.path)
    elif scheme:
        raise VideoDecodeError(
            repr(text), f"unsupported URL scheme {scheme!r}", "Use a local path, a file:// URL or an http(s):// URL"
        )
    return _path_source(text, timeout)


def _path_source(path: str, timeout: float) -> ContainerSource:
    description = repr(path)
    # Check up front: FFmpeg's own messages for these cases are cryptic ("Invalid data found").
    if not os.path.exists(path):
        raise VideoDecodeError(description, "the file does not exist", "Check the path and the working directory")
    if os.path.isdir(path):
        raise VideoDecodeError(description, "the path is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(description, "the file is empty (0 bytes)", "Re-download or re-export the video")
    return ContainerSource(description, lambda: _open_container(path, description, timeout))


def _bytes_source(data: bytes, description: str, timeout: float) -> ContainerSource:
    if not data:
        raise VideoDecodeError(description, "the data is empty (0 bytes)")
    # A fresh BytesIO per open; BytesIO over immutable bytes shares the buffer instead of copying.
    return ContainerSource(description, lambda: _open_container(io.BytesIO(data), description, timeout))


def _file_object_source(file: Any, timeout: float) -> ContainerSource:
    description = describe(file)
    seekable = getattr(file, "seekable", None)
    if callable(seekable) and seekable():
        start = file.tell()
        probe = file.read(1)
        if isinstance(probe, str):
            raise TypeError(_text_mode_message(description))
        if not probe:
            raise VideoDecodeError(description, "the file object is empty (no bytes to read)")

        def open_file() -> Any:
            # Rewind so that re-opening (used by the reader's fallbacks) starts from the same point.
            file.seek(start)
            return _open_container(file, description, timeout)

        file.seek(start)
        return ContainerSource(description, open_file)
    # FFmpeg needs to seek in most containers (MP4 may keep its index at the end), and we re-open
    # on some fallbacks, so a non-seekable stream is buffered in memory once.
    data = file.read()
    if isinstance(data, str):
        raise TypeError(_text_mode_message(description))
    return _bytes_source(bytes(data), description, timeout)


def _text_mode_message(description: str) -> str:
    return f"load_video() needs a binary file object, got a text-mode one ({description}); open it with 'rb'."


# --------------------------------------------------------------------------------------------
# Frame sequence sources
# --------------------------------------------------------------------------------------------


def _is_torch_tensor(obj: Any) -> bool:
    # Avoid importing torch just to find out that a source is not a tensor.
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach")


def _channels_first(shape: Sequence[int]) -> bool:
    """(F, 3, H, W) is recognised when dim 1 is 3 and the last one is not; (F, H, W, 3) wins ties."""
    return shape[-1] != 3 and shape[1] == 3


def _check_frame_array_shape(shape: Sequence[int], dtype: str, description: str, kind: str) -> bool:
    if len(shape) != 4 or not (shape[-1] == 3 or shape[1] == 3):
        raise VideoDecodeError(
            description,
            f"expected a {kind} of shape (F, H, W, 3) or (F, 3, H, W), got shape {tuple(shape)}",
            "Stack RGB frames along a new first axis; for one image add a frame axis with [None]",
        )
    if dtype != "uint8":
        raise VideoDecodeError(
            description,
            f"expected dtype uint8 (0-255 RGB), got {dtype}",
            "Convert with (x * 255).clip(0, 255) and cast to uint8 if your values are floats in [0, 1]",
        )
    if shape[0] == 0:
        raise VideoDecodeError(description, "the frame array contains no frames")
    return _channels_first(shape)


def _array_source(array: np.ndarray, description: str) -> FrameSequenceSource:
    channels_first = _check_frame_array_shape(array.shape, str(array.dtype), description, "numpy array")

    def take(indices: np.ndarray) -> np.ndarray:
        frames = array[indices]
        if channels_first:
            frames = frames.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(frames)

    return FrameSequenceSource(description, int(array.shape[0]), take)


def _tensor_source(tensor: Any) -> FrameSequenceSource:
    description = "<tensor>"
    dtype = str(tensor.dtype).removeprefix("torch.")
    channels_first = _check_frame_array_shape(tuple(tensor.shape), dtype, description, "torch tensor")

    def take(indices: np.ndarray) -> np.ndarray:
        import torch  # only reached when the source already is a torch tensor

        frames = tensor.detach()[torch.as_tensor(indices, dtype=torch.long, device=tensor.device)]
        if channels_first:
            frames = frames.permute(0, 2, 3, 1)
        return np.ascontiguousarray(frames.cpu().numpy())

    return FrameSequenceSource(description, int(tensor.shape[0]), take)


def _list_source(frames: Sequence[Any], limits: Any = None) -> FrameSequenceSource:
    description = "<frame list>"
    if len(frames) == 0:
        raise VideoDecodeError(description, "the frame list is empty", "Pass at least one frame")
    from PIL import Image  # Pillow is a hard dependency, but only frame lists need it

    if all(isinstance(frame, Image.Image) for frame in frames):
        return FrameSequenceSource(
            "<PIL frame list>", len(frames), lambda idx: _stack_images([frames[i] for i in idx], "<PIL frame list>")
        )
    if all(isinstance(frame, (str, os.PathLike)) for frame in frames):
        paths = [os.fspath(frame) for frame in frames]
        description = f"<frame paths {paths[0]!r}...>" if len(paths) > 1 else f"<frame paths {paths[0]!r}>"
        return FrameSequenceSource(
            description, len(paths),
            lambda idx: _stack_images([_read_image(paths[i], limits) for i in idx], description),
        )
    if all(isinstance(frame, np.ndarray) or _is_torch_tensor(frame) for frame in frames):
        description = "<array frame list>"
        for position, frame in enumerate(frames):
            shape, dtype = tuple(frame.shape), str(frame.dtype).removeprefix("torch.")
            if len(shape) != 3 or 3 not in (shape[0], shape[-1]) or dtype != "uint8":
                raise VideoDecodeError(
                    description,
                    f"frame {position} has shape {shape} and dtype {dtype}; expected (H, W, 3) or (3, H, W) uint8 RGB",
                )
        return FrameSequenceSource(
            description, len(frames), lambda idx: _stack_arrays([_hwc_numpy(frames[i]) for i in idx], description)
        )
    kinds = sorted({type(frame).__name__ for frame in frames})
    raise TypeError(
        f"load_video() got a list whose items are of type(s) {', '.join(kinds)}; every item must be a "
        "PIL.Image.Image, every item a frame image path, or every item an (H, W, 3) / (3, H, W) uint8 array "
        f"or tensor. Accepted sources: {ACCEPTED_SOURCES}."
    )


def _hwc_numpy(frame: Any) -> np.ndarray:
    """One (H, W, 3) or (3, H, W) frame (numpy or torch) -> (H, W, 3) numpy; channels-last wins ties."""
    array = frame.detach().cpu().numpy() if _is_torch_tensor(frame) else np.asarray(frame)
    return array.transpose(1, 2, 0) if array.shape[-1] != 3 else array


def _read_image(path: str, limits: Any = None) -> Any:
    from .media_limits import MediaLimitError, raise_hint

    try:
        # Size checked from the header (limits); EXIF orientation applied, as video rotation metadata is.
        return load_image(path, limits=limits)
    except MediaLimitError as error:
        raise VideoDecodeError(f"<frame {path!r}>", error.problem, raise_hint(error.option)) from error
    except ImageDecodeError as error:
        raise VideoDecodeError(f"<frame {path!r}>", f"the frame image cannot be read ({error.problem})",
                               error.hint) from error


def _stack_images(images: list[Any], description: str) -> np.ndarray:
    # EXIF orientation and 16-bit scaling as for single images (media_io.load_image of a PIL image).
    return _stack_arrays([np.asarray(load_image(image)) for image in images], description)


def _stack_arrays(arrays: list[np.ndarray], description: str) -> np.ndarray:
    sizes = {array.shape for array in arrays}
    if len(sizes) > 1:
        raise VideoDecodeError(
            description,
            f"the selected frames have different sizes {sorted(sizes)}",
            "Resize all frames to one size before passing them",
        )
    return np.stack(arrays).astype(np.uint8, copy=False)


__all__ = [
    "ACCEPTED_SOURCES",
    "ContainerSource",
    "FrameSequenceSource",
    "VideoDecodeError",
    "describe",
    "resolve_source",
]
