"""Build (or reuse) what spark-submit ships to the executors: scripts/submit.sh calls this.

    python scripts/submit_build.py --build-dir build/submit [--no-env] [--dry-run]

Prints shell assignments for submit.sh to evaluate:

    LIB_ZIP=build/submit/lib-<hash>/shmi_spark.zip        (--py-files)
    ENV_ARCHIVE=build/submit/env-<hash>/env.tar.gz        (--archives ...#environment)

* ``lib-<hash>/shmi_spark.zip``: the package's sources and packaged data (what
  ``pip install .`` would install), keyed by their content and pyproject.toml.
  Spark puts a .zip (not a wheel) on the Python path of the driver and executors.
* ``env-<hash>/env.tar.gz``: a ``venv-pack`` archive of a dedicated virtual
  environment holding the project's third-party dependencies (pyspark's Python
  side, numpy, pandas, pyarrow, scipy, ...) pinned to the versions installed in
  the Python running this script (the driver's), keyed by those pins, the
  Python version and the platform.  pyspark's jars (460 MB, the cluster has its
  own) and the packages' test suites are left out of the archive.  The project
  itself is not installed in it: it travels in the zip.  Building it needs ``pip`` to reach a package index
  (or a wheel cache holding every pin); it is done once per dependency set.

A build is made in a temporary folder and renamed into place, under a lock,
so concurrent submits share one build.  ``--dry-run`` computes the names
without building.  Builds beyond the 5 (libraries) or 2 (environments) most
recently used are removed once unused for a day (libraries) or an hour
(environments).

Environment: ``SHMI_PYTHON_PREFIX`` — the Python prefix on the cluster's nodes
(venv-pack's ``--python-prefix``; default: this Python's, right when every node
has the same Python at the same path, as on one machine).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "shmi_spark"
#: package data besides the modules (pyproject's [tool.setuptools.package-data])
DATA_SUFFIXES = {".py", ".properties", ".csv", ".md", ".typed"}
#: left out of the packed environment (a third of it, unpacked on every executor): pyspark's jars (the
#: cluster's Spark has its own), the packages' test suites, C headers, caches
ENV_EXCLUDES = [
    "lib/python*/site-packages/pyspark/jars/*",
    "lib/python*/site-packages/pyspark/examples/*",
    "lib/python*/site-packages/*/tests/*",
    "lib/python*/site-packages/pyarrow/include/*",
    "*/__pycache__/*",
]


def _say(text: str) -> None:
    print(f"[submit] {text}", file=sys.stderr, flush=True)


def package_files(root: Path) -> list[Path]:
    """The files of the package, as setuptools would install them (sources and package data)."""
    return sorted(p for p in (root / PACKAGE).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix in DATA_SUFFIXES)


def lib_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in [*package_files(root), root / "pyproject.toml"]:
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def dependency_pins(root: Path) -> list[str]:
    """``name==version`` of every installed distribution the project's dependencies need (their closure)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    pins: dict[str, str] = {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = _name(req.name)
        if key in pins:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise SystemExit(f"submit: {req.name} (a dependency of the project) is not installed in {sys.prefix}; "
                             "run scripts/setup.sh first") from None
        pins[key] = f"{dist.metadata['Name']}=={dist.version}"
        for sub in dist.requires or []:
            r = Requirement(sub)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r)
    return sorted(pins.values(), key=str.lower)


def env_hash(pins: list[str], python_prefix: str) -> str:
    h = hashlib.sha256()
    for part in [platform.python_version(), platform.machine(), sys.platform, python_prefix, *ENV_EXCLUDES,
                 *pins]:
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:12]


class _Lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _tmp_for(final: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o755)
    return tmp


def _publish(tmp: Path, final: Path) -> None:
    if final.exists():  # another build got there first (cannot happen under the lock; be safe)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(final)


def build_lib(root: Path, final: Path) -> None:
    tmp = _tmp_for(final)
    try:
        with zipfile.ZipFile(tmp / "shmi_spark.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for p in package_files(root):
                info = zipfile.ZipInfo(str(p.relative_to(root)), date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, p.read_bytes())
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_env(pins: list[str], python_prefix: str, final: Path) -> None:
    try:
        import venv_pack
    except ImportError:
        raise SystemExit("submit: venv-pack is not installed in this Python; install the cluster extra: "
                         f"{sys.executable} -m pip install -e '.[cluster]'") from None
    tmp = _tmp_for(final)
    try:
        t0 = time.monotonic()
        venv = tmp / "venv"
        _say(f"building the executors' Python environment in {final} (once per dependency set; a few minutes)")
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        (tmp / "requirements.txt").write_text("\n".join(pins) + "\n")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run([*pip, "-r", str(tmp / "requirements.txt")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise SystemExit("submit: pip could not install the executors' dependencies into a fresh virtual "
                             "environment (it needs a package index or a wheel cache holding "
                             f"{len(pins)} pinned packages):\n{done.stdout[-3000:]}")
        _say(f"  installed {len(pins)} packages in {time.monotonic() - t0:.0f}s; packing")
        venv_pack.pack(prefix=str(venv), output=str(tmp / "env.tar.gz"), python_prefix=python_prefix or None,
                       filters=[("exclude", pattern) for pattern in ENV_EXCLUDES], compress_level=1,
                       verbose=False)
        shutil.rmtree(venv)  # the archive is what is kept (pyspark's jars alone are 460 MB)
        _say(f"  env.tar.gz: {(tmp / 'env.tar.gz').stat().st_size / 1e6:.0f} MB in {time.monotonic() - t0:.0f}s")
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prune(build_dir: Path, kind: str, keep: int, min_age: float, current: Path) -> None:
    """Remove builds of ``kind`` beyond the ``keep`` most recently used that are unused for ``min_age`` seconds.

    A run in progress may still read its build (executors fetch the files from the driver when
    they start, the driver imports from the zip as it goes), hence the age.
    """
    builds = sorted((p for p in build_dir.glob(f"{kind}-*") if p.is_dir() and p != current),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[max(keep - 1, 0):]:
        if time.time() - old.stat().st_mtime > min_age:
            shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "submit")
    parser.add_argument("--no-env", action="store_true", help="only the library zip (local masters)")
    parser.add_argument("--dry-run", action="store_true", help="print the names, build nothing")
    args = parser.parse_args(argv)
    build_dir = args.build_dir.resolve()
    python_prefix = os.environ.get("SHMI_PYTHON_PREFIX", "")
    lib = build_dir / f"lib-{lib_hash(ROOT)}"
    out = {"LIB_ZIP": lib / "shmi_spark.zip"}
    env = None
    if not args.no_env:
        env = build_dir / f"env-{env_hash(dependency_pins(ROOT), python_prefix)}"
        out["ENV_ARCHIVE"] = env / "env.tar.gz"
    if not args.dry_run:
        with _Lock(build_dir / ".lock"):
            gitignore = build_dir.parent / ".gitignore"
            if build_dir.parent == ROOT / "build" and not gitignore.exists():
                gitignore.write_text("# scripts/submit.sh's artefacts (never committed)\n*\n")
            if not lib.is_dir():
                build_lib(ROOT, lib)
                prune(build_dir, "lib", 5, 86400, lib)
            if env is not None and not env.is_dir():
                build_env(dependency_pins(ROOT), python_prefix, env)
                prune(build_dir, "env", 2, 3600, env)
            for p in (lib, env):
                if p is not None:
                    os.utime(p)  # the newest used builds are the ones kept
    for key, value in out.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
