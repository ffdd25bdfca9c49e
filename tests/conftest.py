"""Shared fixtures: one session-scoped SparkSession (local[2], UI off)."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def chain(spark):
    """Every case declared with ``spell_cases.chain_case``, run through the chain at once.

    Validation and spells once for all cases, the spell table once per ``MethodConfig``
    (:class:`spell_cases.Chain`).  The test modules declare their cases at import, so all of
    them are known when the first test asks.
    """
    from spell_cases import CASES, Chain
    return Chain(spark, CASES.values())
