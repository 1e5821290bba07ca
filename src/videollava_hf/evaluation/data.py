"""Evaluation datasets: records (JSON, JSONL, parquet, videofolder / imagefolder directories, `save_to_disk` folders,
`datasets.Dataset`s; LLaVA conversations too) into `EvalSample`s. A record's `video` / `image` is a path (relative
ones resolved against the media root), bytes, or a `datasets` `Video()` / `Image()` cell (`{"bytes", "path"}`)."""

from __future__ import annotations


import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models.videollava.media_io import describe_media, is_dataset_cell
from .metrics import LETTERS, normalize_answer

PREDICTIONS_FILE = "predictions.jsonl"
JUDGEMENTS_FILE = "judgements.jsonl"
METRICS_FILE = "metrics.json"
SETTINGS_FILE = "eval_settings.json"
# The instruction appended to multiple-choice questions (our wording; the options are listed as "(A) text").
CHOICE_INSTRUCTION = "Reply with only the letter of the correct option."
_PLACEHOLDERS = re.compile(r"<(?:video|image)>\s*")

JudgeFn = Callable[[str, str, str], dict]


# ------------------------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSample:
    """One question. `video` / `image` are resolved paths (or, for media held in the dataset, their names);
    `video_bytes` / `image_bytes` the encoded files when the dataset holds them. `answer_index` is set for
    multiple-choice questions."""

    id: str
    question: str
    answer: str
    choices: tuple[str, ...] | None = None
    answer_index: int | None = None
    question_type: str | None = None
    video: str | None = None
    image: str | None = None
    video_bytes: bytes | None = field(default=None, repr=False)
    image_bytes: bytes | None = field(default=None, repr=False)

    @property
    def video_source(self):
        """What the video reader reads: the bytes when the dataset holds them, else the path."""
        return self.video_bytes if self.video_bytes is not None else self.video

    @property
    def image_source(self):
        return self.image_bytes if self.image_bytes is not None else self.image


def load_eval_dataset(
    data_file,
    media_root: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    cache_dir: str | None = None,
    check_media: bool = True,
) -> list[EvalSample]:
    """Read `data_file` (a .json / .jsonl / .parquet file, a videofolder / imagefolder directory, a `save_to_disk`
    folder, or a `datasets.Dataset`) into `EvalSample`s (see the module docstring). Relative media paths are
    resolved against `media_root` (default: the file's folder, or the directory itself)."""
    from ..utils.records import read_records

    table = read_records(data_file, cache_dir)
    path = Path(data_file) if isinstance(data_file, (str, os.PathLike)) else Path(".")
    default_root = path if path.is_dir() else path.parent
    root = Path(media_root) if media_root is not None else default_root
    rows = table if limit is None else table.select(range(min(limit, len(table))))
    samples = [sample_from_record(row, i, root) for i, row in enumerate(rows)]
    _check_unique_ids(samples, path)
    if check_media:
        _check_media_exist(samples, root)
    return samples


def sample_from_record(record: dict, index: int, media_root: Path) -> EvalSample:
    """Normalise one dataset row (flat QA columns or LLaVA `conversations`) into an `EvalSample`."""
    where = f"record {index}"
    sample_id = _first_present(record, ("id", "question_id"))
    sample_id = str(index) if sample_id is None else str(sample_id)
    question, answer = record.get("question"), record.get("answer")
    if question is None and record.get("conversations"):
        question, answer_from_turns = _first_exchange(record["conversations"], f"{where} (id {sample_id})")
        answer = answer if answer is not None else answer_from_turns
    if not isinstance(question, str) or answer is None:
        raise ValueError(
            f"{where} (id {sample_id}) needs a text `question` and an `answer` (or LLaVA `conversations`); it has "
            f"columns {sorted(k for k, v in record.items() if v is not None)}."
        )
    question = _PLACEHOLDERS.sub("", question).strip()
    video, video_bytes = _media_field(record, ("video", "video_path"), media_root, f"{where} (id {sample_id})")
    image, image_bytes = _media_field(record, ("image", "image_path"), media_root, f"{where} (id {sample_id})")
    if video is None and image is None:
        raise ValueError(f"{where} (id {sample_id}) has no `video` (or `video_path`) / `image` (or `image_path`).")
    choices = record.get("choices")
    answer_index = None
    if choices is not None:
        choices = _check_choices(choices, f"{where} (id {sample_id})")
        try:
            answer_index = resolve_choice_answer(answer, choices)
        except ValueError as err:
            raise ValueError(f"{where} (id {sample_id}): {err}") from err
    elif not isinstance(answer, str):
        raise ValueError(f"{where} (id {sample_id}): an open-ended `answer` must be text, got {answer!r}.")
    question_type = record.get("question_type")
    return EvalSample(
        id=sample_id,
        question=question,
        answer=str(answer),
        choices=choices,
        answer_index=answer_index,
        question_type=None if question_type is None else str(question_type),
        video=video,
        image=image,
        video_bytes=video_bytes,
        image_bytes=image_bytes,
    )


def _media_field(record: dict, keys: Sequence[str], root: Path, where: str) -> tuple[str | None, bytes | None]:
    """(path or name, bytes) of a record's media: a path string, bytes, or a datasets {"bytes", "path"} cell."""
    value = _first_present(record, keys)
    if value is None or isinstance(value, (str, os.PathLike)):
        return _resolve(value, root), None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{keys[0]} bytes>", bytes(value)
    if is_dataset_cell(value):
        if value.get("bytes"):
            return str(value.get("path") or f"<{keys[0]} bytes>"), bytes(value["bytes"])
        if value.get("path"):
            return _resolve(value["path"], root), None
        return None, None  # an empty cell: no media
    raise ValueError(
        f"{where}: `{keys[0]}` must be a path, bytes or a datasets {{'bytes', 'path'}} cell, "
        f"got {describe_media(value)}."
    )


def _first_present(record: dict, keys: Sequence[str]) -> Any:
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return None


def _first_exchange(turns: Sequence[dict], where: str) -> tuple[str, str]:
    """The first human turn and the gpt turn that answers it."""
    for i, turn in enumerate(turns[:-1]):
        nxt = turns[i + 1]
        if turn.get("from") == "human" and nxt.get("from") == "gpt":
            return str(turn.get("value", "")), str(nxt.get("value", ""))
    raise ValueError(f"{where}: `conversations` has no human turn followed by a gpt turn.")


def _check_choices(choices: Any, where: str) -> tuple[str, ...]:
    if not isinstance(choices, (list, tuple)) or not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f"{where}: `choices` must be a list of 2 to {len(LETTERS)} options, got {choices!r}.")
    return tuple(str(c) for c in choices)


def resolve_choice_answer(answer: Any, choices: Sequence[str]) -> int:
    """The 0-based index of a multiple-choice `answer`: a letter ("B", "(b)"), an int index, or an option's text."""
    if isinstance(answer, bool):
        raise ValueError(f"A multiple-choice answer must be a letter, an index or an option's text, got {answer!r}.")
    if isinstance(answer, int):
        if 0 <= answer < len(choices):
            return answer
        raise ValueError(f"Answer index {answer} is out of range for {len(choices)} choices (0-based).")
    text = str(answer).strip()
    letter = re.fullmatch(r"\(?([A-Za-z])\)?\.?", text)
    if letter and LETTERS.index(letter.group(1).upper()) < len(choices):
        return LETTERS.index(letter.group(1).upper())
    normalized = [normalize_answer(c) for c in choices]
    if normalize_answer(text) in normalized:
        return normalized.index(normalize_answer(text))
    raise ValueError(
        f"Answer {answer!r} is neither a letter A-{LETTERS[len(choices) - 1]}, an index, nor one of the choices "
        f"{list(choices)}."
    )


def _resolve(path: Any, root: Path) -> str | None:
    if path is None:
        return None
    candidate = Path(str(path)).expanduser()
    return str(candidate if candidate.is_absolute() else root / candidate)


def _check_unique_ids(samples: Sequence[EvalSample], source: Path) -> None:
    seen: set[str] = set()
    duplicates = sorted({s.id for s in samples if s.id in seen or seen.add(s.id)})
    if duplicates:
        raise ValueError(
            f"{source} repeats the ids {duplicates[:5]}; every question needs its own id (resuming relies on it)."
        )


def _check_media_exist(samples: Sequence[EvalSample], root: Path) -> None:
    missing = [
        p for s in samples for p, data in ((s.video, s.video_bytes), (s.image, s.image_bytes))
        if p is not None and data is None and not Path(p).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} media file(s) not found, e.g. {missing[:3]}. Relative paths are resolved against the "
            f"media root {root}; pass the folder that holds them (--media-root)."
        )


__all__ = [
    "CHOICE_INSTRUCTION",
    "EvalSample",
    "JUDGEMENTS_FILE",
    "JudgeFn",
    "LETTERS",
    "METRICS_FILE",
    "PREDICTIONS_FILE",
    "SETTINGS_FILE",
    "load_eval_dataset",
    "resolve_choice_answer",
    "sample_from_record",
]
