"""Helpers the CLI commands share: model resolution (default: the demo model shipped inside the package), loading
the pipeline, telling images from videos, streaming answers, and one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..demo import demo_model_dir, toy_model_notice
# Extensions decide image vs video without opening the file; anything else is sniffed (see `media_kind`).
from ..models.videollava.media_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

VIDEOLLAVA_MODEL_TYPES = ("videollava_hf", "video_llava")  # ours, and Transformers' built-in port (loadable)
DTYPES = ("auto", "float32", "bfloat16", "float16")
EXIT_USAGE = 2  # bad input: missing file, unsupported format, wrong model
EXIT_FAILURE = 1  # anything else (a bug): still one line, the traceback with --debug
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
SAMPLE = "sample"  # `videollava-hf ask sample "..."` uses the bundled clip


class CommandError(Exception):
    """A problem with what the user asked for; the CLI prints the message (no traceback) and exits with 2."""


# --- model -------------------------------------------------------------------------------------------------------


def resolve_model(model: str | None, option: str = "--model") -> str:
    """`--model` (or `option`) as a local directory or Hub id; None means the packaged demo model."""
    if model is None:
        directory = demo_model_dir()
        if not (directory / "config.json").is_file():
            raise CommandError(
                f"The demo model is not in this installation ({directory} has no config.json). Pass --model with a "
                "Video-LLaVA checkpoint directory or Hub id (e.g. --model LanguageBind/Video-LLaVA-7B-hf), or build "
                "the demo model as described in the README."
            )
        return str(directory)
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CommandError(f"{option} {model}: this is a file; pass the checkpoint directory (with config.json).")
        if not (path / "config.json").is_file():
            raise CommandError(f"{option} {model}: the directory has no config.json, so it is not a model checkpoint.")
        return str(path)
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model):
        raise CommandError(f"{option} {model}: no such directory.")
    check_hub_reachable(model, option)
    return model  # a Hub id


def _hub_cached(repo_id: str) -> bool:
    """Whether the Hub cache already holds `repo_id`'s config.json (then no network is needed)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the Hub endpoint (HF_ENDPOINT) cannot be reached, in a few seconds at most; None when it can.

    One TCP connection, instead of letting huggingface_hub retry with backoff for minutes."""
    import socket
    import urllib.parse

    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    parts = urllib.parse.urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as err:  # DNS failure, refused, unreachable, timed out
        return f"{endpoint} cannot be reached ({err.strerror or err})"
    return None


def check_hub_reachable(repo_id: str, option: str) -> None:
    """Fail in seconds, with what to do, when `repo_id` would need the Hub and the Hub is out of reach."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or _hub_cached(repo_id):
        return  # offline mode reads the cache (and says so itself when the files are missing)
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return  # behind a proxy a direct connection proves nothing; huggingface_hub's own errors apply
    reason = hub_unreachable_reason()
    if reason:
        raise CommandError(
            f"{option} {repo_id}: this is a Hub id and the Hugging Face Hub {reason}. Pass a local checkpoint "
            "directory instead (download it where there is network: `hf download "
            f"{repo_id} --local-dir DIR`), or set HF_HUB_OFFLINE=1 to use the copy in the Hub cache."
        )


def check_videollava(model: str, option: str = "--model") -> None:
    """Fail early, with a hint, when `model` is not a Video-LLaVA checkpoint."""
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(model)
    except OSError as err:
        raise CommandError(
            f"{option} {model}: cannot read its config.json ({err}). Hub ids need network access the first time; "
            "offline, download the checkpoint elsewhere (`hf download ID --local-dir DIR`) and pass DIR."
        ) from err
    model_type = config.get("model_type")
    if model_type not in VIDEOLLAVA_MODEL_TYPES:
        raise CommandError(
            f"{option} {model} is a {model_type!r} model, not Video-LLaVA (model_type 'videollava_hf', or "
            "Transformers' 'video_llava'). Convert an original Video-LLaVA checkpoint with `videollava-hf convert`, "
            "or pass a Video-LLaVA checkpoint."
        )


def resolve_device_and_dtype(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise CommandError(f"--device {device}: not a device torch knows ({err}); use cpu, cuda or cuda:N.") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {device}: CUDA is not available on this machine; use --device cpu.")
    if dtype == "auto":
        on_gpu = resolved.type == "cuda"
        torch_dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    return resolved, torch_dtype


def model_spec(args: argparse.Namespace, device=None):
    """What `args.model` / `args.device` / `args.dtype` ask to load, checked (a `ModelSpec`); `device` (e.g. this
    process's accelerate device) replaces `--device auto`."""
    from ..inference.engines import ModelSpec

    model_id = resolve_model(args.model)
    check_videollava(model_id)
    resolved, dtype = resolve_device_and_dtype(args.device, args.dtype)
    if device is not None and args.device == "auto":
        resolved = device
    return ModelSpec(model_id, device=str(resolved), dtype=str(dtype).removeprefix("torch."))


def load_model(args: argparse.Namespace, device=None):
    """(model on its device, processor) for `args` (see `model_spec`)."""
    from transformers.utils import logging as hf_logging

    spec = model_spec(args, device)
    hf_logging.disable_progress_bar()  # a tiny model loads instantly; the bar would only clutter the answer
    # Transformers' own warnings (e.g. the tokenizer's "sequence length is longer than ...", which our prompt-length
    # check already turns into the error or warning that matters) would add lines to one-line messages.
    hf_logging.set_verbosity_error()
    return spec.load()


def build_pipeline(args: argparse.Namespace):
    """The video-text-to-text pipeline for `args.model` / `args.device` / `args.dtype`."""
    from ..models.videollava.pipeline_video_text_to_text import VideoTextToTextPipeline

    model, processor = load_model(args)
    return VideoTextToTextPipeline(model=model, processor=processor, device=model.device)


# --- media -------------------------------------------------------------------------------------------------------


def media_kind(path: str | os.PathLike) -> str:
    """"image" or "video" for an existing file: by extension, else by what Pillow / FFmpeg make of its content.
    URLs (`http(s)://`, `file://`, `data:`) by the extension of their path or their MIME type."""
    text = os.fspath(path)
    if isinstance(text, str) and (text.startswith(("http://", "https://", "file://")) or text[:5] == "data:"):
        return _url_kind(text)
    file = Path(path)
    if not file.exists():
        raise CommandError(f"{path}: no such file.")
    if file.is_dir():
        raise CommandError(f"{path}: is a directory; give one video or image file (`videollava-hf describe DIR` "
                           "answers a whole folder).")
    suffix = file.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    kind = _sniff(file)
    if kind is None:
        raise CommandError(
            f"{path}: unsupported format (neither an image Pillow can read nor a video FFmpeg can decode). Images: "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}; videos: {', '.join(sorted(VIDEO_EXTENSIONS))}."
        )
    return kind


def _url_kind(url: str) -> str:
    if url[:5] == "data:":
        mime = url[5:].split(",", 1)[0].split(";", 1)[0].lower()
        kind = mime.split("/", 1)[0]
    else:
        from urllib.parse import urlsplit

        if url.startswith("file://"):
            return media_kind(urlsplit(url).path)
        suffix = Path(urlsplit(url).path).suffix.lower()
        kind = "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else ""
    if kind not in ("image", "video"):
        raise CommandError(
            f"{url[:80]}: cannot tell whether this URL is an image or a video (no known extension or MIME type). "
            f"Images: {', '.join(sorted(IMAGE_EXTENSIONS))}; videos: {', '.join(sorted(VIDEO_EXTENSIONS))}."
        )
    return kind


def _sniff(file: Path) -> str | None:
    import av
    from PIL import UnidentifiedImageError

    from ..models.videollava.media_limits import open_within_limits

    try:
        with open_within_limits(file, repr(str(file))) as image:  # too many pixels: MediaLimitError, not "unknown"
            # Animated images (GIF, APNG, WebP) have several frames: they are videos to Video-LLaVA.
            return "video" if getattr(image, "n_frames", 1) > 1 else "image"
    except (UnidentifiedImageError, OSError):
        pass
    try:
        with av.open(str(file)) as container:
            return "video" if container.streams.video else None
    except (av.error.FFmpegError, OSError):
        return None


def media_item(source, kind: str) -> dict:
    """A chat content item for a media file (the pipeline reads it), or for media held in memory (bytes, a
    `datasets` cell)."""
    if isinstance(source, (str, os.PathLike)):
        return {"type": kind, "path": str(source)}
    return {"type": kind, kind: source}


def frame_policy(args: argparse.Namespace) -> dict:
    """Reader options from the command line: frames, network timeout, media limits."""
    policy = {} if getattr(args, "num_frames", None) is None else {"num_frames": args.num_frames}
    if getattr(args, "timeout", None) is not None:
        policy["timeout"] = args.timeout
    limits = {name: getattr(args, name) for name in LIMIT_OPTIONS if getattr(args, name, None) is not None}
    if limits:
        policy["limits"] = limits
    return policy


LIMIT_OPTIONS = ("max_pixels", "max_decoded_frames", "max_duration")


def warn_if_toy_model(args: argparse.Namespace, media) -> None:
    """Say once, on stderr, that the default demo model only knows its synthetic world when `media` is not from it."""
    notice = toy_model_notice(getattr(args, "model", None), media)
    if notice:
        print(notice, file=sys.stderr)


def make_streamer(pipe):
    """A TextStreamer printing only the answer (skip_prompt), without the space the model starts it with; it ends
    the answer with a newline."""
    from transformers import TextStreamer

    class AnswerStreamer(TextStreamer):
        started = False

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if not self.started:
                text = text.lstrip()
                self.started = bool(text)
            super().on_finalized_text(text, stream_end)

    return AnswerStreamer(pipe.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)


def answer(pipe, messages: list[dict], args: argparse.Namespace, stream: bool) -> str:
    """Generate the assistant's reply to `messages` (greedy), streaming it to stdout when `stream`."""
    generate_kwargs = {"do_sample": False}
    if stream:
        generate_kwargs["streamer"] = make_streamer(pipe)
    out = pipe(
        text=messages,
        max_new_tokens=args.max_new_tokens,
        add_system_prompt=not args.no_system_prompt,
        return_full_text=False,
        generate_kwargs=generate_kwargs,
        truncation=bool(getattr(args, "truncate", False)),
        **frame_policy(args),
    )
    return out[0]["generated_text"].strip()


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ask / chat / describe."""
    parser.add_argument(
        "--model", default=None,
        help="Video-LLaVA checkpoint: a local directory or a Hub id (default: the demo model shipped in the package).",
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Longest answer, in tokens (default 128).")
    parser.add_argument(
        "--num-frames", type=int, default=None,
        help="Frames sampled uniformly from each video (default: the model's own policy, 8 for Video-LLaVA).",
    )
    parser.add_argument(
        "--no-system-prompt", action="store_true",
        help="Leave out the llava_v1 system prompt (prompt becomes 'USER: <video>\\n{q} ASSISTANT:').",
    )
    parser.add_argument(
        "--truncate", action="store_true",
        help="Cut the question's text when prompt + answer exceed the model's context (said on stderr); default: "
             "refuse with the token counts.",
    )
    add_media_arguments(parser)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (GPU if there is one).")
    parser.add_argument(
        "--dtype", default="auto", choices=DTYPES,
        help="Weights' dtype; auto = bfloat16 on a GPU that supports it, else float32.",
    )


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the batch commands (describe, eval): where decoding and the model run."""
    parser.add_argument("--num-workers", type=_non_negative_int, default=0,
                        help="Processes that read and preprocess media while the model generates (default 0: all "
                             "in this process). Rows are the same for any N.")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local (this machine; several with `accelerate launch -m videollava_hf.cli ...`) or "
                             "ray (a Ray Data pipeline: decoding as CPU tasks, the model in actors; needs "
                             "videollava-hf[ray]).")
    parser.add_argument("--ray-address", default=None,
                        help="With --engine ray: the cluster to join (e.g. ray://head:10001 or auto); default: "
                             "start a local Ray.")
    parser.add_argument("--ray-actors", type=int, default=1,
                        help="With --engine ray: model replicas (actors), each holding the model once and a GPU "
                             "when --device is cuda (default 1).")


def add_media_arguments(parser: argparse.ArgumentParser) -> None:
    """Network timeout and media limits (see models/videollava/media_limits.py), for every command reading media."""
    parser.add_argument(
        "--timeout", type=float, default=None,
        help="Seconds any read of a URL may wait (default 60).",
    )
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="Largest image or video frame, in pixels (default 8192x8192 = 67108864).")
    parser.add_argument("--max-decoded-frames", type=int, default=None,
                        help="Most frames read from one video (default 1024).")
    parser.add_argument("--max-duration", type=float, default=None,
                        help="Longest video, in seconds (default 14400, 4 hours).")


def _input_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is written for users (bad input), shown in one line with exit status 2.

    The library raises ValueError / OSError (VideoDecodeError and MediaLimitError are ValueErrors) for unreadable
    media, missing weights, a prompt that does not fit; Pillow's decompression-bomb error is its own class."""
    from PIL import Image

    types: list[type[BaseException]] = [CommandError, ValueError, OSError, Image.DecompressionBombError]
    try:
        import yaml

        types.append(yaml.YAMLError)
    except ImportError:
        pass
    return tuple(types)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 2000 else text[:2000] + " [...]"


@contextmanager
def _warnings_as_lines(command: str):
    """The package's own warnings (a short video's repeated frames, a truncated prompt) as one line each on stderr,
    every time (not once per place in the code); other warnings are left as Python shows them."""
    from ..models.videollava.pipeline_video_text_to_text import PromptTruncatedWarning
    from ..models.videollava.video_io import ShortVideoWarning

    ours = (ShortVideoWarning, PromptTruncatedWarning)
    with warnings.catch_warnings():
        previous = warnings.showwarning
        for category in ours:
            warnings.simplefilter("always", category)

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ours):
                print(f"videollava-hf {command}: warning: {message}", file=sys.stderr)
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def run_command(function, args: argparse.Namespace) -> int:
    """Call `function(args)`: every error becomes one line on stderr, `videollava-hf COMMAND: error: ...`.

    Bad input (see `_input_error_types`) exits with 2, anything else with 1 and a hint; `--debug` shows tracebacks
    instead. Ctrl-C exits with 130. Nested calls (a command wrapping its own function) are handled once."""
    global _RUNNING
    if _RUNNING:
        return function(args)
    _RUNNING = True
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()  # build_pipeline quiets Transformers for the command's duration
    try:
        return _run_once(function, args)
    finally:
        _RUNNING = False
        hf_logging.set_verbosity(verbosity)


_RUNNING = False  # run_command is active (commands that wrap their function in it are then run plainly)


def _run_once(function, args: argparse.Namespace) -> int:
    command = getattr(args, "command", None) or "command"
    debug = bool(getattr(args, "debug", False))
    try:
        with _warnings_as_lines(command):
            return function(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except _input_error_types() as err:
        if debug:
            traceback.print_exc()
        print(f"videollava-hf {command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # a bug or an unforeseen failure: still no traceback unless asked
        if debug:
            raise
        print(f"videollava-hf {command}: error: {type(err).__name__}: {_one_line(err)} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_FAILURE


__all__ = [
    "CommandError",
    "DTYPES",
    "EXIT_FAILURE",
    "LIMIT_OPTIONS",
    "add_media_arguments",
    "check_hub_reachable",
    "hub_unreachable_reason",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "IMAGE_EXTENSIONS",
    "SAMPLE",
    "VIDEO_EXTENSIONS",
    "add_batch_arguments",
    "add_model_arguments",
    "answer",
    "build_pipeline",
    "check_videollava",
    "frame_policy",
    "load_model",
    "make_streamer",
    "media_item",
    "media_kind",
    "model_spec",
    "resolve_device_and_dtype",
    "resolve_model",
    "run_command",
    "warn_if_toy_model",
]
