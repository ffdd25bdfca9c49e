"""Firth's bias-reduced logistic regression on a group's cells (METHOD.md §5, ``degenerate_rule = "firth"``).

Firth (1993), as in R's ``logistf`` (Heinze & Schemper 2002): the likelihood
is penalised by Jeffreys' prior, ``l*(β) = l(β) + ½·log det(XᵀWX)``, whose
maximum is finite even where the data separate, and whose estimates have the
first-order bias of the MLE removed.  On binomial cells (``n`` spells, ``y``
deaths, design rows ``x`` with the intercept first) the modified score is
``Xᵀ(y − nμ + h(½ − μ))`` with ``h`` the diagonal of the hat matrix
``W^½X(XᵀWX)⁻¹XᵀW^½``, ``W = diag(nμ(1−μ))``; each step is
``β ← β + (XᵀWX)⁻¹U*(β)``, halved until ``l*`` does not fall, until no
coefficient moves more than ``tol``.  Standard errors are the square roots of
the diagonal of ``(XᵀWX)⁻¹`` at the estimate.

For a user who wants finite, less biased coefficients for every level of a
small or separated group and accepts that the fitted probabilities are not
the maximum-likelihood ones (expected deaths then need not equal observed
deaths within the group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

__all__ = ["FirthFit", "firth_fit"]


@dataclass(frozen=True)
class FirthFit:
    """Coefficients (intercept first), their standard errors, and the iterations taken."""

    coefficients: np.ndarray
    standard_errors: np.ndarray
    iterations: int
    converged: bool


def _penalised_loglik(x: np.ndarray, spells: np.ndarray, deaths: np.ndarray, beta: np.ndarray) -> float:
    eta = x @ beta
    loglik = float(np.sum(deaths * eta - spells * np.logaddexp(0.0, eta)))
    mu = expit(eta)
    info = x.T @ (x * (spells * mu * (1 - mu))[:, None])
    sign, logdet = np.linalg.slogdet(info)
    if sign <= 0:
        raise np.linalg.LinAlgError("information matrix not positive definite")
    return loglik + 0.5 * logdet


def firth_fit(x: np.ndarray, spells: np.ndarray, deaths: np.ndarray, *, max_iter: int, tol: float) -> FirthFit:
    """Firth's penalised maximum-likelihood fit of binomial cells (``x`` with the intercept column).

    ``x`` must have full column rank; raises ``numpy.linalg.LinAlgError`` otherwise.

    >>> x = np.array([[1.0, 0.0], [1.0, 1.0]])  # the second cell: nobody died (separated)
    >>> fit = firth_fit(x, np.array([10.0, 10.0]), np.array([5.0, 0.0]), max_iter=50, tol=1e-10)
    >>> round(float(fit.coefficients[1]), 6)  # a saturated 2x2 table: ½ added to each count, log(0.5/10.5)
    -3.044522
    """
    beta = np.zeros(x.shape[1])
    current = _penalised_loglik(x, spells, deaths, beta)
    iterations, converged = 0, False
    while iterations < max_iter and not converged:
        mu = expit(x @ beta)
        w = spells * mu * (1 - mu)
        info = x.T @ (x * w[:, None])
        inverse = np.linalg.inv(info)
        hat = np.einsum("ij,jk,ik->i", x, inverse, x) * w
        step = inverse @ (x.T @ (deaths - spells * mu + hat * (0.5 - mu)))
        for _ in range(30):  # step halving: the penalised likelihood must not fall
            candidate = beta + step
            value = _penalised_loglik(x, spells, deaths, candidate)
            if value >= current - 1e-12:
                break
            step = step / 2
        beta, current = candidate, value
        iterations += 1
        converged = float(np.max(np.abs(step))) < tol
    mu = expit(x @ beta)
    info = x.T @ (x * (spells * mu * (1 - mu))[:, None])
    ses = np.sqrt(np.diag(np.linalg.inv(info)))
    return FirthFit(beta, ses, iterations, converged)
