"""Checkpoint conversion into this package's format (sharded safetensors, config, processor, model card).

Arrows run one way: `common` (shards, key rules, reports) <- `original` (the PKU-YuanGroup release) and `builtin`
(Transformers' built-in port) <- this dispatcher; `modelcard` writes the cards.
"""

from __future__ import annotations

from pathlib import Path

from .builtin import convert_transformers_checkpoint, verify_transformers_conversion
from .common import (
    LAYOUTS,
    CheckpointMismatchError,
    ConversionError,
    ConversionReport,
    detect_layout,
    read_config_dict,
    resolve_source,
)
from .original import convert_original_checkpoint, verify_original_conversion


def convert_checkpoint(
    source: str | Path, output_dir: str | Path, *, layout: str = "auto", **kwargs
) -> ConversionReport:
    """Convert an original or built-in Video-LLaVA checkpoint (directory or Hub id) into this package's format.

    `layout="auto"` reads config.json to decide. Keyword arguments go to `convert_original_checkpoint` or
    `convert_transformers_checkpoint` (see those for the options)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    if layout == "auto":
        hub = {k: kwargs.get(k) for k in ("revision", "token", "cache_dir")}
        local = resolve_source(source, **hub)
        layout = detect_layout(read_config_dict(local))
        kwargs["source_name"] = kwargs.get("source_name") or str(source)
        source = local
    if layout == "original":
        return convert_original_checkpoint(source, output_dir, **kwargs)
    return convert_transformers_checkpoint(source, output_dir, **kwargs)


__all__ = [
    "CheckpointMismatchError",
    "ConversionError",
    "ConversionReport",
    "convert_checkpoint",
    "convert_original_checkpoint",
    "convert_transformers_checkpoint",
    "verify_original_conversion",
    "verify_transformers_conversion",
]
