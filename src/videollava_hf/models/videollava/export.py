"""Explicit code export: `save_pretrained(..., export_code=True)` writes an `auto_map` and copies this folder's code
next to the files, so the checkpoint loads with `trust_remote_code=True` where the package is not installed.

Transformers does this for every class that called `register_for_auto_class`, for the rest of the process; doing it
per call instead keeps an ordinary `save_pretrained` ordinary (importing the package changes nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_UNSET = object()


@contextlib.contextmanager
def auto_classes(*pairs: tuple[type, str], restore: tuple = ()) -> Iterator[None]:
    """Within the block, each `(cls, "AutoX")` acts as if `cls.register_for_auto_class("AutoX")` had been called.

    Saving with an auto class also writes an `auto_map` attribute onto the objects saved (the config, processors);
    `restore` names those objects, whose `auto_map` is put back as it was, so a later plain save stays plain."""
    saved = [(cls, cls.__dict__.get("_auto_class", _UNSET)) for cls, _ in pairs]
    maps = [(obj, obj.__dict__.get("auto_map", _UNSET)) for obj in restore if obj is not None]
    for cls, auto_class in pairs:
        cls._auto_class = auto_class
    try:
        yield
    finally:
        for cls, value in saved:
            if value is _UNSET:
                del cls._auto_class
            else:
                cls._auto_class = value
        for obj, value in maps:
            if value is _UNSET:
                obj.__dict__.pop("auto_map", None)
            else:
                obj.auto_map = value


__all__ = ["auto_classes"]
