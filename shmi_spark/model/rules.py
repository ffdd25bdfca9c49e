"""The rules of a diagnosis group's model, whatever fits it (METHOD.md §5).

A group's rows of the coefficients table and its row of the diagnostics
(:class:`GroupFit`) follow from its :class:`~shmi_spark.model.design.GroupDesign`
— examined for separation and aliasing on its cells
(:mod:`shmi_spark.model.separation`) — and from what a fitter returns; the
fitter is Spark ML's ``GeneralizedLinearRegression`` (:mod:`shmi_spark.model.fit`)
or the same algorithm in numpy inside one Spark job for all groups
(:mod:`shmi_spark.model.grouped`).  The rules, reported per group in the
diagnostics' ``RULE`` and ``DETAIL``:

* fewer than ``config.min_deaths`` deaths, no deaths, or no survivors →
  ``crude_rate``: every spell gets the group's crude rate (0 deaths → 0, all
  died → 1: the maximum-likelihood limit too), no fit;
* no covariate varies → ``mle`` in closed form (intercept = logit of the rate);
* ``config.degenerate_rule = "ml_limit"`` (the default): the exact limit of
  the maximum-likelihood fit, what statsmodels or R's ``glm`` converge to.
  The separated cells (found by a linear programme, not level by level) get
  their limit, probability 0 or 1; the other cells are fitted by unpenalised
  IRLS, without the features aliased among them (R's ``NA`` coefficients:
  reported with estimate 0 and no standard error).  The published
  coefficients are that fit plus a multiple of the separating direction that
  puts every separated cell ``config.separation_logit`` or more from 0 on the
  log-odds; the parameters that direction moves have no standard error.
  ``RULE`` is ``mle`` (no separated cell) or ``mle_limit``, and ``DETAIL``
  names the separated cells' count, spells, deaths and limits, the levels the
  separation runs through, and any aliased feature.  Only when that fit
  fails numerically (no convergence within ``config.max_iter``, a
  coefficient above ``config.max_abs_coef``, a singular design) is the group
  refitted as under ``"ridge"``, the failure named in ``DETAIL``;
* ``"ridge"``: a group whose data separate, or whose design is aliased, or
  whose unpenalised fit fails as above, is refitted with Spark's L2
  ``regParam = config.ridge_penalty`` over every level (in each IRLS step,
  the weighted least-squares objective divided by the sum of the working
  weights, plus λ/2·||β||², intercept unpenalised) → ``ridge``, standard
  errors null.  For a user who wants finite coefficients for every level,
  shrunk towards the reference, and accepts expected deaths a little away
  from the maximum-likelihood limit in degenerate groups;
* ``"crude"``: such a group gets its crude rate → ``crude_rate``.  For a
  user who would rather not adjust a degenerate group at all.

A ridge fit that fails numerically falls back to ``crude_rate`` (the error is
in ``DETAIL``).  Only the numerical failures a fitter is given are caught;
any other exception fails the run with the group named.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shmi_spark.config import ModelConfig
from shmi_spark.model.design import (
    CRUDE_RATE,
    INTERCEPT,
    Estimates,
    GroupDesign,
    cell_levels,
    feature_value,
    level_key,
    split_level_key,
)
from shmi_spark.model.separation import SeparationError, limit_scale

__all__ = ["MAX_STD_ERROR", "GroupFit", "Fitter", "FirthFitter", "diagnostics_row", "crude_fit", "coef_rows",
           "needs_fit", "rule_without_fit", "mle_problems", "mle_fit", "mle_result", "fit_with_rules"]

# A standard error this large (log-odds) means a numerically singular information
# matrix: a level holding one or two spells has a standard error of about 1-2.
MAX_STD_ERROR = 1e3


@dataclass(frozen=True)
class GroupFit:
    """One group's outcome: its rows of ``coefficients``, its row of ``diagnostics``, and the
    cells set at their limit (``DIAG_GROUP``, a level per term, ``LIMIT``; ``mle_limit`` only)."""

    coefficients: list[dict]
    diagnostics: dict
    separated: list[dict] = field(default_factory=list)


# A fitter fits one group's design: (design, L2 penalty, standard errors wanted) →
# (estimates, IRLS iterations).  It raises one of the errors it is given with for a fit
# that fails (singular, empty, numerical); anything else is a programming error.
Fitter = Callable[[GroupDesign, float, bool], tuple[Estimates, int]]
# Firth's fit of a design's cells: (estimates in the design's feature order, NaN standard error
# and estimate 0 for a feature aliased over the cells; iterations; converged).
FirthFitter = Callable[[GroupDesign], tuple[Estimates, int, bool]]


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


def coef_rows(d: GroupDesign, intercept: float, intercept_se: float | None,
              values: dict[tuple[str, str], tuple[float, float | None]]) -> list[dict]:
    """The group's coefficient rows: the intercept, then every level of every term.

    ``values``: (estimate, standard error) of the features; a reference level
    gets 0 (``REFERENCE``), a feature without a value 0 and no standard error.
    """
    rows = [dict(DIAG_GROUP=d.group, TERM=INTERCEPT, LEVEL="", ESTIMATE=float(intercept),
                 STD_ERROR=None if intercept_se is None else float(intercept_se), REFERENCE=False)]
    for term, rows_t in d.levels.items():
        for lv, _, _ in rows_t:
            if lv == d.reference.get(term):
                rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=0.0,
                                 STD_ERROR=None, REFERENCE=True))
                continue
            est, se = values.get((term, lv), (0.0, None))
            rows.append(dict(DIAG_GROUP=d.group, TERM=term, LEVEL=lv, ESTIMATE=float(est),
                             STD_ERROR=None if se is None else float(se), REFERENCE=False))
    return rows


def _fitted_values(d: GroupDesign, est: Estimates) -> dict[tuple[str, str], tuple[float, float | None]]:
    return {f: (float(est.betas[i]), None if est.ses is None or not np.isfinite(est.ses[i]) else float(est.ses[i]))
            for i, f in enumerate(d.features)}


# --- the rules -------------------------------------------------------------------------


def needs_fit(d: GroupDesign, config: ModelConfig) -> bool:
    """True when the group's model takes a fit (not the crude rate, not closed form)."""
    if d.deaths == 0 or d.deaths < config.min_deaths or d.deaths >= d.spells:
        return False
    return bool(d.features)


def rule_without_fit(d: GroupDesign, config: ModelConfig, t0: float) -> GroupFit | None:
    """The model of a group that takes no fit (crude rate, closed form); None when it takes one."""
    if d.deaths == 0:
        return crude_fit(d, ["no deaths"], time.perf_counter() - t0)
    if d.deaths < config.min_deaths:
        return crude_fit(d, [f"{d.deaths} deaths < min_deaths {config.min_deaths}"], time.perf_counter() - t0)
    if d.deaths >= d.spells:
        return crude_fit(d, ["no survivors"], time.perf_counter() - t0)
    if not d.features:
        rate = d.deaths / d.spells
        return GroupFit(coef_rows(d, math.log(rate / (1 - rate)), math.sqrt(1 / d.deaths + 1 / (d.spells - d.deaths)),
                                  {}),
                        diagnostics_row(d, 1, 0, True, "mle", ["no covariate varies: intercept-only, closed form"],
                                        time.perf_counter() - t0))
    return None


def mle_problems(m: GroupDesign, config: ModelConfig, est: Estimates, iterations: int) -> list[str]:
    """Why an unpenalised fit of design ``m`` is not accepted as its MLE (empty: it is)."""
    bad = []
    if iterations >= config.max_iter:
        bad.append(f"not converged in {iterations} iterations")
    if not (np.isfinite(est.intercept) and np.all(np.isfinite(est.betas))):
        bad.append("non-finite coefficients")
    else:
        values = np.concatenate([[est.intercept], est.betas])
        worst = int(np.argmax(np.abs(values)))
        if abs(values[worst]) > config.max_abs_coef:
            name = INTERCEPT if worst == 0 else "=".join(m.features[worst - 1])
            bad.append(f"|coefficient| > {config.max_abs_coef:g} ({name}: {values[worst]:.3g})")
    ses = est.all_standard_errors
    if m.n_cells == len(m.excluded):  # complete separation: nothing was fitted
        return bad
    if ses is None:
        # no aliased column is left (mle_form), so the normal equations are singular only where
        # Spark gives no standard errors for its own reasons (a constant working label): the
        # estimates are still the minimum, reported without standard errors
        pass
    elif not np.all(np.isfinite(ses)):
        bad.append("singular design (non-finite standard errors)")
    elif np.max(ses) > MAX_STD_ERROR:
        bad.append(f"singular design (standard error {np.max(ses):.3g} > {MAX_STD_ERROR:g})")
    elif m.rank_deficient:
        bad.append(f"singular design ({m.n_params} parameters, fewer cells)")
    return bad


def _remaining_intercept(d: GroupDesign) -> Estimates:
    """The closed-form MLE of the cells left once the separated ones are set aside, nothing varying."""
    assert d.limit is not None
    spells, deaths = d.spells - d.limit.spells, d.deaths - d.limit.deaths
    if spells == 0:  # complete separation: every cell at its limit
        return Estimates(intercept=0.0, intercept_se=None, betas=np.zeros(0), ses=None)
    if not 0 < deaths < spells:
        raise SeparationError(f"{deaths} deaths in the {spells} spells left unseparated")
    return Estimates(intercept=math.log(deaths / (spells - deaths)),
                     intercept_se=math.sqrt(1 / deaths + 1 / (spells - deaths)), betas=np.zeros(0), ses=np.zeros(0))


def mle_fit(fit: Fitter, d: GroupDesign) -> tuple[GroupDesign, Estimates, int]:
    """The maximum-likelihood fit of the cells left unseparated: (its design, estimates, iterations)."""
    m = d.mle_form()
    if not m.features:
        return m, _remaining_intercept(d), 0
    est, iterations = fit(m, 0.0, True)
    return m, est, iterations


def _limit_note(d: GroupDesign) -> list[str]:
    assert d.limit is not None
    lim, notes = d.limit, []
    if lim.cells:
        ones = sum(1 for v in lim.cells.values() if v == 1.0)
        through = [INTERCEPT if k == INTERCEPT else "=".join(split_level_key(k)) for k in lim.direction]
        notes.append(f"separation: {len(lim.cells)} of {d.n_cells} cells ({lim.spells} spells, {lim.deaths} deaths) "
                     f"at their limit, probability 0 in {len(lim.cells) - ones} and 1 in {ones}, found by linear "
                     f"programme; it runs through {' '.join(through)}; the other cells fitted by MLE")
    if lim.aliased:
        notes.append("aliased among the cells fitted, no parameter (estimate 0): "
                     + " ".join(f"{t}={lv}" for t, lv in lim.aliased))
    return notes


def mle_result(d: GroupDesign, m: GroupDesign, config: ModelConfig, est: Estimates, iterations: int,
               seconds: float, batch: str | None = None) -> GroupFit:
    """The rows of an accepted fit of ``m = d.mle_form()``: with the separated cells at their limit.

    The coefficients are ``β̂ + M·direction`` (:func:`shmi_spark.model.separation.limit_scale`);
    a parameter the direction moves has no standard error.
    """
    assert d.limit is not None
    values = _fitted_values(m, est)
    intercept, intercept_se = float(est.intercept), est.intercept_se
    rule = "mle"
    if d.limit.cells:
        rule = "mle_limit"
        keys = [INTERCEPT, *[level_key(t, lv) for t, lv in d.features]]
        beta = np.array([intercept] + [values.get(f, (0.0, None))[0] for f in d.features])
        direction = np.array([d.limit.direction.get(k, 0.0) for k in keys])
        rows, signs = [], []
        for key, limit in d.limit.cells.items():
            levels = cell_levels(key)
            rows.append([1.0] + [feature_value(t, lv, levels[t]) for t, lv in d.features])
            signs.append(1.0 if limit == 1.0 else -1.0)
        scale = limit_scale(np.array(rows), np.array(signs), beta, direction, config.separation_logit)
        beta = beta + scale * direction
        moved = direction != 0
        intercept, intercept_se = float(beta[0]), None if moved[0] else intercept_se
        values = {f: (float(beta[i + 1]), None if moved[i + 1] else values.get(f, (0.0, None))[1])
                  for i, f in enumerate(d.features)}
    separated = [{"DIAG_GROUP": d.group, **cell_levels(key), "LIMIT": limit} for key, limit in d.limit.cells.items()]
    return GroupFit(coef_rows(d, intercept, intercept_se, values),
                    diagnostics_row(d, m.n_params, iterations, True, rule, _limit_note(d), seconds, batch),
                    separated)


def fit_with_rules(fit: Fitter, d: GroupDesign, config: ModelConfig, t0: float,
                   errors: tuple[type[BaseException], ...], firth: FirthFitter | None = None) -> GroupFit:
    """The group's model by ``config.degenerate_rule`` (module doc); ``d`` examined for separation.

    ``errors``: the numerical failures of ``fit`` (singular, not converging,
    the solver's own errors); any other exception propagates.  ``firth``:
    the engine's Firth fitter (the grouped engine has one).
    """
    if d.limit is None:
        raise ValueError(f"group {d.group}: its cells have not been examined for separation")
    errors = (*errors, SeparationError)
    problems: list[str] = []
    if d.limit.failed:
        problems.append(d.limit.failed)
    elif config.degenerate_rule == "ml_limit" or not d.degenerate:
        try:
            m, est, iterations = mle_fit(fit, d)
            bad = mle_problems(m, config, est, iterations)
            if not bad:
                return mle_result(d, m, config, est, iterations, time.perf_counter() - t0)
            problems.extend(_limit_note(d) + bad)
        except errors as exc:
            problems.append(f"unpenalised fit failed: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        problems.extend(_limit_note(d))

    if config.degenerate_rule == "crude":
        return crude_fit(d, problems + ["degenerate_rule=crude"], time.perf_counter() - t0)
    full = dataclasses.replace(d, excluded=frozenset())
    if config.degenerate_rule == "firth":
        if firth is None:
            raise ValueError("degenerate_rule = firth needs model.engine = grouped")
        try:
            est, iterations, converged = firth(full)
        except errors as exc:
            return crude_fit(d, problems + [f"Firth fit failed: {type(exc).__name__}: {str(exc)[:200]}"],
                             time.perf_counter() - t0)
        aliased = [f"{t}={lv}" for (t, lv), se in zip(full.features, est.ses if est.ses is not None else [],
                                                      strict=True) if not np.isfinite(se)]
        note = ["Firth's penalised likelihood" + (f" (aliased, estimate 0: {' '.join(aliased)})" if aliased else "")]
        return GroupFit(coef_rows(d, est.intercept, est.intercept_se, _fitted_values(full, est)),
                        diagnostics_row(d, len(est.betas) + 1 - len(aliased), iterations, converged, "firth",
                                        problems + note, time.perf_counter() - t0))
    try:
        est, iterations = fit(full, float(config.ridge_penalty), False)
        if not (np.isfinite(est.intercept) and np.all(np.isfinite(est.betas))):
            raise FloatingPointError("non-finite ridge coefficients")
    except errors as exc:  # last resort: the crude rate, with the reason
        return crude_fit(d, problems + [f"ridge fit failed: {type(exc).__name__}: {str(exc)[:200]}"],
                         time.perf_counter() - t0)
    converged = iterations < config.max_iter
    return GroupFit(coef_rows(d, est.intercept, None, _fitted_values(full, est)),
                    diagnostics_row(d, len(est.betas) + 1, iterations, converged, "ridge",
                                    problems + [f"ridge_penalty={config.ridge_penalty:g}"],
                                    time.perf_counter() - t0))
