"""Limits on what one image or video may cost, checked before anything is decoded or allocated.

A small file can claim a huge picture: a 1.2 MB PNG of 20000 x 20000 pixels (a "decompression bomb"), a 125 KB GIF
whose logical screen says 16000 x 16000, a corrupted header announcing hours of video. Decoding those exhausts memory
or time before failing, often with a misleading message. Every loader checks the numbers the header gives against
these limits first and refuses with the value found, the limit, and how to raise it:

    max_pixels          pixels of one image or video frame (width x height)      8192 x 8192 = 67,108,864
    max_decoded_frames  frames one video read returns                            1024
    max_duration        seconds of one video                                     4 hours
    max_aspect_ratio    long side / short side; beyond it the processors centre-crop the long side first   20

Raise a limit per call with `limits={"max_pixels": ...}` (reader, processors, pipeline) or on the command line
(`--max-pixels`, `--max-duration`, `--max-decoded-frames`); `None` switches a limit off.

Extreme aspect ratios are *cropped*, not refused: the processors scale the short side to 224 and keep the central
224 x 224 square, so of a 1 x 20000 strip only the middle is ever used; cropping the long side to `max_aspect_ratio`
times the short side first gives the same square (to interpolation rounding) without scaling 20000 pixels up to
4.5 million. Padding to a square (`do_pad_to_square`) has no such shortcut, so there the ratio is a refusal.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

DEFAULT_MAX_PIXELS = 8192 * 8192  # 8K UHD video (7680 x 4320 = 33 MP) passes
DEFAULT_MAX_DECODED_FRAMES = 1024  # 1024 frames x 257 tokens already exceeds every Video-LLaVA context
DEFAULT_MAX_DURATION = 4 * 3600.0
DEFAULT_MAX_ASPECT_RATIO = 20.0

# How a user raises each limit: keyword for the library, flag for the CLI.
_HOW_TO_RAISE = {
    "max_pixels": "limits={'max_pixels': N} (CLI: --max-pixels N)",
    "max_decoded_frames": "limits={'max_decoded_frames': N} or fewer frames with max_frames= (CLI: --max-decoded-frames N)",
    "max_duration": "limits={'max_duration': SECONDS} (CLI: --max-duration SECONDS)",
    "max_aspect_ratio": "limits={'max_aspect_ratio': R}, or turn off do_pad_to_square",
}


@dataclass(frozen=True)
class MediaLimits:
    """The limits of one read; `None` switches a limit off. See the module docstring."""

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_decoded_frames: int | None = DEFAULT_MAX_DECODED_FRAMES
    max_duration: float | None = DEFAULT_MAX_DURATION
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO

    @classmethod
    def resolve(cls, limits: MediaLimits | Mapping[str, Any] | None) -> MediaLimits:
        """`None` -> the defaults; a dict -> the defaults with those entries replaced (unknown keys are an error)."""
        if limits is None:
            return cls()
        if isinstance(limits, MediaLimits):
            return limits
        if not isinstance(limits, Mapping):
            raise TypeError(f"`limits` must be a dict or a MediaLimits, got {type(limits).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(limits) - known)
        if unknown:
            raise ValueError(f"Unknown media limit(s) {unknown}; the limits are {sorted(known)}.")
        for name, value in limits.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"Media limit {name} must be a positive number or None, got {value!r}.")
        return replace(cls(), **dict(limits))


class MediaLimitError(ValueError):
    """A file exceeds a media limit. `what`, `found`, `limit` and `option` are kept for structured logs."""

    def __init__(self, source: str, problem: str, option: str) -> None:
        self.source, self.problem, self.option = source, problem, option
        super().__init__(f"Cannot read {source}: {problem}. {raise_hint(option)}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.source, self.problem, self.option))


def raise_hint(option: str) -> str:
    return f"If the file is genuine, raise the limit with {_HOW_TO_RAISE[option]}"


def pixels_problem(width: int, height: int, limit: int, what: str = "the image") -> str | None:
    """The sentence saying `width` x `height` is too many pixels, or None when it is within `limit`."""
    if limit is None or width * height <= limit:
        return None
    return f"{what} is {width}x{height} = {width * height:,} pixels, limit {int(limit):,} (max_pixels)"


def check_pixels(width: int, height: int, source: str, limits: MediaLimits, what: str = "the image") -> None:
    problem = pixels_problem(width, height, limits.max_pixels, what)
    if problem:
        raise MediaLimitError(source, problem, "max_pixels")


def open_within_limits(target: Any, source: str, limits: MediaLimits | Mapping[str, Any] | None = None) -> Any:
    """`PIL.Image.open(target)` (a path or binary file), with the size in the header checked against `max_pixels`
    before any pixel is decoded (Pillow reads only the header on open). Pillow's own decompression-bomb check
    (`DecompressionBombError`, and the `DecompressionBombWarning` it prints first) becomes a MediaLimitError naming
    the size and our limit. Returns the lazily opened image (media_io.open_image calls this; `to_rgb` decodes)."""
    from PIL import Image

    limits = MediaLimits.resolve(limits)
    try:
        with warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS; our own limit decides instead (checked right below).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(target)
    except Image.DecompressionBombError as err:
        # Pillow refuses above 2 x Image.MAX_IMAGE_PIXELS before we see the size; its message has the pixel count.
        count = re.search(r"\((\d+) pixels\)", str(err))
        found = f"{int(count.group(1)):,} pixels" if count else "larger than Pillow's limit"
        if limits.max_pixels is not None and limits.max_pixels < 2 * (Image.MAX_IMAGE_PIXELS or 0):
            problem = f"the image is {found}, limit {int(limits.max_pixels):,} (max_pixels; a decompression bomb?)"
        else:  # our limit was raised above Pillow's: Pillow's global is the one to raise
            problem = (f"the image is {found}, above Pillow's limit of 2 x PIL.Image.MAX_IMAGE_PIXELS = "
                       f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}; raise PIL.Image.MAX_IMAGE_PIXELS too")
        raise MediaLimitError(source, problem, "max_pixels") from err
    try:
        check_pixels(opened.width, opened.height, source, limits)
    except MediaLimitError:
        opened.close()
        raise
    return opened


def aspect_ratio(height: int, width: int) -> float:
    return max(height, width) / max(min(height, width), 1)


def crop_extreme_aspect(pixels, max_ratio: float | None):
    """Centre-crop the long side of `pixels` (..., H, W) to at most `max_ratio` x the short side (a view, no copy).

    Used before "short side to 224, centre crop 224": that recipe keeps only the central square, and the crop keeps
    that square plus a wide margin, so the result is the same (to interpolation rounding) at a fraction of the
    memory: a 1 x 20000 strip would otherwise be scaled to 224 x 4,480,000 (12 GB in float32)."""
    if max_ratio is None:
        return pixels
    height, width = pixels.shape[-2:]
    short = max(min(height, width), 1)
    keep = max(int(-(-short * max_ratio // 1)), short)  # ceil(short * ratio)
    if height > keep:
        top = (height - keep) // 2
        return pixels[..., top : top + keep, :]
    if width > keep:
        left = (width - keep) // 2
        return pixels[..., :, left : left + keep]
    return pixels


def check_aspect_for_padding(height: int, width: int, max_ratio: float | None, source: str) -> None:
    """Padding to a square allocates long x long pixels: refuse extreme strips instead of padding them."""
    if max_ratio is not None and aspect_ratio(height, width) > max_ratio:
        raise MediaLimitError(
            source,
            f"padding a {width}x{height} image to a square (do_pad_to_square) means an aspect ratio of "
            f"{aspect_ratio(height, width):.0f}:1, limit {max_ratio:g}:1 (max_aspect_ratio)",
            "max_aspect_ratio",
        )


__all__ = [
    "DEFAULT_MAX_ASPECT_RATIO",
    "DEFAULT_MAX_DECODED_FRAMES",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_PIXELS",
    "MediaLimitError",
    "MediaLimits",
    "aspect_ratio",
    "check_aspect_for_padding",
    "check_pixels",
    "crop_extreme_aspect",
    "open_within_limits",
    "pixels_problem",
    "raise_hint",
]
