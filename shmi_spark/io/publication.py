"""The published refresh root: one folder per period, an index, a pointer to the latest.

``shmi refresh --as-of YYYY-MM --out ROOT`` (:mod:`shmi_spark.commands.refresh`,
docs/schedule.md) publishes into a *refresh root*::

    ROOT/
      _SHMI_REFRESH.json       the root's marker (a non-empty folder without it is refused)
      .refresh.lock            the root lock, held by a refresh from its start to its end
      periods/YYYY-MM/         one published period: a `shmi run` output folder (publication on)
      spells/<key>/            spell tables shared by the periods: `shmi run --stage spells` outputs
      index.csv                one row per published period (:data:`INDEX_COLUMNS`)
      latest -> periods/YYYY-MM    relative symlink to the newest published period
      logs/                    the refreshes' run logs

Every folder under ``periods/`` and ``spells/`` is written by
:class:`~shmi_spark.io.outputs.OutputFolder`: staged beside, locked, moved into
place atomically, marker (``_SHMI_OUTPUT.json``) last.  This module adds what
lies above them:

* **The root lock** (:class:`RootLock`): ``ROOT/.refresh.lock``, created with
  ``O_EXCL`` and holding JSON (run id, pid, the process's start time, host,
  start time, command).  One refresh per root at a time; a second fails at
  once naming the holder.  A lock whose process is gone (same host: the pid
  is dead, or is now another process — its start time differs) or that has
  not been refreshed for ``stale_seconds`` (another host; a heartbeat thread
  touches it every tenth of that) is taken over with a warning.
* **The index** (:func:`index_rows`, :func:`publish_index`): never edited, always
  *rebuilt* from what is published — each ``periods/YYYY-MM/`` with a valid
  marker, its ``summary.json``, and the summary of the spell table it was
  computed from (``spells/<key>/summary.json``: the episodes and deaths read,
  rejected and linked, and the fingerprint of the input files).  The text is a
  pure function of those files (rows by period, fixed columns, nothing
  time-dependent), written to ``.index.csv.tmp-<pid>`` beside it and moved
  over it with ``os.replace``; when the bytes would not change, nothing is
  written.  A refresh rebuilds it under the lock at its start (healing a
  refresh killed between committing its period and writing the index) and at
  its end.
* **latest**: a relative symlink ``latest -> periods/YYYY-MM`` to the newest
  indexed period, replaced atomically (a new symlink ``.latest.tmp-<pid>``,
  then ``os.replace``).
* **Healing** (:func:`heal`): leftovers of killed refreshes are cleared — the
  index's and latest's temporary files, spell tables being deleted
  (``spells/.<key>.trash-<run id>``), and every period's or spell table's
  staging folder, half-swapped old output and stale lock (by entering and
  leaving an :class:`OutputFolder` for it, which applies exactly its own
  recovery rules).
* **The spell-table cache** (:func:`spell_table_key`, :func:`usable_spell_table`,
  :func:`prune_spell_tables`): a spell table is addressed by the hash of what
  it is a function of — the code revision, the input files' fingerprint
  (paths, sizes, modification times of the episodes, deaths, trusts and
  reference files) and the settings that shape spells (:func:`spell_settings`:
  everything but the period, model, output and Spark-sizing settings).  A
  table is reused only when its marker, its manifest's files and sizes, its
  ``_SUCCESS`` and its own summary (fingerprint, settings) all agree; it is
  deleted once no published period refers to it (renamed to a trash name
  first, so a deletion cut short is never mistaken for a table).

Only local roots (a path or a ``file:`` URI) are supported: ``latest`` is a
symlink and the index is replaced with ``rename(2)``.  On a cluster, ROOT must be
a file system that the driver and the executors share (NFS and the like).

:func:`checkpoint` names the moments of a refresh a crash test must be able to
catch (a file written but not yet renamed, the period committed but the index
not yet rebuilt).  It does nothing; the kill test runs the refresh through a
wrapper (``tests/paused_shmi.py``) that replaces it with a pause.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from shmi_spark import __version__
from shmi_spark.errors import InputError
from shmi_spark.io.filesystems import LocalFS, comparable_path, is_within, pid_alive
from shmi_spark.io.outputs import MARKER, OutputFolder, lock_holder, read_marker, warn_stderr
from shmi_spark.io.paths import is_uri, local_path

__all__ = [
    "ROOT_MARKER", "LOCK_NAME", "INDEX", "LATEST", "PERIODS", "SPELLS", "LOGS", "INDEX_COLUMNS",
    "is_period_name", "root_path", "check_root", "mark_root", "RootLock", "heal", "spell_settings",
    "spell_table_key", "spell_table_dir", "usable_spell_table", "spell_table_of", "prune_spell_tables",
    "index_rows", "index_text", "write_index", "point_latest", "publish_index", "checkpoint",
]

ROOT_MARKER = "_SHMI_REFRESH.json"
LOCK_NAME = ".refresh.lock"
INDEX = "index.csv"
LATEST = "latest"
PERIODS = "periods"
SPELLS = "spells"
LOGS = "logs"

#: index.csv, one row per published period (docs/schedule.md explains each column).
INDEX_COLUMNS = (
    "as_of", "period", "period_start", "period_end",
    "run_id", "started_utc", "published_utc", "code_revision", "shmi_spark_version", "config_sha256",
    "inputs_sha256", "input_files", "input_bytes", "spell_table", "spell_table_run_id",
    "episodes_read", "episodes_rejected", "deaths_read", "deaths_rejected", "spells", "deaths_linked",
    "period_spells", "period_deaths", "trusts", "trusts_banded", "trusts_higher", "trusts_as_expected",
    "trusts_lower", "trusts_above_998",
)

#: Settings that do not change a spell table (the rest, and the input files, do).
_NOT_SPELLS = {
    "spark": {"master", "app_name", "driver_memory", "shuffle_partitions", "parallelism", "ui", "console_progress",
              "log_level", "local_dir"},  # sizing and logging; spark.extra may change semantics and stays
    "method": {"period_end", "period_months", "modelling_window_months", "five_year", "five_year_first",
               "five_year_count", "rescale_expected", "trim_fraction", "min_expected_deaths"},
    "model": None,   # the whole section
    "output": None,
}
_PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_RUN_ID = r"\d{8}T\d{6}Z-[0-9a-f]{8}"
_LEFTOVER = re.compile(rf"\.(?P<name>.+)\.(?:staging|old)-{_RUN_ID}")
_TRASH = re.compile(rf"\.(?P<name>.+)\.trash-{_RUN_ID}")
_TEMP = re.compile(rf"\.(?:{re.escape(INDEX)}|{re.escape(LATEST)}|{re.escape(ROOT_MARKER)})\.tmp-\d+")


def is_period_name(name: str) -> bool:
    """``YYYY-MM``: the name of a published period's folder."""
    return _PERIOD.fullmatch(name) is not None


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _run_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def checkpoint(point: str) -> None:
    """A named moment of a refresh (module docstring); does nothing."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, fsync, ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    checkpoint(f"{path.name}-written")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# ------------------------------------------------------------------ the root

def root_path(root: str) -> Path:
    """The refresh root as an absolute local path; a non-local URI is refused (module docstring)."""
    if not root or not root.strip():
        raise InputError("no refresh root: give --out ROOT")
    if is_uri(root):
        raise InputError(f"refresh root {root}: only a local folder (or file: URI) can hold published periods "
                         "(latest is a symlink, the index is replaced atomically); on a cluster use a folder on "
                         "a file system shared by the driver and the executors (docs/schedule.md)")
    return Path(os.path.realpath(local_path(root)))


def _problem(root: Path, inputs: Iterable[str]) -> str | None:
    kind, here = comparable_path(str(root))
    for given in inputs:
        if not given:
            continue
        i_kind, i = comparable_path(given)
        if i_kind == kind and (is_within(here, i) or is_within(i, here)):
            return f"refresh root {root} overlaps the input {given} (equal, inside or containing it)"
    if root.exists() and not root.is_dir():
        return f"refresh root {root} is a file, not a folder: choose another --out"
    if root.is_dir():
        names = {p.name for p in root.iterdir() if not _TEMP.fullmatch(p.name)} - {LOCK_NAME}
        if names and ROOT_MARKER not in names:
            return (f"refresh root {root} is not empty and is not a shmi refresh root (no {ROOT_MARKER}): "
                    "it is never written into; choose an empty or new folder")
        return None
    parent = root.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"refresh root {root}: {parent} is not a writable folder"
    return None


def check_root(root: Path, inputs: Iterable[str] = ()) -> None:
    """Refuse (:class:`InputError`) a root that is a file, overlaps an input, or is someone else's folder."""
    problem = _problem(root, inputs)
    if problem:
        raise InputError(problem)


def mark_root(root: Path) -> None:
    """Write the root's marker if it has none (under the lock)."""
    marker = root / ROOT_MARKER
    if not marker.exists():
        _replace_file(marker, json.dumps({"kind": "refresh", "created_utc": _utc_now(),
                                          "shmi_spark_version": __version__}, indent=1).encode())


# ------------------------------------------------------------------ the root lock

def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc/<pid>/stat``, clock ticks since boot), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


class RootLock:
    """``ROOT/.refresh.lock``, held from entering to leaving the block (module docstring)."""

    def __init__(self, root: Path, *, command: str = "", stale_seconds: float = 600.0,
                 warn: Callable[[str], None] | None = None) -> None:
        self.root, self.command, self.stale_seconds = root, command, stale_seconds
        self.path = root / LOCK_NAME
        self.warn = warn or warn_stderr
        self.run_id = _run_id()
        self._done = threading.Event()
        self._beat: threading.Thread | None = None

    def _info(self) -> bytes:
        pid = os.getpid()
        return json.dumps({"run_id": self.run_id, "pid": pid, "pid_start": _process_start(pid),
                           "host": socket.gethostname(), "started_utc": _utc_now(),
                           "command": self.command}).encode()

    def _create(self) -> bool:
        """Create the lock with its content in one step (never half-written: :meth:`LocalFS.create_exclusive`)."""
        try:
            return LocalFS().create_exclusive(str(self.path), self._info())
        except OSError as exc:
            raise InputError(f"refresh root {self.root}: cannot create the lock {self.path}: {exc.strerror}") from None

    def _read(self) -> tuple[bytes | None, dict | None]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, None
        return raw, lock_holder(raw)

    def _stale(self, holder: dict | None) -> str | None:
        """Why the lock is stale, or None if its holder may be running."""
        pid = holder.get("pid") if holder else None
        if holder and isinstance(pid, int) and holder.get("host") == socket.gethostname():
            if not pid_alive(pid):
                return f"process {pid} is no longer running"
            start = holder.get("pid_start")
            if start is not None and _process_start(pid) not in (None, start):
                return f"process {pid} is no longer the refresh that took it"
            return None
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "it is gone"
        # an unreadable lock is being written at this instant, or was left half-written by a crash
        return f"not refreshed for {age:.0f} s" if age > (self.stale_seconds if holder else 10) else None

    def _held(self, holder: dict | None) -> InputError:
        who = (f"refresh {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, started "
               f"{holder.get('started_utc')}: {holder.get('command')})" if holder else "an unreadable lock")
        return InputError(f"refresh root {self.root} is in use: {self.path} is held by {who}; wait for it to "
                          "finish (a lock whose process has died is taken over)")

    def __enter__(self) -> RootLock:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._create():
            raw, holder = self._read()
            if raw is not None:
                reason = self._stale(holder)
                if reason is None:
                    raise self._held(holder)
                who = f"refresh {holder.get('run_id')} (pid {holder.get('pid')})" if holder else "an unreadable lock"
                self.warn(f"taking over the stale lock {self.path} of {who}: {reason}")
                try:
                    if self.path.read_bytes() == raw:
                        self.path.unlink()
                except FileNotFoundError:
                    pass
            if not self._create():
                raise self._held(self._read()[1])
        self._beat = threading.Thread(target=self._heartbeat, name="shmi-refresh-lock", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._done.wait(self.stale_seconds / 10):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._beat is not None:
            self._beat.join(timeout=30)
        _, holder = self._read()
        if holder and holder.get("run_id") == self.run_id:
            try:
                self.path.unlink()
            except OSError as error:
                self.warn(f"could not release the lock {self.path}: {error}")


# ------------------------------------------------------------------ healing

def _delete_tree(path: Path, warn: Callable[[str], None]) -> None:
    try:
        LocalFS().delete(str(path))
    except FileNotFoundError:
        pass
    except OSError as exc:
        warn(f"could not delete {path}: {exc}; the next refresh retries")


def heal(root: Path, *, warn: Callable[[str], None] | None = None, stale_seconds: float = 600.0) -> list[str]:
    """Clear what killed refreshes left under ``root`` (module docstring); returns what was done.

    Call it holding the root lock.  The published folders themselves, the
    index and ``latest`` are not touched here (:func:`publish_index` rebuilds
    the last two).
    """
    warn = warn or warn_stderr
    done: list[str] = []
    if not root.is_dir():
        return done
    for entry in root.iterdir():
        if _TEMP.fullmatch(entry.name):
            entry.unlink(missing_ok=True)
            done.append(f"removed {entry}")
    for sub in (PERIODS, SPELLS):
        folder = root / sub
        if not folder.is_dir():
            continue
        names: set[str] = set()
        for entry in folder.iterdir():
            trash = _TRASH.fullmatch(entry.name)
            if trash and entry.is_dir() and not entry.is_symlink():  # only prune_spell_tables makes these names
                _delete_tree(entry, warn)
                done.append(f"removed {entry}")
                continue
            left = _LEFTOVER.fullmatch(entry.name)
            if left:
                names.add(left.group("name"))
            elif entry.name.startswith(".") and entry.name.endswith(".lock"):
                names.add(entry.name[1:-5])
        for name in sorted(names):
            dest = folder / name
            try:  # entering recovers a cut-short swap, takes over a dead run's lock, clears its staging
                with OutputFolder(str(dest), (), kind="run", warn=warn, stale_seconds=stale_seconds):
                    pass
            except InputError as exc:
                warn(f"left {dest}'s leftovers alone: {exc}")
                continue
            done.append(f"cleared the leftovers of {dest}")
    return done


# ------------------------------------------------------------------ the spell-table cache

def spell_settings(config: dict) -> dict:
    """The settings a spell table depends on: ``config`` (``Config.to_dict()``) without :data:`_NOT_SPELLS`."""
    kept: dict = {}
    for section, body in sorted(config.items()):
        if section == "profile" or not isinstance(body, dict):
            continue
        drop = _NOT_SPELLS.get(section, set())
        if drop is None:
            continue
        kept[section] = {k: v for k, v in sorted(body.items()) if k not in drop}
    kept.get("input", {}).pop("spells", None)
    return kept


def spell_table_key(config: dict, code_revision: str, inputs_sha256: str) -> str:
    """The cache key of a spell table: 16 hex digits of a hash of code, inputs and spell settings."""
    text = json.dumps({"code_revision": code_revision, "inputs_sha256": inputs_sha256,
                       "settings": spell_settings(config)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spell_table_dir(root: Path, key: str) -> Path:
    return root / SPELLS / key


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _manifest_problem(folder: Path, marker: dict) -> str | None:
    for rel, size in marker["files"].items():
        try:
            got = (folder / rel).stat().st_size
        except OSError:
            return f"{rel} is missing"
        if got != size:
            return f"{rel} has {got} bytes, {size} were written"
    return None


def usable_spell_table(folder: Path, *, config: dict, code_revision: str, inputs_sha256: str,
                       warn: Callable[[str], None] | None = None) -> dict | None:
    """The marker of the spell table ``folder`` if it may be reused for these inputs, else None.

    A folder that exists but fails a check (manifest, ``_SUCCESS``, its own
    summary's fingerprint or settings) is reported with ``warn`` and not used.
    """
    warn = warn or warn_stderr
    if not folder.is_dir():
        return None
    marker = read_marker(str(folder))
    summary = _read_json(folder / "summary.json")
    problem = None
    if marker is None or summary is None:
        problem = f"no valid {MARKER} or summary.json"
    elif "spells/_SUCCESS" not in marker["files"]:
        problem = "it holds no complete spell table"
    else:
        problem = _manifest_problem(folder, marker)
    if problem is None and summary is not None:
        inputs = summary.get("inputs") or {}
        if inputs.get("inputs_sha256") != inputs_sha256 or summary.get("code_revision") != code_revision:
            problem = "its summary names other inputs or another code revision"
        elif spell_settings(summary.get("config") or {}) != json.loads(json.dumps(spell_settings(config),
                                                                                   default=str)):
            problem = "its summary names other settings"
    if problem:
        warn(f"spell table {folder} is not reused: {problem}; it is built again")
        return None
    return marker


def spell_table_of(root: Path, summary: dict) -> tuple[str, Path | None]:
    """(index name, folder) of the spell table a period was computed from.

    A period computed from a spell table of this root (``.../spells/<key>/spells``)
    names it ``spells/<key>`` and is looked up under ``root`` (a root moved or
    copied still finds it); another spell table is named by its path and looked
    up there; a period that built its own (a plain ``shmi run``) has ``("", None)``.
    """
    path = (summary.get("inputs") or {}).get("spells")
    if not path:
        return "", None
    parts = Path(str(local_path(path))).parts
    if len(parts) >= 3 and parts[-1] == "spells" and parts[-3] == SPELLS:
        return f"{SPELLS}/{parts[-2]}", root / SPELLS / parts[-2]
    folder = Path(str(local_path(path))).parent
    return str(path), folder


def prune_spell_tables(root: Path, keep: Iterable[str] = (), *, warn: Callable[[str], None] | None = None
                       ) -> list[str]:
    """Delete the spell tables no published period refers to (other than ``keep``); returns their keys.

    Each is renamed to ``.<key>.trash-<run id>`` first, so that a deletion
    cut short leaves no folder that looks like a usable table.
    """
    warn = warn or warn_stderr
    folder = root / SPELLS
    if not folder.is_dir():
        return []
    used = set(keep)
    for row in index_rows(root, warn=lambda _: None):
        if row["spell_table"].startswith(f"{SPELLS}/"):
            used.add(row["spell_table"].split("/", 1)[1])
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name in used or not entry.is_dir() or entry.is_symlink():
            continue
        if read_marker(str(entry)) is None:
            continue  # not ours, or being written: left alone
        trash = folder / f".{entry.name}.trash-{_run_id()}"
        entry.rename(trash)
        _delete_tree(trash, warn)
        removed.append(entry.name)
    return removed


# ------------------------------------------------------------------ the index

def _utc_text(value) -> str | None:
    """An ISO time as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, to the second)."""
    if not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}Z"


def _the_period(summary: dict, as_of: str) -> dict:
    periods = [p for p in summary.get("periods") or [] if isinstance(p, dict)]
    for p in periods:
        if str(p.get("end", ""))[:7] == as_of:
            return p
    return periods[-1] if periods else {}


def _row(root: Path, folder: Path, marker: dict, warn: Callable[[str], None]) -> dict:
    as_of = folder.name
    summary = _read_json(folder / "summary.json")
    if summary is None:
        warn(f"published period {folder} has no readable summary.json: its index row is incomplete")
        summary = {}
    fingerprint = marker.get("fingerprint") or {}
    period = _the_period(summary, as_of)
    spell_name, spell_folder = spell_table_of(root, summary)
    source, source_marker = summary, marker
    if spell_folder is not None:
        source = _read_json(spell_folder / "summary.json") or {}
        source_marker = read_marker(str(spell_folder)) or {}
        if not source:
            warn(f"published period {folder}: its spell table {spell_folder} is gone; "
                 "its input counts are left empty in the index")
    inputs = source.get("inputs") or {}
    validate = source.get("validate") or {}
    linkage = source.get("linkage") or {}
    spells = source.get("spells") or {}
    return {
        "as_of": as_of, "period": period.get("period"), "period_start": period.get("start"),
        "period_end": period.get("end"),
        "run_id": marker.get("run_id"), "started_utc": _utc_text(summary.get("started_utc")),
        "published_utc": _utc_text(marker.get("created_utc")),
        "code_revision": fingerprint.get("code_revision") or summary.get("code_revision"),
        "shmi_spark_version": fingerprint.get("shmi_spark_version") or marker.get("shmi_spark_version"),
        "config_sha256": fingerprint.get("config_sha256") or summary.get("config_sha256"),
        "inputs_sha256": inputs.get("inputs_sha256"), "input_files": inputs.get("input_files"),
        "input_bytes": inputs.get("input_bytes"),
        "spell_table": spell_name, "spell_table_run_id": source_marker.get("run_id") if spell_name else None,
        "episodes_read": validate.get("episodes_read"), "episodes_rejected": validate.get("episodes_rejected"),
        "deaths_read": validate.get("deaths_read"), "deaths_rejected": validate.get("deaths_rejected"),
        "spells": spells.get("spells_included"), "deaths_linked": linkage.get("deaths_linked"),
        "period_spells": period.get("spells"), "period_deaths": period.get("observed"),
        "trusts": period.get("n_trusts"), "trusts_banded": period.get("n_banded"),
        "trusts_higher": period.get("n_higher"), "trusts_as_expected": period.get("n_as_expected"),
        "trusts_lower": period.get("n_lower"), "trusts_above_998": period.get("n_outliers_998"),
    }


def index_rows(root: Path, *, warn: Callable[[str], None] | None = None) -> list[dict]:
    """One row per published period under ``root/periods`` (:data:`INDEX_COLUMNS`), by period.

    A period is a ``YYYY-MM`` folder with a valid ``_SHMI_OUTPUT.json`` of a
    run; anything else there (staging folders, a folder without a marker) is
    not published and not indexed.
    """
    warn = warn or warn_stderr
    folder = root / PERIODS
    rows: list[dict] = []
    if not folder.is_dir():
        return rows
    for entry in sorted(folder.iterdir()):
        if not is_period_name(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        marker = read_marker(str(entry))
        if marker is None or marker.get("kind") != "run":
            warn(f"{entry} is not a published period (no valid {MARKER}): left out of the index")
            continue
        rows.append(_row(root, entry, marker, warn))
    return rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else ""
    return str(value)


def index_text(rows: list[dict]) -> str:
    """The CSV text of the index: a header, then one line per row, in the given order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in INDEX_COLUMNS])
    return buffer.getvalue()


def write_index(root: Path, rows: list[dict]) -> bool:
    """Replace ``root/index.csv`` atomically with the text of ``rows``; False if it already held it."""
    data = index_text(rows).encode()
    path = root / INDEX
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    _replace_file(path, data)
    return True


def point_latest(root: Path, newest: str | None, *, warn: Callable[[str], None] | None = None) -> bool:
    """Make ``root/latest`` a relative symlink to ``periods/<newest>`` (removed if None); True if changed."""
    warn = warn or warn_stderr
    link = root / LATEST
    if link.exists() and not link.is_symlink():
        warn(f"{link} is not a symlink: left alone (latest is not updated)")
        return False
    if newest is None:
        if link.is_symlink():
            link.unlink()
            return True
        return False
    target = f"{PERIODS}/{newest}"
    if link.is_symlink() and os.readlink(link) == target:
        return False
    tmp = root / f".{LATEST}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    checkpoint("latest-linked")
    os.replace(tmp, link)
    _fsync_dir(root)
    return True


def publish_index(root: Path, *, warn: Callable[[str], None] | None = None) -> list[dict]:
    """Rebuild ``index.csv`` and ``latest`` from the periods published under ``root``; return the rows.

    Call it holding the root lock.
    """
    rows = index_rows(root, warn=warn)
    write_index(root, rows)
    point_latest(root, rows[-1]["as_of"] if rows else None, warn=warn)
    return rows
