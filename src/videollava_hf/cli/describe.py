"""`videollava-hf describe DIR --out answers.jsonl`: answer one question about every video and image in a folder.

DIR may also be a dataset: a .parquet / .json / .jsonl file or a `save_to_disk` folder whose rows have a `video` or
`image` column (paths, or `datasets` `Video()` / `Image()` cells with the files' bytes) and optionally `question`.
Then `file` is the row's `id` (or the media's file name, or the row number).

Each answer is one JSON line `{"file", "kind", "question", "answer", "model"}` (`file` relative to DIR, with "/"),
or `{"file", "kind", "question", "error", "model"}` for a file that could not be read or answered (any reason: a
corrupt file, a decompression bomb, ...); the other files go on, and the run ends with a summary and exit status 1
when any file failed. Lines are appended as whole lines (written, flushed, fsynced) after every batch, so an
interrupted run (Ctrl-C, exit status 130; or a hard kill) keeps everything answered so far; running the same
command again cuts a torn last line (and says so), skips the (file, question) pairs that already have an answer and
does the rest. Files that failed are retried.

Where the work runs: `--num-workers N` decodes and preprocesses in N processes while the model generates;
`accelerate launch -m videollava_hf.cli describe ...` shards the batches over processes (one part file each,
merged into --out in input order); `--engine ray` runs the same batches as a Ray Data pipeline. The rows are the
same in every case.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    EXIT_INTERRUPTED,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    CommandError,
    add_batch_arguments,
    add_model_arguments,
    load_model,
    model_spec,
    run_command,
    warn_if_toy_model,
)

DEFAULT_QUESTIONS = {"video": "Describe this video in detail.", "image": "Describe this image in detail."}
MAX_ERRORS_SHOWN = 5


def list_media(root: Path, recursive: bool) -> list[tuple[str, Path, str]]:
    """(relative posix path, path, "video" | "image") for the media files under `root`, sorted by path."""
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = []
    for path in candidates:
        suffix = path.suffix.lower()
        kind = "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None
        if kind is not None and path.is_file():
            found.append((path.relative_to(root).as_posix(), path, kind))
    return sorted(found)


def is_dataset_source(root: Path) -> bool:
    """A dataset file or a `save_to_disk` folder (rather than a folder of media files)."""
    from ..utils.records import FILE_BUILDERS

    if root.is_file():
        return root.suffix.lower() in FILE_BUILDERS
    return (root / "state.json").is_file() or (root / "dataset_info.json").is_file()


def dataset_media(root: Path) -> list[tuple[str, object, str, str | None]]:
    """(name, media, "video" | "image", question or None) per row of a dataset; media as `media_io` reads it."""
    from ..utils.records import read_records

    rows = read_records(root)
    kinds = [k for k in ("video", "image") if k in rows.column_names]
    if not kinds:
        raise CommandError(f"{root}: the dataset has no `video` or `image` column (columns: {rows.column_names}).")
    found = []
    for i, row in enumerate(rows):
        kind = next((k for k in kinds if row[k] is not None), None)
        if kind is None:
            continue
        media = row[kind]
        cell_path = media.get("path") if isinstance(media, dict) else media if isinstance(media, str) else None
        name = str(row.get("id") or (Path(cell_path).name if cell_path else i))
        question = row.get("question") if isinstance(row.get("question"), str) else None
        found.append((name, media, kind, question))
    return found


def read_done(out: Path) -> set[tuple[str, str]]:
    """(file, question) pairs that already have an answer in `out` (or in the part files of an interrupted sharded
    run). The one JSONL policy applies (`utils.jsonl`): a torn last line is ignored, a broken line elsewhere is an
    error."""
    from ..inference.engines import read_with_parts

    return {(r["file"], r.get("question", "")) for r in read_with_parts(out)
            if isinstance(r, dict) and "answer" in r and "file" in r}


class Runner:
    """The model, its processor and the generation settings of a describe run."""

    def __init__(self, model, processor, settings):
        self.model, self.processor, self.settings = model, processor, settings


def settings_for(args: argparse.Namespace):
    from ..inference.generate import GenerationSettings

    return GenerationSettings(num_frames=args.num_frames, max_new_tokens=args.max_new_tokens,
                              add_system_prompt=not args.no_system_prompt)


def request_for(job: tuple):
    from ..inference.generate import Request

    rel, media, kind, question = job
    return Request(text=question, name=rel, **{kind: str(media) if isinstance(media, Path) else media})


def answer_batch(runner: Runner, jobs: list[tuple], args: argparse.Namespace, prepared=None) -> list[dict]:
    """Answer `jobs` (rel, path, kind, question) with one batched generate (`prepared`: their inputs, when worker
    processes made them); a file that cannot be read or answered gets an error record, the others an answer."""
    from ..inference.generate import generate_batch, prepare

    if prepared is None:
        prepared = [prepare(runner.processor, request_for(job), runner.settings) for job in jobs]
    results = generate_batch(runner.model, runner.processor, prepared, runner.settings)
    return [make_record(job, args, result) for job, result in zip(jobs, results)]


def make_record(job: tuple, args: argparse.Namespace, result: dict) -> dict:
    rel, _, kind, question = job
    record = {"file": rel, "kind": kind, "question": question}
    record.update({"answer": result["prediction"]} if "error" not in result else {"error": result["error"]})
    record["model"] = args.model or "demo"
    return record


def _jobs(args: argparse.Namespace, root: Path, out: Path) -> list[tuple[str, object, str, str]]:
    """(file, media, kind, question) for every item of DIR (a folder or a dataset), checked."""
    from_dataset = is_dataset_source(root)
    if not root.is_dir() and not from_dataset:
        raise CommandError(f"{args.directory}: no such directory (or dataset file: .parquet, .json, .jsonl).")
    if out.is_dir():
        raise CommandError(f"--out {args.out}: is a directory; give a .jsonl file path.")
    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise CommandError("--batch-size and --max-new-tokens must be at least 1.")
    if from_dataset:
        rows = dataset_media(root)
        files = [(name, media, kind) for name, media, kind, _ in rows]
        row_questions = {name: question for name, _, _, question in rows}
    else:
        files, row_questions = list_media(root, args.recursive), {}
    if not files:
        raise CommandError(
            f"{args.directory}: no videos or images found{' (searched subfolders too)' if args.recursive else ''}. "
            f"Known extensions: {', '.join(sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS))}."
        )
    return [(rel, media, kind, args.question or row_questions.get(rel) or DEFAULT_QUESTIONS[kind])
            for rel, media, kind in files]


def describe(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..inference.engines import answer_batches, batch_plan, current_shard, merge_parts, part_path
    from ..utils.jsonl import JsonlWriter, torn_tail

    root, out = Path(args.directory), Path(args.out)
    every = _jobs(args, root, out)
    shard = current_shard()
    done = read_done(out)
    torn = torn_tail(out)
    jobs = [job for job in every if (job[0], job[3]) not in done]
    shard.wait()  # every process has read what is done before any writes
    say = (lambda text: print(text, file=sys.stderr)) if shard.rank == 0 else (lambda text: None)
    if torn:
        say(f"describe: ignoring 1 unreadable line in {out} (a last line cut short by an interrupted run); it is "
            "removed and that file is answered again.")
    skipped = len(every) - len(jobs)
    if not jobs:
        say(f"describe: all {len(every)} files already have answers in {out}.")
        return 0
    settings = settings_for(args)
    spec = model_spec(args, shard.device)
    model, processor = (None, None) if args.engine == "ray" else load_model(args, shard.device)
    if processor is None:  # --engine ray: the actors load the model; this process only prepares inputs
        from ..inference.engines import quiet_ray
        from ..models.videollava.pipeline_video_text_to_text import load_processor

        quiet_ray()
        processor = load_processor(spec.model_id)
    runner = Runner(model, processor, settings)
    if shard.rank == 0:
        warn_if_toy_model(args, [job[1] for job in jobs if isinstance(job[1], (str, Path))])
    plan = batch_plan(len(jobs), args.batch_size)
    batches = answer_batches(
        [request_for(job) for job in jobs], plan, settings, processor=processor, batches=shard.batches(plan),
        engine=args.engine, num_workers=args.num_workers, spec=spec, ray_address=args.ray_address,
        ray_actors=args.ray_actors,
        run_batch=lambda b, prepared: answer_batch(runner, [jobs[i] for i in plan[b]], args,
                                                   **({} if prepared is None else {"prepared": prepared})),
    )
    sink_path = out if shard.world == 1 else part_path(out, shard.rank)
    written, failed = 0, []
    with JsonlWriter(sink_path) as sink, tqdm(total=len(every), initial=skipped, unit="file", desc="describe",
                                              file=sys.stderr, disable=shard.rank != 0) as bar:
        try:
            for b, records in batches:
                if args.engine == "ray":  # results from the actors: the records are made here
                    records = [make_record(jobs[i], args, r) for i, r in zip(plan[b], records)]
                sink.write(records)
                written += len(records)
                failed += [r for r in records if "error" in r]
                bar.update(len(records))
        except KeyboardInterrupt:
            bar.close()
            print(f"\ndescribe: interrupted; {written} new line(s) are saved in {sink_path}. Run the same command "
                  "again to continue where it stopped.", file=sys.stderr)
            return EXIT_INTERRUPTED
    failed_anywhere = shard.total(len(failed))  # every process ends with the same exit status
    if shard.world > 1 and shard.rank == 0:
        order = {(rel, question): i for i, (rel, _, _, question) in enumerate(every)}
        merge_parts(out, lambda r: order.get((r["file"], r.get("question", "")), len(order)))
    shard.wait()  # nobody exits (which could make the launcher stop the others) before the merge is done
    for record in failed[:MAX_ERRORS_SHOWN]:
        print(f"describe: error: {record['file']}: {record['error']}", file=sys.stderr)
    if len(failed) > MAX_ERRORS_SHOWN:
        print(f"describe: ... and {len(failed) - MAX_ERRORS_SHOWN} more error(s); see the 'error' lines in {out}.",
              file=sys.stderr)
    where = out if shard.world == 1 else f"{sink_path} (merged into {out})"
    print(f"describe: wrote {written} line(s) to {where} ({skipped} file(s) already answered, {len(failed)} "
          "error(s)).", file=sys.stderr)
    return 1 if failed_anywhere else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "describe",
        help="Answer a question about every video and image in a folder (resumable, JSON lines).",
        description=(
            "Answer one question about every video and image in DIR, appending one JSON line per file to --out. "
            "Re-running skips files already answered (same question), so an interrupted run can be resumed."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="Folder with videos and/or images, or a dataset (.parquet / "
                        ".json / .jsonl file or save_to_disk folder) with a `video` or `image` column.")
    parser.add_argument("--out", required=True, help="JSON-lines file to append the answers to (created if needed).")
    parser.add_argument(
        "--question", default=None,
        help=f"The question for every file (default: {DEFAULT_QUESTIONS['video']!r} / {DEFAULT_QUESTIONS['image']!r}).",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="Files per generate() call (default 4).")
    parser.add_argument("--recursive", action="store_true", help="Also look in subfolders.")
    add_model_arguments(parser)
    add_batch_arguments(parser)
    parser.set_defaults(func=lambda args: run_command(describe, args))


__all__ = ["DEFAULT_QUESTIONS", "Runner", "answer_batch", "dataset_media", "describe", "is_dataset_source",
           "list_media", "make_record", "read_done", "register"]
