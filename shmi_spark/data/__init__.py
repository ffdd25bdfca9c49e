"""Data packaged with shmi-spark, read through :mod:`importlib.resources` (works installed or zipped).

``reference/diag_groups.csv`` and ``reference/charlson.csv`` — the project's
default diagnosis-group lookup and Charlson code list (``reference/README.md``);
``log4j2-console.properties`` and ``log4j2-file.properties`` — Spark's JVM
logging in local mode (:mod:`shmi_spark.session`).
"""

from __future__ import annotations

import hashlib
import tempfile
from importlib import resources
from pathlib import Path

__all__ = ["packaged_file"]


def packaged_file(name: str) -> Path:
    """A packaged data file as a path on the local disk.

    Installed normally, the file itself; from a zip (``--py-files`` on a
    cluster), a copy written once under the temporary folder, named by its
    content, so that Java and pandas can open it by path.
    """
    resource = resources.files(__name__).joinpath(name)
    if isinstance(resource, Path) and resource.is_file():
        return resource
    data = resource.read_bytes()
    copy = Path(tempfile.gettempdir()) / f"shmi-spark-{hashlib.sha256(data).hexdigest()[:16]}-{Path(name).name}"
    if not copy.is_file():
        partial = copy.with_suffix(copy.suffix + ".partial")
        partial.write_bytes(data)
        partial.replace(copy)
    return copy
