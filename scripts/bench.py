"""The benchmark of issue 13: the whole five-year run from raw HES at several sizes.

    bash scripts/bench.sh [--sizes 1000000,4000000,16000000,36500000] [--driver-memory 8g]
                          [--bench-dir bench] [--small 100000] [--no-run-sh] [--smoke]
                          [extra `shmi run` arguments...]

For each size N it generates (or reuses, when ``truth/summary.json`` is there) the synthetic
world ``BENCH/world_N`` (seed 1), runs ``shmi run --input BENCH/world_N --out BENCH/run_N
--five-year --quiet --set spark.driver_memory=MEM`` plus the extra arguments as a child process,
and records:

* wall time per stage (the run's ``summary.json`` "stages"), rows per second, total wall (the report
  included: its own seconds are ``report_seconds``, from ``report/_SHMI_REPORT.json``);
* the peak resident memory of the whole process tree (shmi, its JVM, the Python workers:
  ``/proc`` polled every 0.5 s, RSS summed over every descendant, so pages two processes share
  count twice; by command name at the peak);
* shuffle read/write and memory/disk spill bytes from Spark's event log (written for the run
  into ``BENCH/events/LABEL/``, uncompressed, not rolling), per shmi stage: a Spark job
  belongs to the stage whose time window holds its submission time; each window ends at the
  run log's timestamp of the stage's line (stages logged together are laid back to back) and
  lasts the stage's seconds.  Jobs outside every window (Spark's start, planning) are "other";
* the scaling exponent of wall time, per stage and in total, between consecutive sizes
  (log(t2/t1) / log(n2/n1)) and as a least-squares fit over all sizes.

It also times the five-year run on the "60,000-patient world" of the issue (``--small``: 100,000
analysis admissions, which the generator gives to about 60,000 people in about 147,000 episode
rows, going by the 20,000-admission world's 11,933 people and 29,424 rows) and
``bash scripts/run.sh --quiet`` (the embedded 200,000-admission default; run once
first when its world is not there yet, so the timed run is the second; its output folder is
``BENCH/run_default`` and so its world ``BENCH/default_world``).

Writes ``BENCH/results.json`` (after every run, so an interrupted benchmark keeps what it
measured) and prints a Markdown table for the README's "Measured" section.  ``--smoke``: two
tiny worlds (2,000 and 4,000 admissions) and one 60-month period whose groups all take their
crude rate, so that the harness runs end to end in a couple of minutes (the test suite's
``tests/test_bench.py``); no timing means anything there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent            # the venv's bin/ (not resolved: a venv's python is a link)
SHMI = BIN / "shmi"
DEFAULT_SIZES = [1_000_000, 4_000_000, 16_000_000, 36_500_000]
SMOKE_SIZES = [2_000, 4_000]
SMALL_ADMISSIONS = 100_000                   # about 60,000 people, 147k episode rows (module docstring)
FIVE_YEAR = ["--five-year"]
# One 60-month period (six five-year periods work too, with these settings, but take twice as long),
# every group its crude rate (no model fits: seconds, not minutes), and trusts banded from 0.1
# expected deaths (a 2,000-admission world has too few deaths for the default 1 and 12-month periods).
SMOKE_RUN = ["--period-end", "2010-03", "--set", "method.period_months=60",
             "--set", "method.modelling_window_months=60", "--set", "method.min_expected_deaths=0.1",
             "--set", "model.min_deaths=100000"]
METRICS = ("shuffle_read_bytes", "shuffle_write_bytes", "memory_spilled_bytes", "disk_spilled_bytes",
           "input_bytes", "executor_run_seconds", "executor_cpu_seconds", "tasks", "jobs")
COMPRESSED = (".lz4", ".lzf", ".snappy", ".zstd", ".zst")
LOG_STAGE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO shmi: (.{12}) in +(\S+)  out +(\S+) +[\d.]+s$")


# ---------------------------------------------------------------- the process tree's memory

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # after "pid (comm) state"
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants alive now."""
    kids, tree, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(kids.get(pid, []))
    return tree


def _memory(pid: int) -> tuple[str, int] | None:
    """(command name, RSS bytes) of one process; None when it is gone.

    RSS from ``statm`` (constant cost); PSS (``smaps_rollup``) would count shared pages once but
    walks the page tables: about 0.1 s per read of a 2 GB JVM, too dear to poll every 0.5 s.
    """
    try:
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/statm") as f:
            return name, int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def tree_memory(root: int) -> dict:
    """RSS summed over ``root``'s process tree, and RSS by command name."""
    rss = 0
    by_name: dict[str, int] = {}
    for pid in process_tree(root):
        m = _memory(pid)
        if m is not None:
            rss += m[1]
            by_name[m[0]] = by_name.get(m[0], 0) + m[1]
    return {"rss": rss, "by_name": by_name}


class TreeSampler(threading.Thread):
    """Polls a process tree's memory every ``interval`` seconds until stopped; keeps the peaks."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss = self.samples = 0
        self.peak_by_name: dict[str, int] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        m = tree_memory(self.root)
        self.samples += 1
        if m["rss"] > self.peak_rss:
            self.peak_rss, self.peak_by_name = m["rss"], m["by_name"]

    def run(self) -> None:
        self.sample()
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> dict:
        self._stop_event.set()
        self.join()
        return {"peak_rss_bytes": self.peak_rss, "peak_rss_by_process": self.peak_by_name,
                "memory_samples": self.samples}


def measured(cmd: list[str], console: Path, *, env: dict | None = None) -> dict:
    """Run ``cmd`` (output to ``console``) while sampling its process tree: exit code, wall, memory peaks."""
    console.parent.mkdir(parents=True, exist_ok=True)
    with open(console, "w") as out:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        sampler = TreeSampler(child.pid)
        sampler.start()
        code = child.wait()
        wall = time.perf_counter() - t0
    return {"command": cmd, "pid": child.pid, "exit_code": code, "wall_seconds": round(wall, 2),
            **sampler.stop(), "console": str(console)}


# ---------------------------------------------------------------- the event log

def event_log_files(folder: Path) -> list[Path]:
    """The event log's files in ``folder`` (one application): a plain file or a rolling ``eventlog_v2_*`` dir."""
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    rolling = [p for p in found if p.is_dir() and p.name.startswith("eventlog_v2_")]
    if rolling:
        parts = [p for p in rolling[-1].iterdir() if p.name.startswith("events_")]
        found = sorted(parts, key=lambda p: int(p.name.split("_")[1]))
    for p in found:
        if p.name.removesuffix(".inprogress").endswith(COMPRESSED):
            raise ValueError(f"compressed event log {p}: run with spark.eventLog.compress=false")
    return [p for p in found if p.is_file()]


def read_events(files: list[Path]) -> Iterator[dict]:
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:  # a last line cut short by a killed run
                        continue


def empty_metrics() -> dict:
    return dict.fromkeys(METRICS, 0)


def task_metrics(event: dict) -> dict:
    """One SparkListenerTaskEnd's figures (zeros where Spark left a metric out)."""
    m = event.get("Task Metrics") or {}
    read, write = m.get("Shuffle Read Metrics") or {}, m.get("Shuffle Write Metrics") or {}
    return {
        "shuffle_read_bytes": read.get("Remote Bytes Read", 0) + read.get("Local Bytes Read", 0),
        "shuffle_write_bytes": write.get("Shuffle Bytes Written", 0),
        "memory_spilled_bytes": m.get("Memory Bytes Spilled", 0),
        "disk_spilled_bytes": m.get("Disk Bytes Spilled", 0),
        "input_bytes": (m.get("Input Metrics") or {}).get("Bytes Read", 0),
        "executor_run_seconds": m.get("Executor Run Time", 0) / 1e3,
        "executor_cpu_seconds": m.get("Executor CPU Time", 0) / 1e9,
        "tasks": 1,
    }


def parse_event_log(files: list[Path], windows: list[tuple[str, float, float]]) -> dict:
    """Spark's totals for the run, and per window ``(key, start, end)`` (epoch seconds) by job submission time.

    Returns ``{"app_id", "totals", "by_stage": {key: metrics}, "other": metrics}``; a metric
    is the sum over the tasks of the jobs submitted inside the window.
    """
    job_of_stage: dict[int, str] = {}
    by_stage = {key: empty_metrics() for key, _, _ in windows}
    other, totals = empty_metrics(), empty_metrics()
    app_id = None

    def bucket(when_ms: float) -> str | None:
        for key, start, end in windows:
            if start <= when_ms / 1e3 <= end:
                return key
        return None

    for event in read_events(files):
        kind = event.get("Event")
        if kind == "SparkListenerApplicationStart":
            app_id = event.get("App ID")
        elif kind == "SparkListenerJobStart":
            key = bucket(event.get("Submission Time", 0))
            (by_stage[key] if key else other)["jobs"] += 1
            totals["jobs"] += 1
            for stage_id in event.get("Stage IDs", []):
                job_of_stage.setdefault(stage_id, key or "")
        elif kind == "SparkListenerTaskEnd":
            figures = task_metrics(event)
            key = job_of_stage.get(event.get("Stage ID", -1), "")
            for target in (by_stage[key] if key else other, totals):
                for name, value in figures.items():
                    target[name] += value
    return {"app_id": app_id, "totals": _rounded(totals), "other": _rounded(other),
            "by_stage": {k: _rounded(v) for k, v in by_stage.items()}}


def _rounded(metrics: dict) -> dict:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in metrics.items()}


def event_log_setting(folder: Path, run_args: list[str]) -> list[str]:
    """``--set spark.extra={...}`` turning the event log on, merged with the extra settings the run has.

    A ``--set spark.extra=`` replaces the whole table, so the profile's (``--conf`` or
    conf/local.toml) and any ``--set spark.extra=`` among ``run_args`` are merged in here.
    """
    extra: dict = {}
    profile = ROOT / "conf" / "local.toml"
    for i, arg in enumerate(run_args[:-1]):
        if arg == "--conf":
            profile = Path(run_args[i + 1])
    if profile.is_file():
        extra |= tomllib.loads(profile.read_text()).get("spark", {}).get("extra", {})
    for i, arg in enumerate(run_args[:-1]):
        if arg == "--set" and run_args[i + 1].startswith("spark.extra="):
            extra |= tomllib.loads("v = " + run_args[i + 1].split("=", 1)[1])["v"]
    uri = folder.resolve().as_uri()  # a plain path where the URI would need escapes (Spark resolves it)
    extra |= {"spark.eventLog.enabled": "true", "spark.eventLog.dir": str(folder.resolve()) if "%" in uri else uri,
              "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false"}
    table = ", ".join(f"{json.dumps(str(k))} = {json.dumps(str(v))}" for k, v in extra.items())
    return ["--set", f"spark.extra={{{table}}}"]


def _without_extra(run_args: list[str]) -> list[str]:
    out, skip = [], False
    for i, arg in enumerate(run_args):
        if skip:
            skip = False
            continue
        if arg == "--set" and i + 1 < len(run_args) and run_args[i + 1].startswith("spark.extra="):
            skip = True
            continue
        out.append(arg)
    return out


# ---------------------------------------------------------------- stages and their windows

def stage_rows(summary: dict) -> list[dict]:
    """The summary's stages with a unique ``key`` and a ``group`` (models/expected/indicator carry their period)."""
    periods = [p.get("period", "?") for p in summary.get("periods", [])]
    rows: list[dict] = []
    seen: dict[str, int] = {}
    k = -1
    for st in summary.get("stages", []):
        name = st["stage"]
        group = name.split()[0] if name.startswith(("models ", "hsmr ")) else name
        if group == "models":
            k += 1
        if group in ("models", "expected", "indicator") and 0 <= k < len(periods):
            key = f"{group} {periods[k]}"
        else:
            key = name
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key} #{seen[key]}"
        rows_in = st.get("rows_in") if st.get("rows_in") is not None else st.get("rows_out")
        seconds = st.get("seconds") or 0.0
        rows.append({**st, "key": key, "group": group,
                     "rows_per_second": round(rows_in / seconds) if rows_in and seconds > 0 else None})
    return rows


def stage_windows(rows: list[dict], log_file: Path | None) -> list[tuple[str, float, float]]:
    """Each stage's ``(key, start, end)`` in epoch seconds from the run log's stage lines; [] when they don't match.

    A stage's line is logged when it ends; stages logged together (a period's models,
    expected deaths and indicator) are laid back to back, ending at the last one's line.
    The report's line (written after the run's summary, so not among its stages) is left out.
    """
    if log_file is None or not log_file.is_file():
        return []
    logged = []
    for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        m = LOG_STAGE.match(line)
        if m:
            logged.append((m.group(2).strip(), dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()))
    logged = [(name, at) for name, at in logged if name != "report" or "report" in {r["stage"] for r in rows}]
    if [name for name, _ in logged] != [r["stage"] for r in rows]:
        return []
    windows: list[tuple[str, float, float]] = []
    next_start = math.inf
    for row, (_, logged_at) in zip(reversed(rows), reversed(logged), strict=True):
        end = min(logged_at, next_start)
        next_start = end - (row.get("seconds") or 0.0)
        windows.append((row["key"], next_start, end))
    return windows[::-1]


def run_log_of(out: Path, pid: int) -> Path | None:
    """The run log ``shmi run`` (process ``pid``) wrote beside its output folder."""
    logs = sorted((out.parent / f"{out.name}.logs").glob(f"*-{pid}.log"))
    return logs[-1] if logs else None


def group_sums(rows: list[dict]) -> dict:
    """Seconds, rows and Spark figures summed per stage group (models, expected, ... over the periods)."""
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(r["group"], {"seconds": 0.0, "rows_in": 0, "stages": 0})
        g["seconds"] = round(g["seconds"] + (r.get("seconds") or 0.0), 2)
        g["rows_in"] += (r.get("rows_in") if r.get("rows_in") is not None else r.get("rows_out")) or 0
        g["stages"] += 1
        for name in METRICS:
            if name in r:
                g[name] = round(g.get(name, 0) + r[name], 2)
    for g in groups.values():
        g["rows_per_second"] = round(g["rows_in"] / g["seconds"]) if g["seconds"] > 0 and g["rows_in"] else None
    return groups


# ---------------------------------------------------------------- scaling

def exponent(n1: float, t1: float | None, n2: float, t2: float | None) -> float | None:
    """log(t2/t1) / log(n2/n1); None where a time is missing or zero or the sizes are equal."""
    if not (t1 and t2 and t1 > 0 and t2 > 0 and n1 > 0 and n2 > 0 and n1 != n2):
        return None
    return round(math.log(t2 / t1) / math.log(n2 / n1), 3)


def fit_exponent(sizes: list[float], times: list[float | None]) -> float | None:
    """The least-squares slope of log(time) on log(size) over the points with a positive time."""
    pts = [(math.log(n), math.log(t)) for n, t in zip(sizes, times, strict=True) if t and t > 0 and n > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / sxx, 3)


def scaling(size_results: list[dict]) -> dict:
    """Exponents of wall time per stage (and group, and in total) between consecutive sizes and fitted."""
    ok = [s for s in size_results if s["run"].get("exit_code") == 0 and s["run"].get("stages")]
    ns = [s["admissions"] for s in ok]
    series: dict[str, list[float | None]] = {"total wall": [s["run"]["wall_seconds"] for s in ok],
                                             "pipeline": [s["run"].get("seconds_total") for s in ok]}
    for s in ok:
        for g in s["run"]["groups"]:
            series.setdefault(f"group {g}", [])
        for r in s["run"]["stages"]:
            series.setdefault(r["key"], [])
    for name in series:
        if name in ("total wall", "pipeline"):
            continue
        if name.startswith("group "):
            series[name] = [s["run"]["groups"].get(name[6:], {}).get("seconds") for s in ok]
        else:
            series[name] = [next((r["seconds"] for r in s["run"]["stages"] if r["key"] == name), None) for s in ok]
    consecutive = [{"from": ns[i], "to": ns[i + 1],
                    "exponents": {k: exponent(ns[i], v[i], ns[i + 1], v[i + 1]) for k, v in series.items()}}
                   for i in range(len(ns) - 1)]
    return {"sizes": ns, "consecutive": consecutive,
            "fit": {k: fit_exponent(ns, v) for k, v in series.items()} if len(ns) >= 2 else {}}


# ---------------------------------------------------------------- runs

def machine() -> dict:
    def first(path: str, prefix: str) -> str:
        try:
            with open(path) as f:
                return next((line.split(":", 1)[1].strip() for line in f if line.startswith(prefix)), "")
        except OSError:
            return ""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    except (OSError, IndexError):
        java = ""
    mem_kb = first("/proc/meminfo", "MemTotal").split()
    return {
        "cores": os.cpu_count(), "memory_bytes": int(mem_kb[0]) * 1024 if mem_kb else None,
        "cpu_model": first("/proc/cpuinfo", "model name"), "arch": platform.machine(),
        "kernel": platform.release(), "python": platform.python_version(), "java": java,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_revision": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain")),
    }


def world_facts(world: Path) -> dict:
    t = json.loads((world / "truth" / "summary.json").read_text())
    return {"admissions": t.get("admissions"), "people": t.get("people"),
            "episode_rows": t.get("episode_rows_written"), "spells": sum((t.get("spells_by_kind") or {}).values()),
            "analysis_deaths": t.get("analysis_deaths"), "ons_rows": t.get("ons_rows")}


def ensure_world(bench: Path, n: int, say) -> tuple[Path, dict]:
    """``BENCH/world_N`` (seed 1), generated unless its truth/summary.json is there."""
    world = bench / f"world_{n}"
    if (world / "truth" / "summary.json").is_file():
        say(f"world_{n}: reused")
        return world, {"reused": True}
    say(f"world_{n}: generating")
    synth = measured([str(SHMI), "synth", "--out", str(world), "--admissions", str(n), "--seed", "1",
                      "--workers", "2"], bench / "logs" / f"synth_{n}.log")
    if synth["exit_code"] != 0:
        raise SystemExit(f"bench: shmi synth --admissions {n} failed (exit {synth['exit_code']}); "
                         f"see {synth['console']}")
    return world, {"reused": False, **synth}


def shmi_run(bench: Path, label: str, world: Path, run_args: list[str], say) -> dict:
    """One measured ``shmi run`` of ``world`` into ``BENCH/run_LABEL`` with the event log on."""
    out, events = bench / f"run_{label}", bench / "events" / label
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    cmd = [str(SHMI), "run", "--input", str(world), "--out", str(out), "--quiet",
           *_without_extra(run_args), *event_log_setting(events, run_args)]
    say(f"run_{label}: {' '.join(cmd[1:])}")
    run = measured(cmd, bench / "logs" / f"run_{label}.log")
    if run["exit_code"] != 0:
        tail = Path(run["console"]).read_text(errors="replace").strip().splitlines()[-3:]
        return {**run, "error": " / ".join(tail)}
    summary = json.loads((out / "summary.json").read_text())
    rows = stage_rows(summary)
    log_file = run_log_of(out, run["pid"])
    windows = stage_windows(rows, log_file)
    try:
        spark = parse_event_log(event_log_files(events), windows)
        spark["attribution"] = ("per stage, by job submission time within the stage's window (run log timestamps)"
                                if windows else "per run only (the run log's stage lines did not match)")
    except ValueError as exc:
        spark = {"error": str(exc), "attribution": "none"}
    for row in rows:
        row.update(spark.get("by_stage", {}).get(row["key"], {}))
    report = out / "report" / "_SHMI_REPORT.json"  # written after the summary: its seconds are its own
    run["report_seconds"] = json.loads(report.read_text()).get("seconds") if report.is_file() else None
    return {**run, "run_log": str(log_file) if log_file else None, "seconds_total": summary.get("seconds_total"),
            "spark_version": summary.get("spark_version"), "code_revision": summary.get("code_revision"),
            "stages": rows, "groups": group_sums(rows),
            "spark": {k: v for k, v in spark.items() if k != "by_stage"}}


def run_sh_default(bench: Path, say) -> dict:
    """``bash scripts/run.sh --quiet`` timed on its second run (the first generates the default world)."""
    out = bench / "run_default"
    cmd = ["bash", str(ROOT / "scripts" / "run.sh"), "--quiet", "--out", str(out)]
    first = None
    if not (bench / "default_world" / "truth" / "summary.json").is_file():
        say("run.sh: first run (generates the default world)")
        first = measured(cmd, bench / "logs" / "run_sh_first.log")
    say("run.sh: timed run")
    run = measured(cmd, bench / "logs" / "run_sh.log")
    summary_file = out / "summary.json"
    if run["exit_code"] == 0 and summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        rows = stage_rows(summary)
        run |= {"seconds_total": summary.get("seconds_total"), "stages": rows, "groups": group_sums(rows)}
    return {**run, "first_run_wall_seconds": first["wall_seconds"] if first else None}


# ---------------------------------------------------------------- the table

def _bytes(v: float | None) -> str:
    if v is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= scale:
            return f"{v / scale:.1f} {unit}" if unit != "GB" else f"{v / scale:.2f} GB"
    return f"{v:.0f} B"


def _rate(v: float | None) -> str:
    if not v:
        return ""
    return f" ({v / 1e6:.2f}M/s)" if v >= 1e6 else f" ({v / 1e3:.0f}k/s)" if v >= 1e3 else f" ({v:.0f}/s)"


def _exp(fit: dict, consecutive: list[dict], name: str) -> str:
    value = fit.get(name)
    if value is None:
        return ""
    steps = [c["exponents"].get(name) for c in consecutive]
    inner = ", ".join("–" if s is None else f"{s:.2f}" for s in steps)
    return f"{value:.2f}" + (f" ({inner})" if len(steps) > 1 else "")


def markdown(results: dict) -> str:
    """The README's table: one column per size, one row per stage group and resource, and the exponent."""
    m = results["machine"]
    sizes = results["sizes"]
    sc = results.get("scaling") or {}
    fit, cons = sc.get("fit", {}), sc.get("consecutive", [])
    lines = [f"Machine: {m['cores']} cores, {(m['memory_bytes'] or 0) / 2**30:.1f} GiB, {m['cpu_model']}; load "
             f"{' '.join(str(x) for x in m['load_average_start'])} at the start; {m['date_utc'][:10]}; "
             f"revision {m['git_revision'][:10]}{' (modified)' if m['git_dirty'] else ''}; "
             f"driver memory {results['harness']['driver_memory']}; "
             f"`shmi run {' '.join(results['harness']['run_args'])}`",
             ""]
    head = ["admissions"] + [f"{s['admissions']:,}" for s in sizes] + ["exponent"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, cells: list[str], exp: str = "") -> None:
        lines.append("| " + " | ".join([label, *cells, exp]) + " |")

    row("episode rows", [f"{s['world'].get('episode_rows') or 0:,}" for s in sizes])
    groups: list[str] = []
    for s in sizes:
        for g in s["run"].get("groups", {}):
            if g not in groups:
                groups.append(g)
    for g in groups:
        cells = []
        for s in sizes:
            v = s["run"].get("groups", {}).get(g)
            cells.append("–" if v is None else f"{v['seconds']:,.1f} s{_rate(v.get('rows_per_second'))}")
        row(g, cells, _exp(fit, cons, f"group {g}"))
    row("pipeline (summary)", [f"{s['run'].get('seconds_total') or 0:,.1f} s" for s in sizes],
        _exp(fit, cons, "pipeline"))
    row("**total wall**", [f"**{s['run']['wall_seconds']:,.1f} s**" if s["run"].get("exit_code") == 0
                           else f"exit {s['run'].get('exit_code')}" for s in sizes], _exp(fit, cons, "total wall"))
    row("peak RSS, process tree", [_bytes(s["run"].get("peak_rss_bytes")) for s in sizes])
    tot = [s["run"].get("spark", {}).get("totals", {}) for s in sizes]
    row("shuffle read / write", [f"{_bytes(t.get('shuffle_read_bytes'))} / {_bytes(t.get('shuffle_write_bytes'))}"
                                 for t in tot])
    row("spill memory / disk", [f"{_bytes(t.get('memory_spilled_bytes'))} / {_bytes(t.get('disk_spilled_bytes'))}"
                                for t in tot])
    row("Spark jobs / executor CPU", [f"{t.get('jobs', 0):,} / {t.get('executor_cpu_seconds', 0):,.0f} s"
                                      if t else "–" for t in tot])
    lines.append("")
    lines.append("Stages grouped over the periods (models, expected, indicator: the sum over the periods); "
                 "rows per second from the stage's rows in; exponent: least-squares fit of log wall time on "
                 "log admissions (consecutive pairs in brackets); peak memory summed over shmi, its JVM and "
                 "the Python workers; shuffle and spill from Spark's event log.")
    for name in ("small_world", "run_sh"):
        extra = results.get(name)
        if not extra:
            continue
        if name == "small_world":
            w = extra["world"]
            label = ("Small world, the same run "
                     f"({extra['admissions']:,} admissions: {w.get('people') or 0:,} people, "
                     f"{w.get('episode_rows') or 0:,} episode rows)")
        else:
            label = "`bash scripts/run.sh` (its default world, second run)"
        r = extra["run"]
        models = (r.get("groups") or {}).get("models", {}).get("seconds")
        lines.append(f"- {label}: **{r['wall_seconds']:,.1f} s** wall"
                     + (f", of which models {models:,.1f} s" if models is not None else "")
                     + f", peak RSS {_bytes(r.get('peak_rss_bytes'))}"
                     + ("" if r.get("exit_code") == 0 else f" (exit {r.get('exit_code')})"))
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--sizes", help="comma-separated admissions (default 1000000,4000000,16000000,36500000; "
                                   "with --smoke 2000,4000)")
    p.add_argument("--driver-memory", default="8g", help="spark.driver_memory of the runs (default 8g)")
    p.add_argument("--bench-dir", default=str(ROOT / "bench"), help="worlds, runs and results.json (default bench/)")
    p.add_argument("--smoke", action="store_true", help="tiny worlds, one 60-month period, crude rates, no extras")
    p.add_argument("--small", type=int, default=SMALL_ADMISSIONS, metavar="N",
                   help="admissions of the '60,000-patient world' (default 100000; 0 skips it)")
    p.add_argument("--no-run-sh", action="store_true", help="do not time scripts/run.sh's default")
    args, run_args = p.parse_known_args(argv)
    if run_args and run_args[0] == "--":
        run_args = run_args[1:]
    text = args.sizes or ",".join(str(n) for n in (SMOKE_SIZES if args.smoke else DEFAULT_SIZES))
    try:
        args.sizes = sorted({int(x.replace("_", "")) for x in text.split(",") if x.strip()})
    except ValueError:
        p.error(f"--sizes: comma-separated whole numbers, got {text!r}")
    if not args.sizes or min(args.sizes) < 1:
        p.error("--sizes: at least one size, each >= 1")
    return args, run_args


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    bench = Path(args.bench_dir).resolve()
    bench.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    explicit_period = any(a == "--period-end" or a.startswith("--period-end=") for a in extra)
    mode = SMOKE_RUN if args.smoke else ([] if explicit_period else FIVE_YEAR)
    run_args = [*mode, "--set", f"spark.driver_memory={args.driver_memory}", *extra]
    started = time.perf_counter()

    def say(text: str) -> None:
        print(f"[bench {time.perf_counter() - started:7.1f}s] {text}", file=sys.stderr, flush=True)

    results: dict = {
        "harness": {"argv": sys.argv[1:] if argv is None else argv, "bench_dir": str(bench), "smoke": args.smoke,
                    "driver_memory": args.driver_memory, "run_args": run_args},
        "machine": machine(), "sizes": [],
    }
    out_file = bench / "results.json"

    def save() -> None:
        results["harness"]["seconds"] = round(time.perf_counter() - started, 1)
        results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        tmp = out_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(out_file)

    for n in args.sizes:
        world, synth = ensure_world(bench, n, say)
        run = shmi_run(bench, str(n), world, run_args, say)
        say(f"run_{n}: exit {run['exit_code']}, {run['wall_seconds']} s, peak RSS {_bytes(run['peak_rss_bytes'])}")
        results["sizes"].append({"admissions": n, "world": {"path": str(world), **world_facts(world)},
                                 "synth": synth, "run": run})
        results["scaling"] = scaling(results["sizes"])
        save()
    if not args.smoke and args.small:
        same = next((s for s in results["sizes"] if s["admissions"] == args.small), None)
        if same is None:
            world, synth = ensure_world(bench, args.small, say)
            run = shmi_run(bench, str(args.small), world, run_args, say)
            same = {"admissions": args.small, "world": {"path": str(world), **world_facts(world)},
                    "synth": synth, "run": run}
        results["small_world"] = same
        save()
    if not args.smoke and not args.no_run_sh:
        results["run_sh"] = {"run": run_sh_default(bench, say)}
        save()
    save()
    print(markdown(results))
    say(f"results in {out_file}")
    failed = [f"run_{s['admissions']}" for s in results["sizes"] if s["run"]["exit_code"] != 0]
    failed += [name for name in ("small_world", "run_sh") if results.get(name, {}).get("run", {}).get("exit_code")]
    if failed:
        say(f"failed: {', '.join(failed)} (their output is in {bench / 'logs'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
