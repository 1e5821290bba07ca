"""`videollava-hf convert SOURCE OUTPUT`: original or built-in Video-LLaVA checkpoints -> this package's format.

The scripts in the repository's conversion/ folder call the same parser with the layout fixed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

EPILOG = """examples:
  videollava-hf convert LanguageBind/Video-LLaVA-7B ./video-llava-7b --verify
  videollava-hf convert /data/Video-LLaVA-7B ./out --video-tower /data/LanguageBind_Video_merge \\
      --image-tower /data/LanguageBind_Image --dtype bfloat16
  videollava-hf convert LanguageBind/Video-LLaVA-7B-hf ./video-llava-7b-hf --push-to-hub me/video-llava-7b-hf
"""


def _vision_overrides(text: str | None) -> dict[str, Any] | None:
    """--vision-config: a JSON object, or the path of a JSON file holding one."""
    if text is None:
        return None
    path = Path(text).expanduser()
    raw = path.read_text() if path.is_file() else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"--vision-config must be a JSON object or a JSON file, got {text!r} ({err})."
        ) from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--vision-config must be a JSON object, got {type(value).__name__}.")
    return value


def add_convert_arguments(parser: argparse.ArgumentParser, *, fixed_layout: str | None = None) -> None:
    """All options of the converter; `fixed_layout` hides --layout (the conversion/ scripts)."""
    parser.add_argument("source", help="checkpoint directory, or a Hub repo id (e.g. LanguageBind/Video-LLaVA-7B)")
    parser.add_argument("output_dir", help="where to write the converted checkpoint (must be empty unless --overwrite)")
    if fixed_layout is None:
        parser.add_argument(
            "--layout",
            choices=("auto", "original", "transformers"),
            default="auto",
            help="source layout; auto reads config.json (model_type 'video_llava' = built-in port)",
        )
    else:
        parser.set_defaults(layout=fixed_layout)
    if fixed_layout == "transformers":  # the original-only options make no sense there
        parser.set_defaults(
            tokenizer=None,
            image_tower=None,
            video_tower=None,
            vision_config=None,
            num_frames=None,
            temporal_attention=None,
            pad_vocab_to_multiple_of=None,
        )
    else:
        _add_original_arguments(parser)
    _add_common_arguments(parser)


def _add_original_arguments(parser: argparse.ArgumentParser) -> None:
    original = parser.add_argument_group("original checkpoints only")
    original.add_argument("--tokenizer", help="directory of the Vicuna tokenizer (default: the source directory)")
    original.add_argument(
        "--image-tower", help="LanguageBind_Image directory, config.json or Hub id (only config.json is read)"
    )
    original.add_argument(
        "--video-tower", help="LanguageBind_Video_merge directory, config.json or Hub id (only config.json is read)"
    )
    original.add_argument(
        "--vision-config",
        type=_vision_overrides,
        metavar="JSON",
        help='override vision fields, e.g. \'{"hidden_act": "quick_gelu"}\' (JSON or a .json file)',
    )
    original.add_argument("--num-frames", type=int, help="frames per video (default: video tower config, else 8)")
    original.add_argument(
        "--no-temporal-attention",
        dest="temporal_attention",
        action="store_const",
        const=False,
        default=None,
        help="the video tower has no temporal-attention weights",
    )
    original.add_argument(
        "--pad-vocab-to-multiple-of",
        type=int,
        metavar="N",
        help="round the vocabulary up to a multiple of N (default: no padding, 32003 rows)",
    )


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), help="output dtype (default: the source's)")
    out.add_argument("--max-shard-size", default="5GB", help="largest output shard, e.g. 5GB or 500MB (default 5GB)")
    out.add_argument(
        "--base-model",
        help="Hub id recorded as base_model in the model card (default: the source, when it is a Hub id; "
        "pass e.g. LanguageBind/Video-LLaVA-7B when converting a local copy)",
    )
    out.add_argument(
        "--license",
        help="licence recorded in the model card (default: llama2 for the Video-LLaVA releases and other Vicuna / "
        "Llama derivatives named by --base-model or the source; 'other' when the source is unknown)",
    )
    out.add_argument("--no-model-card", dest="model_card", action="store_false", help="do not write README.md")
    out.add_argument("--overwrite", action="store_true", help="write into a non-empty output directory")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    check = parser.add_argument_group("verification")
    check.add_argument(
        "--verify",
        action="store_true",
        help="compare logits with a reference forward of the source on a random input (needs two "
        "copies of the model in memory: ~60 GB for 7B in float32)",
    )
    check.add_argument(
        "--verify-dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="precision of the verify forward passes (default float32)",
    )
    hub = parser.add_argument_group("Hugging Face Hub")
    hub.add_argument("--push-to-hub", metavar="REPO", help="upload the converted folder to this repo")
    hub.add_argument("--private", action="store_true", help="create the pushed repo as private")
    hub.add_argument("--token", help="Hub token (default: the logged-in one)")
    hub.add_argument("--revision", help="source revision (branch, tag or commit) when SOURCE is a repo id")
    hub.add_argument("--cache-dir", help="Hub cache directory for the download")


def run(args: argparse.Namespace) -> int:
    """Convert; errors are one line (`videollava-hf convert: error: ...`, exit 2), also for the conversion/
    scripts that call this directly."""
    from .common import run_command

    if getattr(args, "command", None) is None:
        args.command = "convert"
    return run_command(_convert, args)


def _convert(args: argparse.Namespace) -> int:
    from ..conversion import convert_checkpoint
    from .common import check_hub_reachable

    options: dict[str, Any] = dict(
        dtype=args.dtype,
        max_shard_size=args.max_shard_size,
        verify=args.verify,
        verify_dtype=args.verify_dtype,
        push_to_hub_repo=args.push_to_hub,
        private=args.private,
        token=args.token,
        revision=args.revision,
        cache_dir=args.cache_dir,
        base_model=args.base_model,
        license=args.license,
        model_card=args.model_card,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    original_only = dict(
        tokenizer=args.tokenizer,
        image_tower=args.image_tower,
        video_tower=args.video_tower,
        vision_config=args.vision_config,
        num_frames=args.num_frames,
        temporal_attention=args.temporal_attention,
        pad_vocab_to_multiple_of=args.pad_vocab_to_multiple_of,
    )
    options.update({k: v for k, v in original_only.items() if v is not None})
    if not Path(args.source).expanduser().exists() and args.source.count("/") == 1 and not args.source.startswith(
        (".", "/", "~")
    ):
        check_hub_reachable(args.source, "SOURCE")  # a Hub id: fail in seconds when the Hub is out of reach
    report = convert_checkpoint(args.source, args.output_dir, layout=args.layout, **options)
    print(report.summary())
    return 0


def build_parser(fixed_layout: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=_DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_convert_arguments(parser, fixed_layout=fixed_layout)
    return parser


_DESCRIPTION = (
    "Convert an original Video-LLaVA checkpoint (LanguageBind/Video-LLaVA-7B) or Transformers' built-in one "
    "(LanguageBind/Video-LLaVA-7B-hf) into videollava-hf's format: config, tokenizer, processor, sharded safetensors "
    "and a model card. Every key is mapped by an explicit rule; anything unmatched, missing or mis-shaped aborts."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="Convert original or built-in Video-LLaVA checkpoints to this format.",
        description=_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_convert_arguments(parser)
    parser.set_defaults(func=run)


__all__ = ["add_convert_arguments", "build_parser", "register", "run"]
