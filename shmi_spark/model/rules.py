"""The rules of a diagnosis group's model, whatever fits it (METHOD.md §5).

A group's rows of the coefficients table and its row of the diagnostics
(:class:`GroupFit`) follow from its :class:`~shmi_spark.model.design.GroupDesign`
and from what a fitter returns; the fitter is Spark ML's
``GeneralizedLinearRegression`` (:mod:`shmi_spark.model.fit`) or the same
algorithm in numpy inside one Spark job for all groups
(:mod:`shmi_spark.model.grouped`).  The rules, reported per group in the
diagnostics' ``RULE`` and ``DETAIL``:

* fewer than ``config.min_deaths`` deaths, no deaths, or no survivors →
  ``crude_rate``: every spell gets the group's crude rate (0 deaths → 0, all
  died → 1), no fit;
* no covariate varies → ``mle`` in closed form (intercept = logit of the rate);
* otherwise an unpenalised fit → ``mle`` when accepted.  It is not accepted
  when it does not converge within ``config.max_iter`` iterations, has a
  non-finite coefficient, any ``|coefficient| > config.max_abs_coef``, or a
  singular design (no or non-finite standard errors, one above
  :data:`MAX_STD_ERROR`, or fewer cells than parameters);
* separation — a level of an included term where nobody or everybody died,
  found before fitting — and a fit not accepted are handled by
  ``config.degenerate_rule``:

  - ``"extended_mle"`` (the default): each separated level is fixed at
    −``config.separation_logit`` on the log-odds where nobody died (+ where
    everybody did), reported without a standard error, and the other levels
    are the unpenalised MLE on the cells that hold no separated level — the
    limit of the record-level MLE, whose separated contrasts run off to ∓∞
    → ``mle_extended``.  When every level of a term is separated, or that fit
    is not accepted, the group is refitted as under ``"ridge"``, every level
    estimated.  Known (issue 14): when every varying level of a group is
    separated (for instance a group with one death) no column is left to fit;
    the unpenalised attempt then fails (``DETAIL`` says ``unpenalised fit
    failed: DegenerateDesign: no feature column to fit``) and the group goes
    to ``ridge``;
  - ``"ridge"``: refit with Spark's L2 ``regParam = config.ridge_penalty``
    (in each IRLS step, the weighted least-squares objective divided by the
    sum of the working weights, plus λ/2·||β||², intercept unpenalised) →
    ``ridge``, standard errors null;
  - ``"crude"`` → ``crude_rate``.

  A ridge fit that fails too falls back to ``crude_rate`` (the error is in
  ``DETAIL``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shmi_spark.config import ModelConfig
from shmi_spark.model.design import CRUDE_RATE, INTERCEPT, Estimates, GroupDesign
from shmi_spark.model.irls import DegenerateDesign

__all__ = ["MAX_STD_ERROR", "GroupFit", "Fitter", "diagnostics_row", "crude_fit", "coef_rows", "needs_fit",
           "tries_mle", "rule_without_fit", "mle_problems", "mle_result", "fit_with_rules"]

# A standard error this large (log-odds) means a numerically singular information
# matrix: a level holding one or two spells has a standard error of about 1-2.
MAX_STD_ERROR = 1e3


@dataclass(frozen=True)
class GroupFit:
    """One group's outcome: its rows of ``coefficients`` and its row of ``diagnostics``."""

    coefficients: list[dict]
    diagnostics: dict


# A fitter fits one group's design: (design, L2 penalty, standard errors wanted) →
# (estimates, IRLS iterations).  It raises one of the errors it is given with for a fit
# that fails (singular, empty, numerical); anything else is a programming error.
Fitter = Callable[[GroupDesign, float, bool], tuple[Estimates, int]]


def diagnostics_row(d: GroupDesign, n_params: int, iterations: int, converged: bool, rule: str,
                     detail: list[str], seconds: float, batch: str | None = None) -> dict:
    return dict(DIAG_GROUP=d.group, SPELLS=d.spells, DEATHS=d.deaths, N_CELLS=d.n_cells,
                N_PARAMS=n_params, ITERATIONS=iterations, CONVERGED=converged, BATCH=batch, RULE=rule,
                DETAIL="; ".join(detail + d.notes), SECONDS=seconds)


def crude_fit(d: GroupDesign, rule_detail: list[str], seconds: float = 0.0) -> GroupFit:
    rate = d.deaths / d.spells
    se = math.sqrt(rate * (1 - rate) / d.spells)
    coefs = [dict(DIAG_GROUP=d.group, TERM=CRUDE_RATE, LEVEL="", ESTIMATE=rate, STD_ERROR=se,
                  REFERENCE=False)]
    return GroupFit(coefs, diagnostics_row(d, 1, 0, True, "crude_rate", rule_detail, seconds))


def coef_rows(d: GroupDesign, est: Estimates) -> list[dict]:
    rows = [dict(DIAG_GROUP=d.group, TERM=INTERCEPT, LEVEL="", ESTIMATE=float(est.intercept),
                 STD_ERROR=None if est.intercept_se is None else float(est.intercept_se), REFERENCE=False)]
    index = {f: i for i, f in enumerate(d.features)}
    for term, rows_t in d.levels.items():
        for lv, _, _ in rows_t:
            i = index.get((term, lv))
            if (term, lv) in d.fixed:
                rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=float(d.fixed[(term, lv)]),
                                 STD_ERROR=None, REFERENCE=False))
            elif i is None:
                rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=0.0,
                                 STD_ERROR=None, REFERENCE=True))
            else:
                rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=float(est.betas[i]),
                                 STD_ERROR=None if est.ses is None else float(est.ses[i]), REFERENCE=False))
    return rows


# --- the rules -------------------------------------------------------------------------


def needs_fit(d: GroupDesign, config: ModelConfig) -> bool:
    """True when the group's model takes a Spark fit (not the crude rate, not closed form)."""
    if d.deaths == 0 or d.deaths < config.min_deaths or d.deaths >= d.spells:
        return False
    return bool(d.features or d.fixed)


def tries_mle(d: GroupDesign) -> bool:
    """True when the rules start with an unpenalised fit (no unresolved separation)."""
    return not d.separated or (bool(d.fixed) and not d.unresolved)


def rule_without_fit(d: GroupDesign, config: ModelConfig, t0: float) -> GroupFit | None:
    """The model of a group that takes no Spark fit (crude rate, closed form); None when it takes one."""
    if d.deaths == 0:
        return crude_fit(d, ["no deaths"], time.perf_counter() - t0)
    if d.deaths < config.min_deaths:
        return crude_fit(d, [f"{d.deaths} deaths < min_deaths {config.min_deaths}"], time.perf_counter() - t0)
    if d.deaths >= d.spells:
        return crude_fit(d, ["no survivors"], time.perf_counter() - t0)
    if not d.features and not d.fixed:
        rate = d.deaths / d.spells
        est = Estimates(intercept=math.log(rate / (1 - rate)),
                        intercept_se=math.sqrt(1 / d.deaths + 1 / (d.spells - d.deaths)),
                        betas=np.zeros(0), ses=np.zeros(0))
        return GroupFit(coef_rows(d, est),
                        diagnostics_row(d, 1, 0, True, "mle", ["no covariate varies: intercept-only, closed form"],
                                         time.perf_counter() - t0))
    return None


def mle_problems(d: GroupDesign, config: ModelConfig, est: Estimates, iterations: int) -> list[str]:
    """Why an unpenalised fit is not accepted as the MLE (empty: it is)."""
    bad = []
    if iterations >= config.max_iter:
        bad.append(f"not converged in {iterations} iterations")
    if not (np.isfinite(est.intercept) and np.all(np.isfinite(est.betas))):
        bad.append("non-finite coefficients")
    else:
        values = np.concatenate([[est.intercept], est.betas])
        worst = int(np.argmax(np.abs(values)))
        if abs(values[worst]) > config.max_abs_coef:
            name = INTERCEPT if worst == 0 else "=".join(d.features[worst - 1])
            bad.append(f"|coefficient| > {config.max_abs_coef:g} ({name}: {values[worst]:.3g})")
    ses = est.all_standard_errors
    if ses is None or not np.all(np.isfinite(ses)):
        bad.append("singular design (no standard errors)")
    elif np.max(ses) > MAX_STD_ERROR:
        bad.append(f"singular design (standard error {np.max(ses):.3g} > {MAX_STD_ERROR:g})")
    elif d.rank_deficient:
        bad.append(f"singular design ({d.n_params} parameters, fewer cells)")
    return bad


def mle_result(d: GroupDesign, config: ModelConfig, est: Estimates, iterations: int, seconds: float,
                batch: str | None = None) -> GroupFit:
    """Coefficient rows and diagnostics of an accepted unpenalised fit."""
    coefs = coef_rows(d, est)
    n_params = len(est.betas) + 1
    if d.fixed:
        note = [f"separation: {', '.join(d.separated)}; those levels fixed at "
                f"±{config.separation_logit:g} on the log-odds, the rest fitted without their cells"]
        return GroupFit(coefs, diagnostics_row(d, n_params, iterations, True, "mle_extended", note, seconds, batch))
    return GroupFit(coefs, diagnostics_row(d, n_params, iterations, True, "mle", [], seconds, batch))



def fit_with_rules(fit: Fitter, d: GroupDesign, config: ModelConfig, t0: float,
                   errors: tuple[type[BaseException], ...]) -> GroupFit:
    """The unpenalised fit when the rules allow it, else (or when not accepted) ``degenerate_rule``.

    ``errors``: the failures of ``fit`` that make a group degenerate (the
    fitter's numerical and solver errors); any other exception propagates.
    """
    errors = (*errors, DegenerateDesign)
    ridge_errors: tuple[type[BaseException], ...] = (*errors, FloatingPointError)
    problems: list[str] = []
    if not tries_mle(d):
        problems.append("separation: " + ", ".join(d.separated))
    else:
        try:
            est, iterations = fit(d, 0.0, True)
            bad = mle_problems(d, config, est, iterations)
            if not bad:
                return mle_result(d, config, est, iterations, time.perf_counter() - t0)
            if d.fixed:
                bad.insert(0, "separation: " + ", ".join(d.separated))
            problems.extend(bad)
        except errors as exc:
            problems.append(f"unpenalised fit failed: {type(exc).__name__}: {str(exc)[:200]}")

    if config.degenerate_rule == "crude":
        return crude_fit(d, problems + ["degenerate_rule=crude"], time.perf_counter() - t0)
    if d.fixed:  # the ridge refit estimates every level, separated ones included
        d = d.without_fixed()
    try:
        est, iterations = fit(d, float(config.ridge_penalty), False)
        if not (np.isfinite(est.intercept) and np.all(np.isfinite(est.betas))):
            raise FloatingPointError("non-finite ridge coefficients")
    except ridge_errors as exc:  # last resort: the crude rate, with the reason
        return crude_fit(d, problems + [f"ridge fit failed: {type(exc).__name__}: {str(exc)[:200]}"],
                         time.perf_counter() - t0)
    converged = iterations < config.max_iter
    return GroupFit(coef_rows(d, est),
                    diagnostics_row(d, len(est.betas) + 1, iterations, converged, "ridge",
                                    problems + [f"ridge_penalty={config.ridge_penalty:g}"],
                                    time.perf_counter() - t0))
