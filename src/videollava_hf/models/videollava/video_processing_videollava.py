"""Video preprocessing for Video-LLaVA: sample frames with the package's reader, then one batched torch pipeline.

`resample_mode="original"` (default) is LanguageBind's video transform: frames as float / 255, CLIP normalisation
*before* resizing, short side to 224 with bilinear interpolation (no antialias, pytorchvideo's size formula),
centre crop with a rounded offset. The original also flipped frames horizontally at random (p = 0.5) at inference;
that randomness is off here (`random_flip_p=0.0`) and can be turned on for training-time augmentation.
`resample_mode="transformers"` follows the built-in port (antialiased bicubic on uint8, floored crop offset).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.video_processing_utils import VideoProcessorMixin

from .image_processing_videollava import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    RESAMPLE_MODES,
    _as_int_size,
    center_crop,
    channel_values,
    not_rgb_error,
    rescale_and_normalize,
    resize_transformers_style,
    rgb_from,
    short_side_size,
    to_uint8_chw,
)
from .media_limits import DEFAULT_MAX_ASPECT_RATIO, crop_extreme_aspect

# Keyword arguments of the reader's frame policy that may be passed per call.
FRAME_POLICY_KEYS = ("num_frames", "fps", "max_frames", "indices", "clip_start", "clip_end")
# Keyword arguments of the reader that are not about which frames: network timeout, media limits.
READER_KEYS = ("timeout", "limits")


class VideoLlavaHfVideoProcessor(VideoProcessorMixin):
    r"""Turns videos into `pixel_values_videos` of shape `(num_videos, num_frames, 3, crop_size, crop_size)`.

    A video is a path, URL, bytes, file object, a (F, H, W, 3) uint8 array/tensor, or a list of PIL images / (H, W, 3)
    arrays (one video). `videos` is one video or a list of videos. Frames are sampled with
    `videollava_hf.models.videollava.video_io.load_video` (default: 8 frames at `np.linspace(0, n - 1, 8, dtype=int)`, the original
    policy); pass `num_frames`, `fps`, `max_frames`, `indices`, `clip_start`, `clip_end` to change it per call.

    Args:
        num_frames (`int`): frames sampled per video (8).
        do_sample_frames (`bool`): sample `num_frames` frames (True) or keep every frame of the video (False, as
            Transformers' video processors; then no frame-policy keyword may be given).
        size, crop_size (`int` or Transformers' size dicts): short side after resizing and side of the centre crop.
        resample_mode (`"original"` | `"transformers"`): see the module docstring.
        random_flip_p (`float`): probability of LanguageBind's random horizontal flip (0: off, deterministic).
        image_mean, image_std (one number or three): CLIP's normalisation constants.
        do_resize, do_center_crop, do_rescale (with `rescale_factor`, 1/255), do_normalize, do_convert_rgb: each
            step can be switched off, as in Transformers' video processors (all on by default), also per call.
            Decoded videos are always RGB; `do_convert_rgb` acts on frames given as grey or RGBA arrays.
        max_aspect_ratio (`float` or None): frames longer than this many times their short side have the long side
            centre-cropped to it before resizing (same output square; see `media_limits`; only when resizing and
            centre-cropping are on). None: off.
    """

    model_input_names = ["pixel_values_videos"]

    def __init__(
        self,
        num_frames: int = 8,
        size: int = 224,
        crop_size: int = 224,
        resample_mode: str = "original",
        random_flip_p: float = 0.0,
        image_mean: Sequence[float] | float = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] | float = OPENAI_CLIP_STD,
        do_sample_frames: bool = True,
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
        self.max_aspect_ratio = max_aspect_ratio
        if resample_mode not in RESAMPLE_MODES:
            raise ValueError(f"resample_mode must be one of {RESAMPLE_MODES}, got {resample_mode!r}.")
        self.num_frames = int(num_frames)
        self.size = _as_int_size(size, "size")
        self.crop_size = _as_int_size(crop_size, "crop_size")
        self.resample_mode = resample_mode
        self.random_flip_p = float(random_flip_p)
        self.image_mean = channel_values(image_mean, "image_mean")
        self.image_std = channel_values(image_std, "image_std")
        self.do_sample_frames = bool(do_sample_frames)
        self.do_resize = bool(do_resize)
        self.do_center_crop = bool(do_center_crop)
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.do_convert_rgb = bool(do_convert_rgb)

    def __call__(self, videos, **kwargs) -> BatchFeature:
        return self.preprocess(videos, **kwargs)

    def preprocess(self, videos, return_tensors: str | None = "pt", return_metadata: bool = False, **kwargs):
        policy = {k: kwargs.pop(k) for k in FRAME_POLICY_KEYS if k in kwargs}
        reader = {k: kwargs.pop(k) for k in READER_KEYS if k in kwargs}  # timeout, limits: not frame choice
        settings = {**self.to_dict(), **kwargs}
        if settings["do_sample_frames"]:
            policy.setdefault("num_frames", self.num_frames)
        elif policy:
            raise ValueError(
                f"do_sample_frames=False keeps every frame, but frame-policy keywords were given too: {sorted(policy)}. "
                "Drop them, or leave do_sample_frames=True."
            )
        else:
            policy = {"num_frames": None}  # the reader keeps every frame
        clips, metadata = [], []
        for i, video in enumerate(split_videos(videos)):
            video = rgb_video(video, settings["do_convert_rgb"], f"videos[{i}]")
            frames, meta = read_frames(video, {**policy, **reader}, f"videos[{i}]")
            clips.append(self.process_frames(frames, settings))
            metadata.append(meta)
        if len({tuple(c.shape) for c in clips}) > 1:
            shapes = [tuple(c.shape[:1]) for c in clips]
            raise ValueError(
                f"All videos in one call must have the same number of frames to be stacked, got {shapes}. "
                "Use the same frame policy (e.g. num_frames=8) for every video of a batch."
            )
        data = {"pixel_values_videos": torch.stack(clips) if len(clips) > 1 else clips[0].unsqueeze(0)}
        out = BatchFeature(data, tensor_type=return_tensors)
        if return_metadata:
            out["video_metadata"] = metadata
        return out

    def process_frames(self, frames: torch.Tensor, settings: dict | None = None) -> torch.Tensor:
        """(T, 3, H, W) uint8 -> (T, 3, crop, crop) float32, all frames in one batched call: resize, crop, rescale,
        normalise (each step switchable)."""
        s = {**self.to_dict(), **(settings or {})}
        size, crop = _as_int_size(s["size"], "size"), _as_int_size(s["crop_size"], "crop_size")
        resize, crop_it = s.get("do_resize", True), s.get("do_center_crop", True)
        if resize and crop_it:
            frames = crop_extreme_aspect(frames, s.get("max_aspect_ratio"))  # (T, 3, H, W), long <= ratio x short
        if s["resample_mode"] == "original":
            # LanguageBind normalises before resizing. Bilinear interpolation without antialias is a convex
            # combination of pixels, so it commutes with the per-channel affine normalisation: resizing first is
            # the same computation (up to float rounding, ~1e-6) on 5-20x fewer pixels.
            x = frames.float()
            if resize:
                out_hw = short_side_size(frames.shape[-2], frames.shape[-1], size, formula="pytorchvideo")
                x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
            if crop_it:
                x = center_crop(x, crop, rounded=True)
            x = rescale_and_normalize(x, s)
            if s["random_flip_p"] > 0 and torch.rand(()) < s["random_flip_p"]:
                x = x.flip(-1)  # one coin for the whole clip, like RandomHorizontalFlipVideo
            return x.contiguous()
        x = frames
        if resize:
            x = resize_transformers_style(x, short_side_size(frames.shape[-2], frames.shape[-1], size))
        if crop_it:
            x = center_crop(x, crop, rounded=False)
        return rescale_and_normalize(x, s)


def _is_frame(x) -> bool:
    return isinstance(x, Image.Image) or (isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 3)


def split_videos(videos) -> list:
    """One video or a list of videos -> list of videos (a list of frames is one video)."""
    if videos is None:
        return []
    if isinstance(videos, (list, tuple)):
        if len(videos) == 0:
            raise ValueError("`videos` is an empty list; pass at least one video.")
        if all(_is_frame(v) for v in videos):
            return [list(videos)]
        return list(videos)
    return [videos]


def rgb_video(video, convert_rgb: bool, name: str):
    """A video given as a (F, H, W, 1 | 4) array / tensor becomes RGB with `convert_rgb` (grey repeated, RGBA
    blended onto white, as Transformers), or is refused without it; every other source passes through (the reader
    decodes to RGB)."""
    if isinstance(video, (np.ndarray, torch.Tensor)) and video.ndim == 4 and video.shape[-1] in (1, 4):
        if not convert_rgb:
            raise not_rgb_error(name, f"a video of {video.shape[-1]}-channel frames")
        return rgb_from(torch.as_tensor(video)).contiguous()
    return video


def read_frames(video, policy: dict, name: str):
    """Sample frames with the package reader -> ((T, 3, H, W) uint8 tensor, metadata)."""
    from .video_io import load_video  # local import: PyAV is only needed when videos are used

    frames, meta = load_video(video, **policy)
    frames = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: the reader returned frames of shape {tuple(frames.shape)}, expected (T, H, W, 3).")
    return to_uint8_chw_frames(frames), meta


def to_uint8_chw_frames(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) uint8 *view* in channels-last memory: no copy, and torch's resize
    kernels are fastest on channels-last input."""
    if frames.dtype != torch.uint8:
        frames = torch.stack([to_uint8_chw(f) for f in frames]).permute(0, 2, 3, 1)
    return frames.permute(0, 3, 1, 2)


__all__ = ["VideoLlavaHfVideoProcessor", "FRAME_POLICY_KEYS", "READER_KEYS"]
