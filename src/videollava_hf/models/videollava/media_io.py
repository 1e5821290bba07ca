"""One place that turns what users call "an image" (or the container of "a video") into something readable.

Every entry point (processor, chat template, pipelines, ChatSession, CLI, evaluation, training) reads media through
this module and `video_io.load_video` (which calls `unwrap_media` first), so they all accept the same things:

* a local path (`str` / `os.PathLike`), a `file://` URL, an `http(s)://` URL, a `data:` URL (base64 or percent-encoded);
* `bytes` / `bytearray` / `memoryview`, a binary file object;
* a `datasets` cell: `{"bytes": ..., "path": ...}` as `Image(decode=False)` / `Video(decode=False)` columns and
  parquet files hold them (bytes win; the path is used when there are no bytes);
* images: a `PIL.Image.Image` (a decoded `Image()` cell), an (H, W, 3) / (3, H, W) numpy array or torch tensor;
* videos: see `video_io.load_video` (arrays, tensors, lists of frames).

Images are decoded in one function, `open_image` (opens without decoding: the place to check sizes before pixels are
read) followed by `to_rgb` (EXIF orientation applied; 16-bit pixels scaled to 8 bits, not clipped).

Only flat sibling imports: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import struct
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .media_limits import MediaLimits, check_pixels, open_within_limits

DEFAULT_TIMEOUT = 60.0  # seconds, for http(s) downloads
# Extensions that tell images from videos without opening a file (the CLI, dataset folders).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv"}
)
# Keys of a `datasets` Image / Video cell stored without decoding.
CELL_KEYS = frozenset({"bytes", "path"})

ACCEPTED_IMAGES = (
    "a path, a file:// / http(s):// / data: URL, bytes, a binary file object, a datasets cell "
    "({'bytes': ..., 'path': ...}), a PIL image, or an (H, W, 3) / (3, H, W) numpy array or torch tensor"
)


class ImageDecodeError(ValueError):
    """An image source could not be opened or decoded; the message names the source and, where possible, the fix."""

    def __init__(self, source: str, problem: str, hint: str | None = None) -> None:
        self.source, self.problem, self.hint = source, problem, hint
        super().__init__(f"Cannot read image {source}: {problem}" + (f". {hint}" if hint else ""))

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.source, self.problem, self.hint))


# ----------------------------------------------------------------------------------------------------------------
# Sources shared by images and videos
# ----------------------------------------------------------------------------------------------------------------


def is_dataset_cell(value: Any) -> bool:
    """A `datasets` Image/Video cell kept encoded: a dict with `bytes` and/or `path` (nothing else)."""
    return isinstance(value, dict) and bool(value) and set(value) <= CELL_KEYS


def describe_media(source: Any, limit: int = 80) -> str:
    """A short name of a source for messages: never the bytes themselves, at most `limit` characters."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        text = os.fsdecode(text) if isinstance(text, bytes) else text
        if text.startswith("data:"):
            return f"<data: URL, {len(text)} characters>"
        return repr(text if len(text) <= limit else text[: limit - 3] + "...")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if is_dataset_cell(source):
        if source.get("bytes"):
            name = f" from {source['path']!r:.{limit}}" if source.get("path") else ""
            return f"<datasets cell: {len(source['bytes'])} bytes{name}>"
        return f"<datasets cell: path {source.get('path')!r:.{limit}}>"
    if isinstance(source, dict):
        return f"<dict with keys {sorted(map(str, source))[:6]}>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"<{type(source).__name__} of shape {tuple(shape)}>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return f"<file {name!r:.{limit}}>"
    return f"<{type(source).__name__}>"


def decode_data_url(url: str) -> bytes:
    """The payload of a `data:[<type>][;base64],<data>` URL."""
    header, sep, payload = url.partition(",")
    if not sep:
        raise ValueError(f"{describe_media(url)} is not a data: URL (no ',' after the header).")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"{describe_media(url)}: the base64 payload is invalid ({err}).") from err
    return urllib.parse.unquote_to_bytes(payload)


def file_url_to_path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file:// URLs on another host ({parts.netloc!r}) are not supported; mount the file locally.")
    return urllib.request.url2pathname(parts.path)


def unwrap_media(source: Any) -> Any:
    """Strip the wrappers both image and video readers handle the same way: `datasets` cells (-> bytes or path) and
    `data:` URLs (-> bytes). Everything else comes back unchanged."""
    if is_dataset_cell(source):
        data, path = source.get("bytes"), source.get("path")
        if data:
            return bytes(data)
        if path:
            return path
        raise ValueError("A datasets media cell has neither `bytes` nor `path`; the row holds no media.")
    if isinstance(source, str) and source[:5].lower() == "data:":
        return decode_data_url(source)
    return source


def fetch_url(url: str, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """GET an http(s) URL (the whole body)."""
    request = urllib.request.Request(url, headers={"User-Agent": "videollava-hf"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except OSError as err:  # URLError, HTTPError and socket timeouts are OSErrors
        raise ImageDecodeError(repr(url), f"download failed ({err})", "Check the URL and the network") from err


def encoded_media_columns(dataset):
    """`dataset` (a `datasets.Dataset` / `IterableDataset`) with its `Video()` / `Image()` columns cast to
    `decode=False`, so rows hold `{"bytes", "path"}` cells that these readers decode (frame sampling by our video
    reader; no torchcodec needed; a broken file fails its own row, not the iteration). Other objects unchanged."""
    features = getattr(dataset, "features", None)
    if not features or not callable(getattr(dataset, "cast_column", None)):
        return dataset
    for name, feature in features.items():
        if type(feature).__name__ in ("Video", "Image") and getattr(feature, "decode", False):
            dataset = dataset.cast_column(name, type(feature)(decode=False))
    return dataset


# ----------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------


def open_image(source: Any, timeout: float = DEFAULT_TIMEOUT, limits: Any = None) -> Image.Image:
    """Open an encoded image (path, URL, bytes, file object, datasets cell) *without decoding its pixels*.

    The returned image knows its size and mode but has not read its pixel data; its pixel count is checked against
    `limits` (`media_limits.MediaLimits`, a dict, or None for the defaults) here, so decompression bombs are refused
    with a `MediaLimitError` before decoding. Call `to_rgb` to decode."""
    name = describe_media(source)
    source = unwrap_media(source)
    if isinstance(source, (str, os.PathLike)):
        text = os.fsdecode(os.fspath(source))
        scheme = urllib.parse.urlsplit(text).scheme.lower() if "://" in text else ""
        if scheme in ("http", "https"):
            source = fetch_url(text, timeout)
        elif scheme == "file":
            source = file_url_to_path(text)
        elif scheme:
            raise ImageDecodeError(name, f"unsupported URL scheme {scheme!r}", "Use a path or a file/http(s)/data URL")
        else:
            source = text
        if isinstance(source, str):
            if not os.path.isfile(source):
                raise ImageDecodeError(name, "the file does not exist", "Check the path")
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageDecodeError(name, "the data is empty (0 bytes)")
        source = io.BytesIO(bytes(source))
    elif not isinstance(source, str) and not callable(getattr(source, "read", None)):
        raise TypeError(f"Cannot read an image from {name}; pass {ACCEPTED_IMAGES}.")
    try:
        return open_within_limits(source, f"image {name}", limits)
    except UnidentifiedImageError as err:
        raise ImageDecodeError(
            name, "not an image Pillow can read", "Pass still images as images and videos as videos"
        ) from err
    except OSError as err:
        raise ImageDecodeError(name, f"opening failed ({err})") from err


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """Decode to an upright 8-bit RGB image: EXIF orientation applied, 16-bit greyscale scaled by 1/257."""
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            # 16-bit (PNG/TIFF) greyscale: 65535 -> 255. Pillow's own convert("RGB") clips at 255 (all white).
            grey = np.asarray(image, dtype=np.float64)
            grey = np.clip(np.round(grey / 257.0), 0, 255).astype(np.uint8)
            return Image.fromarray(grey, mode="L").convert("RGB")
        if image.mode == "RGB":
            image.load()
            return image
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError) as err:  # truncated or corrupt data
        raise ImageDecodeError(name, f"decoding failed ({err})", "The file is probably truncated or corrupted") from err


def load_image(source: Any, timeout: float = DEFAULT_TIMEOUT, limits: Any = None):
    """Any accepted image (see the module docstring) -> an RGB `PIL.Image.Image`; numpy arrays and torch tensors
    are returned unchanged (the image processor reads them directly). Encoded images are checked against `limits`
    before decoding (see `open_image`)."""
    if isinstance(source, np.ndarray) or type(source).__module__.split(".")[0] == "torch":
        return source
    if isinstance(source, Image.Image):
        check_pixels(source.width, source.height, describe_media(source), MediaLimits.resolve(limits))
        return to_rgb(source, describe_media(source))
    name = describe_media(source)
    image = open_image(source, timeout, limits)
    with image:
        return to_rgb(image, name)


__all__ = [
    "ACCEPTED_IMAGES",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ImageDecodeError",
    "decode_data_url",
    "describe_media",
    "encoded_media_columns",
    "fetch_url",
    "is_dataset_cell",
    "load_image",
    "open_image",
    "to_rgb",
    "unwrap_media",
]
