"""`videollava-hf describe DIR --out answers.jsonl`: answer one question about every video and image in a folder.

DIR may also be a dataset: a .parquet / .json / .jsonl file or a `save_to_disk` folder whose rows have a `video` or
`image` column (paths, or `datasets` `Video()` / `Image()` cells with the files' bytes) and optionally `question`.
Then `file` is the row's `id` (or the media's file name, or the row number).

Each answer is one JSON line `{"file", "kind", "question", "answer", "model"}` (`file` relative to DIR, with "/"),
or `{"file", "kind", "question", "error", "model"}` for a file that could not be read. Lines are appended and flushed
after every batch, so an interrupted run (Ctrl-C, exit status 130) keeps everything answered so far; running the same
command again skips the (file, question) pairs that already have an answer and does the rest. Files that failed are
retried.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .common import (
    EXIT_INTERRUPTED,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    CommandError,
    add_model_arguments,
    build_pipeline,
    frame_policy,
    media_item,
    run_command,
)

DEFAULT_QUESTIONS = {"video": "Describe this video in detail.", "image": "Describe this image in detail."}


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
    """(file, question) pairs that already have an answer in `out`; unreadable lines are reported and ignored."""
    done: set[tuple[str, str]] = set()
    if not out.exists():
        return done
    broken = 0
    with out.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                broken += 1  # e.g. a line cut short when the process was killed mid-write
                continue
            if isinstance(record, dict) and "answer" in record and "file" in record:
                done.add((record["file"], record.get("question", "")))
    if broken:
        print(f"describe: ignoring {broken} unreadable line(s) in {out}; those files are answered again.",
              file=sys.stderr)
    return done


def start_on_new_line(out: Path, sink) -> None:
    """If a killed run left a partial last line, end it so the next record starts on its own line."""
    if out.stat().st_size == 0:
        return
    with out.open("rb") as existing:
        existing.seek(-1, os.SEEK_END)
        if existing.read(1) != b"\n":
            sink.write("\n")


def answer_batch(pipe, jobs: list[tuple], args: argparse.Namespace) -> list[dict]:
    """Answer `jobs` (rel, path, kind, question) with one batched generate; unreadable files get an error record."""
    chats = [
        [{"role": "user", "content": [media_item(path, kind), {"type": "text", "text": question}]}]
        for _, path, kind, question in jobs
    ]
    try:
        outputs = pipe(
            text=chats,
            batch_size=len(chats),
            max_new_tokens=args.max_new_tokens,
            add_system_prompt=not args.no_system_prompt,
            return_full_text=False,
            generate_kwargs={"do_sample": False},
            **frame_policy(args),
        )
    except (ValueError, OSError) as err:
        if len(jobs) > 1:
            # One unreadable file must not cost the whole batch: retry one by one to find it.
            return [record for job in jobs for record in answer_batch(pipe, [job], args)]
        return [make_record(jobs[0], args, error=str(err))]
    return [make_record(job, args, answer=out[0]["generated_text"].strip()) for job, out in zip(jobs, outputs)]


def make_record(job: tuple, args: argparse.Namespace, answer: str | None = None, error: str | None = None) -> dict:
    rel, _, kind, question = job
    record = {"file": rel, "kind": kind, "question": question}
    record.update({"answer": answer} if error is None else {"error": error})
    record["model"] = args.model or "demo"
    return record


def describe(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    root, out = Path(args.directory), Path(args.out)
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
    done = read_done(out)
    jobs = []
    for rel, path, kind in files:
        question = args.question or row_questions.get(rel) or DEFAULT_QUESTIONS[kind]
        if (rel, question) not in done:
            jobs.append((rel, path, kind, question))
    skipped = len(files) - len(jobs)
    if not jobs:
        print(f"describe: all {len(files)} files already have answers in {out}.", file=sys.stderr)
        return 0
    pipe = build_pipeline(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = errors = 0
    with out.open("a", encoding="utf-8") as sink, tqdm(
        total=len(files), initial=skipped, unit="file", desc="describe", file=sys.stderr
    ) as bar:
        start_on_new_line(out, sink)
        try:
            for start in range(0, len(jobs), args.batch_size):
                records = answer_batch(pipe, jobs[start : start + args.batch_size], args)
                for record in records:
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()
                os.fsync(sink.fileno())  # the batch is on disk before the next one starts
                written += len(records)
                errors += sum("error" in r for r in records)
                bar.update(len(records))
        except KeyboardInterrupt:
            bar.close()
            print(f"\ndescribe: interrupted; {written} new line(s) are saved in {out}. Run the same command again to "
                  "continue where it stopped.", file=sys.stderr)
            return EXIT_INTERRUPTED
    print(f"describe: wrote {written} line(s) to {out} ({skipped} file(s) already answered, {errors} error(s)).",
          file=sys.stderr)
    return 1 if errors else 0


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
    parser.set_defaults(func=lambda args: run_command(describe, args))


__all__ = ["DEFAULT_QUESTIONS", "answer_batch", "dataset_media", "describe", "is_dataset_source", "list_media",
           "read_done", "register"]
