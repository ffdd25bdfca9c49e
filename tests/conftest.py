"""Shared fixtures: one session-scoped SparkSession (local[2], UI off)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_TESTING", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TEST_PROFILE = ROOT / "conf" / "test.toml"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout (NHS reference files, calibration)."""
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found beside the checkout at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def test_config():
    from shmi_spark.config import load_config
    return load_config(TEST_PROFILE)


@pytest.fixture(scope="session")
def spark(test_config):
    from shmi_spark.session import build_session
    session = build_session(test_config.spark, testing=True)
    yield session
    session.stop()


# The whole-pipeline tests' synthetic world (tests/test_pipeline.py, tests/test_report*.py).
WORLD_N = 20_000
WORLD_SEED = 11


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    from shmi_spark.synth.generate import generate

    path = tmp_path_factory.mktemp("world")
    generate(str(path), WORLD_N, WORLD_SEED, dt.date(2005, 4, 1), dt.date(2010, 9, 30), workers=1)
    return path


@pytest.fixture(scope="session")
def run_all(spark, world, tmp_path_factory):
    from shmi_spark.config import load_config
    from shmi_spark.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("run")
    # a small world: one 60-month period so every trust has deaths enough for the funnel; with the HSMR
    # and its bridge, and a basket (tests/test_hsmr.py)
    baskets = tmp_path_factory.mktemp("baskets") / "baskets.csv"
    baskets.write_text("BASKET,CODE\npneumonia,J18\nheart attack,I21\nheart attack,I22\nsepsis,A41\n")
    cfg = load_config(TEST_PROFILE, settings={
        "input": {"dir": str(world)}, "output": {"dir": str(out), "publication": True},
        "method": {"period_months": 60, "modelling_window_months": 60},
        "hsmr": {"enabled": True, "basket_file": str(baskets)}})
    summary = run_pipeline(spark, cfg, quiet=True)
    return out, summary


@pytest.fixture(scope="session")
def chain(spark):
    """Every case declared with ``spell_cases.chain_case``, run through the chain at once.

    Validation and spells once for all cases, the spell table once per ``MethodConfig``
    (:class:`spell_cases.Chain`).  The test modules declare their cases at import, so all of
    them are known when the first test asks.
    """
    from spell_cases import CASES, Chain
    return Chain(spark, CASES.values())


@pytest.fixture(scope="session")
def report_run(spark, world, run_all, tmp_path_factory):
    """The 20k world's five years (each financial year and the pooled five) from ``run_all``'s spell table,
    a publication run with its report written by the run (output.report), as ``shmi run --five-year`` does."""
    from shmi_spark.config import load_config
    from shmi_spark.pipeline import run_pipeline

    spells_from, _ = run_all
    out = tmp_path_factory.mktemp("five_year") / "run"
    cfg = load_config(TEST_PROFILE, settings={
        "input": {"spells": str(spells_from / "spells"), "trusts": str(world / "reference" / "trusts.csv")},
        "output": {"dir": str(out), "publication": True, "report": True},
        "method": {"five_year": True}})
    summary = run_pipeline(spark, cfg, quiet=True)
    return out, summary
