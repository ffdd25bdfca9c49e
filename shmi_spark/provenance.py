"""Where a result came from: the code's revision and the configuration's hash.

With the input files of :func:`shmi_spark.io.inputs.input_files`, these make
every number traceable: ``summary.json`` and the output's marker carry them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from shmi_spark import __version__
from shmi_spark.config import Config

__all__ = ["code_revision", "config_sha256", "config_text"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def code_revision() -> str:
    """The git commit of the checkout the package runs from (``+dirty`` with uncommitted changes to it).

    An installed or zipped package is not a checkout: its version, ``shmi-spark 0.1.0``.
    """
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(_PACKAGE_DIR), *args], capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if not head:
        return f"shmi-spark {__version__}"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(_PACKAGE_DIR))
    return head + ("+dirty" if dirty else "")


def config_text(cfg: Config) -> str:
    """The whole configuration as canonical JSON (sorted keys): what the hash is of."""
    return json.dumps(cfg.to_dict(), sort_keys=True, default=str)


def config_sha256(cfg: Config) -> str:
    return hashlib.sha256(config_text(cfg).encode()).hexdigest()
