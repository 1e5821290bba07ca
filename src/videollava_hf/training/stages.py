"""Which parameters train: the paper's two stages, tower opt-ins, and LoRA on the language model only.

Stage sets, by state-dict prefix (towers are frozen in both unless asked for):

    "pretrain" (stage 1, alignment):   model.multi_modal_projector.*
    "finetune" (stage 2, instruction): model.multi_modal_projector.*, model.language_model.*, lm_head.*
    train_image_tower / train_video_tower add model.image_tower.* / model.video_tower.*

LoRA (stage 2 only) wraps the language model's linear layers, chosen by *full module path*: the target is a regex
anchored on `model.language_model.` (peft matches a string target with `re.fullmatch` against each module's path),
so the towers' `q_proj` / `k_proj` / `v_proj` / `out_proj` and `fc1` / `fc2`, which share leaf names with the
language model's, are never wrapped. The projector can stay fully trainable (peft `modules_to_save`), and
`save_merged` folds the adapters into plain weights saved as safetensors.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..models.videollava.configuration_videollava import VideoLlavaConfig
from ..models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration

logger = logging.getLogger(__name__)

STAGES = ("pretrain", "finetune")
PROJECTOR_PREFIX = "model.multi_modal_projector."
LANGUAGE_MODEL_PREFIX = "model.language_model."
LM_HEAD_PREFIX = "lm_head."
IMAGE_TOWER_PREFIX = "model.image_tower."
VIDEO_TOWER_PREFIX = "model.video_tower."
PROJECTOR_MODULE = "multi_modal_projector"


def stage_prefixes(stage: str, train_image_tower: bool = False, train_video_tower: bool = False) -> tuple[str, ...]:
    """State-dict prefixes of the parameters that train in `stage`."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES} (stage 1 / stage 2 of the paper), got {stage!r}.")
    prefixes = [PROJECTOR_PREFIX]
    if stage == "finetune":
        prefixes += [LANGUAGE_MODEL_PREFIX, LM_HEAD_PREFIX]
    if train_image_tower:
        prefixes.append(IMAGE_TOWER_PREFIX)
    if train_video_tower:
        prefixes.append(VIDEO_TOWER_PREFIX)
    return tuple(prefixes)


def set_trainable(
    model: VideoLlavaForConditionalGeneration,
    stage: str,
    *,
    train_image_tower: bool = False,
    train_video_tower: bool = False,
) -> list[str]:
    """Freeze everything, then unfreeze the stage's parameters. Returns the trainable parameter names."""
    _check_model(model)
    prefixes = stage_prefixes(stage, train_image_tower, train_video_tower)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
    return trainable_parameter_names(model)


def trainable_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, VideoLlavaForConditionalGeneration):
        raise TypeError(
            f"Expected a videollava_hf VideoLlavaForConditionalGeneration, got {type(model).__name__}. Load it with "
            "VideoLlavaForConditionalGeneration.from_pretrained (built-in Transformers checkpoints load too)."
        )


# --------------------------------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------------------------------


@dataclass
class LoraSettings:
    """LoRA on the language model (defaults: Video-LLaVA's finetune_lora.sh, r=128, alpha=256, dropout 0.05).

    train_projector: keep the projector fully trainable (saved whole, not as an adapter).
    target_regex: override the computed target (must still only match `model.language_model.` modules).
    """

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    train_projector: bool = True
    target_regex: str | None = None


def language_model_linear_names(model: nn.Module) -> list[str]:
    """Full paths of every nn.Linear inside the language model."""
    return [
        name
        for name, module in model.named_modules()
        if name.startswith(LANGUAGE_MODEL_PREFIX) and isinstance(module, nn.Linear)
    ]


def lora_target_regex(model: nn.Module) -> str:
    """A regex that fully matches exactly the language model's linear layers, e.g.
    `model\\.language_model\\.(?:.*\\.)?(?:down_proj|gate_proj|k_proj|o_proj|q_proj|up_proj|v_proj)`."""
    leaves = sorted({name.rsplit(".", 1)[-1] for name in language_model_linear_names(model)})
    if not leaves:
        raise ValueError("The language model has no nn.Linear layers to put LoRA adapters on.")
    return re.escape(LANGUAGE_MODEL_PREFIX) + r"(?:.*\.)?(?:" + "|".join(map(re.escape, leaves)) + ")"


def apply_lora(
    model: VideoLlavaForConditionalGeneration,
    settings: LoraSettings | None = None,
    extra_modules_to_save: tuple[str, ...] = (),
):
    """Wrap `model` with peft LoRA adapters on the language model's linear layers; everything else frozen except
    the projector when `settings.train_projector` and the modules named in `extra_modules_to_save` (e.g.
    "image_tower"), which train whole and are saved whole. Returns the `peft.PeftModel`."""
    _check_model(model)
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError("LoRA needs peft: pip install 'videollava-hf[lora]' (or pip install peft).") from err
    settings = settings or LoraSettings()
    target = settings.target_regex or lora_target_regex(model)
    stray = [n for n, m in model.named_modules() if re.fullmatch(target, n) and not n.startswith(LANGUAGE_MODEL_PREFIX)]
    if stray:
        raise ValueError(
            f"LoRA target {target!r} matches modules outside the language model: {stray[:5]}. Anchor the regex on "
            f"{LANGUAGE_MODEL_PREFIX!r}."
        )
    model.requires_grad_(False)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target,
        modules_to_save=([PROJECTOR_MODULE] if settings.train_projector else []) + list(extra_modules_to_save) or None,
        bias="none",
    )
    peft_model = get_peft_model(model, config)
    # With the embeddings frozen, reentrant gradient checkpointing would see inputs that need no grad and drop
    # the adapters' gradients; this hook makes the embedding output require grad.
    model.enable_input_require_grads()
    return peft_model


def lora_wrapped_module_names(peft_model: nn.Module) -> list[str]:
    """Paths (relative to the base VideoLlavaForConditionalGeneration) of modules carrying LoRA adapters."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    return [name for name, module in base.named_modules() if isinstance(module, LoraLayer)]


def save_merged(peft_model: nn.Module, output_dir: str | Path, processor=None, safe_serialization: bool = True) -> Path:
    """Fold the LoRA adapters into the base weights and save a plain model (safetensors) that
    `VideoLlavaForConditionalGeneration.from_pretrained` loads with no missing or unexpected keys.

    Merges in place: the adapters are gone from `peft_model` afterwards (call this at the end of training)."""
    merged = peft_model.merge_and_unload()
    out = Path(output_dir)
    merged.save_pretrained(out, safe_serialization=safe_serialization)
    if processor is not None:
        processor.save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------------------------
# Building a model for training
# --------------------------------------------------------------------------------------------------------------


def _dtype(name: str | torch.dtype | None):
    if name is None or isinstance(name, torch.dtype) or name == "auto":
        return name
    if not hasattr(torch, name) or not isinstance(getattr(torch, name), torch.dtype):
        raise ValueError(f"torch_dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {name!r}.")
    return getattr(torch, name)


def build_model_for_training(
    source: str | Path | VideoLlavaConfig | VideoLlavaForConditionalGeneration,
    stage: str = "finetune",
    *,
    lora: bool | LoraSettings = False,
    train_image_tower: bool = False,
    train_video_tower: bool = False,
    torch_dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
) -> nn.Module:
    """A model ready for `Trainer`: loaded (path / Hub id), randomly initialised (a config) or given (a model),
    with the stage's freeze set applied, and wrapped with LoRA when `lora` is truthy (stage "finetune" only)."""
    stage_prefixes(stage)  # validates the stage name
    if lora and stage != "finetune":
        raise ValueError(
            "LoRA is a stage-2 option: use stage='finetune' with lora=True (stage 1 trains the projector)."
        )
    if isinstance(source, VideoLlavaForConditionalGeneration):
        model = source
    elif isinstance(source, VideoLlavaConfig):
        if attn_implementation:
            source._attn_implementation = attn_implementation
        model = VideoLlavaForConditionalGeneration(source)
        if torch_dtype not in (None, "auto"):
            model = model.to(_dtype(torch_dtype))
    else:
        kwargs = {"dtype": _dtype(torch_dtype)} if torch_dtype is not None else {}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        model = VideoLlavaForConditionalGeneration.from_pretrained(str(source), **kwargs)
    model.config.text_config.use_cache = False  # the KV cache is useless (and costs memory) while training
    if lora:
        settings = lora if isinstance(lora, LoraSettings) else LoraSettings()
        # Trained towers are peft "modules to save": trained whole and stored whole in adapter checkpoints.
        towers = tuple(n for n, on in (("image_tower", train_image_tower), ("video_tower", train_video_tower)) if on)
        return apply_lora(model, settings, extra_modules_to_save=towers)
    set_trainable(model, stage, train_image_tower=train_image_tower, train_video_tower=train_video_tower)
    return model


__all__ = [
    "IMAGE_TOWER_PREFIX",
    "LANGUAGE_MODEL_PREFIX",
    "LM_HEAD_PREFIX",
    "LoraSettings",
    "PROJECTOR_PREFIX",
    "STAGES",
    "VIDEO_TOWER_PREFIX",
    "apply_lora",
    "build_model_for_training",
    "language_model_linear_names",
    "lora_target_regex",
    "lora_wrapped_module_names",
    "save_merged",
    "set_trainable",
    "stage_prefixes",
    "trainable_parameter_names",
]
