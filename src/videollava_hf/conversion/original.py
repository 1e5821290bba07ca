"""Convert the ORIGINAL Video-LLaVA release (e.g. LanguageBind/Video-LLaVA-7B) into this package's format.

The original checkpoint is a LLaVA model (`LlavaLlamaForCausalLM`, `model_type="llava"`): Vicuna-7B v1.5 weights
under `model.*` / `lm_head.*`, the projector `nn.Sequential(Linear, GELU, Linear)` under `model.mm_projector.{0,2}`,
and the two LanguageBind towers stored as the CLIP vision transformers they wrap
(`model.image_tower.image_tower.*`, `model.video_tower.video_tower.*`; the video tower's layers also hold
`temporal_embedding`, `temporal_attn.*` and `temporal_layer_norm1.*`). Its vocabulary has 32000 tokens: the original
code splices image features in at the sentinel id -200 and has no `<image>` / `<video>` tokens.

This module holds the explicit key rules, the config translation, the tokenizer extension and, for `verify`, an
independent reference forward of the original computation (`original_reference_logits`) written from the
published code path (LanguageBind towers -> feature select -> projector -> splice at -200 -> Llama), reading the
source state dict by its original key names. It shares nothing with `modeling_videollava`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..models.videollava.configuration_videollava import LANGUAGEBIND_VISION_DEFAULTS, VideoLlavaConfig
from .common import (
    ConversionError,
    ConversionOptions,
    ConversionReport,
    IgnoreRule,
    KeyRule,
    build_processor,
    expected_state_shapes,
    extend_rows,
    find_weight_files,
    finish_conversion,
    load_shard,
    load_tokenizer,
    make_key_mapper,
    open_source,
    parse_dtype,
    plan_conversion,
    prepare_output_dir,
    read_shard_shapes,
    write_shards,
)

IMAGE_TOKEN_INDEX = -200  # the original's splice sentinel (videollava/constants.py)
ADDED_TOKENS = ("<image>", "<video>", "<pad>")
EMBED_KEY = "model.language_model.embed_tokens.weight"
LM_HEAD_KEY = "lm_head.weight"

# Every original key is renamed by exactly one of these (first match wins). The tower sub-keys keep CLIP's names
# in both formats, so one prefix rule per tower suffices; every renamed key is then checked against the target
# model's key -> shape table, so a tower key our model lacks (e.g. a `temporal_mlp`) is reported, never dropped.
ORIGINAL_KEY_RULES: list[KeyRule] = [
    KeyRule(
        r"^model\.image_tower\.image_tower\.(embeddings|pre_layrnorm|post_layernorm|encoder\.layers\.\d+)\.",
        r"model.image_tower.\1.",
        "LanguageBind image tower (a CLIP vision transformer) -> our image tower",
    ),
    KeyRule(
        r"^model\.video_tower\.video_tower\.(embeddings|pre_layrnorm|post_layernorm|encoder\.layers\.\d+)\.",
        r"model.video_tower.\1.",
        "LanguageBind video tower, temporal_embedding/temporal_attn/temporal_layer_norm1 included",
    ),
    KeyRule(
        r"^model\.mm_projector\.0\.(weight|bias)$",
        r"model.multi_modal_projector.linear_1.\1",
        "mlp2x_gelu projector: Sequential index 0 is the first Linear",
    ),
    KeyRule(
        r"^model\.mm_projector\.2\.(weight|bias)$",
        r"model.multi_modal_projector.linear_2.\1",
        "index 1 is the parameter-free GELU, index 2 the second Linear",
    ),
    KeyRule(r"^model\.embed_tokens\.weight$", EMBED_KEY, "token embeddings (rows appended for the added tokens)"),
    KeyRule(r"^model\.layers\.(\d+)\.", r"model.language_model.layers.\1.", "Llama decoder layers"),
    KeyRule(r"^model\.norm\.weight$", "model.language_model.norm.weight", "final RMSNorm"),
    KeyRule(r"^lm_head\.weight$", LM_HEAD_KEY, "LM head (rows appended for the added tokens)"),
]

ORIGINAL_IGNORED_KEYS: list[IgnoreRule] = [
    IgnoreRule(
        r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$",
        "RoPE inverse frequencies: a buffer recomputed from rope_theta, saved by Transformers < 4.31",
    ),
    IgnoreRule(
        r"^model\.(image|video)_tower\.\1_tower\.embeddings\.position_ids$",
        "CLIP's arange(num_positions) buffer, recomputed (our towers add the position table directly)",
    ),
]

# Defaults when no LanguageBind tower config is given: the package's ViT-L/14 defaults (documented assumption,
# see docs/conversion.md; override with `vision_config`).
# What LanguageBind's own CLIPVisionConfig class falls back to for a field a tower config.json leaves out.
_LANGUAGEBIND_CLASS_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 512,
}
DEFAULT_NUM_FRAMES = 8

# Llama fields of the original config.json that the text config keeps; everything else there (mm_*, tokenizer_*,
# freeze_*/tune_* training switches, architectures, dtype) describes the original code, not the weights.
_TEXT_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "attention_bias",
    "attention_dropout",
    "mlp_bias",
    "head_dim",
    "initializer_range",
    "bos_token_id",
    "eos_token_id",
)
_SELECT_FEATURE = {"patch": "default", "cls_patch": "full"}


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------


def read_tower_config(location: str | Path) -> dict[str, Any]:
    """The vision part of a LanguageBind tower's config.json (a directory, a config.json file, or a Hub id)."""
    path = Path(location).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        path = Path(_download_tower_config(str(location)))
    from .common import read_json_file

    data = read_json_file(path, "expected a LanguageBind tower config")
    if not isinstance(data, dict):
        raise ConversionError(f"{path} holds a JSON {type(data).__name__}, not a tower config (an object).")
    return dict(data.get("vision_config") or data)


def _download_tower_config(repo_id: str) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return hf_hub_download(repo_id, "config.json")
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError) as err:
        raise ConversionError(
            f"Could not read the tower config {repo_id!r}: not a local directory/file and the Hub is unreachable "
            f"({err}). Download it elsewhere (`hf download {repo_id} config.json --local-dir DIR`) and pass DIR."
        ) from err


def resolve_vision_config(
    *,
    image_tower: str | Path | None = None,
    video_tower: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], int | None, bool | None]:
    """(vision config dict, num_frames or None, add_time_attn or None).

    Order of precedence: `overrides` > the tower configs (fields they omit take LanguageBind's class defaults, as
    LanguageBind's code would) > `LANGUAGEBIND_VISION_DEFAULTS`. One vision config serves both towers, so the two
    tower configs must agree on every shape field."""
    vision = dict(LANGUAGEBIND_VISION_DEFAULTS)
    towers = {name: read_tower_config(loc) for name, loc in (("image", image_tower), ("video", video_tower)) if loc}
    if towers:
        for key in LANGUAGEBIND_VISION_DEFAULTS:
            values = {name: tower.get(key, _LANGUAGEBIND_CLASS_DEFAULTS[key]) for name, tower in towers.items()}
            if len(set(map(str, values.values()))) > 1:
                raise ConversionError(
                    f"The image and video tower configs disagree on {key} ({values}); this model uses one vision "
                    "config for both towers. Pass matching towers, or fix the value with vision_config overrides."
                )
            vision[key] = next(iter(values.values()))
    video = towers.get("video", {})
    num_frames = video.get("num_frames")
    temporal = video.get("add_time_attn")
    unknown = sorted(set(overrides or {}) - set(LANGUAGEBIND_VISION_DEFAULTS))
    if unknown:
        raise ConversionError(
            f"Unknown vision_config override(s) {unknown}; allowed: {sorted(LANGUAGEBIND_VISION_DEFAULTS)} "
            "(use num_frames / temporal_attention for the video settings)."
        )
    vision.update(overrides or {})
    return (
        vision,
        (int(num_frames) if num_frames is not None else None),
        (bool(temporal) if temporal is not None else None),
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConversionError(message)


def _rope_parameters(theta: float, scaling: Mapping[str, Any] | None) -> dict[str, Any]:
    """Transformers 5's `rope_parameters` for the original's (4.31-era) `rope_theta` / `rope_scaling`."""
    if not scaling:
        return {"rope_type": "default", "rope_theta": float(theta)}
    kind = scaling.get("rope_type", scaling.get("type"))
    rest = {k: v for k, v in scaling.items() if k not in ("type", "rope_type")}
    return {"rope_type": kind, "rope_theta": float(theta), **rest}


def config_from_original(
    original: Mapping[str, Any],
    vision: Mapping[str, Any],
    *,
    vocab_size: int,
    token_ids: Mapping[str, int],
    num_frames: int = DEFAULT_NUM_FRAMES,
    temporal_attention: bool = True,
) -> VideoLlavaConfig:
    """Our config for an original config.json, after checking every setting the conversion depends on."""
    _require(
        bool(original.get("mm_image_tower")) and bool(original.get("mm_video_tower")),
        "The original config must name both towers (mm_image_tower and mm_video_tower); Video-LLaVA-7B does. "
        f"Got mm_image_tower={original.get('mm_image_tower')!r}, mm_video_tower={original.get('mm_video_tower')!r}.",
    )
    projector = original.get("mm_projector_type", "linear")
    _require(
        projector == "mlp2x_gelu",
        f"mm_projector_type={projector!r}: only 'mlp2x_gelu' (Linear-GELU-Linear, Video-LLaVA's projector) converts.",
    )
    for flag in ("mm_use_im_start_end", "mm_use_im_patch_token"):
        _require(
            not original.get(flag, False),
            f"{flag}=true adds start/patch tokens this model does not use; Video-LLaVA-7B has it false.",
        )
    select = original.get("mm_vision_select_feature", "patch")
    _require(
        select in _SELECT_FEATURE, f"mm_vision_select_feature={select!r}: expected one of {sorted(_SELECT_FEATURE)}."
    )
    layer = original.get("mm_vision_select_layer", -2)
    _require(isinstance(layer, int), f"mm_vision_select_layer must be one int, got {layer!r}.")
    mm_hidden = original.get("mm_hidden_size", vision["hidden_size"])
    _require(
        mm_hidden == vision["hidden_size"],
        f"mm_hidden_size={mm_hidden} but the vision config has hidden_size={vision['hidden_size']}; pass the "
        "towers' configs (image_tower / video_tower) or a vision_config override that matches the checkpoint.",
    )
    text = {k: original[k] for k in _TEXT_FIELDS if k in original and original[k] is not None}
    text["rope_parameters"] = _rope_parameters(text.pop("rope_theta", 10000.0), text.pop("rope_scaling", None))
    text.update(
        model_type="llama",
        vocab_size=vocab_size,
        pad_token_id=token_ids["<pad>"],
        tie_word_embeddings=bool(original.get("tie_word_embeddings", False)),
    )
    return VideoLlavaConfig(
        vision_config={"model_type": "clip_vision_model", **vision},
        text_config=text,
        image_token_index=token_ids["<image>"],
        video_token_index=token_ids["<video>"],
        projector_hidden_act="gelu",  # nn.GELU() in mlp2x_gelu: exact (erf) GELU
        vision_feature_layer=layer,
        vision_feature_select_strategy=_SELECT_FEATURE[select],
        video_feature_select_strategy="full",  # LanguageBindVideoTower.feature_select keeps every token of each frame
        num_frames=num_frames,
        video_temporal_attention=temporal_attention,
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(original.get("tie_word_embeddings", False)),
        pad_token_id=token_ids["<pad>"],
        bos_token_id=original.get("bos_token_id", 1),
        eos_token_id=original.get("eos_token_id", 2),
    )


# ----------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------


def extend_tokenizer(tokenizer, source_rows: int) -> dict[str, int]:
    """Add `<image>` and `<video>` (special tokens) and `<pad>` (the pad token) where missing; return their ids.

    With the original 32000-token Vicuna tokenizer they become 32000, 32001, 32002. Tokens the tokenizer already has
    keep their ids (e.g. the built-in port's tokenizer, which has all three at 32000-32002). Any other token whose id
    lies beyond the checkpoint's embedding table is refused: it would have no weights."""
    from transformers import AddedToken

    vocab = tokenizer.get_vocab()
    beyond = sorted(t for t, i in vocab.items() if i >= source_rows and t not in ADDED_TOKENS)
    if beyond:
        raise ConversionError(
            f"The tokenizer has {len(beyond)} token(s) with ids beyond the checkpoint's {source_rows}-row embedding "
            f"table ({', '.join(beyond[:5])}{', ...' if len(beyond) > 5 else ''}); pass the tokenizer that was saved "
            "with these weights (`tokenizer=` / --tokenizer)."
        )
    new_specials = [AddedToken(t, special=True, normalized=False) for t in ADDED_TOKENS[:2] if t not in vocab]
    if new_specials:
        tokenizer.add_special_tokens({"extra_special_tokens": new_specials})
    tokenizer.add_special_tokens({"pad_token": AddedToken("<pad>", special=True, normalized=False)})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ADDED_TOKENS}
    unk = getattr(tokenizer, "unk_token_id", None)
    _require(
        all(i is not None and i != unk for i in ids.values()), f"Adding {ADDED_TOKENS} to the tokenizer failed: {ids}."
    )
    return ids


def target_vocab_size(source_rows: int, tokenizer_len: int, pad_to_multiple_of: int | None) -> int:
    """Rows of the converted embedding table: enough for every token id, optionally rounded up."""
    rows = max(source_rows, tokenizer_len)
    if pad_to_multiple_of:
        rows = math.ceil(rows / pad_to_multiple_of) * pad_to_multiple_of
    return rows


# ----------------------------------------------------------------------------------------------------------
# Independent reference forward of the original computation (for verify)
# ----------------------------------------------------------------------------------------------------------


def _act(name: str):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name in ("gelu", "gelu_python"):
        return F.gelu
    if name == "silu":
        return F.silu
    raise ConversionError(f"The reference forward does not know activation {name!r}.")


def _lin(x: torch.Tensor, sd: Mapping[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return F.linear(x, sd[prefix + ".weight"], sd.get(prefix + ".bias"))


def _ln(x: torch.Tensor, sd: Mapping[str, torch.Tensor], prefix: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def _clip_attention(x: torch.Tensor, sd: Mapping[str, torch.Tensor], prefix: str, heads: int) -> torch.Tensor:
    """CLIPAttention: softmax((q * d^-0.5) k^T) v over the second axis of x (B, L, D)."""
    b, length, d = x.shape
    hd = d // heads
    q = _lin(x, sd, prefix + ".q_proj").mul(hd**-0.5).view(b, length, heads, hd).transpose(1, 2)
    k = _lin(x, sd, prefix + ".k_proj").view(b, length, heads, hd).transpose(1, 2)
    v = _lin(x, sd, prefix + ".v_proj").view(b, length, heads, hd).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2), dim=-1)  # (B, H, L, L)
    return _lin((weights @ v).transpose(1, 2).reshape(b, length, d), sd, prefix + ".out_proj")


def _tower_hidden_states(
    sd: Mapping[str, torch.Tensor], prefix: str, vision: Mapping[str, Any], pixels: torch.Tensor, frames: int | None
) -> list[torch.Tensor]:
    """LanguageBind's CLIPVisionTransformer with output_hidden_states: [embeddings after pre-LN, layer 1, ...].

    pixels: (B*T, 3, H, W) with the frames of a video contiguous; `frames` = T for the video tower (temporal layers)."""
    eps, heads, patch = vision["layer_norm_eps"], vision["num_attention_heads"], vision["patch_size"]
    act = _act(vision["hidden_act"])
    x = F.conv2d(pixels, sd[prefix + "embeddings.patch_embedding.weight"], stride=patch)  # (BT, D, h, w)
    x = x.flatten(2).transpose(1, 2)  # (BT, P, D)
    cls = sd[prefix + "embeddings.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd[prefix + "embeddings.position_embedding.weight"]  # (BT, N, D)
    x = _ln(x, sd, prefix + "pre_layrnorm", eps)
    states = [x]
    for i in range(vision["num_hidden_layers"]):
        p = f"{prefix}encoder.layers.{i}."
        if frames is not None and p + "temporal_embedding" in sd:
            bt, n, d = x.shape
            t = frames
            if t != 1:  # '(b t) n d -> (b n) t d', + temporal_embedding[:, :t], and back
                x = (x.view(bt // t, t, n, d) + sd[p + "temporal_embedding"][0, :t].view(1, t, 1, d)).view(bt, n, d)
            residual = x
            y = x.view(bt // t, t, n, d).transpose(1, 2).reshape(bt // t * n, t, d)  # (B*N, T, D)
            y = _clip_attention(_ln(y, sd, p + "temporal_layer_norm1", eps), sd, p + "temporal_attn", heads)
            x = residual + y.view(bt // t, n, t, d).transpose(1, 2).reshape(bt, n, d)
        x = x + _clip_attention(_ln(x, sd, p + "layer_norm1", eps), sd, p + "self_attn", heads)
        h = _lin(_ln(x, sd, p + "layer_norm2", eps), sd, p + "mlp.fc1")
        x = x + _lin(act(h), sd, p + "mlp.fc2")
        states.append(x)
    return states


def _project(sd: Mapping[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    return _lin(F.gelu(_lin(features, sd, "model.mm_projector.0")), sd, "model.mm_projector.2")


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rope(x: torch.Tensor, positions: torch.Tensor, theta: float, scaling: Mapping[str, Any] | None) -> torch.Tensor:
    """Llama's rotary embedding, rotate-half convention. x: (H, S, hd)."""
    hd = x.shape[-1]
    pos = positions.float()
    if scaling:
        kind = scaling.get("type", scaling.get("rope_type"))
        if kind != "linear":
            raise ConversionError(f"The reference forward implements rope_scaling None or linear, got {kind!r}.")
        pos = pos / float(scaling["factor"])
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(pos, inv_freq)  # (S, hd/2)
    cos, sin = torch.cat([freqs, freqs], -1).cos().to(x.dtype), torch.cat([freqs, freqs], -1).sin().to(x.dtype)
    rotated = torch.cat([-x[..., hd // 2 :], x[..., : hd // 2]], dim=-1)
    return x * cos + rotated * sin


def _llama_logits(sd: Mapping[str, torch.Tensor], cfg: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
    """Vicuna / Llama decoder on embeddings x (S, D) with positions 0..S-1 and a causal mask -> logits (S, V)."""
    s, d = x.shape
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or d // heads
    eps, theta = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 10000.0)
    positions = torch.arange(s)
    causal = torch.full((s, s), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = _rms(x, sd[p + "input_layernorm.weight"], eps)
        q = F.linear(h, sd[p + "self_attn.q_proj.weight"]).view(s, heads, hd).transpose(0, 1)  # (H, S, hd)
        k = F.linear(h, sd[p + "self_attn.k_proj.weight"]).view(s, kv_heads, hd).transpose(0, 1)
        v = F.linear(h, sd[p + "self_attn.v_proj.weight"]).view(s, kv_heads, hd).transpose(0, 1)
        q, k = _rope(q, positions, theta, cfg.get("rope_scaling")), _rope(k, positions, theta, cfg.get("rope_scaling"))
        k, v = k.repeat_interleave(heads // kv_heads, 0), v.repeat_interleave(heads // kv_heads, 0)
        scores = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd) + causal, dim=-1, dtype=torch.float32)
        attn = (scores.to(v.dtype) @ v).transpose(0, 1).reshape(s, heads * hd)
        x = x + F.linear(attn, sd[p + "self_attn.o_proj.weight"])
        h = _rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        gate, up = F.linear(h, sd[p + "mlp.gate_proj.weight"]), F.linear(h, sd[p + "mlp.up_proj.weight"])
        x = x + F.linear(F.silu(gate) * up, sd[p + "mlp.down_proj.weight"])
    return F.linear(_rms(x, sd["model.norm.weight"], eps), sd["lm_head.weight"])


@torch.no_grad()
def original_reference_logits(
    state: Mapping[str, torch.Tensor],
    original_config: Mapping[str, Any],
    vision: Mapping[str, Any],
    input_ids: torch.Tensor,
    media: Sequence[torch.Tensor] = (),
    *,
    num_frames: int = DEFAULT_NUM_FRAMES,
) -> torch.Tensor:
    """Logits (S', V) of the original Video-LLaVA for ONE prompt, from the original state dict.

    input_ids: (S,) token ids where each -200 marks one feature block (an image, or one frame of a video: the
    original inserts a video as `num_frames` image markers); media: in prompt order, images (3, H, W) and videos
    (3, T, H, W) as the original's processors produce them. Images use the image tower and drop CLS
    (`mm_vision_select_feature="patch"`), videos the video tower (temporal attention in every layer) and keep every
    token; both are taken at `mm_vision_select_layer` and go through the shared projector."""
    layer = original_config.get("mm_vision_select_layer", -2)
    blocks: list[torch.Tensor] = []
    for item in media:
        if item.ndim == 3:  # image (3, H, W)
            hidden = _tower_hidden_states(state, "model.image_tower.image_tower.", vision, item[None], None)[layer]
            if original_config.get("mm_vision_select_feature", "patch") == "patch":
                hidden = hidden[:, 1:]
            blocks.append(_project(state, hidden)[0])  # (P, Dt)
        elif item.ndim == 4:  # video (3, T, H, W) -> frames (T, 3, H, W)
            frames = item.permute(1, 0, 2, 3)
            if frames.shape[0] != num_frames:
                raise ConversionError(f"The original video tower takes {num_frames} frames, got {frames.shape[0]}.")
            hidden = _tower_hidden_states(state, "model.video_tower.video_tower.", vision, frames, num_frames)[layer]
            blocks.extend(_project(state, hidden))  # T blocks of (N, Dt)
        else:
            raise ConversionError(
                f"media items must be (3, H, W) images or (3, T, H, W) videos, got {tuple(item.shape)}."
            )
    markers = (input_ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
    if len(markers) != len(blocks):
        raise ConversionError(f"{len(markers)} feature markers (-200) in input_ids but {len(blocks)} feature blocks.")
    pieces, start = [], 0
    embed = state["model.embed_tokens.weight"]
    for marker, block in zip(markers, blocks, strict=True):
        pieces += [embed[input_ids[start:marker]], block.to(embed.dtype)]
        start = marker + 1
    pieces.append(embed[input_ids[start:]])
    return _llama_logits(state, original_config, torch.cat(pieces))


# ----------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------


def _prepare_tokenizer(location: str | Path, source_rows: int):
    """(tokenizer with the added tokens, their ids, how many leading rows belong to the tokenizer's own tokens,
    the tokenizer settings added with the reason).

    The third number is where the mean for the new rows is taken: the original tokens, not padding rows and not
    placeholder tokens a tokenizer may already list beyond the table."""
    tokenizer, settings_added = load_tokenizer(
        location,
        hint="Pass the directory of the Vicuna tokenizer saved with the checkpoint (`tokenizer=` / --tokenizer).",
    )
    base_tokens = min(len(tokenizer), source_rows)
    return tokenizer, extend_tokenizer(tokenizer, source_rows), base_tokens, settings_added


def convert_original_checkpoint(
    source: str | Path,
    output_dir: str | Path,
    *,
    tokenizer: str | Path | None = None,
    image_tower: str | Path | None = None,
    video_tower: str | Path | None = None,
    vision_config: Mapping[str, Any] | None = None,
    num_frames: int | None = None,
    temporal_attention: bool | None = None,
    pad_vocab_to_multiple_of: int | None = None,
    **options: Any,
) -> ConversionReport:
    """Convert an original Video-LLaVA checkpoint (directory or Hub id) to `output_dir`. See docs/conversion.md.

    Args:
        tokenizer: where the Vicuna tokenizer is (default: the checkpoint directory).
        image_tower / video_tower: LanguageBind tower directories, config.json files or Hub ids; only their
            config.json is read (shapes, hidden_act, num_frames, add_time_attn). Without them the documented
            ViT-L/14 defaults apply; `vision_config` overrides single fields either way.
        num_frames / temporal_attention: video tower settings (default: the video tower config, else 8 / True).
        pad_vocab_to_multiple_of: round the vocabulary up.
        options: the output options of `ConversionOptions` (dtype, max_shard_size, verify, push_to_hub_repo, ...).
            `verify` loads the result with `VideoLlavaForConditionalGeneration.from_pretrained` and compares its
            logits with `original_reference_logits` on a random prompt (an image and a video).
    """
    opts, unknown = ConversionOptions.split(options)
    if unknown:
        raise TypeError(f"convert_original_checkpoint() got unexpected keyword argument(s) {sorted(unknown)}.")
    src = open_source(source, opts)
    name, original = src.name, src.config
    if original.get("model_type") == "video_llava":
        raise ConversionError(
            f"{name} is in Transformers' built-in layout; use convert_transformers_checkpoint (--layout transformers)."
        )
    files = find_weight_files(src.directory)
    shard_shapes = {f: read_shard_shapes(f) for f in files}
    embed_shapes = [s["model.embed_tokens.weight"] for s in shard_shapes.values() if "model.embed_tokens.weight" in s]
    _require(
        len(embed_shapes) == 1, f"Expected exactly one model.embed_tokens.weight in {name}, found {len(embed_shapes)}."
    )
    source_rows = embed_shapes[0][0]

    vision, tower_frames, tower_temporal = resolve_vision_config(
        image_tower=image_tower, video_tower=video_tower, overrides=vision_config
    )
    frames = num_frames or tower_frames or DEFAULT_NUM_FRAMES
    temporal = (
        temporal_attention
        if temporal_attention is not None
        else (tower_temporal if tower_temporal is not None else True)
    )
    tok, token_ids, base_tokens, settings_added = _prepare_tokenizer(tokenizer or src.directory, source_rows)
    added_ids = sorted(i for i in token_ids.values() if i >= base_tokens)
    vocab = target_vocab_size(source_rows, len(tok), pad_vocab_to_multiple_of)
    config = config_from_original(
        original, vision, vocab_size=vocab, token_ids=token_ids, num_frames=frames, temporal_attention=temporal
    )

    ignore = list(ORIGINAL_IGNORED_KEYS)
    if config.tie_word_embeddings:
        ignore.append(IgnoreRule(r"^lm_head\.weight$", "tied to embed_tokens (tie_word_embeddings=true)"))
    plan = plan_conversion(
        shard_shapes,
        make_key_mapper(ORIGINAL_KEY_RULES, ignore),
        expected_state_shapes(config),
        row_extendable=(EMBED_KEY, LM_HEAD_KEY),
        hint=(
            "If the checkpoint has no temporal-attention keys, pass temporal_attention=False "
            "(--no-temporal-attention); if tower shapes or the frame count differ, pass the towers' configs "
            "(--image-tower/--video-tower), vision_config overrides (--vision-config) or num_frames (--num-frames)"
        ),
    )
    out = prepare_output_dir(output_dir, opts.overwrite)
    out_dtype = parse_dtype(opts.dtype)

    def transform(key: str, tensor: torch.Tensor) -> torch.Tensor:
        if key not in (EMBED_KEY, LM_HEAD_KEY):
            return tensor
        # (V, D) -> (vocab, D); the added tokens' rows = mean of the rows of the tokenizer's original tokens
        return extend_rows(tensor, vocab, fill_ids=added_ids, mean_rows=base_tokens)

    stats = write_shards(
        plan, out, transform=transform, dtype=out_dtype, max_shard_size=opts.max_shard_size, progress=opts.progress
    )
    saved_dtype = out_dtype or stats.source_dtype or torch.float32
    config.dtype = saved_dtype  # from_pretrained(dtype="auto") then keeps the weights' precision
    report = ConversionReport.from_shards(
        "original", name, out, stats, plan, saved_dtype,
        added_tokens={t: i for t, i in token_ids.items() if i >= base_tokens},
        source_vocab_size=source_rows, vocab_size=vocab,
    )
    processor = build_processor(
        config, tok, resample_mode="original", do_pad_to_square=original.get("image_aspect_ratio") == "pad"
    )
    verify_dtype = parse_dtype(opts.verify_dtype) or torch.float32
    return finish_conversion(
        report, src, config, processor, opts,
        verify=lambda: verify_original_conversion(files, out, original, vision, frames, dtype=verify_dtype),
        tokenizer_added=settings_added,
    )


def _random_prompt(
    config: VideoLlavaConfig, source_rows: int, generator: torch.Generator
) -> tuple[list[int], list[int]]:
    """(ours, original) token id lists of one prompt: text, an image, text, a video, text."""

    def text(n: int) -> list[int]:
        return torch.randint(3, source_rows, (n,), generator=generator).tolist()

    bos = config.text_config.bos_token_id
    head, middle, tail = [*([bos] if bos is not None else []), *text(5)], text(4), text(3)
    ours = head + [config.image_token_index] * config.image_seq_length + middle
    ours += [config.video_token_index] * config.video_seq_length + tail
    original = head + [IMAGE_TOKEN_INDEX] + middle + [IMAGE_TOKEN_INDEX] * config.num_frames + tail
    return ours, original


@torch.no_grad()
def verify_original_conversion(
    files: Sequence[Path],
    output_dir: Path,
    original: Mapping[str, Any],
    vision: Mapping[str, Any],
    num_frames: int,
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> float:
    """Max |logits| difference between the converted model and `original_reference_logits` on a random prompt with
    one image and one video, over the original vocabulary. Holds the source weights and the converted model in
    memory at `dtype` (two copies of the model)."""
    from ..models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration

    model = VideoLlavaForConditionalGeneration.from_pretrained(str(output_dir), dtype=dtype).eval()
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update({k: v.to(dtype) if v.is_floating_point() else v for k, v in load_shard(file, mmap=False).items()})
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    source_rows = state["model.embed_tokens.weight"].shape[0]
    ours_ids, original_ids = _random_prompt(config, source_rows, generator)
    side = config.vision_config.image_size
    image = torch.randn(1, 3, side, side, generator=generator, dtype=dtype)
    video = torch.randn(1, num_frames, 3, side, side, generator=generator, dtype=dtype)  # ours: (V, T, 3, H, W)
    logits = model(input_ids=torch.tensor([ours_ids]), pixel_values=image, pixel_values_videos=video).logits[0]
    reference = original_reference_logits(
        state,
        original,
        vision,
        torch.tensor(original_ids),
        [image[0], video[0].permute(1, 0, 2, 3)],
        num_frames=num_frames,
    )
    if logits.shape[0] != reference.shape[0]:
        raise ConversionError(f"Sequence lengths differ: converted {logits.shape[0]}, reference {reference.shape[0]}.")
    return float((logits[:, :source_rows].float() - reference.float()).abs().max())


__all__ = [
    "ADDED_TOKENS",
    "DEFAULT_NUM_FRAMES",
    "IMAGE_TOKEN_INDEX",
    "LANGUAGEBIND_VISION_DEFAULTS",
    "ORIGINAL_IGNORED_KEYS",
    "ORIGINAL_KEY_RULES",
    "config_from_original",
    "convert_original_checkpoint",
    "extend_tokenizer",
    "original_reference_logits",
    "read_tower_config",
    "resolve_vision_config",
    "target_vocab_size",
    "verify_original_conversion",
]
