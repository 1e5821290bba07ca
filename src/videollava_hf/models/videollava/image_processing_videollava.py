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

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESAMPLE_MODES = ("original", "transformers")


def to_uint8_chw(image, name: str = "image") -> torch.Tensor:
    """PIL image / (H, W, 3) or (3, H, W) array or tensor -> (3, H, W) uint8 tensor (RGB)."""
    if isinstance(image, Image.Image):
        image = np.array(image.convert("RGB"))  # a writable copy: torch warns on read-only arrays
    if isinstance(image, np.ndarray):
        image = np.ascontiguousarray(image)
        image = torch.from_numpy(image if image.flags.writeable else image.copy())  # torch warns on read-only arrays
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"{name} must be a PIL image, a numpy array or a torch tensor (H, W, 3) uint8, got {type(image).__name__}."
        )
    if image.ndim == 2:  # greyscale
        image = image.unsqueeze(-1).expand(*image.shape, 3)
    if image.ndim != 3 or 3 not in (image.shape[0], image.shape[-1]):
        raise ValueError(f"{name} must have shape (H, W, 3) or (3, H, W), got {tuple(image.shape)}.")
    if image.shape[-1] == 3 and image.shape[0] != 3:
        image = image.permute(2, 0, 1)
    if image.dtype != torch.uint8:
        if image.is_floating_point() and float(image.max()) <= 1.0:
            image = (image * 255).round()
        image = image.clamp(0, 255).to(torch.uint8)
    return image.contiguous()


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
        size (`int`): the short side after resizing (224).
        crop_size (`int`): side of the centre crop (224).
        resample_mode (`"original"` | `"transformers"`): see the module docstring.
        do_pad_to_square (`bool`): pad to a square with the mean colour before resizing (LLaVA's "pad").
        image_mean, image_std: CLIP's normalisation constants.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = 224,
        crop_size: int = 224,
        resample_mode: str = "original",
        do_pad_to_square: bool = False,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if resample_mode not in RESAMPLE_MODES:
            raise ValueError(f"resample_mode must be one of {RESAMPLE_MODES}, got {resample_mode!r}.")
        self.size = _as_int_size(size, "size")
        self.crop_size = _as_int_size(crop_size, "crop_size")
        self.resample_mode = resample_mode
        self.do_pad_to_square = do_pad_to_square
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def preprocess(self, images, return_tensors: str | None = "pt", timeout: float | None = None,
                   **kwargs) -> BatchFeature:
        """`images`: one image or a (nested) list of images, in prompt order. An image is anything
        `media_io.load_image` reads: path, file:// / http(s):// / data: URL, bytes, file object, `datasets` cell,
        PIL image, (H, W, 3) / (3, H, W) array or tensor. `timeout`: seconds for http(s) downloads."""
        flat = _flatten_images(images)
        if not flat:
            raise ValueError("No images were given; pass at least one image (path, URL, bytes, PIL image, array).")
        settings = {**self.to_dict(), **kwargs}
        load = {} if timeout is None else {"timeout": timeout}
        pixel_values = torch.stack(
            [self.process_one(to_uint8_chw(load_image(img, **load), f"images[{i}]"), settings)
             for i, img in enumerate(flat)]
        )
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    def process_one(self, image: torch.Tensor, settings: dict | None = None) -> torch.Tensor:
        """(3, H, W) uint8 -> (3, crop, crop) float32 normalised."""
        s = {**self.to_dict(), **(settings or {})}
        size, crop = _as_int_size(s["size"], "size"), _as_int_size(s["crop_size"], "crop_size")
        if s.get("do_pad_to_square"):
            image = pad_to_square(image, s["image_mean"])
        out_hw = short_side_size(image.shape[-2], image.shape[-1], size)
        if s["resample_mode"] == "original":
            x = image.float().div_(255.0).unsqueeze(0)  # (1, 3, H, W) in [0, 1]
            x = F.interpolate(x, size=out_hw, mode="bicubic", align_corners=False, antialias=False)
            x = center_crop(x, crop, rounded=True)
            return normalize(x[0], s["image_mean"], s["image_std"])
        x = center_crop(resize_transformers_style(image.unsqueeze(0), out_hw), crop, rounded=False)
        return normalize(x[0], s["image_mean"], s["image_std"], scale=255.0)


def _as_int_size(value, name: str) -> int:
    """Accept 224 or Transformers-style dicts ({"shortest_edge": 224} / {"height": 224, "width": 224})."""
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if value.get("height") == value.get("width") and "height" in value:
            return int(value["height"])
        raise ValueError(f"`{name}` must be an int or a square size dict, got {value}.")
    return int(value)


def _flatten_images(images) -> list:
    if isinstance(images, (list, tuple)):
        return [img for item in images for img in _flatten_images(item)]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    return [images] if images is not None else []


__all__ = ["VideoLlavaHfImageProcessor", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD"]
