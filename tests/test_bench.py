"""The benchmark harness of issue 13 (scripts/bench.py): its small parts, and the smoke size end to end.

No timing is asserted: the harness measures, the README quotes.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exponents(bench):
    assert bench.exponent(1_000, 10.0, 4_000, 40.0) == pytest.approx(1.0)
    assert bench.exponent(1_000, 10.0, 4_000, 20.0) == pytest.approx(0.5)
    assert bench.exponent(1_000, 0.0, 4_000, 20.0) is None
    assert bench.exponent(1_000, None, 4_000, 20.0) is None
    assert bench.fit_exponent([1, 10, 100], [2.0, 20.0, 200.0]) == pytest.approx(1.0)
    assert bench.fit_exponent([1, 10, 100], [5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert bench.fit_exponent([1], [2.0]) is None


def test_process_tree_memory(bench):
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(50_000_000); time.sleep(5)"])
    try:
        time.sleep(1.0)
        assert child.pid in bench.process_tree(os.getpid())
        m = bench.tree_memory(os.getpid())
        assert m["rss"] > 50_000_000 and m["by_name"]
    finally:
        child.kill()
        child.wait()


def _stage(name, rows_in, rows_out, seconds):
    return {"stage": name, "rows_in": rows_in, "rows_out": rows_out, "seconds": seconds}


def test_stage_windows_and_event_log(bench, tmp_path):
    summary = {"stages": [_stage("ingest", None, 100, 2.0), _stage("validate", 100, 90, 3.0),
                          _stage("models 2005-", 50, 10, 1.0), _stage("expected", 90, 10, 2.0),
                          _stage("indicator", 10, 10, 0.5)],
               "periods": [{"period": "2005/06"}]}
    rows = bench.stage_rows(summary)
    assert [r["key"] for r in rows] == ["ingest", "validate", "models 2005/06", "expected 2005/06",
                                        "indicator 2005/06"]
    assert rows[0]["rows_per_second"] == 50 and rows[1]["rows_per_second"] == 33
    # the run log: a line when a stage ends; a period's three stages logged at once
    log = tmp_path / "run.log"
    log.write_text("\n".join([
        "2026-01-01 10:00:00,000 INFO shmi: command: shmi run",
        "2026-01-01 10:00:02,000 INFO shmi: ingest       in            -  out          100       2.0s",
        "2026-01-01 10:00:05,500 INFO shmi: validate     in          100  out           90       3.0s",
        "2026-01-01 10:00:10,000 INFO shmi: models 2005- in           50  out           10       1.0s",
        "2026-01-01 10:00:10,000 INFO shmi: expected     in           90  out           10       2.0s",
        "2026-01-01 10:00:10,000 INFO shmi: indicator    in           10  out           10       0.5s",
    ]) + "\n")
    windows = bench.stage_windows(rows, log)
    t = dt.datetime(2026, 1, 1, 10, 0, 0).timestamp()
    assert [(k, round(a - t, 3), round(b - t, 3)) for k, a, b in windows] == [
        ("ingest", 0.0, 2.0), ("validate", 2.5, 5.5), ("models 2005/06", 6.5, 7.5),
        ("expected 2005/06", 7.5, 9.5), ("indicator 2005/06", 9.5, 10.0)]

    def ms(seconds):
        return int((t + seconds) * 1000)

    def task(stage, read, write, spill):
        return {"Event": "SparkListenerTaskEnd", "Stage ID": stage, "Task Info": {"Launch Time": 0},
                "Task Metrics": {"Memory Bytes Spilled": spill, "Disk Bytes Spilled": 0, "Executor Run Time": 1000,
                                 "Executor CPU Time": 5e8,
                                 "Shuffle Read Metrics": {"Remote Bytes Read": read, "Local Bytes Read": read},
                                 "Shuffle Write Metrics": {"Shuffle Bytes Written": write},
                                 "Input Metrics": {"Bytes Read": 7}}}

    events = [
        {"Event": "SparkListenerApplicationStart", "App ID": "local-1"},
        {"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": ms(-1), "Stage IDs": [0]},
        {"Event": "SparkListenerJobStart", "Job ID": 1, "Submission Time": ms(1), "Stage IDs": [1, 2]},
        {"Event": "SparkListenerJobStart", "Job ID": 2, "Submission Time": ms(8), "Stage IDs": [3]},
        task(0, 1, 2, 0), task(1, 10, 20, 0), task(2, 10, 20, 5), task(3, 100, 200, 0),
        {"Event": "SparkListenerTaskEnd", "Stage ID": 3, "Task Info": {}},  # a failed task: no metrics
    ]
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "local-1").write_text("\n".join(json.dumps(e) for e in events) + "\n{\"Event\": \"cut")
    spark = bench.parse_event_log(bench.event_log_files(folder), windows)
    assert spark["app_id"] == "local-1"
    assert spark["other"]["shuffle_read_bytes"] == 2 and spark["other"]["jobs"] == 1
    ingest = spark["by_stage"]["ingest"]
    assert (ingest["shuffle_read_bytes"], ingest["shuffle_write_bytes"], ingest["memory_spilled_bytes"],
            ingest["tasks"], ingest["jobs"]) == (40, 40, 5, 2, 1)
    assert spark["by_stage"]["expected 2005/06"]["shuffle_write_bytes"] == 200
    assert spark["by_stage"]["expected 2005/06"]["tasks"] == 2
    assert spark["totals"]["shuffle_write_bytes"] == 242 and spark["totals"]["jobs"] == 3
    assert spark["totals"]["executor_cpu_seconds"] == pytest.approx(2.0)


def test_rolling_and_compressed_event_logs(bench, tmp_path):
    rolling = tmp_path / "a" / "eventlog_v2_local-1"
    rolling.mkdir(parents=True)
    for i in (10, 2, 1):
        (rolling / f"events_{i}_local-1").write_text("{}\n")
    (rolling / "appstatus_local-1").write_text("")
    assert [p.name for p in bench.event_log_files(tmp_path / "a")] == [
        "events_1_local-1", "events_2_local-1", "events_10_local-1"]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "local-1.zstd").write_text("")
    with pytest.raises(ValueError, match="compress"):
        bench.event_log_files(tmp_path / "b")


def test_event_log_setting_goes_through_the_config_loader(bench, tmp_path):
    from shmi_spark.config import load_config

    args = bench.event_log_setting(tmp_path / "ev", ["--set", 'spark.extra={"spark.x"="1"}'])
    assert args[0] == "--set"
    extra = load_config(None, overrides=[args[1]]).spark.extra
    assert extra["spark.x"] == "1" and extra["spark.eventLog.enabled"] == "true"
    assert extra["spark.eventLog.compress"] == "false" and extra["spark.eventLog.dir"].endswith("/ev")
    assert bench._without_extra(["--set", "spark.extra={}", "--set", "a.b=1"]) == ["--set", "a.b=1"]


@pytest.mark.slow
def test_smoke_end_to_end(tmp_path):
    """Two tiny worlds through the whole harness: every field of results.json, the table, an exponent."""
    env = {k: v for k, v in os.environ.items() if k != "SPARK_TESTING"}  # measure what a user runs
    out = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--bench-dir", str(tmp_path),
                          "--driver-memory", "2g"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    m = results["machine"]
    for key in ("cores", "memory_bytes", "cpu_model", "load_average_start", "date_utc", "git_revision"):
        assert m[key] not in (None, ""), key
    assert results["harness"]["smoke"] is True
    assert [s["admissions"] for s in results["sizes"]] == [2_000, 4_000]
    for size in results["sizes"]:
        assert size["world"]["episode_rows"] > size["admissions"]
        run = size["run"]
        assert run["exit_code"] == 0 and run["wall_seconds"] > 0 and run["seconds_total"] > 0
        keys = [st["key"] for st in run["stages"]]
        assert keys[:4] == ["ingest", "validate", "spells", "linkage"] and keys[-1] == "files"
        assert any(k.startswith("models ") for k in keys) and any(k.startswith("expected ") for k in keys)
        for st in run["stages"]:
            assert st["seconds"] >= 0 and "rows_per_second" in st
            for name in ("shuffle_read_bytes", "shuffle_write_bytes", "memory_spilled_bytes", "disk_spilled_bytes"):
                assert st[name] >= 0, (st["key"], name)
        assert run["peak_rss_bytes"] > 0 and run["memory_samples"] > 0 and run["peak_rss_by_process"]
        spark = run["spark"]
        assert spark["attribution"].startswith("per stage"), spark
        totals = spark["totals"]
        assert totals["shuffle_read_bytes"] >= 0 and totals["shuffle_write_bytes"] > 0
        assert totals["memory_spilled_bytes"] >= 0 and totals["disk_spilled_bytes"] >= 0
        assert totals["jobs"] == spark["other"]["jobs"] + sum(st["jobs"] for st in run["stages"])
        assert set(run["groups"]) >= {"ingest", "validate", "spells", "linkage", "models", "expected", "files"}
    scaling = results["scaling"]
    assert scaling["sizes"] == [2_000, 4_000] and len(scaling["consecutive"]) == 1
    assert isinstance(scaling["consecutive"][0]["exponents"]["total wall"], float)
    assert isinstance(scaling["fit"]["total wall"], float) and isinstance(scaling["fit"]["group validate"], float)
    assert "| admissions | 2,000 | 4,000 | exponent |" in out.stdout
    assert "**total wall**" in out.stdout
