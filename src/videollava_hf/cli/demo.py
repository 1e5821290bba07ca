"""`videollava-hf demo`: the web demo, a Gradio page to chat about a video or an image (see docs/demo.md).

Serves on 127.0.0.1:7860 by default (only this machine); `--host 0.0.0.0` opens it to the network. Programs can call
its `/answer` endpoint with `gradio_client`.
"""

from __future__ import annotations

import argparse
import sys

from ..demo import is_demo_model
from .common import DTYPES, CommandError, build_pipeline, run_command

INSTALL_HINT = 'the web demo needs Gradio: pip install "videollava-hf[demo]" (or pip install gradio).'


def demo(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: a TCP port is 1..65535.")
    try:
        from ..webdemo.app import build_app, launch_options
    except ImportError as err:
        if getattr(err, "name", None) == "gradio" or "gradio" in str(err):
            raise CommandError(INSTALL_HINT) from err
        raise
    from ..webdemo import DemoEngine

    pipe = build_pipeline(args)  # the model and processor, loaded and checked as `videollava-hf ask` does
    name = "the bundled demo model" if args.model is None else args.model
    engine = DemoEngine(pipe.model, pipe.processor, model_name=name, is_demo_model=is_demo_model(args.model))
    app = build_app(engine)
    print(f"Starting the Video-LLaVA demo on http://{args.host}:{args.port}/ ({engine.model_name}); "
          "Ctrl-C stops it.", file=sys.stderr)
    try:
        app.launch(**launch_options(args.host, args.port))
    except OSError as err:  # Gradio found the port taken, or the address is not this machine's
        raise CommandError(f"cannot serve on {args.host}:{args.port}: the port is taken or the address is not this "
                           "machine's; pass another --port or --host.") from err
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="Start the web demo (Gradio): chat about a video or an image in a browser.",
        description=(
            "A web page to upload or drop a video or an image, ask questions and see the answer stream in, with the "
            "sampled frames and their times; an /answer API for programs. Needs the [demo] extra."
        ),
    )
    parser.add_argument(
        "--model", default=None,
        help="Video-LLaVA checkpoint: a local directory or a Hub id (default: the demo model shipped in the package).",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: every interface).")
    parser.add_argument("--port", type=int, default=7860, help="Port (default 7860).")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (GPU if there is one).")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="Weights' dtype; auto = bfloat16 on a GPU that supports it, else float32.")
    parser.set_defaults(func=lambda args: run_command(demo, args))


__all__ = ["demo", "register"]
