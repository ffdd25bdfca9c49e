"""The numpy IRLS (shmi_spark.model.irls) gives Spark ML's GeneralizedLinearRegression answer (METHOD.md §5)."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors
from pyspark.ml.regression import GeneralizedLinearRegression

from shmi_spark.model.irls import irls_fit, weighted_least_squares


def _cells(seed: int, n: int, k: int, *, rate: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random 0/1 indicator cells with spell counts and a death proportion."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, k)) < 0.3).astype(float)
    spells = rng.integers(1, 40, n).astype(float)
    beta = rng.normal(0, 0.8, k)
    p = 1 / (1 + np.exp(-(np.log(rate / (1 - rate)) + x @ beta)))
    deaths = rng.binomial(spells.astype(int), p).astype(float)
    return x, deaths / spells, spells


def _spark_glr(spark, x, y, w, *, reg_param: float, max_iter: int = 25, tol: float = 1e-8):
    rows = [(Vectors.dense(xi.tolist()), float(yi), float(wi)) for xi, yi, wi in zip(x, y, w, strict=True)]
    df = spark.createDataFrame(rows, ["features", "label", "weight"]).coalesce(1)
    glr = GeneralizedLinearRegression(family="binomial", link="logit", solver="irls", weightCol="weight",
                                      fitIntercept=True, maxIter=max_iter, tol=tol, regParam=reg_param)
    return glr.fit(df)


@pytest.mark.parametrize(("seed", "n", "k", "reg_param"), [
    (1, 300, 6, 0.0),    # an ordinary unpenalised fit
    (2, 120, 12, 0.0),   # more parameters, fewer cells
    (3, 200, 1, 0.0),    # one feature: Spark compares its change signed
    (4, 250, 8, 1e-4),   # the ridge refit's penalty
    (5, 80, 5, 0.5),     # a strong penalty
])
def test_irls_equals_spark_glr(spark, seed, n, k, reg_param):
    x, y, w = _cells(seed, n, k)
    ours = irls_fit(x, y, w, reg_param=reg_param, max_iter=25, tol=1e-8)
    model = _spark_glr(spark, x, y, w, reg_param=reg_param)
    np.testing.assert_allclose(ours.coefficients, model.coefficients.toArray(), rtol=1e-9, atol=1e-11)
    assert ours.intercept == pytest.approx(model.intercept, rel=1e-9, abs=1e-11)
    assert ours.iterations == model.summary.numIterations
    if reg_param == 0.0:
        assert ours.standard_errors is not None
        np.testing.assert_allclose(ours.standard_errors, model.summary.coefficientStandardErrors, rtol=1e-9)


def test_irls_not_converged_counts_every_iteration(spark):
    """A separated level runs off: both stop at max_iter with the same (large) estimates."""
    x = np.array([[0.0], [1.0], [0.0], [1.0]])
    y = np.array([0.2, 0.0, 0.3, 0.0])
    w = np.array([10.0, 5.0, 10.0, 5.0])
    ours = irls_fit(x, y, w, reg_param=0.0, max_iter=6, tol=1e-8)
    model = _spark_glr(spark, x, y, w, reg_param=0.0, max_iter=6)
    assert ours.iterations == model.summary.numIterations == 6
    np.testing.assert_allclose(ours.coefficients, model.coefficients.toArray(), rtol=1e-9)


def test_least_squares_constant_feature_is_singular():
    """A feature equal for every row has no variance: coefficient 0 and no standard errors (Spark's fallback)."""
    x = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    fit = weighted_least_squares(x, np.array([1.0, 2.0, 1.5, 2.5]), np.ones(4), reg_param=0.0,
                                 standardize_features=False, standardize_label=False)
    assert fit.diag_inverse is None
    assert fit.coefficients[0] == 0.0
    assert fit.coefficients[1] == pytest.approx(1.0)
    assert fit.intercept == pytest.approx(1.25)


def test_empty_design_is_refused():
    with pytest.raises(ValueError, match="no feature column"):
        irls_fit(np.zeros((3, 0)), np.array([0.1, 0.2, 0.3]), np.ones(3), reg_param=0.0, max_iter=25, tol=1e-8)
