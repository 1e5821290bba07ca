"""OpenAI content-part URLs -> media the processor reads: http(s)://, file:// and data: URLs.

Kept small on purpose: the project's media loader (`models/videollava/media_io.py`) decodes `data:` URLs and images;
videos stay bytes or a path for the processor's video reader (`video_io.load_video`). What is added here is what a
server needs on top: a size cap on downloads and `file://` only under the directories the operator allowed.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024  # a video URL larger than this is refused, not buffered
URL_SCHEMES = ("http", "https", "file", "data")


class MediaError(ValueError):
    """A content part's URL cannot be turned into an image or a video; the message says why (HTTP 400)."""


def load_part(kind: str, url: str, where: str, local_dirs: Sequence[Path] = (), timeout: float = 30.0) -> Any:
    """The media behind `url` for a content part of `kind` ("image" or "video"); `where` names the part in errors
    (e.g. "messages[0].content[1]"). file:// URLs are read only under `local_dirs`."""
    if not isinstance(url, str) or not url:
        raise MediaError(f"{where}: the {kind}_url has no 'url' string.")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "data":
        payload: Any = _data_url_bytes(url, where)
    elif scheme in ("http", "https"):
        payload = _download(url, where, timeout)
    elif scheme == "file":
        payload = str(_local_path(url, where, local_dirs))
    else:
        raise MediaError(
            f"{where}: unsupported URL scheme {scheme or '(none)'!r} in {_short(url)}; use one of "
            f"{', '.join(s + ':' for s in URL_SCHEMES)}."
        )
    if kind == "image":
        from ..models.videollava.media_io import load_image

        try:
            return load_image(payload, timeout=timeout)  # an RGB PIL image
        except (ValueError, OSError) as err:  # ImageDecodeError is a ValueError
            raise MediaError(f"{where}: {err}") from err
    return payload  # bytes or a path: the video processor decodes it (VideoDecodeError, a ValueError)


def _data_url_bytes(url: str, where: str) -> bytes:
    from ..models.videollava.media_io import decode_data_url

    try:
        raw = decode_data_url(url)
    except ValueError as err:
        raise MediaError(f"{where}: {err}") from err
    if not raw:
        raise MediaError(f"{where}: the data: URL is empty.")
    return raw


def _download(url: str, where: str, timeout: float) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise MediaError(f"{where}: GET {_short(url)} answered HTTP {response.status_code}.")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise MediaError(f"{where}: {_short(url)} is larger than {MAX_DOWNLOAD_BYTES >> 20} MiB.")
                chunks.append(chunk)
    except httpx.HTTPError as err:
        raise MediaError(f"{where}: cannot download {_short(url)} ({type(err).__name__}: {err}).") from err
    return b"".join(chunks)


def _local_path(url: str, where: str, local_dirs: Sequence[Path]) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise MediaError(f"{where}: file:// URLs on another host ({parts.netloc!r}) are not supported.")
    path = Path(urllib.request.url2pathname(parts.path)).resolve()
    if not local_dirs:
        raise MediaError(
            f"{where}: file:// URLs are off on this server. Send the media as a data: or http(s) URL, or start the "
            "server with --allowed-local-media-path DIR."
        )
    if not any(path.is_relative_to(d) for d in local_dirs):
        allowed = ", ".join(str(d) for d in local_dirs)
        raise MediaError(f"{where}: {path} is outside the directories this server may read ({allowed}).")
    if not path.is_file():
        raise MediaError(f"{where}: {path} does not exist (or is not a file).")
    return path


def _short(url: str, limit: int = 80) -> str:
    return repr(url if len(url) <= limit else url[: limit - 3] + "...")


def allowed_dirs(paths: Sequence[str | os.PathLike]) -> tuple[Path, ...]:
    """--allowed-local-media-path values as resolved directories (an error for ones that are not)."""
    dirs = []
    for p in paths:
        d = Path(p).expanduser().resolve()
        if not d.is_dir():
            raise ValueError(f"--allowed-local-media-path {p}: not a directory.")
        dirs.append(d)
    return tuple(dirs)


__all__ = ["MAX_DOWNLOAD_BYTES", "MediaError", "allowed_dirs", "load_part"]
