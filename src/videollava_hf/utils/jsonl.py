"""The one resumable JSONL writer and reader used by every batch job (eval, judge, describe)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


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


@contextlib.contextmanager
def open_for_append(path: Path) -> Iterator[TextIO]:
    """Open a JSONL file for appending, first dropping a partial last line so new records start on their own."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
    with path.open("a", encoding="utf-8") as handle:
        yield handle


__all__ = ["open_for_append", "read_jsonl"]
