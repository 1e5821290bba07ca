"""Video-LLaVA: LanguageBind image and video towers -> one shared MLP projector -> a causal language model.

Read top to bottom:

    pixel_values        (I, 3, 224, 224) --image tower-->  (I, 257, 1024) --drop CLS--> (I, 256, 1024) ----+
    pixel_values_videos (V, T, 3, 224, 224) --video tower (spatial + temporal attention per layer)-->      |
                                            (V, T, 257, 1024) --keep CLS--> (V, T*257, 1024) -------------+
                                                                                                           |
    shared projector: Linear(1024 -> 4096) - GELU - Linear(4096 -> 4096)  <-------------------------------+
    -> scattered, in order, into the `<image>` / `<video>` placeholder positions of the prompt embeddings
    -> language model (Vicuna / Llama, built from `text_config` with AutoModel) -> lm_head.

Both towers stop at `vision_feature_layer` (-2): the last encoder layer and the post-LayerNorm never influence
the features, so they are not run (their weights are kept so checkpoints load without drops).
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
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from ._compat import CACHE_NAME, resolve_cache
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


class VideoLlavaVisionAttention(nn.Module):
    """Multi-head self-attention over the second axis of a (B, L, D) tensor (patches, or frames)."""

    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.dropout = config.attention_dropout
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, H, L, Dh)
            return t.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (B, H, L, Dh); scale = Dh ** -0.5
        return self.out_proj(out.transpose(1, 2).reshape(b, length, d))


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
    """A LanguageBind tower. `forward` returns hidden state number `feature_layer` in CLIP's numbering
    (0 = embeddings after pre-LN, k = after layer k, -1 = last layer), running only the layers it needs."""

    def __init__(self, config, temporal: bool = False, num_frames: int = 8):
        super().__init__()
        self.config = config
        self.num_frames = num_frames
        self.embeddings = VideoLlavaVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = VideoLlavaVisionEncoder(config, temporal, num_frames)
        # Unused by Video-LLaVA (features come from an inner layer) but part of the checkpoints.
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def num_layers_to_run(self, feature_layer: int) -> int:
        total = len(self.encoder.layers)
        index = feature_layer if feature_layer >= 0 else total + 1 + feature_layer
        if not 0 <= index <= total:
            raise ValueError(f"vision_feature_layer={feature_layer} is out of range for a {total}-layer tower.")
        return index

    def forward(self, pixel_values: torch.Tensor, feature_layer: int = -2, num_frames: int | None = None):
        """pixel_values: (B*T, 3, H, W), frames of one video contiguous when `num_frames` is given."""
        x = self.pre_layrnorm(self.embeddings(pixel_values))  # (B*T, N, D)
        for layer in self.encoder.layers[: self.num_layers_to_run(feature_layer)]:
            x = layer(x, num_frames)
        return x


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
        vision, text = config.vision_config.hidden_size, config.text_config.hidden_size
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
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False
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
        problems = {k: sorted(map(str, info.get(k) or ())) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        problems = {k: v for k, v in problems.items() if v}
        if strict and problems:
            details = "; ".join(f"{k} ({len(v)}): {', '.join(v[:20])}{' ...' if len(v) > 20 else ''}" for k, v in problems.items())
            raise ValueError(
                f"Loading {pretrained_model_name_or_path} into {cls.__name__} did not account for every weight: "
                f"{details}. Check that the checkpoint matches the config (e.g. `video_temporal_attention`), convert "
                "original checkpoints with `videollava-hf convert`, or pass strict=False to load anyway."
            )
        return (model, info) if want_info else model

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, VideoLlavaVisionEmbeddings):
            init.normal_(module.class_embedding, mean=0.0, std=module.class_embedding.shape[-1] ** -0.5)
        elif isinstance(module, VideoLlavaVisionEncoderLayer) and module.temporal:
            # LanguageBind's init for the temporal embedding.
            init.normal_(module.temporal_embedding, mean=0.0, std=module.temporal_embedding.shape[-1] ** -0.5)


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
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """(I, 3, H, W) -> projected features (I, image_seq_length, text_hidden)."""
        hidden = self.image_tower(pixel_values, self.config.vision_feature_layer)  # (I, 1 + P, Dv)
        if self.config.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]  # drop CLS -> (I, P, Dv)
        return self.multi_modal_projector(hidden)

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        video_pooling: str | None = None,
        video_pool_stride: int | None = None,
        video_slowfast_every: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """(V, T, 3, H, W) -> projected features (V, tokens, text_hidden), frames in temporal order.

        Without pooling, tokens = T * (patches + CLS). With temporal attention, frames attend within windows of
        `config.num_frames` (the length of the learned temporal embedding): T <= num_frames runs as one window,
        longer videos as consecutive windows in time order (the last one shorter when T is not a multiple).
        The pooling arguments override the config's `video_pooling` / `video_pool_stride` / `video_slowfast_every`
        for this call (the processor must be given the same ones, so the placeholder counts agree)."""
        if pixel_values_videos.ndim != 5:
            raise ValueError(
                "pixel_values_videos must be (num_videos, num_frames, 3, H, W), got shape "
                f"{tuple(pixel_values_videos.shape)}."
            )
        options = self.config.video_pooling_options(
            pooling=video_pooling, stride=video_pool_stride, slowfast_every=video_slowfast_every
        )
        v, t = pixel_values_videos.shape[:2]
        window = self.config.num_frames if self.config.video_temporal_attention else t
        chunks = []
        for start in range(0, t, window):
            clip = pixel_values_videos[:, start : start + window]  # (V, w, 3, H, W)
            w = clip.shape[1]
            hidden = self.video_tower(clip.flatten(0, 1), self.config.vision_feature_layer, num_frames=w)
            chunks.append(hidden.view(v, w, *hidden.shape[1:]))  # (V, w, 1 + P, Dv)
        hidden = torch.cat(chunks, dim=1)  # (V, T, 1 + P, Dv)
        keep_cls = self.config.video_feature_select_strategy == "full"
        if not keep_cls:
            hidden = hidden[:, :, 1:]
        features = self.multi_modal_projector(hidden)  # (V, T, N, Dt)
        strides = frame_pool_strides(t, options["pooling"], options["stride"], options["slowfast_every"])
        if all(s == 1 for s in strides):
            return features.flatten(1, 2)  # (V, T * N, Dt)
        mode = options["pooling"] or "average"
        frames = [pool_frame(features[:, i], strides[i], mode, keep_cls) for i in range(t)]
        return torch.cat(frames, dim=1)  # (V, sum of per-frame tokens, Dt)

    def _scatter(self, input_ids, inputs_embeds, features, token_id, kind, per_item):
        """Write `features` (n, L, D) into the positions of `token_id`, in order; refuse on a count mismatch."""
        if input_ids is not None:
            mask = input_ids == token_id
        else:  # only embeddings were given: find the placeholder's embedding row
            placeholder = self.get_input_embeddings()(torch.tensor(token_id, device=inputs_embeds.device))
            mask = (inputs_embeds == placeholder).all(-1)
        found = int(mask.sum())
        expected = features.shape[0] * features.shape[1]
        if found != expected:
            raise ValueError(
                f"The prompt has {found} <{kind}> placeholder tokens, but the {features.shape[0]} {kind}(s) passed "
                f"give {expected} feature tokens ({features.shape[1]} per {kind}; config expects {per_item}). Build "
                f"inputs with VideoLlavaHfProcessor, which expands each <{kind}> to the right count, and pass one "
                f"{kind} per placeholder."
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
        video_pooling: str | None = None,
        video_pool_stride: int | None = None,
        video_slowfast_every: int | None = None,
        **kwargs,
    ) -> VideoLlavaModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, S, Dt)

        image_features = video_features = None
        if pixel_values is not None:
            image_features = self.get_image_features(pixel_values)
            inputs_embeds = self._scatter(
                input_ids, inputs_embeds, image_features, self.config.image_token_index, "image",
                self.config.image_seq_length,
            )
        if pixel_values_videos is not None:
            pooling = {"video_pooling": video_pooling, "video_pool_stride": video_pool_stride,
                       "video_slowfast_every": video_slowfast_every}
            video_features = self.get_video_features(pixel_values_videos, **pooling)
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
            **kwargs,
        )
        return VideoLlavaModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            **{CACHE_NAME: outputs.get(CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
            video_hidden_states=video_features,
        )


class VideoLlavaForConditionalGeneration(VideoLlavaPreTrainedModel, GenerationMixin):
    """Video-LLaVA with its language-modeling head; `generate()` runs the towers once, at prefill."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
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

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.model.get_image_features(pixel_values)

    def get_video_features(self, pixel_values_videos: torch.Tensor, **kwargs) -> torch.Tensor:
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
        **kwargs,
    ) -> VideoLlavaCausalLMOutputWithPast:
        r"""
        pixel_values (`(num_images, 3, 224, 224)`): images, one per `<image>` placeholder, in prompt order.
        pixel_values_videos (`(num_videos, num_frames, 3, 224, 224)`): videos, one per `<video>` placeholder.
        pixel_values_images: older name of `pixel_values` (Transformers' processor before v5.23).
        labels (`(batch, seq)`): next-token targets; -100 is ignored.
        logits_to_keep: compute logits only for the last `n` positions (0 = all), saving memory at prefill.
        video_pooling / video_pool_stride / video_slowfast_every: per-call overrides of the config's video token
            budget settings (give the processor the same ones).
        """
        if pixel_values is None:
            pixel_values = pixel_values_images
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=resolve_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            video_pooling=video_pooling,
            video_pool_stride=video_pool_stride,
            video_slowfast_every=video_slowfast_every,
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
        return VideoLlavaCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{CACHE_NAME: outputs.get(CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
            video_hidden_states=outputs.video_hidden_states,
        )


__all__ = [
    "VideoLlavaCausalLMOutputWithPast",
    "VideoLlavaForConditionalGeneration",
    "VideoLlavaModel",
    "VideoLlavaModelOutputWithPast",
    "VideoLlavaPreTrainedModel",
]
