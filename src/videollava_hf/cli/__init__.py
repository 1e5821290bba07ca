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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"videollava_hf.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
