"""Read a data source into a `datasets.Dataset` of raw records, media columns undecoded (training and evaluation).

A source is a `datasets.Dataset`, a .json / .jsonl / .parquet file, a folder written by `Dataset.save_to_disk`, or a
folder of media with a metadata file (`metadata.jsonl` / `.csv` naming each `file_name`), read by `datasets`'
`videofolder` builder (or `imagefolder` when it holds no video). `Video()` / `Image()` columns come back as
`{"bytes", "path"}` cells (`media_io.encoded_media_columns`), which every reader of this package accepts.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..models.videollava.media_io import VIDEO_EXTENSIONS, encoded_media_columns

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SOURCES = ".json, .jsonl or .parquet files, videofolder / imagefolder directories or save_to_disk folders"


def folder_builder(path: Path) -> str:
    """"videofolder" when the folder holds a video file, else "imagefolder"."""
    has_video = any(p.suffix.lower() in VIDEO_EXTENSIONS for p in path.rglob("*") if p.is_file())
    return "videofolder" if has_video else "imagefolder"


def read_records(source, cache_dir: str | None = None):
    """`source` (see the module docstring) -> `datasets.Dataset`. Unreadable sources raise FileNotFoundError or a
    ValueError whose message stays short (datasets' own errors can quote whole tables)."""
    import datasets

    if isinstance(source, datasets.Dataset):
        return encoded_media_columns(source)
    path = Path(os.fspath(source))
    wrong_kind = path.suffix.lower() not in FILE_BUILDERS and not path.is_dir()
    if wrong_kind and (path.suffix or path.exists()):
        raise ValueError(f"Cannot read {str(path)!r}: expected {SOURCES}, got {path.suffix or 'no extension'!r}.")
    if not path.exists():
        raise FileNotFoundError(f"Data source {str(path)!r} does not exist; pass {SOURCES}.")
    try:
        if path.is_file():
            raw = datasets.load_dataset(FILE_BUILDERS[path.suffix.lower()], data_files=str(path), split="train",
                                        cache_dir=cache_dir)
        elif (path / "state.json").is_file() or (path / "dataset_info.json").is_file():
            raw = datasets.load_from_disk(str(path))
        else:
            raw = datasets.load_dataset(folder_builder(path), data_dir=str(path), split="train", cache_dir=cache_dir)
    except Exception as err:  # datasets raises several types (ArrowInvalid, DatasetGenerationError, ...)
        raise ValueError(
            f"Could not read {str(path)!r} as records ({type(err).__name__}: {str(err)[:300]}). JSON files must hold "
            "a JSON list of records or one record per line, with consistent value types per key."
        ) from err
    if isinstance(raw, datasets.DatasetDict):  # save_to_disk of a DatasetDict
        if "train" not in raw:
            raise ValueError(f"{str(path)!r} holds splits {list(raw)}; pass the folder of one split.")
        raw = raw["train"]
    return encoded_media_columns(raw)


__all__ = ["FILE_BUILDERS", "SOURCES", "folder_builder", "read_records"]
