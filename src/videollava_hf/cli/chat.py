"""`videollava-hf chat [MEDIA]`: a multi-turn conversation about one video or image, read line by line from stdin.

The conversation uses the original Video-LLaVA (llava_v1) format: the media is attached to the first user turn and
every later turn sees the whole history ("... USER: <video>\\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT:"). An empty
line is skipped; "exit", "quit" or end of input (Ctrl-D) ends the chat.
"""

from __future__ import annotations

import argparse
import sys

from .common import (
    EXIT_INTERRUPTED,
    CommandError,
    add_model_arguments,
    answer,
    build_pipeline,
    media_item,
    media_kind,
    run_command,
    warn_if_toy_model,
)

EXIT_WORDS = frozenset({"exit", "quit", "/exit", "/quit"})


def read_turn(interactive: bool) -> str | None:
    """The next user line, or None at end of input."""
    if interactive:
        try:
            return input("USER: ")
        except EOFError:
            return None
    line = sys.stdin.readline()
    return None if line == "" else line


def chat(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise CommandError("--max-new-tokens must be at least 1.")
    kind = media_kind(args.media) if args.media else None
    pipe = build_pipeline(args)
    warn_if_toy_model(args, args.media)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a question and press Enter; 'exit' or Ctrl-D ends the chat.", file=sys.stderr)
    messages: list[dict] = []
    try:
        while True:
            line = read_turn(interactive)
            if line is None:
                break
            question = line.strip()
            if not question:
                continue
            if question.lower() in EXIT_WORDS:
                break
            content = [{"type": "text", "text": question}]
            if not messages and kind is not None:
                content.insert(0, media_item(args.media, kind))  # media on the first turn only
            messages.append({"role": "user", "content": content})
            print("ASSISTANT: ", end="", flush=True)
            reply = answer(pipe, messages, args, stream=True)  # the streamer ends the line
            messages.append({"role": "assistant", "content": [{"type": "text", "text": reply}]})
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="Chat about a video or an image (several turns).",
        description=(
            "Multi-turn chat in the original Video-LLaVA conversation format. Reads one question per line from "
            "stdin; 'exit', 'quit' or end of input stops."
        ),
    )
    parser.add_argument(
        "media", nargs="?", default=None,
        help="A video or image attached to the first turn (optional: without it the chat is text only).",
    )
    add_model_arguments(parser)
    parser.set_defaults(func=lambda args: run_command(chat, args))


__all__ = ["chat", "read_turn", "register"]
