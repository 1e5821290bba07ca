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

    values = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS}
    return run(*arguments_from_values(values))


__all__ = ["register"]
