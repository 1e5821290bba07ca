"""Command-line arguments of the training script: three dataclasses for `HfArgumentParser`, YAML recipes.

[`ModelArguments`], [`DataArguments`] and [`VideoLlavaTrainingArguments`] (a `TrainingArguments` with the paper's
defaults and the stage / LoRA / truncation options). Precedence: dataclass defaults < the YAML `--config` file <
command-line flags. Kept apart from `script.py` so the CLI can build its parser without importing `Trainer`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser, TrainingArguments

from .collator import PROMPT_FORMATS, TRUNCATION_POLICIES
from .stages import STAGES

TINY_MODEL = "tiny-random"


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": f"Checkpoint directory or Hub id in videollava_hf (or built-in) format; '{TINY_MODEL}' "
                          "builds the tiny random test model (no download)."},
    )
    processor_name_or_path: str | None = field(
        default=None, metadata={"help": "Where to load the processor from (default: model_name_or_path)."}
    )
    tiny_num_frames: int = field(default=4, metadata={"help": f"Frames per video of the '{TINY_MODEL}' model."})
    train_image_tower: bool = field(default=False, metadata={"help": "Also train the image tower (frozen by default)."})
    train_video_tower: bool = field(default=False, metadata={"help": "Also train the video tower (frozen by default)."})
    torch_dtype: str | None = field(
        default=None, metadata={"help": "Weights dtype: auto, float32, bfloat16 (use --bf16 for mixed precision)."}
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "sdpa, eager, flash_attention_2, ..."})


@dataclass
class DataArguments:
    data_path: list[str] = field(
        default_factory=list, metadata={"help": "Training data in LLaVA conversation format: JSON / JSONL / parquet files, "
                                             "videofolder / imagefolder directories or save_to_disk folders."}
    )
    eval_data_path: list[str] = field(default_factory=list, metadata={"help": "Optional evaluation files."})
    media_root: str | None = field(default=None, metadata={"help": "Directory relative media paths resolve against."})
    image_root: str | None = field(default=None, metadata={"help": "Overrides media_root for images."})
    video_root: str | None = field(default=None, metadata={"help": "Overrides media_root for videos."})
    skip_bad_samples: bool = field(
        default=False, metadata={"help": "Skip (and count, and log) malformed records and unreadable media."}
    )
    check_media_files: bool = field(
        default=True, metadata={"help": "Check up front that every media file exists (a stat per record)."}
    )
    num_frames: int | None = field(
        default=None, metadata={"help": "Frames sampled per video (default: the processor's, 8 for Video-LLaVA)."}
    )
    prompt_format: str = field(
        default="llava_v1",
        metadata={"help": "llava_v1 (conversation template, stage 2) or plain ('<video>{caption}\\n', stage 1).",
                  "choices": list(PROMPT_FORMATS)},
    )
    add_system_prompt: bool = field(default=True, metadata={"help": "Start llava_v1 prompts with the system prompt."})
    pad_images_to_square: bool = field(
        default=False, metadata={"help": "Pad images to a square before resizing (original stage 2: 'pad')."}
    )
    max_samples: int | None = field(default=None, metadata={"help": "Use only the first N records (quick runs)."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Cache directory for `datasets`."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for normalising and measuring records."}
    )


@dataclass
class VideoLlavaTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's defaults (1 epoch, cosine, warmup 3%, weight decay 0, lr 2e-5 for
    stage 2; stage 1 recipes set 1e-3) and the Video-LLaVA options below."""

    stage: str = field(
        default="finetune",
        metadata={"help": "pretrain: projector only (stage 1); finetune: projector + language model (stage 2).",
                  "choices": list(STAGES)},
    )
    lora: bool = field(default=False, metadata={"help": "LoRA on the language model's linear layers (stage 2)."})
    lora_r: int = field(default=128, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_train_projector: bool = field(default=True, metadata={"help": "With LoRA, train the projector fully."})
    lora_save_merged: bool = field(
        default=True, metadata={"help": "With LoRA, save the merged full model (safetensors) as the final output."}
    )
    projector_lr: float | None = field(
        default=None, metadata={"help": "Separate learning rate for the projector (original LoRA recipe: 2e-5)."}
    )
    model_max_length: int = field(default=2048, metadata={"help": "Longest sequence in tokens, media included."})
    truncation: str = field(
        default="drop",
        metadata={"help": "Overlong samples: drop (counted), error, or truncate_text (never inside media tokens).",
                  "choices": list(TRUNCATION_POLICIES)},
    )
    write_model_card: bool = field(default=True, metadata={"help": "Write README.md (model card) into output_dir."})
    per_rank_log: bool = field(
        default=False,
        metadata={"help": "Every process appends its own step losses to output_dir/rank_logs/rank<R>.jsonl."},
    )
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "Alias of a fractional warmup_steps (the original scripts' flag)."}
    )
    # Paper defaults (Video-LLaVA scripts/v1_5): 1 epoch, cosine schedule, 3% warmup, no weight decay.
    num_train_epochs: float = field(default=1.0, metadata={"help": "Training epochs (paper: 1)."})
    learning_rate: float = field(
        default=2e-5, metadata={"help": "Peak learning rate (paper: 1e-3 stage 1, 2e-5 stage 2)."}
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule (paper: cosine)."})
    warmup_steps: float = field(default=0.03, metadata={"help": "Warmup steps, or a fraction of all steps if < 1."})
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay (paper: 0)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N steps (paper: 1)."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the collator reads the conversation columns."}
    )

    def __post_init__(self) -> None:
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
            self.warmup_steps = self.warmup_ratio
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}.")
        if self.truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"truncation must be one of {TRUNCATION_POLICIES}, got {self.truncation!r}.")
        if self.lora and self.stage != "finetune":
            raise ValueError("--lora is a stage-2 option: pass --stage finetune with --lora true.")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be False: the collator needs the conversation columns.")
        # `accelerate launch` starts one process per rank (torchrun); with no GPU, Accelerate only joins them into
        # a gloo process group when told to run on CPU, otherwise every rank trains alone and saves on its own.
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and not self.use_cpu:
            self.use_cpu = True
        super().__post_init__()


# --------------------------------------------------------------------------------------------------------------
# Command line and YAML
# --------------------------------------------------------------------------------------------------------------

ARGUMENT_CLASSES = (ModelArguments, DataArguments, VideoLlavaTrainingArguments)


def _field_names() -> list[str]:
    return [f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init]


def build_argument_parser(add_help: bool = True) -> HfArgumentParser:
    """The script's parser: every dataclass field as `--name`, plus `--config recipe.yaml`.

    Defaults are suppressed, so a parse returns only the flags actually given; `parse_args` layers them over the
    YAML file and the dataclass defaults."""
    parser = HfArgumentParser(ARGUMENT_CLASSES, add_help=add_help)
    parser.add_argument(
        "--config", default=None, help="YAML recipe (keys = any flag name); command-line flags override it."
    )
    names = set(_field_names())
    # Per-action defaults (argparse's documented hook is set_defaults, but that stores the SUPPRESS marker as a
    # value, which argparse then type-converts); `_actions` is the list argparse itself iterates.
    for action in parser._actions:
        if action.dest in names:
            action.default = argparse.SUPPRESS
    return parser


def _coerce(value: Any, annotation: Any) -> Any:
    """YAML reads '1e-3' as a string; turn strings into the field's numeric type."""
    if not isinstance(value, str):
        return value
    args = typing.get_args(annotation) or (annotation,)
    for kind in (int, float):
        if kind in args:
            try:
                return kind(value)
            except ValueError:
                continue
    return value


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a flat dict of field values (types coerced), refusing unknown keys."""
    import yaml

    if not Path(path).is_file():
        raise ValueError(f"--config {path}: no such recipe file.")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())}).") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping of flag names to values, got {type(data).__name__}.")
    hints = {}
    for cls in ARGUMENT_CLASSES:
        hints.update(typing.get_type_hints(cls))
    unknown = sorted(set(data) - set(_field_names()))
    if unknown:
        raise ValueError(
            f"{path}: unknown keys {unknown}. Keys are the script's flag names without dashes "
            "(see `python -m videollava_hf.training --help`)."
        )
    return {k: _coerce(v, hints.get(k)) for k, v in data.items()}


def arguments_from_values(values: dict[str, Any]):
    """Explicit values (command line, already typed) layered over the `config` recipe -> the three dataclasses."""
    values = dict(values)
    config = values.pop("config", None)
    merged = {**(load_recipe(config) if config else {}), **values}
    return HfArgumentParser(ARGUMENT_CLASSES).parse_dict(merged)


def parse_args(argv: list[str] | None = None):
    """-> (ModelArguments, DataArguments, VideoLlavaTrainingArguments) from a command line."""
    namespace = build_argument_parser().parse_args(argv)
    return arguments_from_values(vars(namespace))


__all__ = [
    "ARGUMENT_CLASSES",
    "DataArguments",
    "ModelArguments",
    "TINY_MODEL",
    "VideoLlavaTrainingArguments",
    "arguments_from_values",
    "build_argument_parser",
    "load_recipe",
    "parse_args",
]
