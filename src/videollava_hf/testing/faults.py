"""Fault injection for the batch-engine tests: a prepare step that kills the worker process running it, once."""

from __future__ import annotations

import os
from pathlib import Path

from ..inference.generate import prepare


class KillWorkerOnce:
    """Use as `prepare_fn`: the first time (across processes: a marker file) it is asked to prepare the request
    named `name`, the process running it dies at once (`os._exit`, as a crash or an OOM kill would); afterwards it
    prepares normally."""

    def __init__(self, name: str, marker: str | os.PathLike):
        self.name, self.marker = name, str(marker)

    def __call__(self, processor, request, settings):
        if request.name == self.name:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return prepare(processor, request, settings)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)
        return prepare(processor, request, settings)


def killed_pid(marker: str | os.PathLike) -> int | None:
    """The pid of the process `KillWorkerOnce` killed, or None when it has not fired."""
    path = Path(marker)
    return int(path.read_text()) if path.is_file() else None


__all__ = ["KillWorkerOnce", "killed_pid"]
