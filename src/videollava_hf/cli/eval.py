"""`videollava-hf eval --data FILE --out DIR`: run a model over a video-QA dataset and score it.

Writes DIR/predictions.jsonl (appended per batch; rerunning the same command resumes), DIR/metrics.json, and with a
judge DIR/judgements.jsonl. The dataset format and the metrics are described in `videollava_hf.evaluation` and
docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json

from .common import DTYPES, CommandError, add_batch_arguments, load_model, model_spec, run_command

POOLING_CHOICES = ("average", "bilinear")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def build_judge(args: argparse.Namespace):
    """An OpenAIJudge from --judge-url / --judge-model / --judge-api-key-env, or None without --judge-url."""
    from ..evaluation import OpenAIJudge

    if args.judge_url is None:
        if args.judge_model or args.judge_api_key_env:
            raise CommandError("--judge-model / --judge-api-key-env need --judge-url (the chat-completions endpoint).")
        return None
    if not args.judge_model:
        raise CommandError("--judge-url needs --judge-model (the model name the endpoint serves, e.g. gpt-3.5-turbo).")
    return OpenAIJudge(args.judge_url, args.judge_model, api_key_env=args.judge_api_key_env)


def summary_lines(metrics: dict) -> list[str]:
    """A short human-readable summary of metrics.json."""
    scored = metrics.get("scored", metrics["count"])
    lines = [f"samples: {metrics['count']}  scored: {scored}  accuracy: {_pct(metrics['accuracy'])}"
             + (" (of the scored samples)" if scored != metrics["count"] else "")]
    if metrics.get("media_errors"):
        lines.append(f"media errors: {metrics['media_errors']} (not scored; their lines in predictions.jsonl have "
                     "an 'error'; rerun to retry them)")
    if "multiple_choice" in metrics:
        mc = metrics["multiple_choice"]
        lines.append(f"multiple choice: {mc['count']}  accuracy: {_pct(mc['accuracy'])}  unparsed: {mc['unparsed']}")
    if "open_ended" in metrics:
        oe = metrics["open_ended"]
        lines.append(f"open-ended: {oe['count']}  exact: {_pct(oe['exact_match'])}  "
                     f"normalized: {_pct(oe['normalized_match'])}  contains: {_pct(oe['contains'])}")
    if "judge" in metrics:
        judge = metrics["judge"]
        score = "n/a" if judge["average_score"] is None else f"{judge['average_score']:.2f}"
        lines.append(f"judge: accuracy {_pct(judge['accuracy'])}  average score {score}  failed {judge['failed']}")
    for name, part in metrics.get("per_question_type", {}).items():
        lines.append(f"  {name}: {part['count']}  accuracy {_pct(part['accuracy'])}")
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def run_eval(args: argparse.Namespace) -> int:
    from ..evaluation import METRICS_FILE, GenerationSettings, JudgeError, evaluate

    if args.num_frames is not None and args.fps is not None:
        raise CommandError("Give --num-frames (uniform sampling) or --fps (with --max-frames), not both.")
    settings = GenerationSettings(
        num_frames=args.num_frames, fps=args.fps, max_frames=args.max_frames, video_pooling=args.video_pooling,
        video_pool_stride=args.video_pool_stride, video_slowfast_every=args.video_slowfast_every,
        max_new_tokens=args.max_new_tokens, add_timestamps=args.add_timestamps,
        add_system_prompt=not args.no_system_prompt,
    )
    judge = build_judge(args)
    from ..inference.engines import current_shard

    shard = current_shard()
    spec = model_spec(args, shard.device)
    if args.engine == "ray":
        from ..inference.engines import quiet_ray
        from ..models.videollava.pipeline_video_text_to_text import load_processor

        quiet_ray()
        model, processor = None, load_processor(spec.model_id)
    else:
        model, processor = load_model(args, shard.device)
    try:
        metrics = evaluate(
            model, processor, args.data, args.out, media_root=args.media_root, settings=settings,
            batch_size=args.batch_size, judge=judge, limit=args.limit, progress=not args.no_progress,
            overwrite=args.overwrite, num_workers=args.num_workers, engine=args.engine, model_spec=spec,
            ray_address=args.ray_address, ray_actors=args.ray_actors, shard=shard,
        )
    except JudgeError as err:
        raise CommandError(f"{err}. The predictions and verdicts so far are saved; rerun to resume.") from err
    if metrics is None:  # another process of a sharded run: rank 0 merges and reports
        return 0
    for line in summary_lines(metrics):
        print(line)
    print(f"metrics: {args.out}/{METRICS_FILE}")
    if args.json:
        print(json.dumps(metrics, indent=2))
    return 1 if metrics.get("media_errors") else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="Evaluate a model on a video-QA dataset (accuracy, exact/normalized match, optional LLM judge).",
        description=(
            "Run a Video-LLaVA model over a local video-QA dataset (JSON / JSONL / parquet with video or image path, "
            "question, answer, optional choices and question_type, or LLaVA conversation records), write "
            "predictions.jsonl and metrics.json to --out. Rerunning the same command resumes an interrupted run."
        ),
    )
    parser.add_argument(
        "--model", default=None,
        help="Video-LLaVA checkpoint: a local directory or a Hub id (default: the demo model shipped in the package).",
    )
    parser.add_argument("--data", required=True,
                        help="Dataset: a .json (a list of records), .jsonl or .parquet file, a videofolder / imagefolder "
                             "directory (media + metadata.jsonl) or a save_to_disk folder.")
    parser.add_argument(
        "--media-root", default=None,
        help="Folder that relative video/image paths in the dataset are resolved against (default: the data file's "
             "folder).",
    )
    parser.add_argument("--out", required=True, help="Output folder for predictions.jsonl, metrics.json, ...")
    parser.add_argument("--batch-size", type=_positive_int, default=1,
                        help="Questions per generate call (left-padded batch; default 1).")
    parser.add_argument("--num-frames", type=_positive_int, default=None,
                        help="Frames sampled uniformly per video (default: the processor's, 8 for Video-LLaVA).")
    parser.add_argument("--fps", type=_positive_float, default=None,
                        help="Sample one frame every 1/FPS seconds instead of a fixed count (use with --max-frames).")
    parser.add_argument("--max-frames", type=_positive_int, default=None,
                        help="Upper bound on frames per video (uniform thinning); with --fps it bounds long videos.")
    parser.add_argument("--video-pooling", choices=POOLING_CHOICES, default=None,
                        help="Pool each frame's video features spatially (default: off, 257 tokens per frame).")
    parser.add_argument("--video-pool-stride", type=_positive_int, default=None,
                        help="Pooling stride p: a frame's s x s patch grid becomes ceil(s/p) x ceil(s/p) (default 2).")
    parser.add_argument("--video-slowfast-every", type=_positive_int, default=None,
                        help="SlowFast: frames 0, S, 2S, ... pooled with stride p, the others with 2p.")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=32,
                        help="Longest answer, in tokens (default 32; short answers are what QA sets expect).")
    parser.add_argument("--add-timestamps", action="store_true",
                        help="Tell the model when its frames were taken (video length and frame times) in the prompt.")
    parser.add_argument("--no-system-prompt", action="store_true",
                        help="Leave out the llava_v1 system prompt (prompt becomes 'USER: <video>\\n{q} ASSISTANT:').")
    parser.add_argument("--judge-url", default=None,
                        help="OpenAI-compatible chat-completions endpoint (e.g. https://api.openai.com/v1) to grade "
                             "open-ended answers with the Video-ChatGPT yes/no + 0-5 score protocol.")
    parser.add_argument("--judge-model", default=None,
                        help="Model name sent to the judge endpoint (e.g. gpt-3.5-turbo).")
    parser.add_argument("--judge-api-key-env", default=None,
                        help="Name of the environment variable holding the judge's API key (sent as a Bearer token).")
    parser.add_argument("--limit", type=_positive_int, default=None, help="Evaluate only the first N questions.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Delete earlier results in --out and start over (otherwise a rerun resumes).")
    parser.add_argument("--no-progress", action="store_true", help="Do not show progress bars.")
    parser.add_argument("--json", action="store_true", help="Also print the whole metrics JSON.")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (GPU if there is one).")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="Weights' dtype; auto = bfloat16 on a GPU that supports it, else float32.")
    add_batch_arguments(parser)
    parser.set_defaults(func=lambda args: run_command(run_eval, args))


__all__ = ["build_judge", "register", "run_eval", "summary_lines"]
