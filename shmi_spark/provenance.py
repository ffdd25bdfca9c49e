"""Where a result came from: the code's revision and the configuration's hash.

With the input files of :func:`shmi_spark.io.inputs.input_files`, these make
every number traceable: ``summary.json`` and the output's marker carry them.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import subprocess
from pathlib import Path

from shmi_spark import __version__
from shmi_spark.config import Config

__all__ = ["code_revision", "config_sha256", "config_text", "source_digest"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def source_digest() -> str:
    """The first 12 hex digits of a sha256 over the package's Python sources (names and bytes).

    Read through :mod:`importlib.resources`, so it is the same whether the
    package runs from a checkout, an installed copy or the ``.zip`` that
    ``scripts/submit.sh`` ships to a cluster.
    """
    digest = hashlib.sha256()

    def walk(node, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".py"):
                digest.update(f"{prefix}{child.name}\0".encode())
                digest.update(child.read_bytes())

    walk(importlib.resources.files("shmi_spark"), "")
    return digest.hexdigest()[:12]


def code_revision() -> str:
    """Which code computed a result: the git commit of the checkout the package runs from.

    With uncommitted changes to the package, ``<commit>+dirty.<source digest>``; a
    package that is not a git checkout (installed, or zipped for a cluster):
    ``shmi-spark <version>+src.<source digest>``.  Two runs with equal
    revisions ran the same sources (:func:`source_digest`).
    """
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(_PACKAGE_DIR), *args], capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD") if _PACKAGE_DIR.is_dir() else None
    if not head:
        return f"shmi-spark {__version__}+src.{source_digest()}"
    dirty = git("status", "--porcelain", "--", str(_PACKAGE_DIR))
    return head + (f"+dirty.{source_digest()}" if dirty else "")


def config_text(cfg: Config) -> str:
    """The whole configuration as canonical JSON (sorted keys): what the hash is of."""
    return json.dumps(cfg.to_dict(), sort_keys=True, default=str)


def config_sha256(cfg: Config) -> str:
    return hashlib.sha256(config_text(cfg).encode()).hexdigest()
