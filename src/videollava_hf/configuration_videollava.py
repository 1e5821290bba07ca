"""Configuration of Video-LLaVA (LanguageBind image + video towers, shared MLP projector, causal LM).

The token-count helpers at the bottom are the single source of truth for how many placeholder tokens an
image or a video occupies: the processor expands placeholders with them and the model checks features
against them, so the two can never disagree.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, CLIPVisionConfig, PretrainedConfig

# LanguageBind's towers are CLIP ViT-L/14 at 224 px.
_DEFAULT_VISION = {
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
        vision_feature_layer (`int`): hidden state of the towers fed to the projector (-2: the penultimate layer).
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
        **kwargs,
    ):
        for name, value in (
            ("vision_feature_select_strategy", vision_feature_select_strategy),
            ("video_feature_select_strategy", video_feature_select_strategy),
        ):
            if value not in _SELECT_STRATEGIES:
                raise ValueError(f"`{name}` must be one of {_SELECT_STRATEGIES}, got {value!r}.")
        if not isinstance(vision_feature_layer, int):
            raise TypeError(
                f"`vision_feature_layer` must be one int (a hidden-state index such as -2), got {vision_feature_layer!r}."
            )
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be >= 1, got {num_frames}.")
        self.vision_config = _to_config(vision_config, _DEFAULT_VISION, "clip_vision_model", "vision_config")
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
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

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
        return video_token_count(self.num_patches, self.num_frames, self.video_feature_select_strategy)


def image_token_count(num_patches: int, select_strategy: str = "default") -> int:
    """Placeholder tokens of one image: its patches, plus CLS when the strategy keeps it (`"full"`)."""
    return num_patches + (1 if select_strategy == "full" else 0)


def video_token_count(num_patches: int, num_frames: int, select_strategy: str = "full") -> int:
    """Placeholder tokens of one video: frames in temporal order, each with its patches (+ CLS if kept)."""
    return num_frames * image_token_count(num_patches, select_strategy)


__all__ = ["VideoLlavaConfig", "image_token_count", "video_token_count"]
