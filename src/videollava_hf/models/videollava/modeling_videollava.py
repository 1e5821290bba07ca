"""Video-LLaVA: LanguageBind image and video towers -> one shared MLP projector -> a causal language model.

Read top to bottom:

    pixel_values        (I, 3, 224, 224) --image tower-->  (I, 257, 1024) --drop CLS--> (I, 256, 1024) ----+
    pixel_values_videos (V, T, 3, 224, 224) --video tower (spatial + temporal attention per layer)-->      |
                                            (V, T, 257, 1024) --keep CLS--> (V, T*257, 1024) -------------+
                                                                                                           |
    shared projector: Linear(1024 -> 4096) - GELU - Linear(4096 -> 4096)  <-------------------------------+
    -> scattered, in order, into the `<image>` / `<video>` placeholder positions of the prompt embeddings
    -> language model (Vicuna / Llama, built from `text_config` with AutoModel) -> lm_head.

Both towers stop at `vision_feature_layer` (-2; or the deepest of a list of layers, whose hidden states are
concatenated): the last encoder layer and the post-LayerNorm never influence the features, so they are not run
(their weights are kept so checkpoints load without drops).

Contracts Transformers' tools rely on: `return_dict=False` gives `to_tuple()` of the dict output;
`get_image_features` / `get_video_features` return a `BaseModelOutputWithPooling` whose `pooler_output` holds the
projected features; a media keyword the model does not take raises instead of being dropped; the towers dispatch on
`attn_implementation` like Transformers' CLIP; the forward compiles with `fullgraph=True` (a static cache decode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, BaseModelOutputWithPooling, CausalLMOutputWithPast

from ._compat import CACHE_NAME, activation_checkpointing, attention_function, forget_load_renaming, resolve_cache
from .export import auto_classes

from .configuration_videollava import (
    VideoLlavaConfig,
    frame_pool_strides,
    hub_kwargs,
    read_config_dict,
    video_token_count,
)
from .builtin_port import TRANSFORMERS_KEY_RULES, config_from_transformers, is_transformers_config

@dataclass
class VideoLlavaModelOutputWithPast(BaseModelOutputWithPast):
    """Output of [`VideoLlavaModel`]: Transformers' own fields (their names follow the installed release), plus

    image_hidden_states: projected image features, `(num_images, image_seq_length, text_hidden)`.
    video_hidden_states: projected video features, `(num_videos, num_frames * tokens_per_frame, text_hidden)`.
    """

    image_hidden_states: torch.FloatTensor | None = None
    video_hidden_states: torch.FloatTensor | None = None


@dataclass
class VideoLlavaCausalLMOutputWithPast(CausalLMOutputWithPast):
    """Output of [`VideoLlavaForConditionalGeneration`]: `loss` (when `labels` are given), `logits`
    `(batch, seq, vocab)`, the cache, and the projected image / video features."""

    image_hidden_states: torch.FloatTensor | None = None
    video_hidden_states: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------
# Vision towers: CLIP ViT (LanguageBind), with optional temporal attention for the video tower.
# Parameter names follow CLIP's (`embeddings.*`, `pre_layrnorm`, `encoder.layers.N.*`, `post_layernorm`) plus
# LanguageBind's temporal ones (`temporal_embedding`, `temporal_attn.*`, `temporal_layer_norm1.*`).
# ----------------------------------------------------------------------------------------------------------


class VideoLlavaVisionEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.image_size = config.image_size
        self.patch_size = config.patch_size
        self.class_embedding = nn.Parameter(torch.empty(config.hidden_size))
        self.patch_embedding = nn.Conv2d(
            3, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size, bias=False
        )
        num_positions = (config.image_size // config.patch_size) ** 2 + 1
        self.position_embedding = nn.Embedding(num_positions, config.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"The vision towers take {self.image_size}x{self.image_size} pixels, got "
                f"{tuple(pixel_values.shape[-2:])}. Preprocess images and frames with VideoLlavaHfProcessor."
            )
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # (B, D, h, w)
        patches = patches.flatten(2).transpose(1, 2)  # (B, h*w, D)
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)  # (B, 1, D)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight.to(patches.dtype)  # (B, N, D)


def eager_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """softmax(q k^T * scaling) v with the softmax in float32 (CLIP's eager path). q, k, v: (B, H, L, Dh) ->
    ((B, L, H, Dh), weights (B, H, L, L)), the layout every kernel of Transformers' attention registry returns."""
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, L, L)
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class VideoLlavaVisionAttention(nn.Module):
    """Multi-head self-attention over the second axis of a (B, L, D) tensor (patches, or frames).

    The kernel follows the tower config's `_attn_implementation` (set by `attn_implementation=` at load time):
    "eager" runs `eager_attention`, anything else ("sdpa", "flash_attention_2", "flex_attention", ...) is looked up
    in Transformers' attention registry, as Transformers' CLIP does."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.is_causal = False  # read by the sdpa / flash kernels
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, H, L, Dh)
            return t.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        attend = attention_function(self.config, eager_attention)
        out, _ = attend(self, q, k, v, None, scaling=self.scale, dropout=self.dropout if self.training else 0.0)
        return self.out_proj(out.reshape(b, length, d))  # out: (B, L, H, Dh)


class VideoLlavaVisionMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VideoLlavaVisionEncoderLayer(GradientCheckpointingLayer):
    """A CLIP pre-LN block; with `temporal=True`, LanguageBind's temporal block runs first:

        x: (B*T, N, D) -> (B*N, T, D); x += temporal_embedding[:, :T]   (skipped when T == 1, as in LanguageBind)
        x = x + temporal_attn(temporal_layer_norm1(x))                    (attention across the T frames)
        -> (B*T, N, D); then x = x + self_attn(layer_norm1(x)); x = x + mlp(layer_norm2(x))
    """

    def __init__(self, config, temporal: bool = False, num_frames: int = 8):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = VideoLlavaVisionAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VideoLlavaVisionMLP(config)
        self.temporal = temporal
        if temporal:
            self.temporal_embedding = nn.Parameter(torch.empty(1, num_frames, config.hidden_size))
            self.temporal_layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.temporal_attn = VideoLlavaVisionAttention(config)

    def temporal_block(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bt, n, d = x.shape
        b = bt // num_frames
        x = x.view(b, num_frames, n, d).transpose(1, 2).reshape(b * n, num_frames, d)  # (B*N, T, D)
        if num_frames != 1:
            x = x + self.temporal_embedding[:, :num_frames].to(x.dtype)
        x = x + self.temporal_attn(self.temporal_layer_norm1(x))
        return x.view(b, n, num_frames, d).transpose(1, 2).reshape(bt, n, d)  # (B*T, N, D)

    def forward(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        if self.temporal and num_frames is not None:
            x = self.temporal_block(x, num_frames)
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VideoLlavaVisionEncoder(nn.Module):
    def __init__(self, config, temporal: bool = False, num_frames: int = 8):
        super().__init__()
        self.layers = nn.ModuleList(
            [VideoLlavaVisionEncoderLayer(config, temporal, num_frames) for _ in range(config.num_hidden_layers)]
        )


class VideoLlavaVisionTower(nn.Module):
    """A LanguageBind tower. `forward` returns its hidden states in CLIP's numbering (0 = embeddings after pre-LN,
    k = after layer k, -1 = last layer) up to the deepest of `feature_layers`, running only the layers it needs."""

    def __init__(self, config, temporal: bool = False, num_frames: int = 8):
        super().__init__()
        self.config = config
        self.num_frames = num_frames
        self.embeddings = VideoLlavaVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = VideoLlavaVisionEncoder(config, temporal, num_frames)
        # Unused by Video-LLaVA (features come from an inner layer) but part of the checkpoints.
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def layer_index(self, feature_layer: int) -> int:
        """Position of hidden state `feature_layer` (negative counts from the end) in `forward`'s list."""
        total = len(self.encoder.layers)
        index = feature_layer if feature_layer >= 0 else total + 1 + feature_layer
        if not 0 <= index <= total:
            raise ValueError(f"vision_feature_layer={feature_layer} is out of range for a {total}-layer tower.")
        return index

    def forward(self, pixel_values: torch.Tensor, feature_layers=(-2,), num_frames: int | None = None):
        """pixel_values: (B*T, 3, H, W), frames of one video contiguous when `num_frames` is given.
        -> [hidden state 0, 1, ..., deepest requested], each (B*T, N, D)."""
        depth = max(self.layer_index(layer) for layer in feature_layers)
        x = self.pre_layrnorm(self.embeddings(pixel_values))  # (B*T, N, D)
        states = [x]
        for layer in self.encoder.layers[:depth]:
            x = layer(x, num_frames)
            states.append(x)
        return states


# ----------------------------------------------------------------------------------------------------------
# Projector and the multimodal model
# ----------------------------------------------------------------------------------------------------------


def pool_frame(tokens: torch.Tensor, stride: int, mode: str, has_cls: bool) -> torch.Tensor:
    """Spatially pool one frame's projected tokens (V, [CLS +] s*s, D) -> (V, [CLS +] ceil(s/stride)**2, D)."""
    cls, patches = (tokens[:, :1], tokens[:, 1:]) if has_cls else (None, tokens)
    v, n, d = patches.shape
    side = math.isqrt(n)
    grid = patches.transpose(1, 2).reshape(v, d, side, side)  # (V, D, s, s)
    out_side = math.ceil(side / stride)
    if mode == "average":
        grid = F.avg_pool2d(grid, kernel_size=stride, stride=stride, ceil_mode=True)
    else:
        grid = F.interpolate(grid, size=(out_side, out_side), mode="bilinear", align_corners=False)
    pooled = grid.flatten(2).transpose(1, 2)  # (V, out_side ** 2, D)
    return pooled if cls is None else torch.cat([cls, pooled], dim=1)


class VideoLlavaMultiModalProjector(nn.Module):
    """Shared by images and videos: Linear(vision -> text) - act - Linear(text -> text)."""

    def __init__(self, config: VideoLlavaConfig):
        super().__init__()
        # the selected hidden states are concatenated: one vision width per feature layer
        vision = config.vision_config.hidden_size * len(config.vision_feature_layers)
        text = config.text_config.hidden_size
        self.linear_1 = nn.Linear(vision, text, bias=config.multimodal_projector_bias)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(text, text, bias=config.multimodal_projector_bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class VideoLlavaPreTrainedModel(PreTrainedModel):
    config_class = VideoLlavaConfig
    config: VideoLlavaConfig
    base_model_prefix = "model"
    input_modalities = ("image", "video", "text")
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VideoLlavaVisionEncoderLayer"]
    _skip_keys_device_placement = [CACHE_NAME]
    # Towers and language model dispatch on `attn_implementation` through Transformers' attention registry (the
    # towers take no mask, so every registered kernel applies); the contract tests run eager, sdpa and flex.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # `torch.compile(fullgraph=True)` traces prefill and decode: the placeholder-count check is a traced tensor
    # check while compiling (see `_scatter`), and nothing else leaves the graph.
    _can_compile_fullgraph = True
    _export_auto_class = "AutoModel"  # the Auto class an exported `auto_map` names for this class

    def save_pretrained(self, save_directory, *args, export_code: bool = False, **kwargs):
        """Transformers' `save_pretrained`; `export_code=True` also writes an `auto_map` and copies the model's code
        next to the weights, so the folder loads with `trust_remote_code=True` where this package is absent."""
        if not export_code:
            return super().save_pretrained(save_directory, *args, **kwargs)
        with auto_classes((type(self.config), "AutoConfig"), (type(self), self._export_auto_class),
                          restore=(self.config,)):
            return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Transformers' `from_pretrained`, plus two guarantees:

        - a directory or Hub repo saved by Transformers' built-in Video-LLaVA (`model_type="video_llava"`, e.g.
          LanguageBind/Video-LLaVA-7B-hf) loads with temporal attention off, every key renamed by an anchored rule;
        - no weight is silently dropped or left random: unexpected, missing or mis-shaped keys raise a ValueError
          listing them (`strict=False` downgrades this to Transformers' usual warning).

        Loading the base model (`VideoLlavaModel`, `AutoModel`) from a full checkpoint is normal: the head's keys
        (`lm_head.*`) are reported as unexpected in the loading info but are not an error. With
        `output_loading_info=True` nothing raises: `(model, info)` comes back for the caller to inspect.
        """
        strict = kwargs.pop("strict", True)
        want_info = kwargs.pop("output_loading_info", False)
        if kwargs.get("config") is None and pretrained_model_name_or_path is not None:
            config_dict = read_config_dict(pretrained_model_name_or_path, **hub_kwargs(kwargs))
            if is_transformers_config(config_dict):
                kwargs["config"] = config_from_transformers(config_dict)
                kwargs.setdefault("key_mapping", dict(TRANSFORMERS_KEY_RULES))
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        if kwargs.get("key_mapping") is not None:
            forget_load_renaming(model)  # save in our layout, not the one the checkpoint was read from
        if want_info:
            return model, info
        problems = {k: sorted(map(str, info.get(k) or ())) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if not hasattr(model, cls.base_model_prefix):  # a base model: the full model's head is expected to be left
            problems["unexpected_keys"] = [k for k in problems["unexpected_keys"] if k not in _FULL_MODEL_HEAD_KEYS]
        problems = {k: v for k, v in problems.items() if v}
        if strict and problems:
            details = "; ".join(f"{k} ({len(v)}): {', '.join(v[:20])}{' ...' if len(v) > 20 else ''}" for k, v in problems.items())
            raise ValueError(
                f"Loading {pretrained_model_name_or_path} into {cls.__name__} did not account for every weight: "
                f"{details}. Check that the checkpoint matches the config (e.g. `video_temporal_attention`), convert "
                "original checkpoints with `videollava-hf convert`, or pass strict=False to load anyway "
                "(output_loading_info=True returns the lists)."
            )
        return model

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Transformers' deprecated alias of `is_activation_checkpointing`, answered without its FutureWarning
        because PEFT's `get_peft_model` reads it (see `_compat.activation_checkpointing`)."""
        return activation_checkpointing(self)

    def _return_dict(self, return_dict: bool | None) -> bool:
        return self.config.return_dict if return_dict is None else return_dict

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, VideoLlavaVisionEmbeddings):
            init.normal_(module.class_embedding, mean=0.0, std=module.class_embedding.shape[-1] ** -0.5)
        elif isinstance(module, VideoLlavaVisionEncoderLayer) and module.temporal:
            # LanguageBind's init for the temporal embedding.
            init.normal_(module.temporal_embedding, mean=0.0, std=module.temporal_embedding.shape[-1] ** -0.5)


# Keys of VideoLlavaForConditionalGeneration outside its base model: a base-model load leaves them, by design.
_FULL_MODEL_HEAD_KEYS = frozenset({"lm_head.weight"})

# Keyword names that carry media. The model takes `pixel_values`, `pixel_values_images` (its older name) and
# `pixel_values_videos`; any other `pixel_*` keyword or one of these names is refused, never dropped.
_OTHER_MEDIA_NAMES = frozenset(
    {"images", "image", "videos", "video", "audio", "input_features", "image_embeds", "video_embeds",
     "mm_encoder_outputs"}
)


def refuse_unknown_media(kwargs: dict) -> None:
    unknown = sorted(k for k in kwargs if k.startswith("pixel_") or k in _OTHER_MEDIA_NAMES)
    if unknown:
        raise TypeError(
            f"Video-LLaVA does not take {', '.join(unknown)}: pass images as `pixel_values` (num_images, 3, H, W) and "
            "videos as `pixel_values_videos` (num_videos, num_frames, 3, H, W), as VideoLlavaHfProcessor returns them."
        )


def one_of(value, alias, name: str, alias_name: str):
    """`value`, or its older keyword `alias`; both at once is ambiguous."""
    if value is not None and alias is not None:
        raise ValueError(f"Pass images once, as `{name}` or as `{alias_name}` (its older name), not both.")
    return value if value is not None else alias


class VideoLlavaModel(VideoLlavaPreTrainedModel):
    """Towers + projector + language model (no LM head)."""

    def __init__(self, config: VideoLlavaConfig):
        super().__init__(config)
        vision = config.vision_config
        self.image_tower = VideoLlavaVisionTower(vision, temporal=False)
        self.video_tower = VideoLlavaVisionTower(
            vision, temporal=config.video_temporal_attention, num_frames=config.num_frames
        )
        self.multi_modal_projector = VideoLlavaMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    # --- vision features ------------------------------------------------------------------------------
    def _feature_layers(self, vision_feature_layer) -> list[int]:
        if vision_feature_layer is None:
            return self.config.vision_feature_layers
        return [vision_feature_layer] if isinstance(vision_feature_layer, int) else list(vision_feature_layer)

    def get_image_features(
        self,
        pixel_values: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        pixel_values_images: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """(I, 3, H, W) -> `BaseModelOutputWithPooling` (a tuple with `return_dict=False`):

        pooler_output: projected features (I, image_seq_length, text_hidden), what the prompt's `<image>` runs get;
        last_hidden_state: the deepest tower state that ran (I, 1 + P, vision_hidden);
        hidden_states (with `output_hidden_states=True`): tower states 0 .. deepest feature layer.
        `vision_feature_layer` / `vision_feature_select_strategy` override the config's for this call."""
        refuse_unknown_media(kwargs)
        pixel_values = one_of(pixel_values, pixel_values_images, "pixel_values", "pixel_values_images")
        if pixel_values is None:
            raise ValueError("get_image_features needs `pixel_values` (num_images, 3, H, W).")
        layers = self._feature_layers(vision_feature_layer)
        strategy = vision_feature_select_strategy or self.config.vision_feature_select_strategy
        states = self.image_tower(pixel_values, layers)  # [(I, 1 + P, Dv)] * (deepest + 1)
        selected = torch.cat([states[self.image_tower.layer_index(k)] for k in layers], dim=-1)  # (I, 1 + P, k*Dv)
        if strategy == "default":
            selected = selected[:, 1:]  # drop CLS -> (I, P, k*Dv)
        out = BaseModelOutputWithPooling(
            last_hidden_state=states[-1],
            pooler_output=self.multi_modal_projector(selected),
            hidden_states=tuple(states) if output_hidden_states else None,
        )
        return out if self._return_dict(return_dict) else out.to_tuple()

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        video_pooling: str | None = None,
        video_pool_stride: int | None = None,
        video_slowfast_every: int | None = None,
        vision_feature_layer: int | list[int] | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """(V, T, 3, H, W) -> `BaseModelOutputWithPooling` (a tuple with `return_dict=False`):

        pooler_output: projected features (V, tokens, text_hidden), frames in temporal order (one row of tokens per
        video, not per frame as in the built-in, because pooled frames can differ in size);
        last_hidden_state: the deepest tower state that ran, (V*T, 1 + P, vision_hidden);
        hidden_states (with `output_hidden_states=True`): tower states 0 .. deepest feature layer, each (V*T, ...).

        Without pooling, tokens = T * (patches + CLS). With temporal attention, frames attend within windows of
        `config.num_frames` (the length of the learned temporal embedding): T <= num_frames runs as one window,
        longer videos as consecutive windows in time order (the last one shorter when T is not a multiple).
        The pooling arguments override the config's `video_pooling` / `video_pool_stride` / `video_slowfast_every`
        for this call (the processor must be given the same ones, so the placeholder counts agree)."""
        refuse_unknown_media(kwargs)
        if pixel_values_videos is None or pixel_values_videos.ndim != 5:
            shape = None if pixel_values_videos is None else tuple(pixel_values_videos.shape)
            raise ValueError(f"pixel_values_videos must be (num_videos, num_frames, 3, H, W), got {shape}.")
        options = self.config.video_pooling_options(
            pooling=video_pooling, stride=video_pool_stride, slowfast_every=video_slowfast_every
        )
        layers = self._feature_layers(vision_feature_layer)
        v, t = pixel_values_videos.shape[:2]
        window = self.config.num_frames if self.config.video_temporal_attention else t
        windows = []  # per window: [(V, w, 1 + P, Dv)] * (deepest + 1)
        for start in range(0, t, window):
            clip = pixel_values_videos[:, start : start + window]  # (V, w, 3, H, W)
            w = clip.shape[1]
            states = self.video_tower(clip.flatten(0, 1), layers, num_frames=w)
            windows.append([h.view(v, w, *h.shape[1:]) for h in states])
        states = [torch.cat(per_layer, dim=1) for per_layer in zip(*windows)]  # [(V, T, 1 + P, Dv)] * (deepest + 1)
        hidden = torch.cat([states[self.video_tower.layer_index(k)] for k in layers], dim=-1)  # (V, T, 1 + P, k*Dv)
        keep_cls = self.config.video_feature_select_strategy == "full"
        if not keep_cls:
            hidden = hidden[:, :, 1:]
        features = self.multi_modal_projector(hidden)  # (V, T, N, Dt)
        strides = frame_pool_strides(t, options["pooling"], options["stride"], options["slowfast_every"])
        if all(s == 1 for s in strides):
            features = features.flatten(1, 2)  # (V, T * N, Dt)
        else:
            mode = options["pooling"] or "average"
            frames = [pool_frame(features[:, i], strides[i], mode, keep_cls) for i in range(t)]
            features = torch.cat(frames, dim=1)  # (V, sum of per-frame tokens, Dt)
        out = BaseModelOutputWithPooling(
            last_hidden_state=states[-1].flatten(0, 1),
            pooler_output=features,
            hidden_states=tuple(h.flatten(0, 1) for h in states) if output_hidden_states else None,
        )
        return out if self._return_dict(return_dict) else out.to_tuple()

    def _scatter(self, input_ids, inputs_embeds, features, token_id, kind, per_item):
        """Write `features` (n, L, D) into the positions of `token_id`, in order; refuse on a count mismatch."""
        if input_ids is not None:
            mask = input_ids == token_id
        else:  # only embeddings were given: find the placeholder's embedding row
            placeholder = self.get_input_embeddings()(torch.tensor(token_id, device=inputs_embeds.device))
            mask = (inputs_embeds == placeholder).all(-1)
        expected = features.shape[0] * features.shape[1]
        if torch.compiler.is_compiling():
            # `int(mask.sum())` would leave the graph (a data-dependent value); a traced check keeps it whole and
            # still fails at run time on a mismatch (without the detailed message below).
            torch._check_tensor_all(mask.sum() == expected)
        else:
            found = int(mask.sum())
            if found != expected:
                raise ValueError(
                    f"The prompt has {found} <{kind}> placeholder tokens, but the {features.shape[0]} {kind}(s) "
                    f"passed give {expected} feature tokens ({features.shape[1]} per {kind}; config expects "
                    f"{per_item}). Build inputs with VideoLlavaHfProcessor, which expands each <{kind}> to the right "
                    f"count, and pass one {kind} per placeholder."
                )
        features = features.to(inputs_embeds.device, inputs_embeds.dtype).reshape(-1, inputs_embeds.shape[-1])
        return inputs_embeds.masked_scatter(mask.unsqueeze(-1).to(inputs_embeds.device), features)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        pixel_values_images: torch.FloatTensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        video_pooling: str | None = None,
        video_pool_stride: int | None = None,
        video_slowfast_every: int | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VideoLlavaModelOutputWithPast | tuple:
        r"""
        pixel_values (`(num_images, 3, 224, 224)`): images, one per `<image>` placeholder, in prompt order.
        pixel_values_images: older name of `pixel_values` (Transformers' processor before v5.23).
        pixel_values_videos (`(num_videos, num_frames, 3, 224, 224)`): videos, one per `<video>` placeholder.
        vision_feature_layer / vision_feature_select_strategy: per-call overrides of the config's (the strategy
            applies to images; videos follow `config.video_feature_select_strategy`).
        video_pooling / video_pool_stride / video_slowfast_every: per-call overrides of the video token budget.
        Any other media keyword raises a TypeError. `return_dict=False` returns `to_tuple()` of the output.
        """
        refuse_unknown_media(kwargs)
        pixel_values = one_of(pixel_values, pixel_values_images, "pixel_values", "pixel_values_images")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, S, Dt)

        image_features = video_features = None
        if pixel_values is not None:
            image_features = self.get_image_features(
                pixel_values, vision_feature_layer, vision_feature_select_strategy, return_dict=True
            ).pooler_output  # (I, image_seq_length, Dt)
            inputs_embeds = self._scatter(
                input_ids, inputs_embeds, image_features, self.config.image_token_index, "image",
                self.config.image_seq_length,
            )
        if pixel_values_videos is not None:
            pooling = {"video_pooling": video_pooling, "video_pool_stride": video_pool_stride,
                       "video_slowfast_every": video_slowfast_every}
            video_features = self.get_video_features(
                pixel_values_videos, **pooling, vision_feature_layer=vision_feature_layer, return_dict=True
            ).pooler_output  # (V, tokens, Dt)
            options = self.config.video_pooling_options(
                pooling=video_pooling, stride=video_pool_stride, slowfast_every=video_slowfast_every
            )
            expected = video_token_count(self.config.num_patches, pixel_values_videos.shape[1],
                                         self.config.video_feature_select_strategy, **options)
            inputs_embeds = self._scatter(
                input_ids, inputs_embeds, video_features, self.config.video_token_index, "video", expected
            )

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            **{CACHE_NAME: resolve_cache(cache, past_key_values)},
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        out = VideoLlavaModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            **{CACHE_NAME: outputs.get(CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
            video_hidden_states=video_features,
        )
        return out if self._return_dict(return_dict) else out.to_tuple()


class VideoLlavaForConditionalGeneration(VideoLlavaPreTrainedModel, GenerationMixin):
    """Video-LLaVA with its language-modeling head; `generate()` runs the towers once, at prefill."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}  # as the built-in: shard the vocabulary, gather the logits
    _export_auto_class = "AutoModelForImageTextToText"

    def __init__(self, config: VideoLlavaConfig):
        super().__init__(config)
        self.model = VideoLlavaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def get_image_features(self, pixel_values: torch.Tensor | None = None, **kwargs):
        """See `VideoLlavaModel.get_image_features`."""
        return self.model.get_image_features(pixel_values, **kwargs)

    def get_video_features(self, pixel_values_videos: torch.Tensor, **kwargs):
        """See `VideoLlavaModel.get_video_features`."""
        return self.model.get_video_features(pixel_values_videos, **kwargs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        pixel_values_images: torch.FloatTensor | None = None,
        past_key_values: Cache | None = None,
        video_pooling: str | None = None,
        video_pool_stride: int | None = None,
        video_slowfast_every: int | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VideoLlavaCausalLMOutputWithPast | tuple:
        r"""
        pixel_values (`(num_images, 3, 224, 224)`): images, one per `<image>` placeholder, in prompt order.
        pixel_values_videos (`(num_videos, num_frames, 3, 224, 224)`): videos, one per `<video>` placeholder.
        pixel_values_images: older name of `pixel_values` (Transformers' processor before v5.23).
        labels (`(batch, seq)`): next-token targets; -100 is ignored.
        logits_to_keep: compute logits only for the last `n` positions (0 = all), saving memory at prefill.
        video_pooling / video_pool_stride / video_slowfast_every: per-call overrides of the config's video token
            budget settings (give the processor the same ones).
        Other keywords (`vision_feature_layer`, `output_hidden_states`, ...) go to `VideoLlavaModel.forward`; any
        other media keyword raises. `return_dict=False` returns `to_tuple()` of the output.
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=resolve_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            pixel_values_images=pixel_values_images,
            video_pooling=video_pooling,
            video_pool_stride=video_pool_stride,
            video_slowfast_every=video_slowfast_every,
            return_dict=True,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        out = VideoLlavaCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{CACHE_NAME: outputs.get(CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
            video_hidden_states=outputs.video_hidden_states,
        )
        return out if self._return_dict(return_dict) else out.to_tuple()


__all__ = [
    "VideoLlavaCausalLMOutputWithPast",
    "VideoLlavaForConditionalGeneration",
    "VideoLlavaModel",
    "VideoLlavaModelOutputWithPast",
    "VideoLlavaPreTrainedModel",
]
