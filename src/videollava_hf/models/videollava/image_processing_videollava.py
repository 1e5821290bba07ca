"""Image preprocessing for Video-LLaVA, batched in torch.

Two documented resampling modes (`resample_mode`):

- `"original"` (default): LanguageBind's image transform as Video-LLaVA ran it: pixels to float in [0, 1], bicubic
  resize of the short side to 224 *without* antialias (torchvision's tensor resize of that time), centre crop with a
  rounded offset, CLIP normalisation. Optional `do_pad_to_square` pads to a square with the CLIP mean colour first,
  as Video-LLaVA's training and evaluation loaders did (`image_aspect_ratio="pad"`).
- `"transformers"`: the built-in port's recipe: bicubic resize *with* antialias on uint8 pixels (results rounded to
  uint8 like PIL), centre crop with a floored offset, rescale by 1/255, normalise. Matches Transformers'
  `VideoLlavaHfImageProcessor` to within a uint8 rounding step, an order of magnitude faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .media_io import load_image
from .media_limits import DEFAULT_MAX_ASPECT_RATIO, check_aspect_for_padding, crop_extreme_aspect

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESAMPLE_MODES = ("original", "transformers")
# Settings both processors take per call (Transformers' names); the multimodal processor routes them to both.
STEP_KEYS = ("do_resize", "do_center_crop", "do_rescale", "rescale_factor", "do_normalize", "do_convert_rgb", "size",
             "crop_size", "image_mean", "image_std", "resample_mode")


def to_uint8_chw(image, name: str = "image", convert_rgb: bool = True) -> torch.Tensor:
    """PIL image / (H, W, C) or (C, H, W) array or tensor -> (3, H, W) uint8 tensor (RGB).

    With `convert_rgb` (Transformers' `do_convert_rgb`), other PIL modes are converted, grey arrays (C = 1 or no
    channel axis) are repeated to 3 channels and RGBA arrays are blended onto white, as Transformers does; without
    it, anything that is not already 3-channel is refused."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB" and not convert_rgb:
            raise not_rgb_error(name, f"a PIL image in mode {image.mode!r}")
        image = np.array(image.convert("RGB"))  # a writable copy: torch warns on read-only arrays
    if isinstance(image, np.ndarray):
        image = np.ascontiguousarray(image)
        image = torch.from_numpy(image if image.flags.writeable else image.copy())  # torch warns on read-only arrays
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"{name} must be a PIL image, a numpy array or a torch tensor (H, W, 3) uint8, got {type(image).__name__}."
        )
    if image.ndim == 2:  # greyscale without a channel axis
        image = image.unsqueeze(-1)
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
        image = image.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name} must have shape (H, W, 3) or (3, H, W), got {tuple(image.shape)}.")
    if image.shape[-1] != 3:
        if not convert_rgb:
            raise not_rgb_error(name, f"{image.shape[-1]}-channel pixels")
        image = rgb_from(image)
    image = image.permute(2, 0, 1)  # (3, H, W)
    if image.dtype != torch.uint8:
        if image.is_floating_point() and float(image.max()) <= 1.0:
            image = (image * 255).round()
        image = image.clamp(0, 255).to(torch.uint8)
    return image.contiguous()


def not_rgb_error(name: str, what: str) -> ValueError:
    """Paths and URLs are always decoded to RGB; images given as PIL images or arrays keep their channels with
    do_convert_rgb=False, and anything but RGB is then refused."""
    return ValueError(f"{name} is {what} and do_convert_rgb=False; pass RGB images or leave do_convert_rgb=True.")


def rgb_from(image: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 1 | 4) -> (..., H, W, 3): grey repeated; RGBA blended onto white (alpha in 0..255, or 0..1 for
    float images), as Transformers' `convert_to_rgb`."""
    if image.shape[-1] == 1:
        return image.expand(*image.shape[:-1], 3)
    rgb, alpha = image[..., :3].double(), image[..., 3:].double()
    full = 255.0 if image.dtype == torch.uint8 or float(alpha.max()) > 1.0 else 1.0
    blended = rgb * (alpha / full) + full * (1 - alpha / full)
    return blended.round().to(image.dtype) if image.dtype == torch.uint8 else blended.to(image.dtype)


def channel_values(value, name: str) -> list[float]:
    """Per-channel normalisation constants: one number (all channels) or three."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)] * 3
    values = [float(v) for v in value]
    if len(values) == 1:
        return values * 3
    if len(values) != 3:
        raise ValueError(f"`{name}` must be one number or three (one per RGB channel), got {value!r}.")
    return values


def rescale_and_normalize(x: torch.Tensor, s: dict) -> torch.Tensor:
    """Transformers' last two steps on a fresh contiguous float32 tensor: x * rescale_factor (`do_rescale`), then
    (x - mean) / std (`do_normalize`), fused into one multiply-add when both run."""
    factor = float(s.get("rescale_factor", 1 / 255)) if s.get("do_rescale", True) else 1.0
    if s.get("do_normalize", True):
        mean, std = channel_values(s["image_mean"], "image_mean"), channel_values(s["image_std"], "image_std")
        return normalize(x, mean, std, scale=1.0 / factor)
    out = x.to(torch.float32, memory_format=torch.contiguous_format)
    return out.mul_(factor) if factor != 1.0 else (out.clone() if out is x else out)


def short_side_size(height: int, width: int, size: int, formula: str = "torchvision") -> tuple[int, int]:
    """Output (h, w) when the short side becomes `size`.

    `"torchvision"` (and Transformers): long = int(size * long / short).
    `"pytorchvideo"` (LanguageBind's ShortSideScale for video): long = floor(long / short * size)."""
    short, long = min(height, width), max(height, width)
    if formula == "pytorchvideo":
        new_long = int(math.floor((float(long) / short) * size))
    else:
        new_long = int(size * long / short)
    return (size, new_long) if height <= width else (new_long, size)


def center_crop(x: torch.Tensor, size: int, rounded: bool) -> torch.Tensor:
    """Crop the last two dims to `size` x `size`; offsets rounded (torchvision) or floored (Transformers)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"Cannot centre-crop {size}x{size} from a {h}x{w} image; resize first.")
    top = int(round((h - size) / 2.0)) if rounded else (h - size) // 2
    left = int(round((w - size) / 2.0)) if rounded else (w - size) // 2
    return x[..., top : top + size, left : left + size]


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], scale: float = 1.0) -> torch.Tensor:
    """(x / scale - mean) / std as one fused multiply-add on a fresh contiguous float32 tensor. x: (..., 3, H, W)."""
    mean_t = torch.tensor(mean, dtype=torch.float64).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float64).view(3, 1, 1)
    # (x / scale - mean) / std == x * a + b, with a = 1 / (scale * std) and b = -mean / std
    a = (1.0 / (scale * std_t)).to(torch.float32)
    b = (-mean_t / std_t).to(torch.float32)
    out = x.to(torch.float32, memory_format=torch.contiguous_format)
    return out.mul_(a).add_(b)


def pad_to_square(image: torch.Tensor, mean: Sequence[float]) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, S, S) with the image centred on the mean colour (LLaVA's `expand2square`)."""
    _, h, w = image.shape
    if h == w:
        return image
    side = max(h, w)
    fill = torch.tensor([int(m * 255) for m in mean], dtype=torch.uint8).view(3, 1, 1)
    out = fill.expand(3, side, side).clone()
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top : top + h, left : left + w] = image
    return out


def resize_transformers_style(x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 3, h, w) uint8: antialiased bicubic, like PIL's resize of the built-in port.

    torch's uint8 antialiased kernels follow Pillow's (rounded, clamped results) and are several times faster
    than resizing in float."""
    return F.interpolate(x, size=out_hw, mode="bicubic", align_corners=False, antialias=True)


class VideoLlavaHfImageProcessor(BaseImageProcessor):
    r"""Turns images into `pixel_values` of shape `(num_images, 3, crop_size, crop_size)`.

    Args:
        size (`int` or `{"shortest_edge": int}`): the short side after resizing (224).
        crop_size (`int` or `{"height": int, "width": int}`, square): side of the centre crop (224).
        resample_mode (`"original"` | `"transformers"`): see the module docstring.
        do_pad_to_square (`bool`): pad to a square with the mean colour before resizing (LLaVA's "pad").
        image_mean, image_std (one number or three): CLIP's normalisation constants.
        do_resize, do_center_crop, do_rescale (with `rescale_factor`, 1/255), do_normalize, do_convert_rgb: each
            step can be switched off, as in Transformers' image processors (all on by default); each can also be
            passed per call.
        max_aspect_ratio (`float` or None): images longer than this many times their short side have the long side
            centre-cropped to it before resizing (the output square is the same; see `media_limits`; only when
            resizing and centre-cropping are on), and are refused with `do_pad_to_square`. None: off.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = 224,
        crop_size: int = 224,
        resample_mode: str = "original",
        do_pad_to_square: bool = False,
        image_mean: Sequence[float] | float = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] | float = OPENAI_CLIP_STD,
        do_resize: bool = True,
        do_center_crop: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        do_convert_rgb: bool = True,
        max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if resample_mode not in RESAMPLE_MODES:
            raise ValueError(f"resample_mode must be one of {RESAMPLE_MODES}, got {resample_mode!r}.")
        self.size = _as_int_size(size, "size")
        self.crop_size = _as_int_size(crop_size, "crop_size")
        self.resample_mode = resample_mode
        self.do_pad_to_square = do_pad_to_square
        self.image_mean = channel_values(image_mean, "image_mean")
        self.image_std = channel_values(image_std, "image_std")
        self.do_resize = bool(do_resize)
        self.do_center_crop = bool(do_center_crop)
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.do_convert_rgb = bool(do_convert_rgb)
        self.max_aspect_ratio = max_aspect_ratio

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def preprocess(self, images, return_tensors: str | None = "pt", timeout: float | None = None,
                   limits=None, **kwargs) -> BatchFeature:
        """`images`: one image or a (nested) list of images, in prompt order. An image is anything
        `media_io.load_image` reads: path, file:// / http(s):// / data: URL, bytes, file object, `datasets` cell,
        PIL image, (H, W, 3) / (3, H, W) array or tensor. `timeout`: seconds for http(s) downloads; `limits`: media
        limits checked before decoding (see `media_limits`)."""
        flat = _flatten_images(images)
        if not flat:
            raise ValueError("No images were given; pass at least one image (path, URL, bytes, PIL image, array).")
        settings = {**self.to_dict(), **kwargs}
        convert = settings.get("do_convert_rgb", True)
        load = {} if timeout is None else {"timeout": timeout}
        if limits is not None:
            load["limits"] = limits
        processed = []
        for i, img in enumerate(flat):
            if not convert and isinstance(img, Image.Image) and img.mode != "RGB":
                raise not_rgb_error(f"images[{i}]", f"a PIL image in mode {img.mode!r}")  # before the loader converts
            processed.append(self.process_one(to_uint8_chw(load_image(img, **load), f"images[{i}]", convert), settings))
        if len({tuple(p.shape) for p in processed}) > 1:
            raise ValueError(
                f"Images of different sizes cannot be stacked: got {sorted({tuple(p.shape) for p in processed})} with "
                "do_resize / do_center_crop off. Keep do_center_crop=True, or pass images of one size."
            )
        return BatchFeature({"pixel_values": torch.stack(processed)}, tensor_type=return_tensors)

    def process_one(self, image: torch.Tensor, settings: dict | None = None) -> torch.Tensor:
        """(3, H, W) uint8 -> (3, crop, crop) float32: resize, crop, rescale, normalise (each step switchable)."""
        s = {**self.to_dict(), **(settings or {})}
        size, crop = _as_int_size(s["size"], "size"), _as_int_size(s["crop_size"], "crop_size")
        max_ratio = s.get("max_aspect_ratio")
        if s.get("do_pad_to_square"):
            check_aspect_for_padding(image.shape[-2], image.shape[-1], max_ratio, "the image")
            image = pad_to_square(image, channel_values(s["image_mean"], "image_mean"))
        elif s.get("do_resize", True) and s.get("do_center_crop", True):
            # (3, H, W) with H / W or W / H <= max_ratio: bounds the resized size at 224 x 224 * max_ratio
            image = crop_extreme_aspect(image, max_ratio)
        out_hw = short_side_size(image.shape[-2], image.shape[-1], size)
        resize, crop_it = s.get("do_resize", True), s.get("do_center_crop", True)
        if s["resample_mode"] == "original":
            # LanguageBind rescales to [0, 1] first and resizes floats (bicubic without antialias).
            rescale = s.get("do_rescale", True)
            x = image.float().unsqueeze(0)  # (1, 3, H, W)
            if rescale:
                x = x.mul_(float(s.get("rescale_factor", 1 / 255)))
            if resize:
                x = F.interpolate(x, size=out_hw, mode="bicubic", align_corners=False, antialias=False)
            if crop_it:
                x = center_crop(x, crop, rounded=True)
            return rescale_and_normalize(x[0], {**s, "do_rescale": False})  # already rescaled
        x = image.unsqueeze(0)
        if resize:
            x = resize_transformers_style(x, out_hw)
        if crop_it:
            x = center_crop(x, crop, rounded=False)
        return rescale_and_normalize(x[0], s)


def _as_int_size(value, name: str) -> int:
    """Accept 224 or Transformers-style dicts ({"shortest_edge": 224} / {"height": 224, "width": 224})."""
    if isinstance(value, dict):
        if "shortest_edge" in value and value["shortest_edge"] is not None:
            return int(value["shortest_edge"])
        if value.get("height") == value.get("width") and value.get("height") is not None:
            return int(value["height"])
        raise ValueError(
            f"`{name}` must be an int, {{'shortest_edge': N}} or a square {{'height': N, 'width': N}}, got {value}."
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be an int or a size dict such as {{'shortest_edge': 224}}, got {value!r}.")
    return int(value)


def _flatten_images(images) -> list:
    if isinstance(images, (list, tuple)):
        return [img for item in images for img in _flatten_images(item)]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    return [images] if images is not None else []


__all__ = ["VideoLlavaHfImageProcessor", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "STEP_KEYS", "rescale_and_normalize"]
