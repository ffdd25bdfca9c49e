"""The bad-input corpus (tests/bad_inputs.py): every altered input gives its expected outcome.

Each case runs ``shmi`` in this process (the shared local[2] session; the
spell stage only, which is where inputs are read and periods planned):

* exit 0: every input row accounted for (read = accepted + rejected by
  reason) and, where the variation is harmless, the clean world's spells and
  deaths per trust and financial year;
* exit 2: one line naming the file and the field, inputs untouched, any
  earlier output byte-identical, nothing left beside it but the run's logs.

The last tests run ``shmi`` in a child process to kill it (SIGKILL at points
spread over a run, SIGINT for Ctrl-C) and check what it leaves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import shmi_spark.pipeline as pipeline
from bad_inputs import CASES, Case, Context
from conftest import ROOT, TEST_PROFILE
from shmi_spark.cli import main

WORLD_N, WORLD_SEED = 2500, 5
QUIET = ["--conf", str(TEST_PROFILE), "--stage", "spells", "--quiet"]


def _shmi(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``shmi`` in-process; the shared session must survive the run."""
    if argv[0] == "run":
        argv = argv + QUIET
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def _digest(path: Path) -> dict:
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _locks_and_staging(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob(".*") if ".staging-" in p.name or p.name.endswith(".lock")}


def _counts(out: Path) -> pd.DataFrame:
    s = pd.read_parquet(out / "spells", columns=["PROCODE3", "DIS_FYEAR", "DIED"])
    s["DIS_FYEAR"] = s["DIS_FYEAR"].astype(int)
    return (s.groupby(["PROCODE3", "DIS_FYEAR"]).agg(SPELLS=("DIED", "size"), DEATHS=("DIED", "sum"))
            .reset_index().sort_values(["PROCODE3", "DIS_FYEAR"]).reset_index(drop=True))


@pytest.fixture(scope="module")
def keep_session():
    """The runs share the test session: a run must not stop it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "stop_session", lambda spark: None)
        yield


@pytest.fixture(scope="module")
def corpus_world(tmp_path_factory) -> Path:
    from shmi_spark.commands.synth import write_world

    path = tmp_path_factory.mktemp("corpus") / "world"
    write_world(str(path), WORLD_N, WORLD_SEED, dt.date(2005, 4, 1), dt.date(2010, 9, 30), workers=1,
                log=lambda *a: None)
    return path


@pytest.fixture(scope="module")
def clean_run(spark, keep_session, corpus_world, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("clean") / "out"
    assert main(["run", "--input", str(corpus_world), "--out", str(out), *QUIET]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_the_corpus_has_every_kind_of_case():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    assert sum(c.exit == 0 for c in CASES) >= 15 and sum(c.exit == 2 for c in CASES) >= 25


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, spark, keep_session, corpus_world, clean_run, tmp_path, capsys):
    clean_out, clean = clean_run
    ctx = Context(world=corpus_world, root=tmp_path, clean_out=clean_out)
    argv = case.build(ctx)
    before = {name: _digest(ctx.paths[name]) for name in case.untouched if name in ctx.paths}
    assert set(before) == set(case.untouched), f"case {case.name} did not set up {case.untouched}"
    planted = _locks_and_staging(tmp_path)
    code, err = _shmi(argv, capsys)
    assert code == case.exit, f"{case.name}: exit {code}, stderr:\n{err}"
    for name, digest in before.items():
        if case.exit != 0 or name != "earlier output":
            assert _digest(ctx.paths[name]) == digest, f"{case.name}: {name} changed"
    # the run leaves no lock or staging of its own; a successful one clears a dead run's too
    leftovers = _locks_and_staging(tmp_path) - (planted if case.exit else set())
    assert not leftovers, f"{case.name}: left {leftovers}"
    if case.exit == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("shmi ")]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"shmi {argv[0]}: error: "), err
        assert __import__("re").search(case.message, lines[0]), f"{case.name}: {lines[0]!r} !~ {case.message!r}"
        return
    if argv[0] != "run":
        return
    out = Path(argv[argv.index("--out") + 1])
    summary = json.loads((out / "summary.json").read_text())
    v = summary.get("validate")
    if v:
        assert v["episodes_read"] == v["episodes_accepted"] + v["episodes_rejected"]
        assert v["episodes_rejected"] == sum(v["episode_rejects_by_reason"].values())
        assert v["deaths_read"] == v["deaths_accepted"] + v["deaths_rejected"]
        assert v["deaths_rejected"] == sum(v["death_rejects_by_reason"].values())
    if case.same_counts:
        pd.testing.assert_frame_equal(_counts(out), _counts(clean_out))
        assert summary["linkage"] == clean["linkage"]
    if case.check:
        case.check(summary, clean)


@pytest.mark.slow
def test_a_killed_run_leaves_the_earlier_output_byte_identical(corpus_world, clean_run, tmp_path):
    """SIGKILL at points spread over a run, writes included; the next run completes and replaces it."""
    clean_out, _ = clean_run
    out = tmp_path / "out"
    import shutil

    shutil.copytree(clean_out, out)
    before = _digest(out)
    argv = [sys.executable, "-m", "shmi_spark.cli", "run", "--input", str(corpus_world), "--out", str(out),
            *QUIET]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the moments to kill: staging created (Spark starting), rejects written, the spell table being written
    moments = [lambda s: s is not None, lambda s: s is not None and (s / "rejects").exists(),
               lambda s: s is not None and (s / "spells").exists()]
    for reached in moments:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            staging = next(iter(tmp_path.glob(".out.staging-*")), None)
            if reached(staging):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the moment to kill it"
        proc.kill()
        proc.wait()
        assert _digest(out) == before
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "taking over" in done.stderr.lower() or "stale" in done.stderr.lower(), done.stderr
    assert not list(tmp_path.glob(".out.staging-*")) and not list(tmp_path.glob(".out.lock"))
    marker = json.loads((out / "_SHMI_OUTPUT.json").read_text())
    assert marker["run_id"] != json.loads((clean_out / "_SHMI_OUTPUT.json").read_text())["run_id"]


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line(corpus_world, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "shmi_spark.cli", "run", "--input", str(corpus_world), "--out", str(out),
            "--conf", str(TEST_PROFILE), "--quiet"]
    proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        staging = next(iter(tmp_path.glob(".out.staging-*")), None)
        if staging is not None and (staging / "_work").exists():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    ours = [ln for ln in err.splitlines() if ln.startswith("shmi ")]
    assert len(ours) == 1 and "interrupted" in ours[0], err
    assert "Traceback" not in err and "py4j" not in err.lower(), err
    assert not out.exists() and not list(tmp_path.glob(".out.*")), list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_console_has_our_lines_and_the_log_has_the_jvms(corpus_world, tmp_path):
    """One line per stage and the Spark UI's address on the console; Spark's progress bars,
    the JVM's standard error (native-library notes) and its log go to the run's log file."""
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "shmi_spark.cli", "run", "--input", str(corpus_world), "--out", str(out),
            "--conf", str(TEST_PROFILE), "--period-end", "2010-03", "--set", "method.period_months=60",
            "--set", "method.modelling_window_months=60", "--set", "spark.ui=true",
            "--set", "spark.log_level=WARN"]
    env = {k: v for k, v in os.environ.items() if k != "SPARK_TESTING"}  # the UI is off under SPARK_TESTING
    done = subprocess.run(argv, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    console = (done.stdout + done.stderr).splitlines()
    stray = [ln for ln in console if not ln.startswith("[shmi]")]
    assert not stray, stray
    for stage in ("ingest", "validate", "spells", "linkage", "models", "expected", "indicator", "files"):
        assert any(ln.startswith(f"[shmi] {stage}") for ln in console), stage
    assert any(ln.startswith("[shmi] Spark UI: http://") for ln in console), console
    log_file = next((tmp_path / "out.logs").glob("*.log"))
    text = log_file.read_text()
    assert "command: shmi run" in text and "[shmi]" not in text
    # what the JVM wrote to its standard error while starting is in the log, not on the console
    assert "incubator" in text or "netlib" in text or "WARN" in text, text[:2000]
