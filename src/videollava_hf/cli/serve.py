"""`videollava-hf serve`: an OpenAI-compatible HTTP server (/v1/chat/completions with image and video URLs)."""

from __future__ import annotations

import argparse

from .common import DTYPES, CommandError, load_model, run_command

DEMO_MODEL_NAME = "videollava-hf-demo"


def serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise CommandError(f"serve needs FastAPI and uvicorn ({err}); install them with "
                           "pip install 'videollava-hf[serve]'.") from err
    from ..serving import create_app, load_engine
    from ..serving.media import allowed_dirs

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: a TCP port is 0-65535.")
    if args.max_queue < 1:
        raise CommandError("--max-queue must be at least 1.")
    model, processor = load_model(args)  # checked and placed as every command does (cli/common.py)
    engine = load_engine(model, processor, allowed_dirs(args.allowed_local_media_path), args.max_queue)
    name = args.served_model_name or (DEMO_MODEL_NAME if args.model is None else args.model)
    app = create_app(engine, model_name=name, root_path=args.root_path)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=True,
                forwarded_allow_ips=args.forwarded_allow_ips)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="Serve the model over an OpenAI-compatible HTTP API.",
        description="Serve a Video-LLaVA model over an OpenAI-compatible API: GET /v1/models, POST "
                    "/v1/chat/completions with image_url / video_url content parts (http(s)://, file://, data: URLs), "
                    "stream=true for server-sent events. Requests are answered one at a time, in arrival order.",
    )
    parser.add_argument("--model", default=None,
                        help="Video-LLaVA checkpoint: a local directory or a Hub id (default: the bundled demo model).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000).")
    parser.add_argument("--served-model-name", default=None,
                        help=f"The model id clients send and /v1/models lists (default: --model, or "
                             f"{DEMO_MODEL_NAME!r} for the demo model).")
    parser.add_argument("--allowed-local-media-path", action="append", default=[], metavar="DIR",
                        help="Directory whose files file:// URLs may name (repeatable; default: none, file:// is off).")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="Requests that may wait for the model; more get HTTP 503 (default 64).")
    parser.add_argument("--root-path", default="",
                        help="URL prefix a reverse proxy serves the API under, e.g. /videollava (default: none).")
    parser.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                        help="Proxies whose X-Forwarded-For/-Proto headers are trusted (default 127.0.0.1; '*' = any).")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (GPU if there is one).")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="Weights' dtype; auto = bfloat16 on a GPU that supports it, else float32.")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(func=lambda args: run_command(serve, args))


__all__ = ["DEMO_MODEL_NAME", "register", "serve"]
