"""Fine-tuning Video-LLaVA with `transformers.Trainer`: data, collator, freeze sets / LoRA, and the train script.

    from videollava_hf.training import VideoLlavaDataCollator, build_model_for_training, load_conversation_dataset

See docs/training.md. Names are imported on first use (PEP 562), so `import videollava_hf.training.arguments` (the
CLI's parser) does not pull in `Trainer`; peft is imported only for LoRA.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS = {
    "DataArguments": "arguments",
    "ModelArguments": "arguments",
    "VideoLlavaTrainingArguments": "arguments",
    "parse_args": "arguments",
    "IGNORE_INDEX": "collator",
    "PROMPT_FORMATS": "collator",
    "TRUNCATION_POLICIES": "collator",
    "VideoLlavaDataCollator": "collator",
    "filter_by_length": "collator",
    "BadSampleError": "data",
    "MediaRoots": "data",
    "SkippedSample": "data",
    "load_conversation_dataset": "data",
    "load_media": "data",
    "normalize_record": "data",
    "STAGES": "stages",
    "LoraSettings": "stages",
    "apply_lora": "stages",
    "build_model_for_training": "stages",
    "language_model_linear_names": "stages",
    "lora_target_regex": "stages",
    "lora_wrapped_module_names": "stages",
    "save_merged": "stages",
    "set_trainable": "stages",
    "stage_prefixes": "stages",
    "trainable_parameter_names": "stages",
    "TrainingOutcome": "script",
    "VideoLlavaTrainer": "script",
    "main": "script",
    "train": "script",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = sorted(_EXPORTS)
