"""Everything version-sensitive or private that the package needs from Transformers, in one place.

Each entry says since which release it is needed and when it can go. Everywhere else the package uses public,
top-level Transformers imports. The supported range is the one `pyproject.toml` admits (and CI tests).
"""

from __future__ import annotations

import dataclasses

from transformers.modeling_outputs import BaseModelOutputWithPast

# Transformers 5.24 renamed the cache of model inputs and outputs from `past_key_values` to `cache` (5.24 still
# accepts the old name with a warning; `LlamaModel.forward` drops it in 5.40). The name the installed release uses.
# Remove when the floor is >= 5.24: then it is always "cache".
CACHE_NAME: str = "cache" if "cache" in {f.name for f in dataclasses.fields(BaseModelOutputWithPast)} else "past_key_values"


def resolve_cache(cache, past_key_values):
    """One cache from a `forward` that accepts both names (callers on either release). Remove with CACHE_NAME."""
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("Pass the cache once, as `cache` or as `past_key_values`, not both.")
    return cache if cache is not None else past_key_values


# Copies a class's module (and its sibling imports) next to a checkpoint and records it in `auto_map`; public in
# every 5.x release but not re-exported at the top level. Keep while remote-code export is offered.
from transformers.dynamic_module_utils import custom_object_save  # noqa: E402

# The raw tokenizer_config.json of a local directory or Hub repo (the converters read which settings the source
# states). Public in every 5.x release, not re-exported at the top level. Keep while the converters need it.
from transformers.models.auto.tokenization_auto import get_tokenizer_config  # noqa: E402

# The registry of attention kernels ("sdpa", "flash_attention_2", "flex_attention", ...) that Transformers' own models
# dispatch on `config._attn_implementation`; lives in `transformers.modeling_utils` (not re-exported at the top level)
# in every 5.x release. The towers use it so `attn_implementation=` reaches them. Keep while 5.x is supported.
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # noqa: E402


def attention_function(config, eager):
    """The attention kernel a (sub-)config asks for: `eager` for "eager", else the registry's entry for the config's
    private `_attn_implementation` (which `from_pretrained(attn_implementation=...)` / `set_attn_implementation` set on
    every sub-config, 5.x), SDPA when unset (a module built outside a PreTrainedModel)."""
    implementation = getattr(config, "_attn_implementation", None) or "sdpa"
    return eager if implementation == "eager" else ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager)


def activation_checkpointing(model) -> bool:
    """Whether any module of `model` checkpoints activations, without a deprecation warning.

    Transformers 5.23 and 5.24 deprecate `PreTrainedModel.is_gradient_checkpointing` (a FutureWarning on every read;
    removed in v6) for `is_activation_checkpointing`; PEFT (0.21) still reads the old name in `get_peft_model`, so
    our model classes answer it through this function. Remove (with the overriding property) once PEFT reads
    `is_activation_checkpointing` and the floor is a release that no longer has the old name."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def forget_load_renaming(model) -> None:
    """Drop the key renaming `from_pretrained(key_mapping=...)` recorded on `model`.

    Transformers 5 keeps the renaming a model was loaded with (private `model._weight_conversions`, 5.23 and 5.24) and
    undoes it in `save_pretrained`; for a built-in checkpoint read into our classes that would write the built-in's
    key layout under our model_type, which then no longer loads. Our reading of built-in checkpoints is one-way, so
    the record is dropped (saving then uses our own layout). Keep while built-in checkpoints are read by key_mapping."""
    if getattr(model, "_weight_conversions", None) is not None:
        model._weight_conversions = None


# What `ProcessorMixin._get_num_multimodal_tokens` returns: vLLM's Transformers backend reads it to size the
# placeholder runs. Documented by Transformers as "aimed to be used only in vLLM" and open to change; present in 5.23
# and 5.24. Keep while the processor offers `_get_num_multimodal_tokens`.
from transformers.processing_utils import MultiModalData  # noqa: E402

__all__ = [
    "ALL_ATTENTION_FUNCTIONS",
    "CACHE_NAME",
    "MultiModalData",
    "activation_checkpointing",
    "attention_function",
    "custom_object_save",
    "forget_load_renaming",
    "get_tokenizer_config",
    "resolve_cache",
]
