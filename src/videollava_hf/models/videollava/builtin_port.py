"""Reading checkpoints saved by Transformers' built-in Video-LLaVA (`model_type="video_llava"`).

The built-in layout (e.g. LanguageBind/Video-LLaVA-7B-hf) differs from ours only in key prefixes, and its video
tower is a plain CLIP (no temporal attention). Every key is mapped by one anchored rule below; loading refuses
any key left unmapped or missing (see `VideoLlavaPreTrainedModel.from_pretrained`).
"""

from __future__ import annotations

import re
from typing import Any

from .configuration_videollava import LANGUAGEBIND_VISION_DEFAULTS, VideoLlavaConfig

TRANSFORMERS_MODEL_TYPE = "video_llava"

# (anchored source pattern, replacement). First match wins, as in Transformers' `key_mapping`.
# Hub checkpoints (saved by Transformers 4.x) have `*_tower.vision_model.*`; Transformers 5 writes `*_tower.*`.
TRANSFORMERS_KEY_RULES: list[tuple[str, str]] = [
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    (r"^image_tower\.vision_model\.", "model.image_tower."),
    (r"^video_tower\.vision_model\.", "model.video_tower."),
    (r"^image_tower\.", "model.image_tower."),
    (r"^video_tower\.", "model.video_tower."),
    (r"^multi_modal_projector\.", "model.multi_modal_projector."),
    (r"^model\.image_tower\.vision_model\.", "model.image_tower."),
    (r"^model\.video_tower\.vision_model\.", "model.video_tower."),
]
_COMPILED = [(re.compile(p), r) for p, r in TRANSFORMERS_KEY_RULES]


def rename_transformers_key(key: str) -> str:
    """Map one built-in key to ours (keys already in our layout come back unchanged)."""
    for pattern, replacement in _COMPILED:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    return key


def is_transformers_config(config_dict: dict[str, Any]) -> bool:
    return config_dict.get("model_type") == TRANSFORMERS_MODEL_TYPE


def config_from_transformers(config_dict: dict[str, Any]) -> VideoLlavaConfig:
    """Our config for a built-in `config.json`: same shapes, temporal attention off (the built-in has none)."""
    d = dict(config_dict)
    vision = dict(d.get("vision_config") or {})
    vision.setdefault("model_type", "clip_vision_model")
    # The built-in config only stores values that differ from its defaults: restore its ViT-L/14 defaults.
    for key, value in LANGUAGEBIND_VISION_DEFAULTS.items():
        if key != "hidden_act":  # the built-in's own default (CLIP's quick_gelu) applies when unset
            vision.setdefault(key, value)
    strategy = d.get("vision_feature_select_strategy", "default")
    layer = d.get("vision_feature_layer", -2)
    image_tokens = d.get("image_token_index", d.get("image_token_id", 32000))
    video_tokens = d.get("video_token_index", d.get("video_token_id", 32001))
    return VideoLlavaConfig(
        vision_config=vision,
        text_config=d.get("text_config"),
        image_token_index=image_tokens,
        video_token_index=video_tokens,
        projector_hidden_act=d.get("projector_hidden_act", "gelu"),
        vision_feature_layer=layer,
        vision_feature_select_strategy=strategy,
        video_feature_select_strategy="full",  # the built-in keeps every frame's CLS
        num_frames=8,
        video_temporal_attention=False,
        multimodal_projector_bias=d.get("multimodal_projector_bias", True),
        tie_word_embeddings=d.get("tie_word_embeddings", False),
    )


__all__ = [
    "TRANSFORMERS_KEY_RULES",
    "config_from_transformers",
    "is_transformers_config",
    "rename_transformers_key",
]
