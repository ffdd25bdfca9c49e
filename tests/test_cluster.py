"""The whole pipeline on a real Spark standalone cluster, through scripts/submit.sh.

A master and two workers (one core each) run on 127.0.0.1 from the installed
pyspark (tests/standalone.py), every daemon and executor its own JVM.  The run
is submitted with ``scripts/submit.sh --master spark://... --deploy-mode
client`` on a small synthetic world and must give the same indicator as a
``local[2]`` run of the same input; the executors must run the Python
environment submit.sh shipped (``summary.json``'s ``executors``); and a run
that loses a worker (and its executor) in the middle still completes with the
same results.  Every process started here is stopped, also when a test fails.

    bash scripts/cluster-test.sh          (this file alone)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy
import pandas as pd
import pyarrow
import pytest

import shmi_spark.pipeline as pipeline
from conftest import ROOT, TEST_PROFILE
from standalone import EXECUTOR_CLASS, StandaloneCluster, free_port

SUBMIT = ROOT / "scripts" / "submit.sh"
WORLD_N, WORLD_SEED = 3_000, 7
# one 60-month period (every trust has deaths enough for the funnel); groups with fewer than 10 deaths
# take their crude rate, so that a few groups are fitted and the run takes minutes, not ten
RUN_ARGS = ["--set", "method.period_months=60", "--set", "method.modelling_window_months=60",
            "--set", "model.min_deaths=10", "--period-end", "2010-03"]
# small executors, both registered before the job starts, few shuffle partitions (the test profile's)
SUBMIT_OPTS = ["--executor-memory", "1g", "--driver-memory", "2g",
               "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
               "--conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=120s",
               "--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.default.parallelism=4"]
RUN_TIMEOUT = 1200


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from shmi_spark.commands.synth import write_world

    path = tmp_path_factory.mktemp("cluster_world") / "world"
    assert write_world(str(path), WORLD_N, WORLD_SEED, dt.date(2005, 4, 1), dt.date(2010, 9, 30), workers=1,
                       log=lambda *a, **k: None) is not None
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and two workers; everything they started is stopped afterwards, and checked to be gone."""
    cluster = StandaloneCluster(tmp_path_factory.mktemp("standalone"), workers=2, cores=1, memory="1536m")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        left = cluster.leftover_pids()
        for env in cluster.root.glob("work*/app-*/*/environment"):  # 450 MB unpacked per executor
            shutil.rmtree(env, ignore_errors=True)
        assert not left, f"processes of the test cluster still alive after stopping it: {left}"


@pytest.fixture(scope="module")
def reference(spark, world, tmp_path_factory) -> Path:
    """The same run in local[2] (this process's test session)."""
    from shmi_spark.cli import main

    out = tmp_path_factory.mktemp("local_run") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "stop_session", lambda spark: None)
        code = main(["run", "--conf", str(TEST_PROFILE), "--input", str(world), "--out", str(out), "--quiet",
                     *RUN_ARGS])
    assert code == 0
    return out


class Submitted:
    """A ``scripts/submit.sh`` run in its own process group (killed with it if the test fails)."""

    def __init__(self, cluster: StandaloneCluster, world: Path, out: Path, *extra: str,
                 shmi_extra: list[str] | None = None):
        self.out = out
        self.stdout, self.stderr = out.parent / "submit.stdout", out.parent / "submit.stderr"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
        self.argv = ["bash", str(SUBMIT), "--master", cluster.master_url, "--deploy-mode", "client",
                     "--conf", str(TEST_PROFILE), *SUBMIT_OPTS, *extra,
                     "--", "run", "--input", str(world), "--out", str(out), *RUN_ARGS, *(shmi_extra or [])]
        self.started = time.monotonic()
        with open(self.stdout, "w") as o, open(self.stderr, "w") as e:
            self.proc = subprocess.Popen(self.argv, cwd=out.parent, env=env, stdout=o, stderr=e,
                                         start_new_session=True)

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self.seconds = time.monotonic() - self.started
        return code

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def logs(self) -> str:
        return (f"$ {' '.join(self.argv)}\n--- stdout\n{self.stdout.read_text()[-4000:]}\n"
                f"--- stderr\n{self.stderr.read_text()[-8000:]}")

    def summary(self) -> dict:
        return json.loads((self.out / "summary.json").read_text())


@pytest.fixture(scope="module")
def cluster_run(cluster, world, tmp_path_factory):
    """The run, submitted to the cluster undisturbed."""
    out = tmp_path_factory.mktemp("cluster_run") / "out"
    run = Submitted(cluster, world, out)
    try:
        code = run.wait()
    finally:
        run.kill()
    assert code == 0, run.logs()
    print(f"\ncluster run: {run.seconds:.0f}s wall")
    return run


# ---------------------------------------------------------------- comparisons

def trust_table(out: Path) -> pd.DataFrame:
    t = pd.read_parquet(out / "shmi_trust.parquet")
    return t.sort_values(["PERIOD", "PROVIDER_CODE"]).reset_index(drop=True)


def assert_same_indicator(got: Path, want: Path) -> None:
    """Observed deaths identical per trust, expected within 1e-9 relative, the same bandings."""
    a, b = trust_table(got), trust_table(want)
    assert list(a["PROVIDER_CODE"]) == list(b["PROVIDER_CODE"]) and list(a["PERIOD"]) == list(b["PERIOD"])
    assert (a["SPELLS"] == b["SPELLS"]).all()
    assert (a["OBSERVED"] == b["OBSERVED"]).all()
    rel = ((a["EXPECTED"] - b["EXPECTED"]).abs() / b["EXPECTED"].abs()).fillna(0.0)
    assert rel.max() <= 1e-9, a.loc[rel.idxmax()]
    assert a["BANDING"].fillna(-1).tolist() == b["BANDING"].fillna(-1).tolist()
    assert a["BANDING_LABEL"].fillna("").tolist() == b["BANDING_LABEL"].fillna("").tolist()
    assert b["BANDING"].notna().sum() >= 30  # the comparison is about banded trusts


def _inside(path: str, folder: Path) -> bool:
    """``path`` (its last part not resolved: environment/bin/python links to the system's python) in ``folder``."""
    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    return real.startswith(os.path.realpath(folder) + os.sep)


def executor_folders(cluster: StandaloneCluster, worker: int) -> list[Path]:
    """``app-*/<executor id>`` folders of one worker: one per executor JVM it launched."""
    return sorted(p for p in cluster.work_dir(worker).glob("app-*/*") if p.is_dir())


# ---------------------------------------------------------------- tests

def test_submit_dry_run_prints_the_spark_submit_line(tmp_path):
    """No Spark: the command line submit.sh would run, for client and cluster mode."""
    def dry(*args: str, **env: str) -> str:
        done = subprocess.run(["bash", str(SUBMIT), *args, "--dry-run", "--", "run", "--input", "W", "--out", "O"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    client = dry("--master", "spark://head:7077", "--conf", str(TEST_PROFILE), "--conf", "spark.x=1")
    assert re.search(r"/spark-submit --master spark://head:7077 --deploy-mode client ", client)
    assert re.search(r"--archives \S+/env-[0-9a-f]{12}/env\.tar\.gz#environment ", client)
    assert "--conf spark.pyspark.python=./environment/bin/python" in client
    assert f"--conf spark.pyspark.driver.python={ROOT}/.venv/bin/python" in client or "SHMI_PYTHON" in os.environ
    assert re.search(r"--py-files \S+/lib-[0-9a-f]{12}/shmi_spark\.zip ", client)
    assert f"--files {TEST_PROFILE} " in client and "--conf spark.x=1" in client
    assert client.endswith(f"{ROOT}/jobs/shmi.py run --conf {TEST_PROFILE} --input W --out O")

    yarn = dry("--master", "yarn", "--deploy-mode", "cluster", SHMI_NUM_EXECUTORS="12", SHMI_EXECUTOR_CORES="4",
               SHMI_EXECUTOR_MEMORY="12g")
    assert "--num-executors 12 " in yarn and "--executor-cores 4 " in yarn and "--executor-memory 12g " in yarn
    assert "spark.pyspark.driver.python" not in yarn
    assert yarn.endswith("jobs/shmi.py run --conf cluster.toml --input W --out O")

    standalone = dry("--master", "spark://h:7077", SHMI_NUM_EXECUTORS="3", SHMI_EXECUTOR_CORES="4")
    assert "--total-executor-cores 12 " in standalone


def test_cluster_profile_is_a_valid_profile():
    from shmi_spark.config import load_config

    cfg = load_config(ROOT / "conf" / "cluster.toml")
    assert int(cfg.spark.extra["spark.sql.shuffle.partitions"]) >= 200


@pytest.mark.slow
@pytest.mark.cluster
def test_cluster_run_equals_a_local_run(cluster_run, reference):
    assert_same_indicator(cluster_run.out, reference)
    local, remote = json.loads((reference / "summary.json").read_text()), cluster_run.summary()
    assert remote["linkage"] == local["linkage"]
    assert remote["spells"]["spells_included"] == local["spells"]["spells_included"]
    assert [p["phi"] for p in remote["periods"]] == pytest.approx([p["phi"] for p in local["periods"]], rel=1e-9)


@pytest.mark.slow
@pytest.mark.cluster
def test_executors_run_the_shipped_environment_in_their_own_jvms(cluster_run, cluster):
    summary = cluster_run.summary()
    assert summary["spark_master"] == cluster.master_url
    executors = summary["executors"]
    # every Python worker ran ./environment/bin/python of the archive unpacked in an executor's folder
    for python in executors["python"]:
        assert python.endswith("/environment/bin/python"), python
        assert any(_inside(python, cluster.work_dir(i)) for i in (1, 2)), python
        assert python != sys.executable and not _inside(python, ROOT), python  # not the driver's
    # ... on both workers, with the driver's versions of the packages
    assert {i for i in (1, 2) for p in executors["python"] if _inside(p, cluster.work_dir(i))} == {1, 2}
    assert executors["packages"] == [f"python {sys.version.split()[0]}, numpy {numpy.__version__}, "
                                     f"pandas {pd.__version__}, pyarrow {pyarrow.__version__}"]
    assert executors["python_workers"] >= 2
    # the app's executors: one JVM per worker, launched by the worker (its command in the executor's stderr)
    app = {Path(p).parts[-5] for p in executors["python"]}
    assert len(app) == 1, app
    for i in (1, 2):
        folders = [f for f in executor_folders(cluster, i) if f.parent.name in app]
        assert len(folders) == 1, folders
        assert EXECUTOR_CLASS in (folders[0] / "stderr").read_text(errors="replace")
        assert (folders[0] / "environment" / "bin" / "python").is_symlink()
        finished = [e for e in cluster.worker_state(i).get("finishedexecutors", []) if e.get("appid") in app]
        assert len(finished) == 1, cluster.worker_state(i)
    ids = {f.name for i in (1, 2) for f in executor_folders(cluster, i) if f.parent.name in app}
    assert len(ids) == 2  # two executors, two JVMs


@pytest.mark.slow
@pytest.mark.cluster
def test_a_run_survives_losing_a_worker(cluster, world, reference, cluster_run, tmp_path):
    """Kill worker 2 and its executor mid-run (SIGKILL): the lost tasks rerun on worker 1, same results.

    The executor is first frozen (SIGSTOP) until the driver has a task running on it, so that
    killing it certainly loses a running task.  Runs last: the cluster has one worker after it.
    """
    ui_port = free_port()
    out, events = tmp_path / "out", tmp_path / "events"
    events.mkdir()
    # the driver's status API (to pick the moment) and its event log (to see which tasks were lost and rerun)
    run = Submitted(cluster, world, out, "--conf", "spark.ui.enabled=true", "--conf", f"spark.ui.port={ui_port}",
                    "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events.as_uri()}",
                    "--conf", "spark.eventLog.compress=false")
    try:
        # the moment: validation is writing its rejects (the staging folder's rejects/ appears)
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline and run.proc.poll() is None:
            staging = next(iter(tmp_path.glob(".out.staging-*")), None)
            if staging is not None and (staging / "rejects").exists():
                break
            time.sleep(0.2)
        assert run.proc.poll() is None, "the run ended before the moment to kill a worker\n" + run.logs()
        app = _status(ui_port, "")[0]["id"]
        folders = sorted((cluster.work_dir(2) / app).glob("*"))
        assert len(folders) == 1, folders
        executor_id = folders[0].name
        victim = _executor_pids(cluster, 2)
        assert len(victim) == 1, victim
        busy = _freeze_with_a_running_task(victim[0], ui_port, app, executor_id, run, deadline)
        killed = cluster.kill_worker(2)  # the worker, its executor and the executor's Python workers
        killed_at = time.monotonic()
        assert run.proc.poll() is None and not (out / "_SHMI_OUTPUT.json").exists(), "killed after the run ended"
        code = run.wait()
    finally:
        run.kill()
    assert code == 0, run.logs()
    print(f"\nrun losing a worker: {run.seconds:.0f}s wall, worker 2 killed {killed_at - run.started:.0f}s in "
          f"(pids {killed}); {busy} task(s) were running on executor {executor_id}")
    assert victim[0] in killed
    assert re.search(rf"Lost executor {executor_id} on ", run.stderr.read_text(errors="replace")), run.logs()
    # the event log: tasks that were running on the lost executor failed with ExecutorLostFailure and
    # the same partitions were then computed on the remaining one
    lost, rerun = _lost_and_rerun_tasks(events, app, executor_id)
    print(f"tasks lost with executor {executor_id}: {sorted(lost)}; rerun elsewhere: {sorted(rerun)}")
    assert lost and lost <= rerun, (lost, rerun)
    assert len(cluster.alive_workers()) == 1
    assert_same_indicator(out, reference)
    assert_same_indicator(out, cluster_run.out)


def _executor_pids(cluster: StandaloneCluster, worker: int) -> list[int]:
    from standalone import processes_under

    pids = []
    for pid in processes_under(cluster.work_dir(worker)):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if EXECUTOR_CLASS in cmd:
            pids.append(pid)
    return pids


def _status(ui_port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/applications{path}", timeout=5) as r:
        return json.loads(r.read())


def _lost_and_rerun_tasks(events: Path, app: str, executor_id: str) -> tuple[set, set]:
    """(stage, partition) of the tasks lost with the executor, and of those later done on another one."""
    # Spark 4 writes rolling event logs: eventlog_v2_<app>/events_<n>_<app> (a single file <app> without)
    folder = events / f"eventlog_v2_{app}"
    logs = sorted(folder.glob("events_*"), key=lambda p: int(p.name.split("_")[1])) or [events / app]
    assert all(p.is_file() for p in logs) and not list(folder.glob("*.inprogress")), list(events.rglob("*"))
    lost, done_elsewhere = set(), set()
    for line in (line for p in logs for line in p.read_text().splitlines()):
        event = json.loads(line)
        if event.get("Event") != "SparkListenerTaskEnd":
            continue
        info, reason = event["Task Info"], event["Task End Reason"]
        key = (event["Stage ID"], info["Index"])
        if reason["Reason"] == "ExecutorLostFailure" and info["Executor ID"] == executor_id:
            lost.add(key)
        elif reason["Reason"] == "Success" and info["Executor ID"] != executor_id and key in lost:
            done_elsewhere.add(key)
    return lost, done_elsewhere


def _active_tasks(ui_port: int, app: str, executor_id: str) -> int:
    try:
        return sum(e["activeTasks"] for e in _status(ui_port, f"/{app}/executors") if e["id"] == executor_id)
    except (OSError, ValueError, KeyError):
        return 0


def _freeze_with_a_running_task(pid: int, ui_port: int, app: str, executor_id: str, run: Submitted,
                                deadline: float) -> int:
    """SIGSTOP the executor at a moment the driver has a task running on it; the number of such tasks.

    Tasks on a small world take milliseconds: freeze the executor when the driver's status API
    shows it busy, look again a second later (a frozen executor cannot report a task done) and
    thaw it to try again if the task had finished in between.
    """
    while time.monotonic() < deadline and run.proc.poll() is None:
        if _active_tasks(ui_port, app, executor_id) == 0:
            time.sleep(0.05)
            continue
        os.kill(pid, signal.SIGSTOP)
        time.sleep(1.0)
        busy = _active_tasks(ui_port, app, executor_id)
        if busy > 0:
            return busy
        os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"no task seen running on executor {executor_id} before the run ended\n" + run.logs())
