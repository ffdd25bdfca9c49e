"""What a run says on the console (shmi_spark.console) and what summary.json records of where it ran."""

from __future__ import annotations

import io

from shmi_spark.console import StageLog, progress_text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_text_shows_tasks_done_of_tasks_and_seconds():
    assert progress_text("models", 6, 24, 14.2, width=8) == "[shmi] models       [██······]         6/24 tasks     14s"
    assert progress_text("validate", 0, 0, 0.0, width=4) == "[shmi] validate     [····]           starting      0s"
    assert progress_text("files", 1200, 1200, 3.0, width=4).count("█") == 4


def test_a_stage_line_is_rows_in_out_and_seconds(capsys):
    log = StageLog()
    log.record("spells", 29_467, 20_000, 2.149)
    assert capsys.readouterr().out == "[shmi] spells       in       29,467  out       20,000       2.1s\n"
    assert log.rows == [{"stage": "spells", "rows_in": 29_467, "rows_out": 20_000, "seconds": 2.15}]
    StageLog(quiet=True).record("linkage", None, 3, 1.0)
    assert capsys.readouterr().out == ""


def test_warnings_reach_the_console_when_quiet(capsys):
    StageLog(quiet=True).warn("a financial year is short")
    assert capsys.readouterr().err == "[shmi] warning: a financial year is short\n"


def test_the_progress_line_is_drawn_on_a_terminal_and_cleared(spark):
    terminal = _Terminal()
    with StageLog(stream=terminal).running("count", spark):
        spark.range(0, 2_000_000, numPartitions=4).selectExpr("sum(id * id)").collect()
        import time

        time.sleep(0.7)  # at least one tick of the drawing thread
    text = terminal.getvalue()
    assert "\r[shmi] count" in text and ("tasks" in text or "starting" in text), text
    assert text.endswith("\r\033[K")


def test_no_progress_line_when_the_output_is_not_a_terminal(spark):
    piped = io.StringIO()
    with StageLog(stream=piped).running("count", spark):
        spark.range(10).count()
    assert piped.getvalue() == ""


def test_the_executors_python_is_recorded(spark):
    import sys

    from shmi_spark.session import executor_environment

    env = executor_environment(spark)
    assert env["python"] == [sys.executable]  # local mode: the driver's own interpreter
    assert env["python_workers"] >= 1 and len(env["hosts"]) == 1
    assert env["packages"][0].startswith("python 3.") and "numpy" in env["packages"][0]


def test_the_code_revision_names_the_sources_also_from_a_zip(tmp_path):
    """A package zipped for a cluster has no git checkout: its revision carries a digest of the sources."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from shmi_spark.provenance import code_revision, source_digest

    package = Path(__file__).resolve().parent.parent / "shmi_spark"
    archive = tmp_path / "shmi_spark.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(package.rglob("*.py")):
            if "__pycache__" not in path.parts:
                z.write(path, path.relative_to(package.parent).as_posix())
    done = subprocess.run([sys.executable, "-c", "import shmi_spark.provenance as p; print(p.code_revision())"],
                          env={"PYTHONPATH": str(archive), "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith(f"+src.{source_digest()}")
    assert code_revision().split("+")[0]  # a checkout: the commit, "+dirty.<digest>" with changes
