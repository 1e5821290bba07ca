"""The one resumable JSONL reader and writer used by every batch job (eval, judge, describe, the engines).

Policy for a damaged file: a partial last line (no newline after it: a run killed mid-write) is ignored when
reading and cut off before the next append (the writer reports that it did); a broken line anywhere else is an
error naming the line, since it was not made by an interrupted append."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL file ([] when missing). A partial last line (a run killed mid-write) is ignored; a broken
    line elsewhere is an error."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):  # no newline after it: cut short while being written
                continue
            raise ValueError(f"{path}, line {number} is not valid JSON ({err}); fix or delete the line.") from err
    return records


def torn_tail(path: str | os.PathLike) -> int:
    """Bytes after the last newline of `path` (0 when the file is missing, empty or ends with a newline)."""
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    return 0 if not data or data.endswith(b"\n") else len(data) - (data.rfind(b"\n") + 1)


class JsonlWriter:
    """Append records to a JSONL file as whole lines: each `write` is encoded first, then written, flushed and
    fsynced, so a killed run leaves at most one partial last line, which opening the writer again cuts off
    (`repaired_bytes` says how much was cut; callers tell the user).

        with JsonlWriter(path) as sink:
            sink.write([{"id": 1}, {"id": 2}])
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.repaired_bytes = 0
        self._handle = None

    def __enter__(self) -> JsonlWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = torn_tail(self.path)
        if self.repaired_bytes:
            with self.path.open("r+b") as handle:
                handle.truncate(self.path.stat().st_size - self.repaired_bytes)
        self._handle = self.path.open("ab")
        return self

    def write(self, records: Iterable[dict]) -> None:
        data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
        if not data:
            return
        self._handle.write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())  # on disk before the next batch starts

    def __exit__(self, *exc) -> None:
        self._handle.close()
        self._handle = None


__all__ = ["JsonlWriter", "read_jsonl", "torn_tail"]
