"""The `videollava-hf` command line: `videollava-hf COMMAND --help` describes each command."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each name is a module in videollava_hf.cli with a `register(subparsers)` function.
COMMANDS: tuple[str, ...] = ("ask", "chat", "describe", "train", "convert", "card", "eval", "demo", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videollava-hf",
        description="Video-LLaVA on the Hugging Face stack: ask questions about videos, convert, fine-tune, evaluate.",
    )
    parser.add_argument("--debug", action="store_true", help="Show tracebacks instead of one-line errors.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"videollava_hf.cli.{name}").register(subparsers)
    for subparser in subparsers.choices.values():  # `videollava-hf ask ... --debug` works too
        try:
            subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                   help="Show tracebacks instead of one-line errors.")
        except argparse.ArgumentError:  # train: TrainingArguments' own --debug; the top-level one still works
            pass
    return parser


def main(argv: list[str] | None = None) -> int:
    from .common import run_command

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    # Every command's errors become one line (`videollava-hf COMMAND: error: ...`), tracebacks only with --debug.
    return int(run_command(args.func, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
