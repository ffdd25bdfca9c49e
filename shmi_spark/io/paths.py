"""Paths and URIs: the one place that says whether a path is local and what it points to.

A path is a local path, a ``file:`` URI (also local) or a Hadoop-compatible
URI (``hdfs:``, ``s3a:``, ...) read and written through Spark.  A Windows drive
(``C:\\data``) is a local path, not a URI: a scheme has at least two letters.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["uri_scheme", "is_uri", "is_local", "local_path", "resolve_path"]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")


def uri_scheme(path: str) -> str | None:
    """The URI scheme of ``path``, lower-cased (``file``, ``hdfs``, ...), or None for a plain path."""
    match = _SCHEME.match(path)
    return match.group(1).lower() if match else None


def is_uri(path: str) -> bool:
    """True for a non-local URI (``hdfs:``, ``s3a:``, ...); ``file:`` URIs are local paths."""
    return uri_scheme(path) not in (None, "file")


def is_local(path: str) -> bool:
    """True for a plain path or a ``file:`` URI."""
    return not is_uri(path)


def local_path(path: str | Path) -> Path:
    """A plain path or ``file:`` URI (``file:/x``, ``file:///x``) as a :class:`Path` (``~`` expanded)."""
    text = str(path)
    if uri_scheme(text) == "file":
        text = unquote(urlsplit(text).path) or "/"
    return Path(text).expanduser()


def resolve_path(value: str, base: Path) -> str:
    """A relative local path resolved against ``base``; URIs and blanks as they are."""
    if not value or is_uri(value) or uri_scheme(value) == "file":
        return value
    p = local_path(value)
    return str(p if p.is_absolute() else (base / p).resolve())
