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

__all__ = ["CACHE_NAME", "custom_object_save", "get_tokenizer_config", "resolve_cache"]
