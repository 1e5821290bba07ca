"""Conversation datasets for fine-tuning: load, normalise and validate records; decode media lazily.

Accepted records are the original LLaVA / Video-LLaVA format, one JSON list per file or one record per line (JSONL):

    {"id": "v_001", "video": "clips/v_001.mp4",
     "conversations": [{"from": "human", "value": "<video>\\nWhat happens?"}, {"from": "gpt", "value": "..."},
                       {"from": "human", "value": "And then?"}, {"from": "gpt", "value": "..."}]}

An `"image"` key instead of `"video"` makes an image sample; neither makes a text-only sample. LLaVA-Video-178K
records (caption, open-ended and multiple-choice files) have the same shape but mark their videos with `<image>`;
that placeholder is rewritten to `<video>` when the record has a `"video"` key. As in the original code, the
placeholder is moved to the start of the first human turn ("<video>\\n{question}") and added there if absent.

Records may also come from parquet files, from folders read with `datasets.load_dataset("videofolder" |
"imagefolder", data_dir=...)` (a `metadata.jsonl` / `.csv` beside the media holds the `conversations`), or from a
`datasets.Dataset` / `save_to_disk` folder; their `video` / `image` columns may be `Video()` / `Image()` features
(read undecoded, as `{"bytes", "path"}` cells).

Every record is normalised to five columns, so sources with different extra keys concatenate:
`id` (str), `media_type` ("video" | "image" | ""), `media_path` (resolved path or ""), `media_bytes` (the encoded
file when a datasets cell carries bytes, else None), `conversations` (list of {"from": "system" | "human" | "gpt",
"value": str}). Media are *not* decoded here: the collator decodes them per batch (inside DataLoader workers when
`dataloader_num_workers > 0`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..models.videollava.media_io import describe_media, is_dataset_cell

logger = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
PLACEHOLDERS = {"image": IMAGE_PLACEHOLDER, "video": VIDEO_PLACEHOLDER}
# Speaker names found in LLaVA-style data, mapped to the two roles (plus system) the chat template knows.
ROLE_OF_SPEAKER = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt", "system": "system"}
NORMALISED_COLUMNS = ("id", "media_type", "media_path", "conversations")
# How many skipped ids a log line lists before summarising.
_LOG_IDS = 10


class BadSampleError(ValueError):
    """A record cannot be used: malformed conversation, or its media file is missing or cannot be decoded.

    `record_id`, `path` and `problem` are attributes so callers can log or count them."""

    def __init__(self, record_id: str, problem: str, path: str | None = None) -> None:
        self.record_id = record_id
        self.problem = problem
        self.path = path
        where = f" (media {path!r})" if path else ""
        super().__init__(
            f"Record {record_id!r}{where}: {problem}. Fix or remove the record, or pass skip_bad_samples=True "
            "(--skip_bad_samples) to skip such records; skipped records are counted and logged."
        )

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.record_id, self.problem, self.path))


@dataclass(frozen=True)
class SkippedSample:
    """A record left out of training, and why."""

    id: str
    reason: str


@dataclass(frozen=True)
class MediaRoots:
    """Where relative media paths are resolved: `image_root` / `video_root` when given, else `media_root`."""

    media_root: str | None = None
    image_root: str | None = None
    video_root: str | None = None

    def resolve(self, kind: str, path: str) -> str:
        if os.path.isabs(path) or "://" in path:
            return path
        root = (self.image_root if kind == "image" else self.video_root) or self.media_root
        return str(Path(root) / path) if root else path


# --------------------------------------------------------------------------------------------------------------
# Record normalisation
# --------------------------------------------------------------------------------------------------------------


def _media_of(record: Mapping[str, Any], record_id: str) -> tuple[str, Any]:
    """-> (media_type, relative path or datasets cell) with media_type "" for text-only records."""
    found = [k for k in ("video", "image") if record.get(k) not in (None, "")]
    if len(found) > 1:
        raise BadSampleError(record_id, "has both an 'image' and a 'video' key; use one media item per record")
    if not found:
        return "", ""
    kind = found[0]
    path = record[kind]
    if is_dataset_cell(path) and (path.get("bytes") or path.get("path")):
        return kind, path
    if not isinstance(path, str):
        raise BadSampleError(
            record_id, f"'{kind}' must be one path string or a datasets {{'bytes', 'path'}} cell, got "
            f"{describe_media(path)} (one media item per record)"
        )
    return kind, path


def _turns_of(record: Mapping[str, Any], record_id: str) -> list[dict[str, str]]:
    """Validate the conversation: optional system turn, then human/gpt turns alternating, ending with gpt."""
    raw = record.get("conversations")
    if not isinstance(raw, (list, tuple)) or not raw:
        raise BadSampleError(record_id, "needs a non-empty 'conversations' list of {'from', 'value'} turns")
    turns = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("value"), str):
            raise BadSampleError(record_id, f"turn {i} must be a dict with a string 'value', got {turn!r:.80}")
        role = ROLE_OF_SPEAKER.get(str(turn.get("from", "")).lower())
        if role is None:
            raise BadSampleError(
                record_id, f"turn {i} has speaker {turn.get('from')!r}; expected one of {sorted(ROLE_OF_SPEAKER)}"
            )
        turns.append({"from": role, "value": turn["value"]})
    body = turns[1:] if turns[0]["from"] == "system" else turns
    expected = ["human" if i % 2 == 0 else "gpt" for i in range(len(body))]
    if [t["from"] for t in body] != expected or not body or body[-1]["from"] != "gpt":
        raise BadSampleError(
            record_id,
            "turns must alternate human, gpt, human, gpt, ... (after an optional system turn) and end with a gpt "
            f"answer; got {[t['from'] for t in turns]}",
        )
    return turns


def _place_placeholder(turns: list[dict[str, str]], kind: str, record_id: str) -> list[dict[str, str]]:
    """Put exactly one placeholder of `kind` at the start of the first human turn (none for text-only records)."""
    total = sum(t["value"].count(p) for t in turns for p in PLACEHOLDERS.values())
    if any(p in t["value"] for t in turns if t["from"] != "human" for p in PLACEHOLDERS.values()):
        raise BadSampleError(record_id, "a media placeholder appears outside a human turn")
    if not kind:
        if total:
            raise BadSampleError(record_id, "has a media placeholder but no 'image' or 'video' key")
        return turns
    if total > 1:
        raise BadSampleError(record_id, f"has {total} media placeholders but one {kind}; use one per record")
    out = [dict(t) for t in turns]
    first = next(i for i, t in enumerate(out) if t["from"] == "human")
    for t in out:  # LLaVA-Video-178K writes <image> for videos; any placeholder is moved, with the right name
        if any(p in t["value"] for p in PLACEHOLDERS.values()):
            for p in PLACEHOLDERS.values():
                t["value"] = t["value"].replace(p, "")
            t["value"] = t["value"].strip()
    out[first]["value"] = f"{PLACEHOLDERS[kind]}\n{out[first]['value'].strip()}"
    return out


def normalize_record(
    record: Mapping[str, Any],
    roots: MediaRoots | None = None,
    *,
    default_id: str | None = None,
    check_media_files: bool = False,
) -> dict[str, Any]:
    """One raw record -> the normalised columns (see the module docstring). Raises BadSampleError."""
    record_id = str(record.get("id") if record.get("id") not in (None, "") else default_id)
    kind, rel_path = _media_of(record, record_id)
    turns = _place_placeholder(_turns_of(record, record_id), kind, record_id)
    data = None
    if is_dataset_cell(rel_path):  # a datasets Video/Image cell: its bytes, else its path
        data, rel_path = rel_path.get("bytes") or None, rel_path.get("path") or ""
    path = (roots or MediaRoots()).resolve(kind, rel_path) if kind and rel_path else ""
    if check_media_files and kind and data is None and "://" not in path and not os.path.isfile(path):
        raise BadSampleError(record_id, f"{kind} file not found (resolved against the media root)", path)
    return {"id": record_id, "media_type": kind, "media_path": path, "media_bytes": data, "conversations": turns}


def is_normalized(row: Mapping[str, Any]) -> bool:
    return all(k in row for k in NORMALISED_COLUMNS)


# --------------------------------------------------------------------------------------------------------------
# Loading with `datasets`
# --------------------------------------------------------------------------------------------------------------


def _normalize_row(row: dict, index: int, roots: MediaRoots, check: bool, source: str) -> dict:
    """datasets.map function: never raises for a bad record, reports it in `problem` instead."""
    try:
        out = normalize_record(row, roots, default_id=f"{source}:{index}", check_media_files=check)
        out["problem"] = ""
    except BadSampleError as err:
        out = {"id": err.record_id, "media_type": "", "media_path": err.path or "", "media_bytes": None,
               "conversations": []}
        out["problem"] = err.problem
    return out


def _normalised_features():
    """Explicit column types, so a shard of only bad records (empty conversations) cannot change the schema."""
    from datasets import Features, List, Value

    turn = {"from": Value("string"), "value": Value("string")}
    return Features(
        {
            "id": Value("string"),
            "media_type": Value("string"),
            "media_path": Value("string"),
            "media_bytes": Value("binary"),
            "conversations": List(turn),
            "problem": Value("string"),
        }
    )


def _load_one_file(path, roots: MediaRoots, check: bool, cache_dir: str | None, num_proc: int | None):
    from ..utils.records import read_records

    raw = read_records(path, cache_dir)
    name = Path(path).name if isinstance(path, (str, os.PathLike)) else "dataset"
    return raw.map(
        _normalize_row,
        with_indices=True,
        remove_columns=raw.column_names,
        features=_normalised_features(),
        fn_kwargs={"roots": roots, "check": check, "source": name},
        num_proc=num_proc,
        desc=f"normalising {name}",
    )


def load_conversation_dataset(
    data_files: str | Sequence[str],
    *,
    media_root: str | None = None,
    image_root: str | None = None,
    video_root: str | None = None,
    check_media_files: bool = True,
    skip_bad_samples: bool = False,
    max_samples: int | None = None,
    cache_dir: str | None = None,
    num_proc: int | None = None,
):
    """Load and normalise conversation records into one `datasets.Dataset`. `data_files`: one source or a list of
    them, each a JSON / JSONL / parquet file, a videofolder / imagefolder directory, a `save_to_disk` folder or a
    `datasets.Dataset` (see `videollava_hf.utils.records.read_records`).

    Returns `(dataset, skipped)`, `skipped` being the list of [`SkippedSample`] left out. Malformed records and
    (with `check_media_files`, a cheap existence check) missing media files raise a [`BadSampleError`] naming the
    record id, unless `skip_bad_samples=True`, which drops, counts and logs them. Broken-but-present media are found
    later, when the collator decodes them."""
    import datasets

    files = list(data_files) if isinstance(data_files, (list, tuple)) else [data_files]
    if not files:
        raise ValueError("No data files given; pass one or more JSON/JSONL files (--data_path a.json b.jsonl).")
    roots = MediaRoots(media_root, image_root, video_root)
    parts = [_load_one_file(f if isinstance(f, datasets.Dataset) else str(f), roots, check_media_files, cache_dir,
                            num_proc) for f in files]
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    problems = [(i, p) for i, p in enumerate(dataset["problem"]) if p]
    skipped = [SkippedSample(dataset[i]["id"], p) for i, p in problems]
    if skipped and not skip_bad_samples:
        first = dataset[problems[0][0]]
        raise BadSampleError(first["id"], f"{problems[0][1]} ({len(skipped)} bad record(s) in total)",
                             first["media_path"] or None)
    if skipped:
        dataset = dataset.filter(lambda problem: not problem, input_columns="problem")
        log_skipped("loading data", skipped)
    dataset = dataset.remove_columns("problem")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset, skipped


def log_skipped(stage: str, skipped: Sequence[SkippedSample]) -> None:
    """One warning naming the first few skipped ids and reasons."""
    if not skipped:
        return
    shown = "; ".join(f"{s.id}: {s.reason}" for s in skipped[:_LOG_IDS])
    more = f" (and {len(skipped) - _LOG_IDS} more)" if len(skipped) > _LOG_IDS else ""
    logger.warning("Skipped %d sample(s) while %s: %s%s", len(skipped), stage, shown, more)


# --------------------------------------------------------------------------------------------------------------
# Lazy media decoding
# --------------------------------------------------------------------------------------------------------------


def load_media(row: Mapping[str, Any], num_frames: int):
    """Decode a normalised row's media: (F, H, W, 3) uint8 frames for a video, an RGB PIL image for an image,
    None for text. A row may carry already-decoded pixels under `"media"` (used as they are).
    Raises [`BadSampleError`] naming the record when the file is missing or cannot be decoded."""
    kind, path, record_id = row["media_type"], row["media_path"], str(row["id"])
    if not kind:
        return None
    if row.get("media") is not None:
        return row["media"]
    source = row.get("media_bytes") or path  # the bytes of a datasets cell, else the file
    if kind == "video":
        return _load_video_frames(source, num_frames, record_id, path)
    return _load_image(source, record_id, path)


def _load_video_frames(source, num_frames: int, record_id: str, path: str) -> np.ndarray:
    from ..models.videollava.video_io import VideoDecodeError, load_video

    try:
        frames, _ = load_video(source, num_frames=num_frames)
    except (VideoDecodeError, OSError) as err:
        raise BadSampleError(record_id, f"video cannot be read: {err}", path or None) from err
    return frames


def _load_image(source, record_id: str, path: str):
    from PIL import Image

    from ..models.videollava.media_io import load_image

    try:
        return load_image(source)  # decoded here, where the error can name the record
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # UnidentifiedImageError is an OSError
        raise BadSampleError(record_id, f"image cannot be read: {err}", path or None) from err


__all__ = [
    "BadSampleError",
    "IMAGE_PLACEHOLDER",
    "MediaRoots",
    "NORMALISED_COLUMNS",
    "PLACEHOLDERS",
    "ROLE_OF_SPEAKER",
    "SkippedSample",
    "VIDEO_PLACEHOLDER",
    "is_normalized",
    "load_conversation_dataset",
    "load_media",
    "log_skipped",
    "normalize_record",
]
