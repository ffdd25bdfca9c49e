"""``shmi refresh``: published periods, the index, latest, the spell-table cache, and kill -9 at any moment.

The fast tests build refresh roots by hand (no Spark).  The slow ones refresh a
3,000-admission world: three consecutive months in this process (sharing the
test session), a re-run of the middle month, and a refresh run in a child
process killed (SIGKILL) at thirteen moments spread over it, watched on the file
system, at fractions of measured times, and at the crash-test pause points of
:mod:`shmi_spark.io.publication`.  The models are cheap here
(``model.min_deaths`` above any group's deaths: every group uses its crude rate)
and banding uses ``method.min_expected_deaths=0.1``: the published files, not
the estimates, are under test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, TEST_PROFILE

from shmi_spark.cli import main
from shmi_spark.errors import InputError
from shmi_spark.io import publication as pub
from shmi_spark.io.outputs import MARKER

WORLD_N, WORLD_SEED = 3000, 7
MONTHS = ("2010-01", "2010-02", "2010-03")
FAST = ["--conf", str(TEST_PROFILE), "--set", "model.min_deaths=100000", "--set", "method.min_expected_deaths=0.1"]


# ------------------------------------------------------------------ helpers

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published(root: Path) -> dict:
    """What readers see: every file of every published period, index.csv's bytes, latest's target."""
    periods = root / pub.PERIODS
    files = {}
    if periods.is_dir():
        for top in sorted(periods.iterdir()):
            if top.name.startswith("."):
                continue
            for p in sorted(top.rglob("*")):
                if p.is_file():
                    files[str(p.relative_to(root))] = _sha(p)
    index = root / pub.INDEX
    latest = root / pub.LATEST
    return {"files": files, "index": index.read_bytes() if index.exists() else None,
            "latest": os.readlink(latest) if latest.is_symlink() else None}


def period_files(state: dict, as_of: str) -> dict:
    return {k: v for k, v in state["files"].items() if k.startswith(f"{pub.PERIODS}/{as_of}/")}


def complete(folder: Path) -> bool:
    """A whole output: a valid marker whose manifest lists exactly the files there, with their sizes
    (but the report, written after the commit, in report/ with its own marker)."""
    marker = json.loads((folder / MARKER).read_text())
    found = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    found.pop(MARKER)
    if (folder / "report" / "_SHMI_REPORT.json").is_file():
        found = {k: v for k, v in found.items() if not k.startswith("report/")}
    return marker["kind"] == "run" and found == marker["files"]


def leftovers(root: Path) -> list[str]:
    """Locks, staging and old folders, temporary files, trash: what a finished refresh must not leave."""
    found = [p.name for p in root.iterdir() if p.name.startswith(".")]
    for sub in (pub.PERIODS, pub.SPELLS):
        if (root / sub).is_dir():
            found += [f"{sub}/{p.name}" for p in (root / sub).iterdir() if p.name.startswith(".")]
    return found


def rebuilt(root: Path) -> bytes:
    return pub.index_text(pub.index_rows(root, warn=lambda _: None)).encode()


def index_table(root: Path) -> list[dict]:
    import csv
    with open(root / pub.INDEX, newline="") as f:
        return list(csv.DictReader(f))


def refresh_in_process(as_of: str, world: Path, root: Path, *extra: str) -> tuple[int, str, float]:
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["refresh", "--as-of", as_of, "--input", str(world), "--out", str(root), *FAST, *extra])
    return code, out.getvalue(), time.perf_counter() - t0


# ------------------------------------------------------------------ hand-made roots (fast, no Spark)

RUN_A, RUN_B, RUN_C = "20260101T000000Z-0000000a", "20260102T000000Z-0000000b", "20260103T000000Z-0000000c"


def _write_output(folder: Path, run_id: str, summary: dict, fingerprint: dict | None = None) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "shmi_trust.csv").write_text("PROVIDER_CODE\nR1\n")
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / MARKER).write_text(json.dumps({
        "kind": "run", "run_id": run_id, "created_utc": "2026-01-05T10:20:30+00:00", "shmi_spark_version": "0.1.0",
        "fingerprint": fingerprint or {"code_revision": "abc", "config_sha256": "c0ffee",
                                       "shmi_spark_version": "0.1.0"},
        "files": files}))


def _period(as_of: str, start: str, n_trusts: int) -> dict:
    return {"period": f"{start}..{as_of}", "start": f"{start}-01", "end": f"{as_of}-28", "spells": 500,
            "observed": 25, "n_trusts": n_trusts, "n_banded": 70, "n_higher": 1, "n_as_expected": 60, "n_lower": 9,
            "n_outliers_998": 0}


@pytest.fixture
def hand_made_root(tmp_path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / pub.ROOT_MARKER).write_text("{}")
    # a spell table of this root, the summary of the run that built it
    _write_output(root / "spells" / "k1", RUN_A, {
        "code_revision": "abc", "inputs": {"inputs_sha256": "f1", "input_files": 9, "input_bytes": 999},
        "validate": {"episodes_read": 4460, "episodes_rejected": 18, "deaths_read": 155, "deaths_rejected": 0},
        "spells": {"spells_included": 3000}, "linkage": {"deaths_linked": 134}})
    # a period computed from it; its summary names the table by the path it had in another place
    _write_output(root / "periods" / "2010-01", RUN_B, {
        "started_utc": "2026-01-05T10:00:00.123456+00:00", "inputs": {"spells": "/elsewhere/spells/k1/spells"},
        "spells": {"spells_included": 3000, "read_from": "/elsewhere/spells/k1/spells"},
        "periods": [_period("2010-01", "2009-02", 103)]})
    # a period of a plain `shmi run` (its own spell table), copied in
    _write_output(root / "periods" / "2010-03", RUN_C, {
        "started_utc": "2026-01-06T10:00:00+00:00", "inputs": {"hes": "x", "inputs_sha256": "f2", "input_files": 3,
                                                                "input_bytes": 30},
        "validate": {"episodes_read": 10, "episodes_rejected": 1, "deaths_read": 2, "deaths_rejected": 0},
        "spells": {"spells_included": 9}, "linkage": {"deaths_linked": 1},
        "periods": [_period("2010-03", "2009-04", 98)]})
    (root / "periods" / "2010-02").mkdir()                        # no marker: someone's folder, not published
    (root / "periods" / "2010-02" / "notes.txt").write_text("mine")
    (root / "periods" / f".2010-04.staging-{RUN_C}").mkdir()       # a run in progress (or a dead one's)
    (root / "periods" / "README").write_text("not a period")
    return root


def test_the_index_is_rebuilt_from_the_published_period_folders(hand_made_root):
    root = hand_made_root
    warnings: list[str] = []
    rows = pub.index_rows(root, warn=warnings.append)
    assert [r["as_of"] for r in rows] == ["2010-01", "2010-03"]
    assert any("2010-02" in w and "not a published period" in w for w in warnings)
    first, third = rows
    # the period's own numbers, its marker, and the counts of the run that built its spell table
    assert first["period"] == "2009-02..2010-01" and first["run_id"] == RUN_B and first["trusts"] == 103
    assert first["started_utc"] == "2026-01-05T10:00:00Z" and first["published_utc"] == "2026-01-05T10:20:30Z"
    assert first["spell_table"] == "spells/k1" and first["spell_table_run_id"] == RUN_A
    assert (first["episodes_read"], first["deaths_read"], first["deaths_linked"], first["inputs_sha256"]) == \
        (4460, 155, 134, "f1")
    assert (first["code_revision"], first["config_sha256"]) == ("abc", "c0ffee")
    assert third["spell_table"] == "" and third["spell_table_run_id"] is None
    assert (third["episodes_read"], third["deaths_linked"], third["inputs_sha256"]) == (10, 1, "f2")

    text = pub.index_text(rows)
    lines = text.splitlines()
    assert lines[0].split(",") == list(pub.INDEX_COLUMNS) and len(lines) == 3
    assert text == pub.index_text(pub.index_rows(root, warn=lambda _: None))  # deterministic

    pub.publish_index(root, warn=lambda _: None)
    assert (root / pub.INDEX).read_text() == text
    assert os.readlink(root / pub.LATEST) == "periods/2010-03" and (root / pub.LATEST / "summary.json").is_file()
    stamp = (root / pub.INDEX).stat().st_mtime_ns
    time.sleep(0.01)
    pub.publish_index(root, warn=lambda _: None)
    assert (root / pub.INDEX).stat().st_mtime_ns == stamp, "an unchanged index is not rewritten"

    # a period removed by hand (a rollback): the index and latest follow
    shutil.rmtree(root / "periods" / "2010-03")
    rows = pub.publish_index(root, warn=lambda _: None)
    assert [r["as_of"] for r in rows] == ["2010-01"] and os.readlink(root / pub.LATEST) == "periods/2010-01"
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_a_spell_table_no_period_uses_is_deleted(hand_made_root):
    root = hand_made_root
    _write_output(root / "spells" / "k2", RUN_C, {"inputs": {}})
    (root / "spells" / "users").mkdir()  # not ours: left alone
    assert pub.prune_spell_tables(root, keep=[], warn=lambda _: None) == ["k2"]
    assert sorted(p.name for p in (root / "spells").iterdir()) == ["k1", "users"]
    assert pub.prune_spell_tables(root, keep=["k1"], warn=lambda _: None) == []


def test_healing_clears_a_dead_refreshs_leftovers(hand_made_root):
    root = hand_made_root
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (root / ".index.csv.tmp-123").write_text("half")
    os.symlink("periods/2010-01", root / ".latest.tmp-123")
    trash = root / "spells" / f".k9.trash-{RUN_A}"
    trash.mkdir()
    (trash / "part").write_text("x")
    (root / "periods" / f".2010-04.staging-{RUN_C}" / "_STAGING").write_text(RUN_C)
    (root / "periods" / ".2010-04.lock").write_text(json.dumps({"run_id": RUN_C, "pid": pid,
                                                                "host": os.uname().nodename}))
    before = published(root)
    warnings: list[str] = []
    done = pub.heal(root, warn=warnings.append)
    assert leftovers(root) == [], leftovers(root)
    assert len(done) >= 4 and any("stale lock" in w for w in warnings)
    assert published(root) == before
    assert (root / "periods" / "2010-02" / "notes.txt").read_text() == "mine"


def test_the_root_lock_is_exclusive_and_a_dead_holders_is_taken_over(tmp_path):
    root = tmp_path / "root"
    with pub.RootLock(root, command="first"):
        with pytest.raises(InputError, match="is in use: .*held by refresh .*first"):
            with pub.RootLock(root, command="second"):
                pass
    assert not (root / pub.LOCK_NAME).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (root / pub.LOCK_NAME).write_text(json.dumps({"run_id": "x", "pid": int(dead.stdout),
                                                  "host": os.uname().nodename}))
    warnings: list[str] = []
    with pub.RootLock(root, warn=warnings.append) as lock:
        assert json.loads((root / pub.LOCK_NAME).read_text())["run_id"] == lock.run_id
    assert any("taking over the stale lock" in w for w in warnings)


def test_a_root_that_is_not_a_refresh_root_is_refused(tmp_path):
    users = tmp_path / "users"
    users.mkdir()
    (users / "index.csv").write_text("theirs")
    with pytest.raises(InputError, match="not a shmi refresh root"):
        pub.check_root(pub.root_path(str(users)))
    with pytest.raises(InputError, match="overlaps the input"):
        pub.check_root(pub.root_path(str(tmp_path / "new")), [str(tmp_path / "new" / "world")])
    with pytest.raises(InputError, match="only a local folder"):
        pub.root_path("hdfs://nn/shmi")
    pub.check_root(pub.root_path(str(tmp_path / "new")), [str(tmp_path / "world")])


def test_the_spell_table_key_ignores_period_model_and_output_settings():
    from shmi_spark.config import load_config

    base = load_config(TEST_PROFILE, settings={"input": {"dir": "/w"}, "method": {"period_end": "2010-01"}})
    key = pub.spell_table_key(base.to_dict(), "rev", "fp")
    same = [base.replace("method", period_end="2010-02", period_months=24, trim_fraction=0.2),
            base.replace("output", dir="/elsewhere", publication=True), base.replace("model", min_deaths=5),
            base.replace("spark", driver_memory="1g"), base.replace("input", spells="/x/spells")]
    for cfg in same:
        assert pub.spell_table_key(cfg.to_dict(), "rev", "fp") == key
    other = [base.replace("method", death_window_days=10), base.replace("quality", skip_bad_files=True),
             base.replace("input", dir="/v"), base.replace("spark", extra={"spark.sql.ansi.enabled": "false"})]
    for cfg in other:
        assert pub.spell_table_key(cfg.to_dict(), "rev", "fp") != key
    assert pub.spell_table_key(base.to_dict(), "rev2", "fp") != key
    assert pub.spell_table_key(base.to_dict(), "rev", "fp2") != key


# ------------------------------------------------------------------ refreshing a world (slow)

@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from shmi_spark.commands.synth import write_world

    path = tmp_path_factory.mktemp("refresh") / "world"
    write_world(str(path), WORLD_N, WORLD_SEED, dt.date(2005, 4, 1), dt.date(2010, 9, 30), workers=1,
                log=lambda *a: None)
    return path


@pytest.fixture(scope="module")
def keep_session():
    """The refreshes in this process share the test session: a run must not stop it."""
    import shmi_spark.pipeline as pipeline

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "stop_session", lambda spark: None)
        yield


@pytest.fixture(scope="module")
def three_months(spark, keep_session, world, tmp_path_factory) -> dict:
    """Refreshes of three consecutive months into one root, and what each left."""
    root = tmp_path_factory.mktemp("three") / "root"
    runs = []
    for as_of in MONTHS:  # the last with its report, whose trends span the earlier months
        code, out, seconds = refresh_in_process(as_of, world, root,
                                                *(["--set", "output.report=true"] if as_of == MONTHS[-1] else []))
        assert code == 0, out
        runs.append({"as_of": as_of, "console": out, "seconds": round(seconds, 1), "state": published(root)})
    print("\nrefresh seconds (in process):", [r["seconds"] for r in runs])
    return {"root": root, "runs": runs}


@pytest.mark.slow
def test_three_consecutive_months_publish_three_periods(three_months, world):
    root, runs = three_months["root"], three_months["runs"]
    rows = index_table(root)
    assert [r["as_of"] for r in rows] == list(MONTHS)
    assert [r["period"] for r in rows] == ["2009-02..2010-01", "2009-03..2010-02", "2009-04..2010-03"]
    assert os.readlink(root / pub.LATEST) == "periods/2010-03"
    assert (root / pub.INDEX).read_bytes() == rebuilt(root)
    assert leftovers(root) == []
    for later, earlier in zip(runs[1:], runs[:-1], strict=True):  # each refresh left the earlier periods alone
        for as_of in MONTHS[:MONTHS.index(later["as_of"])]:
            assert period_files(later["state"], as_of) == period_files(earlier["state"], as_of)
    for row in rows:
        folder = root / pub.PERIODS / row["as_of"]
        assert complete(folder)
        names = {p.name for p in folder.iterdir()}
        assert {"shmi_trust.csv", "shmi_trust_diag_group.csv", "shmi_area.csv", "contextual.csv", "model",
                "model_quality.csv", "publication", "summary.json"} <= names
        assert "spells" not in names and "rejects" not in names  # no patient-level rows in a published period
        summary = json.loads((folder / "summary.json").read_text())
        marker = json.loads((folder / MARKER).read_text())
        # every number traced: the full config (whose hash is the config hash), code, inputs
        text = json.dumps(summary["config"], sort_keys=True, default=str)
        assert hashlib.sha256(text.encode()).hexdigest() == summary["config_sha256"] == row["config_sha256"]
        assert summary["config"]["method"]["period_end"] == row["as_of"]
        assert summary["code_revision"] == row["code_revision"] == marker["fingerprint"]["code_revision"]
        assert row["run_id"] == marker["run_id"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["published_utc"])
        source = json.loads((root / row["spell_table"] / "summary.json").read_text())
        assert source["inputs"]["inputs_sha256"] == row["inputs_sha256"]
        assert any(f["path"].startswith(str(world)) for f in source["inputs"]["files"])
        assert int(row["episodes_read"]) == source["validate"]["episodes_read"] > 0
        assert int(row["deaths_linked"]) == source["linkage"]["deaths_linked"] > 0
        assert int(row["trusts"]) == summary["periods"][0]["n_trusts"] > 10
        assert int(row["period_spells"]) > 0 and row["trusts_higher"] != "" and row["trusts_lower"] != ""


@pytest.mark.slow
def test_the_report_of_a_refresh_trends_over_the_earlier_months(three_months):
    root = three_months["root"]
    folder = root / pub.PERIODS / MONTHS[-1]
    marker = json.loads((folder / "report" / "_SHMI_REPORT.json").read_text())
    assert marker["trend_periods"] == ["2009-02..2010-01", "2009-03..2010-02", "2009-04..2010-03"]
    assert marker["publication"] is True
    assert (folder / "report" / "index.html").is_file()
    trends = sorted((folder / "report" / "img" / "trusts").glob("*_trend.png"))
    trusts = pd.read_csv(folder / "shmi_trust.csv")
    assert len(trends) == trusts["PROVIDER_CODE"].nunique() > 10
    assert not (root / pub.PERIODS / MONTHS[0] / "report").exists()  # output.report off in the test profile


@pytest.mark.slow
def test_the_second_and_third_refresh_reuse_the_spell_table(three_months):
    root, runs = three_months["root"], three_months["runs"]
    assert "spell table built" in runs[0]["console"] and "reused" not in runs[0]["console"]
    for r in runs[1:]:
        assert "spell table reused from" in r["console"], r["console"]
        assert "building the spell table" not in r["console"]
    rows = index_table(root)
    assert len({(r["spell_table"], r["spell_table_run_id"]) for r in rows}) == 1
    assert [p.name for p in (root / pub.SPELLS).iterdir()] == [rows[0]["spell_table"].split("/")[1]]
    for row in rows:
        summary = json.loads((root / pub.PERIODS / row["as_of"] / "summary.json").read_text())
        assert summary["spells"]["read_from"] == str(root / row["spell_table"] / "spells")


@pytest.mark.slow
def test_a_rerun_of_the_middle_month_replaces_only_it(three_months, world, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(three_months["root"], root, symlinks=True)
    before = published(root)
    old_rows = index_table(root)
    code, out, seconds = refresh_in_process("2010-02", world, root)
    print(f"\nre-run of the middle month: {seconds:.1f}s")
    assert code == 0, out
    assert "spell table reused from" in out  # the copied root's own table, found under the copy
    after = published(root)
    for as_of in ("2010-01", "2010-03"):
        assert period_files(after, as_of) == period_files(before, as_of)
    assert period_files(after, "2010-02").keys() == period_files(before, "2010-02").keys()
    rows = index_table(root)
    assert [rows[0], rows[2]] == [old_rows[0], old_rows[2]]
    assert rows[1]["run_id"] != old_rows[1]["run_id"] and rows[1]["published_utc"] >= old_rows[1]["published_utc"]
    for column in ("period", "period_spells", "period_deaths", "trusts", "inputs_sha256", "spell_table"):
        assert rows[1][column] == old_rows[1][column]
    assert after["latest"] == "periods/2010-03" and leftovers(root) == []
    assert (root / pub.INDEX).read_bytes() == rebuilt(root)


# ------------------------------------------------------------------ kill -9 at any moment (slow)

class Refresh:
    """A refresh in a child process, killed (SIGKILL, then its process group: the JVM) at a moment."""

    def __init__(self, argv: list[str], root: Path, log_dir: Path) -> None:
        self.argv, self.root, self.log_dir, self.n = argv, root, log_dir, 0
        self.left: set[Path] = set()
        self.old_logs: set[Path] = set()

    def staging(self, folder: str, name: str = "*", *, after: str = "") -> Path | None:
        """A staging folder under ``root/folder`` made by this attempt (not one a killed attempt left).

        ``after``: made once this attempt's run log says so (the refresh's healing enters and leaves
        an output folder with leftovers, which makes a staging folder for a moment, before that).
        """
        found = [p for p in (self.root / folder).glob(f".{name}.staging-*") if p not in self.left]
        if not found or (after and after not in self.log()):
            return None
        return found[0]

    def log(self) -> str:
        """This attempt's run log (``ROOT/logs/<time>-<pid>.log``), once it has started one."""
        logs = sorted((self.root / pub.LOGS).glob("*.log")) if (self.root / pub.LOGS).is_dir() else []
        if not logs or logs[-1] in self.old_logs:
            return ""
        return logs[-1].read_text(errors="replace")

    def kill_at(self, name: str, reached, *, pause: str = "", timeout: float = 600) -> float:
        """Start a refresh, kill it when ``reached(seconds since start, stderr)`` is true; return the seconds."""
        self.n += 1
        err_path = self.log_dir / f"{self.n:02d}-{name.replace(' ', '_')}.err"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = ([sys.executable, str(Path(__file__).with_name("paused_shmi.py")), pause, "600", *self.argv[3:]]
                if pause else self.argv)
        self.left = set(self.root.glob("*/.*.staging-*"))
        self.old_logs = set(self.root.glob(f"{pub.LOGS}/*.log"))
        with open(err_path, "w") as err:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < timeout and proc.poll() is None:
                    if reached(time.monotonic() - t0, err_path.read_text()):
                        break
                    time.sleep(0.02)
                alive = proc.poll() is None
                seconds = time.monotonic() - t0
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the JVM and its Python workers
        assert alive, f"the refresh ended before '{name}' (exit {proc.returncode}):\n{err_path.read_text()[-3000:]}"
        print(f"killed at {name}: {seconds:.1f}s")
        return seconds

    def complete(self) -> tuple[subprocess.CompletedProcess, float]:
        t0 = time.monotonic()
        done = subprocess.run(self.argv, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                              text=True, timeout=900)
        return done, time.monotonic() - t0


@pytest.mark.slow
def test_a_refresh_killed_at_any_moment_leaves_the_published_periods_and_index_intact(three_months, world, tmp_path):
    """kill -9 at thirteen moments of a refresh of a new month from changed inputs; the next refresh heals."""
    import pyarrow.parquet as pq

    root = tmp_path / "root"
    shutil.copytree(three_months["root"], root, symlinks=True)
    changed = tmp_path / "world"
    shutil.copytree(world, changed)
    deaths = next((changed / "ons_deaths").glob("*.parquet"))
    table = pq.read_table(deaths)
    pq.write_table(table.slice(0, table.num_rows - 1), deaths)  # one death record less
    logs = tmp_path / "logs"
    logs.mkdir()
    as_of = "2010-04"
    refresh = Refresh([sys.executable, "-m", "shmi_spark.cli", "refresh", "--as-of", as_of, "--input", str(changed),
                       "--out", str(root), *FAST, "--quiet"], root, logs)
    before = published(root)
    old = {m: period_files(before, m) for m in MONTHS}
    spells, periods = root / pub.SPELLS, root / pub.PERIODS

    def unchanged() -> None:
        assert published(root) == before

    def old_periods_unchanged() -> dict:
        now = published(root)
        for m in MONTHS:
            assert period_files(now, m) == old[m]
        return now

    # before the spell table exists: Python starting, the root locked, the table's staging folder created
    refresh.kill_at("python starting", lambda t, err: t > 0.3)
    unchanged()
    refresh.kill_at("root locked", lambda t, err: (root / pub.LOCK_NAME).exists())
    unchanged()
    refresh.kill_at("spell table staging created",
                    lambda t, err: refresh.staging(pub.SPELLS, after="building the spell table") is not None)
    unchanged()
    writing = refresh.kill_at("spell table being written", lambda t, err: (
        (s := refresh.staging(pub.SPELLS)) is not None and (s / "spells").exists()))
    unchanged()
    refresh.kill_at("half-way to the spell table (measured)", lambda t, err: t > writing / 2)
    unchanged()
    # the spell table committed, the period's staging created (later attempts reuse the table)
    refresh.kill_at("period staging created",
                    lambda t, err: refresh.staging(pub.PERIODS, as_of, after="spell table built") is not None)
    unchanged()
    assert len([p for p in spells.iterdir() if not p.name.startswith(".")]) == 2
    staged = refresh.kill_at("period staging created, spell table reused",
                             lambda t, err: refresh.staging(pub.PERIODS, as_of, after="reused") is not None)
    unchanged()
    model = refresh.kill_at("period models written", lambda t, err: (
        (s := refresh.staging(pub.PERIODS, as_of)) is not None and (s / "model").exists()))
    unchanged()
    refresh.kill_at("half-way to the period's models (measured)", lambda t, err: t > (staged + model) / 2)
    unchanged()
    refresh.kill_at("period scoring", lambda t, err: t > model + 1.0)
    unchanged()
    # the period committed, the index not yet rewritten: it stays the old one until the next refresh
    refresh.kill_at("period committed", lambda t, err: "test pause at period-committed" in err,
                    pause="period-committed")
    now = old_periods_unchanged()
    assert complete(periods / as_of) and now["index"] == before["index"] and now["latest"] == before["latest"]
    # the next refresh rebuilds the index at its start: killed with the new index written beside the old one
    refresh.kill_at("index written, not yet renamed", lambda t, err: "test pause at index.csv-written" in err,
                    pause="index.csv-written")
    now = old_periods_unchanged()
    assert now["index"] == before["index"] and list(root.glob(".index.csv.tmp-*"))
    refresh.kill_at("latest's new symlink made, not yet renamed", lambda t, err: "test pause at latest-linked" in err,
                    pause="latest-linked")
    now = old_periods_unchanged()
    assert now["index"] == rebuilt(root) and now["latest"] == "periods/2010-03"

    done, seconds = refresh.complete()
    print(f"the refresh after the kills: {seconds:.1f}s")
    assert done.returncode == 0, done.stderr
    assert "stale lock" in done.stderr and "spell table reused" in done.stdout, done.stdout + done.stderr
    final = old_periods_unchanged()
    assert complete(periods / as_of) and final["latest"] == f"periods/{as_of}"
    assert final["index"] == rebuilt(root) and leftovers(root) == [], leftovers(root)
    rows = index_table(root)
    assert [r["as_of"] for r in rows] == [*MONTHS, as_of]
    # the changed input: a spell table of its own, built again, one death record less
    assert rows[3]["spell_table"] != rows[0]["spell_table"] and rows[3]["inputs_sha256"] != rows[0]["inputs_sha256"]
    assert int(rows[3]["deaths_read"]) == int(rows[0]["deaths_read"]) - 1
    assert sorted(p.name for p in spells.iterdir()) == sorted(r["spell_table"].split("/")[1] for r in rows[::3])
