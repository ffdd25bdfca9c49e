"""Spark ML's binomial/logit IRLS, step for step, in numpy for one group's cells (METHOD.md §5).

A diagnosis group's covariate cells are small (a few thousand rows, at most a
few dozen parameters), so its logistic regression is a few milliseconds of
arithmetic; fitted as a Spark ML job it costs one Spark job per iteration.
:func:`irls_fit` is the algorithm of Spark's ``GeneralizedLinearRegression``
(``family="binomial", link="logit", solver="irls", fitIntercept=True``), so
that fitting a group here gives Spark ML's answer for that group, to
rounding:

* start: ``μ₀ = (w·y + ½) / (w + 1)``, ``η₀ = logit(μ₀)``, and a first
  weighted least-squares fit of ``η₀`` with features and label standardised
  (Spark's ``FamilyAndLink.initialize``);
* each iteration: ``η = Xβ + β₀``, ``μ = 1/(1+e^−η)`` clamped to
  ``[1e-16, 1 − 1e-16]``, working response ``z = η + (y − μ)·g'(μ)`` and
  working weight ``w / (g'(μ)²·μ(1−μ))`` with ``g'(μ) = 1/(μ(1−μ))``, then a
  weighted least-squares fit of ``z`` (nothing standardised);
* stop when the largest change of a coefficient or of the intercept is below
  ``tol`` (with Spark's quirk: a model with a single feature compares that
  feature's signed change), or after ``max_iter`` iterations;
* the standard errors are the square roots of the diagonal of
  ``(XᵀWX)⁻¹`` of the last least-squares fit (binomial dispersion 1).

:func:`weighted_least_squares` is Spark's ``WeightedLeastSquares`` with the
normal-equation (Cholesky) solver: the problem is solved in the standardised
space, with an L2 penalty ``regParam`` on the coefficients (not the
intercept), scaled as Spark scales it.  Where Spark's Cholesky solver fails
(normal equations not positive definite) Spark falls back to a quasi-Newton
solver and reports no standard errors; here the same minimum is found
exactly (least squares, pseudo-inverse) and no standard errors are reported
either — Spark's answer agrees with it to its solver's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

__all__ = ["EPSILON", "DegenerateDesign", "LeastSquares", "IrlsFit", "weighted_least_squares", "irls_fit"]

# Spark's GeneralizedLinearRegression.epsilon: fitted probabilities are kept this far from 0 and 1
EPSILON = 1e-16


class DegenerateDesign(ValueError):
    """A design no logistic regression can be fitted to: no feature column, or no weight."""


@dataclass(frozen=True)
class LeastSquares:
    """One weighted least-squares fit: coefficients, intercept, and what ``diag((AᵀWA)⁻¹)`` needs.

    ``factor``: the Cholesky factor of the standardised normal equations, None
    when they were singular; ``scale``: what turns the inverse's diagonal into
    the original units.
    """

    coefficients: np.ndarray
    intercept: float
    factor: tuple[np.ndarray, bool] | None
    scale: np.ndarray

    @property
    def diag_inverse(self) -> np.ndarray | None:
        """Spark's ``diagInvAtWA``: the features' entries then the intercept's; None when singular."""
        if self.factor is None:
            return None
        inverse = cho_solve(self.factor, np.eye(len(self.scale)))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.diag(inverse) / self.scale


@dataclass(frozen=True)
class IrlsFit:
    """A fitted logistic regression: coefficients, intercept, standard errors, iterations."""

    coefficients: np.ndarray
    intercept: float
    # features' standard errors then the intercept's; None when there are none
    standard_errors: np.ndarray | None
    iterations: int


def weighted_least_squares(features: np.ndarray, label: np.ndarray, weight: np.ndarray, *, reg_param: float,
                           standardize_features: bool, standardize_label: bool) -> LeastSquares:
    """Spark's ``WeightedLeastSquares`` (fitIntercept, elasticNetParam 0, normal equations).

    Minimises ``½ Σ wᵢ (aᵢᵀx + x₀ − bᵢ)² / Σ wᵢ + λ/δ · ½ Σⱼ (σⱼ xⱼ)²`` with
    ``σⱼ`` the feature's weighted standard deviation when
    ``standardize_features`` (else 1) and ``δ`` the label's when
    ``standardize_label`` (else 1).

    >>> a = np.array([[0.0], [1.0], [0.0], [1.0]])
    >>> fit = weighted_least_squares(a, np.array([1.0, 3.0, 1.0, 3.0]), np.ones(4), reg_param=0.0,
    ...                              standardize_features=False, standardize_label=False)
    >>> [round(float(fit.coefficients[0]), 12), round(fit.intercept, 12)]
    [2.0, 1.0]
    """
    k = features.shape[1]
    w_sum = float(weight.sum())
    b_bar_raw = float(weight @ label) / w_sum
    bb_bar_raw = float(weight @ (label * label)) / w_sum
    b_std = float(np.sqrt(max(bb_bar_raw - b_bar_raw * b_bar_raw, 0.0)))
    if b_std == 0.0:  # a constant label: zero coefficients, the label's mean, no standard errors
        return LeastSquares(np.zeros(k), b_bar_raw, None, np.ones(k + 1))
    weighted = features * weight[:, None]
    a_sum = weighted.sum(axis=0)
    aa = features.T @ weighted / w_sum
    ab = weighted.T @ label / w_sum
    a_bar = a_sum / w_sum
    a_std = np.sqrt(np.maximum(np.diag(aa) - a_bar * a_bar, 0.0))
    varying = a_std != 0.0
    safe_std = np.where(varying, a_std, 1.0)
    # the standardised space: features / σ, label / σ_b
    a_bar_s = np.where(varying, a_bar / safe_std, 0.0)
    ab_s = np.where(varying, ab / (safe_std * b_std), 0.0)
    aa_s = np.where(np.outer(varying, varying), aa / np.outer(safe_std, safe_std), 0.0)
    lam = np.full(k, reg_param / b_std)
    if not standardize_features:
        lam = np.where(varying, lam / (safe_std * safe_std), 0.0)
    if not standardize_label:
        lam = lam * b_std
    aa_s[np.diag_indices(k)] += lam
    normal = np.empty((k + 1, k + 1))
    normal[:k, :k] = aa_s
    normal[:k, k] = a_bar_s
    normal[k, :k] = a_bar_s
    normal[k, k] = 1.0
    rhs = np.concatenate([ab_s, [b_bar_raw / b_std]])
    factor: tuple[np.ndarray, bool] | None
    try:
        factor = cho_factor(normal, lower=False, check_finite=False)
        solution = cho_solve(factor, rhs, check_finite=False)
    except np.linalg.LinAlgError:  # Spark falls back to quasi-Newton here: the same minimum, no standard errors
        factor = None
        solution = np.linalg.lstsq(normal, rhs, rcond=None)[0]
    coefficients = np.where(varying, solution[:k] * b_std / safe_std, 0.0)
    scale = np.concatenate([a_std * a_std, [1.0]]) * w_sum
    return LeastSquares(coefficients, float(solution[k] * b_std), factor, scale)


def _fitted(eta: np.ndarray) -> np.ndarray:
    """Spark's ``fitted``: the logistic of ``eta``, kept within ``[EPSILON, 1 − EPSILON]``."""
    with np.errstate(over="ignore"):
        mu = 1.0 / (1.0 + np.exp(-1.0 * eta))
    return np.clip(mu, EPSILON, 1.0 - EPSILON)


def irls_fit(features: np.ndarray, label: np.ndarray, weight: np.ndarray, *, reg_param: float, max_iter: int,
             tol: float) -> IrlsFit:
    """Spark ML's binomial/logit IRLS on weighted rows (see the module doc).

    ``label`` is the proportion died (``DEATHS / SPELLS``), ``weight`` the
    spells.  Raises :class:`DegenerateDesign` for an empty design (no
    feature column) or no weight, where Spark fails too.

    >>> x = np.array([[0.0], [1.0]])
    >>> fit = irls_fit(x, np.array([0.25, 0.5]), np.array([4.0, 2.0]), reg_param=0.0, max_iter=25, tol=1e-8)
    >>> [round(float(fit.coefficients[0]), 9), round(fit.intercept, 9)]  # log(3), log(1/3)
    [1.098612289, -1.098612289]
    """
    if features.ndim != 2 or features.shape[1] == 0:
        raise DegenerateDesign("no feature column to fit")
    if not float(weight.sum()) > 0:
        raise DegenerateDesign("sum of weights is not positive")
    mu0 = np.clip((weight * label + 0.5) / (weight + 1.0), EPSILON, 1.0 - EPSILON)
    eta0 = np.log(mu0 / (1.0 - mu0))
    model = weighted_least_squares(features, eta0, weight, reg_param=reg_param,
                                   standardize_features=True, standardize_label=True)
    iterations = 0
    converged = False
    while iterations < max_iter and not converged:
        old = model
        eta = features @ old.coefficients + old.intercept
        mu = _fitted(eta)
        deriv = 1.0 / (mu * (1.0 - mu))
        working_label = eta + (label - mu) * deriv
        working_weight = weight / (deriv ** 2.0 * (mu * (1.0 - mu)))
        model = weighted_least_squares(features, working_label, working_weight, reg_param=reg_param,
                                       standardize_features=False, standardize_label=False)
        change = old.coefficients - model.coefficients
        # Spark reduces the changes with max(|x|, |y|): one coefficient is compared signed
        largest = float(change[0]) if len(change) == 1 else float(np.max(np.abs(change)))
        converged = max(largest, abs(old.intercept - model.intercept)) < tol
        iterations += 1
    diag_inverse = model.diag_inverse
    ses = None if diag_inverse is None else np.sqrt(diag_inverse)
    return IrlsFit(model.coefficients, model.intercept, ses, iterations)
