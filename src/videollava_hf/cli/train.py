"""`videollava-hf train --config recipe.yaml [--flag value ...]`: the fine-tuning script as a CLI command.

The flags are the script's (`python -m videollava_hf.training --help`): every field of ModelArguments, DataArguments
and VideoLlavaTrainingArguments, plus `--config`. Flags given on the command line override the recipe."""

from __future__ import annotations

import argparse

_NOT_OPTIONS = ("command", "func")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..training.arguments import build_argument_parser

    parser = subparsers.add_parser(
        "train",
        parents=[build_argument_parser(add_help=False)],
        help="Fine-tune with transformers.Trainer (stage 1 / stage 2 / LoRA), from a YAML recipe.",
        description="Fine-tune Video-LLaVA with transformers.Trainer. Recipes: recipes/*.yaml; multi-process: "
        "accelerate launch -m videollava_hf.training (see docs/training.md).",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..training.arguments import arguments_from_values
    from ..training.script import run

    from ..training.arguments import TINY_MODEL
    from .common import check_videollava, resolve_model

    values = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS}
    if isinstance(values.get("debug"), bool):  # the CLI's own --debug (tracebacks), not TrainingArguments' option
        values.pop("debug")
    model_args, data_args, training_args = arguments_from_values(values)
    if model_args.model_name_or_path and model_args.model_name_or_path != TINY_MODEL:
        # A wrong directory fails here in one line, before the data is read and Trainer is set up.
        check_videollava(resolve_model(model_args.model_name_or_path, "--model_name_or_path"), "--model_name_or_path")
    return run(model_args, data_args, training_args)


__all__ = ["register"]
