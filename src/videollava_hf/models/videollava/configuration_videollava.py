"""Configuration of Video-LLaVA (LanguageBind image + video towers, shared MLP projector, causal LM).

The token-count helpers at the bottom are the single source of truth for how many placeholder tokens an
image or a video occupies: the processor expands placeholders with them and the model checks features
against them, so the two can never disagree.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import AutoConfig, CLIPVisionConfig, PretrainedConfig

# LanguageBind's towers are CLIP ViT-L/14 at 224 px; hidden_act "gelu": they come from OpenCLIP ViT-L/14, which
# uses exact GELU (Transformers' built-in config defaults to quick_gelu).
LANGUAGEBIND_VISION_DEFAULTS = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}
# Vicuna-7B v1.5 plus `<image>`, `<video>` and `<pad>` (32000 -> 32003 rows).
_DEFAULT_TEXT = {"model_type": "llama", "vocab_size": 32003, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}

_SELECT_STRATEGIES = ("default", "full")

# The `from_pretrained` keywords that say where and how to fetch files (passed on to every sub-loader).
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def hub_kwargs(kwargs: dict, pop: bool = False) -> dict:
    """The Hub keywords among `kwargs` (removed from it with `pop=True`)."""
    return {k: (kwargs.pop(k) if pop else kwargs[k]) for k in HUB_KWARGS if k in kwargs}


def read_config_dict(path, **hub) -> dict:
    """config.json of a local directory or Hub repo as a dict, with an actionable message when it cannot be read."""
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(path, **hub)
    except OSError as err:
        raise OSError(
            f"Could not read config.json of {path!r}: {err}. If this is a Hub id and this machine is offline, "
            f"download it where there is network (`hf download {path} --local-dir DIR`) and pass DIR instead."
        ) from err
    return config_dict


def _to_config(value: Any, default: dict[str, Any], default_type: str, name: str) -> PretrainedConfig:
    """Turn a dict (as stored in config.json) or a config object into a config object."""
    if value is None:
        value = dict(default)
    if isinstance(value, PretrainedConfig):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"`{name}` must be a dict or a PretrainedConfig, got {type(value).__name__}.")
    value = dict(value)
    model_type = value.pop("model_type", default_type)
    if model_type == "clip_vision_model":
        return CLIPVisionConfig(**value)
    return AutoConfig.for_model(model_type, **value)


class VideoLlavaConfig(PretrainedConfig):
    r"""Configuration for [`VideoLlavaForConditionalGeneration`].

    Args:
        vision_config (`dict` or `CLIPVisionConfig`): shape of both vision towers (ViT-L/14, 224 px by default).
            `hidden_act` is the towers' activation: LanguageBind uses `"gelu"`; Transformers' built-in config
            defaults to `"quick_gelu"`. The converter copies it from the source checkpoint.
        text_config (`dict` or any causal-LM config): the language model (Vicuna-7B v1.5 / Llama by default).
        image_token_index / video_token_index (`int`): ids of the `<image>` / `<video>` placeholder tokens.
        projector_hidden_act (`str`): activation between the projector's two linear layers (`"gelu"`).
        vision_feature_layer (`int` or `list[int]`): hidden state of the towers fed to the projector (-2: the
            penultimate layer). A list selects several hidden states and concatenates them along the feature axis
            (as Transformers' built-in does); the projector's input width is then `len(list) * vision hidden_size`.
        vision_feature_select_strategy (`"default"` | `"full"`): images drop the CLS token (`"default"`, 256
            tokens) or keep it (`"full"`, 257).
        video_feature_select_strategy (`"default"` | `"full"`): the same for every video frame. The released
            original code and Transformers keep CLS (`"full"`, 8 x 257 = 2056 tokens); the code that trained
            the released weights may have dropped it (`"default"`, 2048).
        num_frames (`int`): frames per video (8), also the length of the temporal embeddings.
        video_temporal_attention (`bool`): whether every video-tower layer has LanguageBind's temporal
            attention (temporal embedding + pre-LN self-attention across frames). `True` reproduces the original
            LanguageBind/Video-LLaVA-7B checkpoint; `False` matches Transformers' port
            (LanguageBind/Video-LLaVA-7B-hf), which runs the video tower as a plain CLIP.
        multimodal_projector_bias (`bool`): whether the projector's linear layers have biases.
        video_pooling (`None` | `"average"` | `"bilinear"`): per-frame spatial pooling of the projected video
            features (off by default: the original model's 257 tokens per frame). With pooling stride `p`, a frame's
            `s x s` patch grid becomes `ceil(s / p) x ceil(s / p)`; its CLS follows `video_feature_select_strategy`.
        video_pool_stride (`int`): the stride `p` (2: 16 x 16 -> 8 x 8 patches at 224 px).
        video_slowfast_every (`int` or `None`): SlowFast allocation: frames 0, s, 2s, ... ("slow") are pooled with
            `p`, the others ("fast") with `2p`, in temporal order. Needs `video_pooling` (defaults to average).
    """

    model_type = "videollava_hf"
    sub_configs = {"text_config": AutoConfig, "vision_config": AutoConfig}
    attribute_map = {"image_token_id": "image_token_index", "video_token_id": "video_token_index"}

    def __init__(
        self,
        vision_config: dict | PretrainedConfig | None = None,
        text_config: dict | PretrainedConfig | None = None,
        image_token_index: int = 32000,
        video_token_index: int = 32001,
        projector_hidden_act: str = "gelu",
        vision_feature_layer: int = -2,
        vision_feature_select_strategy: str = "default",
        video_feature_select_strategy: str = "full",
        num_frames: int = 8,
        video_temporal_attention: bool = True,
        multimodal_projector_bias: bool = True,
        tie_word_embeddings: bool = False,
        video_pooling: str | None = None,
        video_pool_stride: int = 2,
        video_slowfast_every: int | None = None,
        **kwargs,
    ):
        for name, value in (
            ("vision_feature_select_strategy", vision_feature_select_strategy),
            ("video_feature_select_strategy", video_feature_select_strategy),
        ):
            if value not in _SELECT_STRATEGIES:
                raise ValueError(f"`{name}` must be one of {_SELECT_STRATEGIES}, got {value!r}.")
        vision_feature_layer = check_feature_layer(vision_feature_layer)
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be >= 1, got {num_frames}.")
        self.vision_config = _to_config(vision_config, LANGUAGEBIND_VISION_DEFAULTS, "clip_vision_model", "vision_config")
        self.text_config = _to_config(text_config, _DEFAULT_TEXT, "llama", "text_config")
        self.image_token_index = image_token_index
        self.video_token_index = video_token_index
        self.projector_hidden_act = projector_hidden_act
        self.vision_feature_layer = vision_feature_layer
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.video_feature_select_strategy = video_feature_select_strategy
        self.num_frames = num_frames
        self.video_temporal_attention = video_temporal_attention
        self.multimodal_projector_bias = multimodal_projector_bias
        check_pooling(video_pooling, video_pool_stride, video_slowfast_every)
        self.video_pooling = video_pooling
        self.video_pool_stride = video_pool_stride
        self.video_slowfast_every = video_slowfast_every
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    @property
    def vision_feature_layers(self) -> list[int]:
        """`vision_feature_layer` as a list (one entry when it is an int)."""
        layer = self.vision_feature_layer
        return [layer] if isinstance(layer, int) else list(layer)

    # --- token counts (shared by the processor and the model) -------------------------------------------
    @property
    def num_patches(self) -> int:
        side = self.vision_config.image_size // self.vision_config.patch_size
        return side * side

    @property
    def image_seq_length(self) -> int:
        """Tokens one image occupies in the prompt (256 for ViT-L/14 at 224 px)."""
        return image_token_count(self.num_patches, self.vision_feature_select_strategy)

    @property
    def video_seq_length(self) -> int:
        """Tokens one `num_frames`-frame video occupies in the prompt (8 x 257 = 2056 by default)."""
        return video_token_count(
            self.num_patches, self.num_frames, self.video_feature_select_strategy, **self.video_pooling_options()
        )

    def video_pooling_options(self, **overrides) -> dict:
        """The config's video pooling settings, with per-call `overrides` (None values mean "use the config")."""
        return pooling_options(self, **overrides)


POOLING_MODES = ("average", "bilinear")


def check_feature_layer(value):
    """`vision_feature_layer`: an int, or a non-empty list of ints (a tuple is stored as a list, as JSON does)."""
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise TypeError(f"`vision_feature_layer` must be an int (e.g. -2) or a list of ints, got {value!r}.")
    if isinstance(value, int):
        return value
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"`vision_feature_layer` must be an int or a non-empty list of ints, got {value!r}.")
    return list(value)


def pooling_options(owner, **overrides) -> dict:
    """`owner`'s (a config's or a processor's) `video_pooling` / `video_pool_stride` / `video_slowfast_every` as
    `video_token_count` keywords, with per-call `overrides` (`pooling=`, `stride=`, `slowfast_every=`; None values
    keep the owner's), checked."""
    options = {"pooling": owner.video_pooling, "stride": owner.video_pool_stride,
               "slowfast_every": owner.video_slowfast_every}
    options.update({k: v for k, v in overrides.items() if v is not None})
    check_pooling(options["pooling"], options["stride"], options["slowfast_every"])
    return options


def check_pooling(pooling: str | None, stride: int, slowfast_every: int | None) -> None:
    if pooling is not None and pooling not in POOLING_MODES:
        raise ValueError(f"video_pooling must be None or one of {POOLING_MODES}, got {pooling!r}.")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"video_pool_stride must be an int >= 1, got {stride!r}.")
    if slowfast_every is not None and (not isinstance(slowfast_every, int) or slowfast_every < 1):
        raise ValueError(f"video_slowfast_every must be None or an int >= 1, got {slowfast_every!r}.")


def frame_pool_strides(num_frames: int, pooling: str | None = None, stride: int = 2,
                       slowfast_every: int | None = None) -> list[int]:
    """The pooling stride of each frame, in order: 1 (no pooling), `stride` everywhere, or SlowFast's
    `stride` on frames 0, s, 2s, ... and `2 * stride` on the others."""
    if slowfast_every is not None:
        return [stride if t % slowfast_every == 0 else 2 * stride for t in range(num_frames)]
    return [stride if pooling is not None else 1] * num_frames


def image_token_count(num_patches: int, select_strategy: str = "default") -> int:
    """Placeholder tokens of one image: its patches, plus CLS when the strategy keeps it (`"full"`)."""
    return num_patches + (1 if select_strategy == "full" else 0)


def frame_token_count(num_patches: int, pool_stride: int = 1, select_strategy: str = "full") -> int:
    """Tokens of one video frame: its (pooled) patch grid, ceil(side / stride) ** 2, plus CLS if kept."""
    side = math.isqrt(num_patches)
    pooled = math.ceil(side / pool_stride) ** 2 if pool_stride > 1 else num_patches
    return pooled + (1 if select_strategy == "full" else 0)


def video_token_count(num_patches: int, num_frames: int, select_strategy: str = "full", pooling: str | None = None,
                      stride: int = 2, slowfast_every: int | None = None) -> int:
    """Placeholder tokens of one video: the sum over its frames (in temporal order) of `frame_token_count`.

    Without pooling: num_frames x (num_patches + CLS), 8 x 257 = 2056 for Video-LLaVA-7B."""
    strides = frame_pool_strides(num_frames, pooling, stride, slowfast_every)
    return sum(frame_token_count(num_patches, s, select_strategy) for s in strides)


def max_frames_for_budget(token_budget: int, num_patches: int, select_strategy: str = "full",
                          pooling: str | None = None, stride: int = 2, slowfast_every: int | None = None,
                          limit: int = 1024) -> int:
    """The most frames whose video tokens fit in `token_budget` (0 when not even one frame fits)."""
    frames = 0
    while frames < limit and video_token_count(
        num_patches, frames + 1, select_strategy, pooling, stride, slowfast_every
    ) <= token_budget:
        frames += 1
    return frames


__all__ = [
    "HUB_KWARGS",
    "LANGUAGEBIND_VISION_DEFAULTS",
    "VideoLlavaConfig",
    "frame_pool_strides",
    "frame_token_count",
    "hub_kwargs",
    "image_token_count",
    "max_frames_for_budget",
    "pooling_options",
    "read_config_dict",
    "video_token_count",
]
