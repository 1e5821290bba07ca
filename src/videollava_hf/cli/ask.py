"""`videollava-hf ask MEDIA "question"`: one question about one video or image, the answer streamed to the terminal."""

from __future__ import annotations

import argparse

from ..demo import sample_video_path
from .common import (
    SAMPLE,
    CommandError,
    add_model_arguments,
    answer,
    build_pipeline,
    media_item,
    media_kind,
    run_command,
    warn_if_toy_model,
)


# --- the command -------------------------------------------------------------------------------------------------


def ask(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise CommandError("--max-new-tokens must be at least 1.")
    if args.media == SAMPLE:
        args.media = str(sample_video_path())
    kind = media_kind(args.media)
    pipe = build_pipeline(args)
    warn_if_toy_model(args, args.media)
    messages = [{"role": "user", "content": [media_item(args.media, kind), {"type": "text", "text": args.question}]}]
    reply = answer(pipe, messages, args, stream=not args.no_stream)
    if args.no_stream:
        print(reply)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="Ask one question about a video or an image.",
        description="Ask one question about a video or an image; the answer is streamed to the terminal.",
    )
    parser.add_argument(
        "media",
        help=f"A video (mp4, mkv, webm, avi, mov, ...) or an image (jpg, png, ...); '{SAMPLE}' is the clip bundled "
             "with the package (a synthetic scene the demo model knows).",
    )
    parser.add_argument("question", help='The question, e.g. "What is the man doing?"')
    add_model_arguments(parser)
    parser.add_argument("--no-stream", action="store_true", help="Print the answer once it is complete.")
    parser.set_defaults(func=lambda args: run_command(ask, args))


__all__ = ["ask", "register"]
