"""Output folders that are never half-written and never destructive.

A command that writes a folder (``shmi run --out``, ``shmi synth --out``) goes
through :class:`OutputFolder`::

    check_destination(dest, inputs, kind="run")          # before Spark starts
    with OutputFolder(dest, inputs, kind="run", command=" ".join(sys.argv)) as out:
        ...write everything under out.staging...
        out.commit({"config_hash": ...})

The rules, each enforced below:

* **Refusals** (:func:`check_destination`, an :class:`InputError` naming the
  path): the destination is a file; it is, lies inside or contains an input;
  it is a non-empty folder without our marker (a user's folder is never
  deleted or overwritten); it is an earlier output holding a file not in its
  manifest; it is an earlier output of the other kind (``run`` / ``world``);
  it is non-empty and overwriting is off; its nearest existing ancestor is not
  a writable folder.
* **Lock**: ``<parent>/.<name>.lock`` (JSON: run_id, pid, host, started_utc,
  command), created atomically (locally: written to a temporary file and
  hard-linked into place, so it never exists half-written); a second run into
  the same folder fails fast naming the lock and its holder.  A stale lock
  (same host and a dead pid, or for another host or a URI not refreshed for
  ``stale_seconds``; an unreadable one — a crash mid-write where there are no
  hard links — once :data:`UNREADABLE_LOCK_SECONDS` old) is taken over with a
  warning.  A daemon thread refreshes the lock's mtime every
  ``stale_seconds / 10``; the lock is deleted on exit if it is still ours.
* **Staging**: everything is written to ``<parent>/.<name>.staging-<run_id>/``
  (holding a ``_STAGING`` file with the run id).  Until :meth:`commit` the
  previous output is untouched; leaving the block without committing (an
  exception, ``KeyboardInterrupt``, or a plain return) deletes the staging
  folder.  Leftovers of dead runs (``.<name>.staging-*`` and ``.<name>.old-*``
  folders) are deleted on entry, but only those holding one of our markers.
* **Commit**: writes ``_SHMI_OUTPUT.json`` (kind, run_id, created_utc,
  fingerprint, files: relative path → bytes) last, then moves the staging folder
  into place: a rename if the destination is absent or empty; over an earlier
  output, an atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``) where the
  OS offers it, else ``dest → .<name>.old-<run_id>``, ``staging → dest``, delete
  the old one.  A run finding ``dest`` missing and an ``.old-*`` output beside
  it (killed between those two renames) puts the old output back first.

Local paths and ``file:`` URIs use :class:`LocalFS`; other URIs (``hdfs:``,
``s3a:``, ...) use :class:`HadoopFS`, Hadoop's FileSystem through a
SparkSession's JVM, with the same handful of methods.  The logic is written
once on top of either.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable

from shmi_spark import __version__
from shmi_spark.errors import InputError
from shmi_spark.io.filesystems import (
    LocalFS,
    comparable_path,
    filesystem,
    is_within,
    join_path,
    pid_alive,
    resolve_destination,
    split_path,
)
from shmi_spark.io.paths import is_uri

__all__ = [
    "MARKER", "STAGING_MARKER", "KINDS", "STALE_SECONDS", "new_run_id", "warn_stderr", "read_marker",
    "check_destination", "OutputFolder", "lock_holder", "REPORT_DIR", "REPORT_MARKER_NAME", "REPORT_MARKER",
]

MARKER = "_SHMI_OUTPUT.json"
STAGING_MARKER = "_STAGING"
KINDS = ("run", "world")
STALE_SECONDS = 600.0
#: a lock that cannot be read is taken over once this old (it is written within a moment of its creation)
UNREADABLE_LOCK_SECONDS = 10.0

_RUN_ID = r"\d{8}T\d{6}Z-[0-9a-f]{8}"
_OWN_FILES = frozenset({MARKER, STAGING_MARKER})


# ------------------------------------------------------------------ runs

def _utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A run id: UTC time and 8 random hex digits, e.g. ``20261122T101500Z-3f9a0c21``."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def warn_stderr(message: str) -> None:
    """The default ``warn``: one line on stderr."""
    print(f"shmi: warning: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ markers and manifests

def _valid_marker(marker) -> bool:
    """A marker has a known kind, a run id and a manifest."""
    return (isinstance(marker, dict) and marker.get("kind") in KINDS and isinstance(marker.get("run_id"), str)
            and isinstance(marker.get("files"), dict))


def _marker(fs, path: str) -> dict | None:
    """The marker of the output folder ``path`` (backend path), or None if absent or invalid."""
    try:
        marker = json.loads(fs.read(join_path(path, MARKER)))
    except (OSError, ValueError):
        return None
    return marker if _valid_marker(marker) else None


def read_marker(dest: str, *, fs=None, spark=None) -> dict | None:
    """The ``_SHMI_OUTPUT.json`` of an earlier output at ``dest``, or None if there is no valid one."""
    fs = fs or filesystem(dest, spark)
    return _marker(fs, resolve_destination(dest, fs))


def _files(fs, root: str, prefix: str = "") -> dict[str, int]:
    """Relative path → size of every file under ``root``, sorted."""
    found: dict[str, int] = {}
    for name, is_dir, size in sorted(fs.entries(join_path(root, prefix) if prefix else root)):
        rel = f"{prefix}/{name}" if prefix else name
        if is_dir:
            found.update(_files(fs, root, rel))
        else:
            found[rel] = size
    return found


#: The run's report folder and its marker (:mod:`shmi_spark.report.build`), which ``shmi report`` may rewrite.
REPORT_DIR = "report"
REPORT_MARKER_NAME = "_SHMI_REPORT.json"
REPORT_MARKER = f"{REPORT_DIR}/{REPORT_MARKER_NAME}"


def _own_file(rel: str) -> bool:
    """Our bookkeeping files (and Hadoop's ``.<name>.crc`` checksums of them) at the top level."""
    return rel in _OWN_FILES or (rel.startswith(".") and rel.endswith(".crc") and rel[1:-4] in _OWN_FILES)


def _manifest(fs, staging: str) -> dict[str, int]:
    """The manifest of a staging folder: every file and its size, bookkeeping files excepted."""
    return {rel: size for rel, size in _files(fs, staging).items() if not _own_file(rel)}


def _foreign(fs, path: str, marker: dict) -> str | None:
    """The first file under an earlier output that its manifest does not list (folders only hold files)."""
    listed = marker["files"]
    rewritten_report = fs.exists(join_path(path, REPORT_MARKER))
    for rel in _files(fs, path):
        if rel in listed or _own_file(rel):
            continue
        if (rel.startswith(f"{REPORT_DIR}/") and rewritten_report) or rel.startswith(f".{REPORT_DIR}.building-"):
            continue  # the report, rewritten by `shmi report --run` after the run (or a report being built)
        head, _, name = rel.rpartition("/")
        if name.startswith(".") and name.endswith(".crc") and (f"{head}/" if head else "") + name[1:-4] in listed:
            continue  # Hadoop's checksum of a listed file
        return rel
    return None


def _ours(fs, path: str) -> bool:
    """A folder we may delete: it holds a ``_STAGING`` marker or a valid output marker."""
    return fs.exists(join_path(path, STAGING_MARKER)) or _marker(fs, path) is not None


# ------------------------------------------------------------------ the checks

def _overlapping_input(dest: str, inputs: Iterable[str]) -> str | None:
    """The first input that ``dest`` equals, lies inside, or contains."""
    d_kind, d = comparable_path(dest)
    for given in inputs:
        if not given:
            continue
        i_kind, i = comparable_path(given)
        if i_kind == d_kind and (is_within(d, i) or is_within(i, d)):
            return given
    return None


def _ancestor_problem(fs, path: str, dest: str) -> str | None:
    """Why the folder holding ``path`` cannot be written (its nearest existing ancestor), or None."""
    parent, name = split_path(path)
    if not name:
        return f"output folder {dest} is the root of a filesystem: choose a folder inside it"
    while not fs.exists(parent):
        up, _ = split_path(parent)
        if up == parent:
            break
        parent = up
    if not fs.is_dir(parent):
        return f"output folder {dest}: {parent} is not a folder"
    if not fs.writable(parent):
        return f"output folder {dest}: {parent} is not writable"
    return None


def _contents_problem(fs, path: str, dest: str, kind: str, overwrite: bool) -> str | None:
    """Why an existing folder ``path`` may not be replaced, or None (absent, empty, or our own output)."""
    if not fs.exists(path):
        return None
    if not fs.is_dir(path):
        return f"output folder {dest} is a file, not a folder: choose another --out"
    if not fs.entries(path):
        return None
    if not overwrite:
        return (f"output folder {dest} is not empty and overwriting is off (output.overwrite = false): "
                "choose an empty or new folder")
    marker = _marker(fs, path)
    if marker is None:
        return (f"output folder {dest} is not empty and is not an output of shmi (no {MARKER}): "
                "it is never deleted or overwritten; choose an empty or new folder")
    if marker["kind"] != kind:
        return (f"output folder {dest} holds a shmi {marker['kind']} output, not a {kind} output: "
                "choose another --out")
    rel = _foreign(fs, path, marker)
    if rel is not None:
        return (f"output folder {dest} holds {join_path(dest.rstrip('/'), rel)}, which was not written by shmi; "
                "move it away or choose another --out")
    return None


def check_destination(dest: str, inputs: Iterable[str], *, overwrite: bool = True, kind: str = "run",
                      fs=None) -> None:
    """Refuse (:class:`InputError`, one line naming the path) an output folder that must not be written.

    Refused: ``dest`` equal to, inside, or containing any of ``inputs`` (real
    local paths; URIs compared as normalised strings on ``/`` boundaries;
    empty inputs ignored); ``dest`` a file; its nearest existing ancestor not a
    writable folder; ``dest`` non-empty with ``overwrite`` off; ``dest``
    non-empty without a valid ``_SHMI_OUTPUT.json`` (a user's folder); an
    earlier output of another ``kind``; an earlier output holding a file its
    manifest does not list.  Nothing is written.  For a non-local URI without
    ``fs`` (no Spark yet) only the input overlap is checked here; the rest is
    checked again on entering :class:`OutputFolder`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not dest:
        raise InputError("no output folder given: set --out DIR")
    clash = _overlapping_input(dest, inputs)
    if clash is not None:
        raise InputError(f"output folder {dest} overlaps the input {clash} (equal, inside or containing it): "
                         "write the output to another folder")
    if fs is None:
        if is_uri(dest):
            return
        fs = LocalFS()
    path = resolve_destination(dest, fs)
    problem = _ancestor_problem(fs, path, dest) or _contents_problem(fs, path, dest, kind, overwrite)
    if problem:
        raise InputError(problem)


# ------------------------------------------------------------------ the lock

def lock_holder(raw: bytes) -> dict | None:
    """A lock file's JSON (run_id, pid, host, ...), or None when it is unreadable (half-written)."""
    try:
        holder = json.loads(raw)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


class _Heartbeat(threading.Thread):
    """Refreshes the lock's mtime every ``interval`` seconds until stopped."""

    def __init__(self, fs, path: str, interval: float) -> None:
        super().__init__(name="shmi-output-lock", daemon=True)
        self._fs, self._path, self._interval = fs, path, interval
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                self._fs.touch(self._path)
            except OSError:
                pass  # the lock is gone; release() reports nothing to do

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=30)


# ------------------------------------------------------------------ the folder

class OutputFolder:
    """A destination folder written through a staging folder, under a lock (see the module doc).

    ``with OutputFolder(dest, inputs, kind=..., command=...) as out:`` checks
    the destination, takes the lock, recovers a half-swapped earlier output,
    deletes dead runs' leftovers and creates ``out.staging`` (same style as
    ``dest``: a local path, or ``file://`` / Hadoop URI).  Write there, then
    call ``out.commit(fingerprint)``.  Leaving the block without committing
    deletes the staging folder; the lock is released either way.  ``spark`` is
    needed for non-local URIs; ``fs`` forces a backend.
    """

    def __init__(self, dest: str, inputs: Iterable[str] = (), *, kind: str = "run", overwrite: bool = True,
                 command: str = "", spark=None, fs=None, warn: Callable[[str], None] | None = None,
                 stale_seconds: float = STALE_SECONDS) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if stale_seconds <= 0:
            raise ValueError(f"stale_seconds must be positive, got {stale_seconds}")
        self.dest, self.kind, self.overwrite, self.command = dest, kind, overwrite, command
        self.inputs = list(inputs)
        self.fs = fs or filesystem(dest, spark)
        self.warn = warn or warn_stderr
        self.stale_seconds = stale_seconds
        self.run_id = new_run_id()
        self._path = resolve_destination(dest, self.fs)
        self._parent, self._name = split_path(self._path)
        self.lock_path = join_path(self._parent, f".{self._name}.lock")
        self._staging = join_path(self._parent, f".{self._name}.staging-{self.run_id}")
        styled = isinstance(self.fs, LocalFS) and dest.startswith("file:")
        self.staging = f"file://{self._staging}" if styled else self._staging
        self._heartbeat: _Heartbeat | None = None
        self._active = False
        self.committed = False

    # ---- entering and leaving

    def __enter__(self) -> OutputFolder:
        self._check()
        try:
            self.fs.mkdirs(self._parent)
        except OSError as exc:
            raise InputError(f"output folder {self.dest}: cannot create {self._parent}: {exc.strerror}") from None
        self._acquire()
        ready = False
        try:
            self._recover()
            self._check()
            self._clean_leftovers()
            self.fs.mkdirs(self._staging)
            self.fs.write(join_path(self._staging, STAGING_MARKER), self.run_id.encode())
            ready = True
        finally:
            if not ready:  # refused or interrupted while entering: leave nothing behind
                self._discard()
                self._release()
        self._active = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.committed:
                self._discard()
        finally:
            self._active = False
            self._release()

    def _check(self) -> None:
        """:func:`check_destination` for this folder, through its backend."""
        check_destination(self.dest, self.inputs, overwrite=self.overwrite, kind=self.kind, fs=self.fs)

    # ---- the lock

    def _lock_info(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(),
                           "started_utc": _utc_now(), "command": self.command}).encode()

    def _read_lock(self) -> tuple[bytes | None, dict | None]:
        """(raw bytes or None if there is no lock, parsed holder or None if unreadable)."""
        try:
            raw = self.fs.read(self.lock_path)
        except FileNotFoundError:
            return None, None
        return raw, lock_holder(raw)

    def _stale_reason(self, holder: dict | None) -> str | None:
        """Why the current lock is stale, or None if its holder may be alive."""
        pid = holder.get("pid") if holder else None
        host = holder.get("host") if holder else None
        if self.fs.pid_rule and isinstance(pid, int) and host == socket.gethostname():
            return None if pid_alive(pid) else f"process {pid} is no longer running"
        age = time.time() - self.fs.mtime(self.lock_path)
        if holder is None:  # written in one go: unreadable means a crash mid-write (or a foreign file)
            return f"unreadable and {age:.0f} s old" if age > UNREADABLE_LOCK_SECONDS else None
        return f"not refreshed for {age:.0f} s" if age > self.stale_seconds else None

    def _held(self, holder: dict | None) -> InputError:
        who = (f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, "
               f"started {holder.get('started_utc')})" if holder else "an unknown run (unreadable lock)")
        return InputError(f"output folder {self.dest} is in use: lock {self.lock_path} is held by {who}; "
                          "wait for it to finish or choose another --out")

    def _try_create(self) -> bool:
        try:
            return self.fs.create_exclusive(self.lock_path, self._lock_info())
        except OSError as exc:
            raise InputError(f"output folder {self.dest}: cannot create the lock {self.lock_path}: "
                             f"{exc.strerror or exc}") from None

    def _acquire(self) -> None:
        """Take the lock, taking over a stale one (with a warning); start the heartbeat."""
        if not self._try_create():
            raw, holder = self._read_lock()
            if raw is not None:
                try:
                    reason = self._stale_reason(holder)
                except FileNotFoundError:
                    reason = "gone"
                if reason is None:
                    raise self._held(holder)
                self._take_over(raw, holder, reason)
            if not self._try_create():
                raise self._held(self._read_lock()[1])
        self._heartbeat = _Heartbeat(self.fs, self.lock_path, self.stale_seconds / 10)
        self._heartbeat.start()

    def _take_over(self, raw: bytes, holder: dict | None, reason: str) -> None:
        """Delete a stale lock, only if it still holds the bytes judged stale.

        (Two runs taking over the same stale lock at the same instant could
        both succeed in the window between that re-read and the delete.)
        """
        who = (f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')})" if holder
               else "an unknown run (unreadable lock)")
        self.warn(f"taking over the stale lock {self.lock_path} of {who}: {reason}")
        try:
            if self.fs.read(self.lock_path) == raw:
                self.fs.delete(self.lock_path)
        except FileNotFoundError:
            pass

    def _release(self) -> None:
        """Stop the heartbeat; delete the lock if it is still ours."""
        if self._heartbeat is None:
            return
        self._heartbeat.stop()
        self._heartbeat = None
        try:
            _, holder = self._read_lock()
            if holder and holder.get("run_id") == self.run_id:
                self.fs.delete(self.lock_path)
        except OSError as exc:
            self.warn(f"could not release the lock {self.lock_path}: {exc}")

    # ---- leftovers and recovery

    def _siblings(self, what: str) -> list[str]:
        """Backend paths of ``.<name>.<what>-<run_id>`` folders beside the destination, newest run first."""
        pattern = re.compile(rf"\.{re.escape(self._name)}\.{what}-{_RUN_ID}")
        names = [n for n, is_dir, _ in self.fs.entries(self._parent) if is_dir and pattern.fullmatch(n)]
        return [join_path(self._parent, n) for n in sorted(names, reverse=True)]

    def _recover(self) -> None:
        """Destination missing but an ``.old-*`` output beside it: a swap was cut short; put it back."""
        if self.fs.exists(self._path):
            return
        for old in self._siblings("old"):
            if _marker(self.fs, old) is not None:
                self.fs.rename(old, self._path)
                self.warn(f"restored the previous output {self.dest} from {old} "
                          "(an earlier run stopped while replacing it)")
                return

    def _clean_leftovers(self) -> None:
        """Delete dead runs' staging and old folders beside the destination (ours only)."""
        for path in self._siblings("staging") + self._siblings("old"):
            if path != self._staging:
                self._delete_ours(path, "a dead run's leftover")

    def _delete_ours(self, path: str, what: str) -> None:
        """Delete ``path`` if it holds one of our markers; otherwise leave it, with a warning."""
        try:
            if not self.fs.exists(path):
                return
            if not _ours(self.fs, path):
                self.warn(f"left {path} alone: it has no shmi marker")
                return
            # the marker goes last: a deletion cut short leaves a folder the next run still knows as ours
            if self.fs.is_dir(path):
                for name, _, _ in self.fs.entries(path):
                    if name not in (MARKER, STAGING_MARKER):
                        self.fs.delete(join_path(path, name))
            self.fs.delete(path)
        except OSError as exc:
            self.warn(f"could not delete {what} {path}: {exc}; the next run into {self.dest} retries")

    def _discard(self) -> None:
        """Delete this run's staging folder (an uncommitted run leaves nothing behind)."""
        self._delete_ours(self._staging, "the staging folder")

    # ---- commit

    @property
    def path(self) -> str:
        """The output folder itself (resolved), where :meth:`commit` moves the staging folder."""
        return self._path

    def commit(self, fingerprint: dict) -> dict:
        """Write the marker last, then move the staging folder into place; return the marker.

        The destination is checked again first (a file dropped into an earlier
        output since the run began refuses the commit).  Over an earlier output
        the move is an atomic exchange where available, else two renames via
        ``.<name>.old-<run_id>``; the previous output is then deleted.
        """
        if not self._active or self.committed:
            raise RuntimeError("commit() must be called once, inside the with block")
        self._check()
        marker = {"kind": self.kind, "run_id": self.run_id, "created_utc": _utc_now(),
                  "shmi_spark_version": __version__, "fingerprint": fingerprint,
                  "files": _manifest(self.fs, self._staging)}
        self.fs.write(join_path(self._staging, MARKER), json.dumps(marker, indent=1).encode())
        self.fs.delete(join_path(self._staging, STAGING_MARKER))
        self._move_into_place()
        return marker

    def _move_into_place(self) -> None:
        """Rename (absent or empty destination), exchange, or the two-rename fallback; then drop the old."""
        fs, dest, staging = self.fs, self._path, self._staging
        if fs.exists(dest) and not fs.entries(dest):
            fs.remove_empty(dest)
        if not fs.exists(dest):
            fs.rename(staging, dest)
            self.committed = True
            return
        if fs.exchange(staging, dest):
            self.committed = True
            self._delete_ours(staging, "the previous output")
            return
        old = join_path(self._parent, f".{self._name}.old-{self.run_id}")
        fs.rename(dest, old)
        try:
            fs.rename(staging, dest)
        except OSError:
            fs.rename(old, dest)
            raise
        self.committed = True
        self._delete_ours(old, "the previous output")
