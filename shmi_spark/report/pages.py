"""The report's HTML: the national page (``index.html``) and one page per trust (``trusts/<code>.html``).

Plain HTML5 with the stylesheet and script of :mod:`shmi_spark.report.assets`
inline and the figures beside the pages (``img/``), so the page set opens from
disk with no network.  Banding is always written in NHS England's words with a
shape (▲ higher, ● as expected, ▼ lower, ○ not banded), never by colour
alone; every figure has a text alternative and the numbers it shows are in a
table beside it.  Counts are printed as the tables hold them: in a
publication run ``*`` where a count is suppressed (METHOD.md §9).

When the run computed the HSMR (README "SHMI and HSMR"), the national page has
a section "SHMI and HSMR" per period (the scatter of one against the other,
the trusts counted by their two bandings, the trusts whose bandings disagree
with the step of the bridge that moves them most, the HSMR's diagnosis
groups, and the baskets), and each trust page its HSMR beside its SHMI and
its bridge from one to the other; a run without the HSMR's files has pages
exactly as before.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import pandas as pd

from shmi_spark.indicator.banding import BANDING_LABELS
from shmi_spark.report.assets import SCRIPT, STYLE
from shmi_spark.report.data import RunTables, count_value, flag, period_slug
from shmi_spark.report.plots import DISAGREEING, agreement, step_label

__all__ = ["Figure", "PageFigures", "BAND_SYMBOLS", "band_cell", "html_page", "index_page", "trust_page",
           "CONTEXT_LABELS", "england_value", "bridge_sentence", "NO_HSMR_LABEL"]

BAND_SYMBOLS = {1: "▲", 2: "●", 3: "▼", 0: "○"}

#: Contextual indicators (METHOD.md §7) shown on the trust pages, with their plain names.
CONTEXT_LABELS = {
    "PCT_SPELLS_PALLIATIVE": "% spells with palliative care coding",
    "PCT_DEATHS_PALLIATIVE": "% deaths with palliative care coding",
    "CRUDE_RATE_ELECTIVE": "Crude death rate, elective admissions (%)",
    "CRUDE_RATE_NON_ELECTIVE": "Crude death rate, non-elective admissions (%)",
    "MEAN_SECONDARY_ELECTIVE": "Mean secondary diagnoses, elective",
    "MEAN_SECONDARY_NON_ELECTIVE": "Mean secondary diagnoses, non-elective",
    "PCT_DEATHS_IN_HOSPITAL": "% deaths in hospital",
    "PCT_DEATHS_OUTSIDE_HOSPITAL": "% deaths within 30 days of discharge",
    "PCT_MISSING_AGE": "% spells with age missing",
    "PCT_MISSING_SEX": "% spells with sex missing",
    "PCT_MISSING_ADMIMETH": "% spells with admission method missing",
    "PCT_INVALID_PRIMARY_DIAGNOSIS": "% spells with an invalid primary diagnosis",
    "PCT_MISSING_DEPRIVATION": "% spells with deprivation missing",
}


@dataclass(frozen=True)
class Figure:
    """A figure's PNG (shown) and SVG (linked), relative to the report folder, with its text alternative."""

    png: str
    alt: str
    svg: str | None = None
    caption: str = ""


@dataclass
class PageFigures:
    """The figures drawn for the pages: by period, and by trust code."""

    funnel: dict[str, Figure] = field(default_factory=dict)
    trust_funnel: dict[str, Figure] = field(default_factory=dict)
    c_statistic: dict[str, Figure] = field(default_factory=dict)
    calibration: dict[str, Figure] = field(default_factory=dict)
    trend: dict[str, Figure] = field(default_factory=dict)
    drilldown: dict[str, Figure] = field(default_factory=dict)
    drilldown_super: dict[str, Figure] = field(default_factory=dict)
    diffsum: Figure | None = None
    hsmr_scatter: dict[str, Figure] = field(default_factory=dict)
    trust_scatter: dict[str, Figure] = field(default_factory=dict)
    bridge: dict[str, Figure] = field(default_factory=dict)


def esc(value) -> str:
    return html.escape("" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value))


def _band_code(value) -> int:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return 0 if pd.isna(number) else int(number)


def band_cell(banding, label) -> str:
    """A banding cell: shape and NHS England's words, coloured only in addition."""
    code = _band_code(banding)
    words = label if isinstance(label, str) and label else "Not banded"
    return (f'<td class="band band-{code}" data-v="{code or 9}"><span aria-hidden="true">{BAND_SYMBOLS[code]}</span> '
            f"{esc(words)}</td>")


def _fmt(value, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return esc(value)
    if digits is not None:
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else esc(value)


def _num(value, digits: int | None = None) -> str:
    """A numeric cell; a suppressed count (``*``) is printed as ``*`` and sorts first."""
    number = count_value(value)
    if number is None:
        text = esc(value) if isinstance(value, str) else ""
        return f'<td class="num" data-v="">{text}</td>'
    if digits is not None:
        shown = f"{number:,.{digits}f}"
    else:
        shown = f"{int(number):,}" if number.is_integer() else f"{number:,}"
    return f'<td class="num" data-v="{number!r}">{shown}</td>'


def _limits(low, high) -> str:
    lo, hi = count_value(low), count_value(high)
    text = "" if lo is None or hi is None else f"{lo:.4f}–{hi:.4f}"
    return f'<td class="num" data-v="{lo if lo is not None else ""}">{text}</td>'


def _figure(fig: Figure | None, root: str = "") -> str:
    if fig is None:
        return ""
    svg = f' <a href="{esc(root + fig.svg)}">SVG</a>' if fig.svg else ""
    caption = f"<figcaption>{esc(fig.caption)}{svg}</figcaption>" if (fig.caption or svg) else ""
    return (f'<figure><img src="{esc(root + fig.png)}" alt="{esc(fig.alt)}" loading="eager">{caption}</figure>')


def html_page(title: str, body: str, *, root: str = "") -> str:
    """A whole page: title, inline style and script, ``body``."""
    return (f'<!DOCTYPE html>\n<html lang="en-GB">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src \'self\' data:; '
            f'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n<script>{SCRIPT}</script>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


# ----------------------------------------------------------------------------------------------- index page


def when(iso) -> str:
    """An ISO time stamp as a reader writes it: ``2026-11-30 15:21 UTC``."""
    text = str(iso or "")
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 and text[10] == "T" else text


def _suppression_note(run: RunTables) -> str:
    if run.publication:
        o = run.summary.get("config", {}).get("output", {})
        return (f'<p class="note">Publication run: counts from {o.get("suppress_min", 1)} to '
                f'{o.get("suppress_max", 7)} are suppressed (shown as *) and other counts are rounded to the nearest '
                f'{o.get("round_to", 5)}, exactly as in the publication files. SHMI values, limits and banding are '
                "computed from the unrounded counts.</p>")
    return ('<p class="note">Not a publication run: counts are shown unsuppressed and unrounded. '
            "Do not publish this report; run with <code>--publication</code> for disclosure-controlled counts.</p>")


def _national_facts(run: RunTables, period: str) -> str:
    p = run.period_summary(period)
    nat = run.areas[(run.areas["LEVEL"] == "national") & (run.areas["PERIOD"] == period)]
    spells = nat["SPELLS"].iloc[0] if len(nat) else p.get("spells")
    observed = nat["OBSERVED"].iloc[0] if len(nat) else p.get("observed")
    c = p.get("c_statistic_overall")
    items = [("Trusts", _fmt(p.get("n_trusts"))), ("Spells", _fmt(count_value(spells), 0)),
             ("Deaths (observed)", _fmt(count_value(observed), 0)),
             ("▲ Higher than expected", _fmt(p.get("n_higher"))), ("● As expected", _fmt(p.get("n_as_expected"))),
             ("▼ Lower than expected", _fmt(p.get("n_lower"))),
             ("Above the 99.8% limit", _fmt(p.get("n_outliers_998"))),
             ("Overdispersion φ", _fmt(p.get("phi"), 3)), ("Between-trust variance τ²", _fmt(p.get("tau2"), 5)),
             ("C statistic", _fmt(c, 3) if c is not None else "")]
    cells = "".join(f"<div><dt>{label}</dt><dd>{value}</dd></div>" for label, value in items)
    return f'<dl class="facts">{cells}</dl>'


def _context_columns() -> list[tuple[str, str]]:
    return [("PCT_SPELLS_PALLIATIVE", "% spells palliative"), ("PCT_DEATHS_PALLIATIVE", "% deaths palliative")]


def _trust_rows(run: RunTables, period: str) -> tuple[str, int]:
    rows = run.trusts[run.trusts["PERIOD"] == period].copy()
    areas = run.trust_areas[run.trust_areas["PERIOD"] == period] if len(run.trust_areas) else pd.DataFrame()
    if len(areas):
        rows = rows.merge(areas[["PROVIDER_CODE", "REGION", "PEER_GROUP"]], on="PROVIDER_CODE", how="left")
    context = run.contextual[run.contextual["PERIOD"] == period]
    cols = [c for c, _ in _context_columns() if c in context.columns]
    rows = rows.merge(context[["PROVIDER_CODE", *cols]], on="PROVIDER_CODE", how="left")
    rows = rows.sort_values("PROVIDER_CODE")
    out = []
    for r in rows.to_dict("records"):
        code, name = str(r["PROVIDER_CODE"]), str(r.get("PROVIDER_NAME") or "")
        region, peer = r.get("REGION"), r.get("PEER_GROUP")
        band = _band_code(r.get("BANDING"))
        context_cells = "".join(_num(r.get(c), 2) for c in cols)
        out.append(
            f'<tr data-code="{esc(code)}" data-name="{esc(name)}" data-region="{esc(region)}" '
            f'data-peer="{esc(peer)}" data-band="{band}">'
            f'<td><a href="trusts/{esc(code)}.html">{esc(code)}</a></td><td>{esc(name)}</td>'
            f"<td>{esc(region)}</td><td>{esc(peer)}</td>{_num(r.get('SPELLS'))}{_num(r.get('OBSERVED'))}"
            f"{_num(r.get('EXPECTED'), 1)}{_num(r.get('SHMI'), 4)}{_limits(r.get('OD95_LL'), r.get('OD95_UL'))}"
            f"{_limits(r.get('OD998_LL'), r.get('OD998_UL'))}{band_cell(r.get('BANDING'), r.get('BANDING_LABEL'))}"
            f"{context_cells}</tr>")
    return "\n".join(out), len(rows)


def _trust_table(run: RunTables, period: str) -> str:
    body, n = _trust_rows(run, period)
    heads = [("Code", ""), ("Trust", ""), ("Region", ""), ("Peer group", ""), ("Spells", "num"),
             ("Observed deaths", "num"), ("Expected deaths", "num"), ("SHMI", "num"), ("95% limits", "num"),
             ("99.8% limits", "num"), ("Banding", "")]
    heads += [(label, "num") for _, label in _context_columns()]
    head = "".join(f'<th scope="col" class="{cls}"><button type="button">{esc(h)}</button></th>' for h, cls in heads)
    return (f'<p class="shown muted" aria-live="polite" data-total="{n}">{n} trusts</p>'
            f'<div class="scroll"><table class="trusts"><caption>Trusts, {esc(period)}: SHMI, control limits and '
            f'banding (sort by any column with its header button)</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div>")


def _options(values, label_all: str) -> str:
    opts = [f'<option value="">{esc(label_all)}</option>']
    opts += [f'<option value="{esc(v)}">{esc(v)}</option>' for v in values]
    return "".join(opts)


def _controls(run: RunTables) -> str:
    periods = "".join(f'<option value="{esc(p)}"{" selected" if p == run.main_period else ""}>{esc(p)}</option>'
                      for p in run.periods)
    regions = sorted(run.trust_areas["REGION"].dropna().astype(str).unique()) if len(run.trust_areas) else []
    peers = [g for g in ("small", "medium", "large")
             if len(run.trust_areas) and g in set(run.trust_areas["PEER_GROUP"].astype(str))]
    bands = "".join(f'<option value="{k}">{BAND_SYMBOLS[k]} {esc(v)}</option>'
                    for k, v in ((1, "Higher than expected"), (2, "As expected"), (3, "Lower than expected"),
                                 (0, "Not banded")))
    return ('<div class="controls" role="search">'
            f'<label for="period">Period<select id="period">{periods}</select></label>'
            '<label for="trust-search">Find a trust (code or name)'
            '<input id="trust-search" type="search" autocomplete="off" placeholder="e.g. R0D"></label>'
            f'<label for="region">Region<select id="region">{_options(regions, "All regions")}</select></label>'
            f'<label for="peer">Peer group (size third)<select id="peer">{_options(peers, "All peer groups")}'
            '</select></label>'
            f'<label for="band">Banding<select id="band"><option value="">All bandings</option>{bands}</select></label>'
            "</div>")


def _period_section(run: RunTables, period: str, figures: PageFigures) -> str:
    p = run.period_summary(period)
    when = f"{esc(p.get('start'))} to {esc(p.get('end'))}"
    return (f'<section class="period" data-period="{esc(period)}" id="period-{esc(period_slug(period))}" '
            f'aria-label="Period {esc(period)}">'
            f"<h2>Period {esc(period)} <span class=\"muted\">(discharges {when})</span></h2>"
            f"{_national_facts(run, period)}{_figure(figures.funnel.get(period))}{_trust_table(run, period)}"
            "</section>")


def _rules_table(run: RunTables) -> str:
    rows = []
    for period in run.periods:
        diag = run.diagnostics.get(period, pd.DataFrame())
        if diag.empty or "RULE" not in diag.columns:
            continue
        counts = diag["RULE"].value_counts().sort_index()
        text = ", ".join(f"{esc(rule)} {n}" for rule, n in counts.items())
        other = diag[~diag["RULE"].isin(["mle", "mle_limit"])]
        listed = "; ".join(f"{int(g)} {esc(lbl)} ({esc(rule)})" for g, lbl, rule in
                           other[["DIAG_GROUP", "LABEL", "RULE"]].itertuples(index=False, name=None))
        rows.append(f"<tr><td>{esc(period)}</td><td>{len(diag)}</td><td>{text}</td><td>{listed or '—'}</td></tr>")
    return ('<table><caption>Model rule per diagnosis group (docs/tables.md: mle, mle_limit, ridge, firth, '
            'crude_rate)</caption><thead><tr><th scope="col">Period</th><th scope="col">Groups</th>'
            '<th scope="col">Groups by rule</th><th scope="col">Groups not fitted by maximum likelihood</th></tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def _quality_section(run: RunTables, figures: PageFigures) -> str:
    parts = ['<section id="model-quality"><h2>Model quality</h2>',
             "<p>The C statistic per diagnosis group (the area under the ROC curve of the group's model), and the "
             "calibration of expected against observed deaths by tenth of predicted risk.</p>"]
    for period in run.periods:
        c, cal = figures.c_statistic.get(period), figures.calibration.get(period)
        if c or cal:
            parts.append(f"<h3>{esc(period)}</h3>{_figure(c)}{_figure(cal)}")
            parts.append(_calibration_table(run, period))
    parts.append(_rules_table(run))
    parts.append("</section>")
    return "".join(parts)


def _calibration_table(run: RunTables, period: str) -> str:
    cal = run.calibration[run.calibration["PERIOD"] == period] if len(run.calibration) else pd.DataFrame()
    if cal.empty:
        return ""
    rows = "".join(f"<tr><td>{int(r['DECILE'])}</td>{_num(r['SPELLS'])}{_num(r['OBSERVED'])}"
                   f"{_num(r['EXPECTED'], 1)}{_num(r['P_LOW'], 5)}{_num(r['P_HIGH'], 5)}</tr>"
                   for r in cal.to_dict("records"))
    return (f"<table><caption>Deaths by tenth of predicted risk, {esc(period)}</caption><thead><tr>"
            '<th scope="col">Tenth</th><th scope="col" class="num">Spells</th><th scope="col" class="num">Observed'
            '</th><th scope="col" class="num">Expected</th><th scope="col" class="num">Lowest risk</th>'
            f'<th scope="col" class="num">Highest risk</th></tr></thead><tbody>{rows}</tbody></table>')


def _facts_section(run: RunTables) -> str:
    s = run.summary
    v, sp, link = s.get("validate") or {}, s.get("spells") or {}, s.get("linkage") or {}
    inputs = s.get("inputs") or {}
    files = inputs.get("files") or []
    li = []
    li.append(f"<li>Command: <code>{esc(s.get('command'))}</code>; shmi-spark {esc(s.get('shmi_spark_version'))}, "
              f"code revision {esc(s.get('code_revision'))}, Spark {esc(s.get('spark_version'))} "
              f"({esc(s.get('spark_master'))}); started {esc(when(s.get('started_utc')))}; "
              f"{esc(s.get('seconds_total'))} s; "
              f"configuration SHA-256 {esc(s.get('config_sha256'))}</li>")
    sources = [f"{what} {esc((inputs.get(key) or {}).get('path'))} ({(inputs.get(key) or {}).get('files', 0)} files)"
               for what, key in (("episodes", "hes"), ("deaths", "deaths")) if isinstance(inputs.get(key), dict)]
    sources += [f"{what} {esc(inputs.get(key))}" for what, key in
                (("trusts", "trusts"), ("diagnosis groups", "diag_lookup"), ("Charlson codes", "charlson"))
                if inputs.get(key)]
    li.append(f"<li>Inputs: {'; '.join(sources) or 'none recorded'}; {len(files)} files, "
              f"{inputs.get('input_bytes', 0):,} bytes, fingerprint {esc(inputs.get('inputs_sha256'))}</li>")
    if v:
        li.append(f"<li>Episodes read {v.get('episodes_read', 0):,}, accepted {v.get('episodes_accepted', 0):,}, "
                  f"rejected {v.get('episodes_rejected', 0):,}; death records read {v.get('deaths_read', 0):,}, "
                  f"accepted {v.get('deaths_accepted', 0):,}, rejected {v.get('deaths_rejected', 0):,}; "
                  f"every row accounted for: {'yes' if v.get('reconciled') else 'NO'}</li>")
    else:
        li.append(f"<li>Started from an existing spell table ({esc(sp.get('read_from'))})</li>")
    parts = ['<section id="run-facts"><h2>The run</h2><ul>', "".join(li), "</ul>"]
    reasons = {**{f"episode {k}": n for k, n in (v.get("episode_rejects_by_reason") or {}).items()},
               **{f"death record {k}": n for k, n in (v.get("death_rejects_by_reason") or {}).items()}}
    parts.append(_count_table("Rows rejected, by reason and field", reasons))
    parts.append(_count_table("Spells built and excluded, by reason (METHOD.md §3)",
                              {"spells built": sp.get("spells_built"),
                               **(sp.get("exclusions_by_reason") or {}), "spells included": sp.get("spells_included")}))
    if link:
        parts.append(_count_table("Deaths linked (METHOD.md §3)", link))
    parts.append("</section>")
    return "".join(parts)


def _count_table(caption: str, counts: dict) -> str:
    if not counts:
        return f"<p>{esc(caption)}: none.</p>"
    rows = "".join(f"<tr><td>{esc(k)}</td>{_num(n)}</tr>" for k, n in counts.items())
    return (f'<table><caption>{esc(caption)}</caption><thead><tr><th scope="col">What</th>'
            f'<th scope="col" class="num">Count</th></tr></thead><tbody>{rows}</tbody></table>')


def _diffsum_section(figures: PageFigures, compare_note: str) -> str:
    if figures.diffsum is None:
        return ""
    return (f'<section id="comparison"><h2>Comparison with another run</h2><p>{esc(compare_note)}</p>'
            f"{_figure(figures.diffsum)}</section>")


# ----------------------------------------------------------------------------------------------- SHMI and HSMR

#: The banding words of a trust with no row in the HSMR's table (no spell in the HSMR's population).
NO_HSMR_LABEL = "Not banded: no HSMR (no spell in the HSMR's groups)"
_NO_SHMI_LABEL = "Not banded: no SHMI"
_BANDS = ((1, "Higher than expected"), (2, "As expected"), (3, "Lower than expected"), (0, "Not banded"))


def _band_key(value, present: bool) -> str:
    """A banding as a key of the count table: ``1``, ``2``, ``3``, ``0`` (not banded) or ``none`` (no row)."""
    return str(_band_code(value)) if present else "none"


def _coverage_text(run: RunTables, period: str) -> str:
    groups = run.hsmr_groups
    if groups.empty or "COVERED" not in groups.columns:
        return ""
    if "PERIOD" in groups.columns:
        groups = groups[groups["PERIOD"] == period]
    covered = groups[flag(groups["COVERED"])]
    if groups.empty:
        return ""
    share = pd.to_numeric(covered["SHARE"], errors="coerce").sum()
    return (f'<p class="hsmr-coverage">The HSMR of {esc(period)} counts the <strong>{len(covered)}</strong> '
            f"diagnosis groups with the most deaths in hospital in its modelling window, together "
            f"<strong>{100 * share:.1f}%</strong> of those deaths (of {len(groups)} groups with a death in "
            "hospital).</p>")


def _hsmr_facts(rows: pd.DataFrame) -> str:
    hsmr = rows[rows["IN_HSMR"]]
    codes = hsmr["HSMR_BANDING"].map(_band_code)
    kinds = [agreement(a, b) for a, b in zip(rows["SHMI_BANDING"], rows["HSMR_BANDING"], strict=True)]
    items = [("Trusts with an HSMR", len(hsmr)), ("▲ HSMR higher than expected", int((codes == 1).sum())),
             ("● HSMR as expected", int((codes == 2).sum())), ("▼ HSMR lower than expected", int((codes == 3).sum())),
             ("Bandings that disagree", sum(k in DISAGREEING for k in kinds))]
    cells = "".join(f"<div><dt>{esc(label)}</dt><dd>{value:,}</dd></div>" for label, value in items)
    return f'<dl class="facts">{cells}</dl>'


def _crosstab_table(rows: pd.DataFrame, period: str) -> str:
    """Trusts counted by SHMI banding (rows) × HSMR banding (columns); a "No HSMR"/"No SHMI" line only if needed."""
    s_keys = [_band_key(b, p) for b, p in zip(rows["SHMI_BANDING"], rows["IN_SHMI"], strict=True)]
    h_keys = [_band_key(b, p) for b, p in zip(rows["HSMR_BANDING"], rows["IN_HSMR"], strict=True)]
    bands = [(str(k), f"{BAND_SYMBOLS[k]} {words}") for k, words in _BANDS]
    rows_by = bands + ([("none", "No SHMI")] if "none" in s_keys else [])
    cols_by = bands + ([("none", "No HSMR")] if "none" in h_keys else [])
    pairs = pd.Series(list(zip(s_keys, h_keys, strict=True)), dtype=object).value_counts() if s_keys else pd.Series()
    head = "".join(f'<th scope="col" class="num">{esc(words)}</th>' for _, words in cols_by)
    body = []
    for s_key, s_words in rows_by:
        cells = "".join(f'<td class="num" data-shmi="{s_key}" data-hsmr="{h_key}">{int(pairs.get((s_key, h_key), 0))}'
                        "</td>" for h_key, _ in cols_by)
        total = sum(k == s_key for k in s_keys)
        body.append(f'<tr><th scope="row">{esc(s_words)}</th>{cells}'
                    f'<td class="num" data-shmi="{s_key}" data-hsmr="all">{total}</td></tr>')
    totals = "".join(f'<td class="num" data-shmi="all" data-hsmr="{h_key}">{sum(k == h_key for k in h_keys)}</td>'
                     for h_key, _ in cols_by)
    body.append(f'<tr><th scope="row">All trusts</th>{totals}'
                f'<td class="num" data-shmi="all" data-hsmr="all">{len(s_keys)}</td></tr>')
    return (f'<table class="hsmr-counts"><caption>Trusts by SHMI banding (rows) and HSMR banding (columns), '
            f'{esc(period)}</caption><thead><tr><th scope="col">SHMI banding</th>{head}'
            f'<th scope="col" class="num">All trusts</th></tr></thead><tbody>{"".join(body)}</tbody></table>')


def _hsmr_band_cell(r: dict) -> str:
    return band_cell(r.get("HSMR_BANDING"), r.get("HSMR_BANDING_LABEL") if r.get("IN_HSMR") else NO_HSMR_LABEL)


def _shmi_band_cell(r: dict) -> str:
    return band_cell(r.get("SHMI_BANDING"), r.get("SHMI_BANDING_LABEL") if r.get("IN_SHMI") else _NO_SHMI_LABEL)


def _step_text(step, name) -> str:
    """A step named short, as in a table cell: ``5. The HSMR's case mix`` (its parenthesis left to the bridge)."""
    number = count_value(step)
    return "" if number is None or not isinstance(name, str) else step_label(int(number), name.split(" (", 1)[0])


def _disagree_table(rows: pd.DataFrame, period: str, *, root: str = "") -> str:
    kinds = [agreement(a, b) for a, b in zip(rows["SHMI_BANDING"], rows["HSMR_BANDING"], strict=True)]
    differ = rows[[k in DISAGREEING for k in kinds]]
    if differ.empty:
        return f"<p>The two indicators band every trust alike in {esc(period)}: no banding disagrees.</p>"
    body = []
    for r in differ.to_dict("records"):
        code = str(r["PROVIDER_CODE"])
        step = count_value(r.get("LARGEST_STEP"))
        body.append(
            f'<tr><td><a href="{root}trusts/{esc(code)}.html">{esc(code)}</a></td><td>{esc(r.get("PROVIDER_NAME"))}'
            f"</td>{_num(r.get('SHMI'), 4)}{_shmi_band_cell(r)}{_num(_hsmr_ratio(r.get('HSMR')), 4)}"
            f"{_hsmr_band_cell(r)}"
            f'<td data-v="{"" if step is None else int(step)}">{esc(_step_text(step, r.get("LARGEST_STEP_NAME")))}'
            f"</td>{_num(_signed_or_none(r.get('LARGEST_STEP_CHANGE')), 4)}</tr>")
    heads = [("Code", ""), ("Trust", ""), ("SHMI", "num"), ("SHMI banding", ""), ("HSMR / 100", "num"),
             ("HSMR banding", ""), ("Largest bridge step", ""), ("Change at that step", "num")]
    head = "".join(f'<th scope="col" class="{cls}"><button type="button">{esc(h)}</button></th>' for h, cls in heads)
    return (f'<div class="scroll"><table class="disagree"><caption>Trusts whose SHMI and HSMR bandings disagree, '
            f"{esc(period)}: {len(differ)} (sort by any column with its header button; the bridge on each "
            f"trust's page)</caption><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _hsmr_ratio(value) -> float | None:
    number = count_value(value)
    return None if number is None else number / 100


def _signed_or_none(value) -> float | None:
    number = count_value(value)
    return None if number is None else number + 0.0   # -0.0 printed as 0.0000


def _basket_words(value) -> tuple[object, str]:
    code = _band_code(value)
    return (code or None), BANDING_LABELS.get(code, "Not banded")


def _basket_tables(run: RunTables, period: str) -> str:
    baskets = run.baskets
    if baskets.empty:
        return ""
    baskets = baskets[baskets["PERIOD"] == period]
    if baskets.empty:
        return ""
    names = dict(zip(run.trusts["PROVIDER_CODE"], run.trusts["PROVIDER_NAME"], strict=False))
    parts = [f"<h4>Baskets of diagnoses, {esc(period)}</h4><p>Each basket's deaths under both indicators, scored by "
             "their models (banded on the exact 95% Poisson limits of its observed deaths). The trusts banded higher "
             "than expected under either indicator:</p>"]
    sub = ("Observed", "Expected", "Ratio", "95% interval", "Banding")
    for basket, rows in baskets.groupby("BASKET", sort=True):
        wide = {ind: rows[rows["INDICATOR"] == ind].set_index("PROVIDER_CODE") for ind in ("SHMI", "HSMR")}
        codes = sorted({c for ind in wide.values() for c in ind.index[ind["BANDING"].map(_band_code) == 1]})
        if not codes:
            parts.append(f"<p>{esc(basket)}: no trust banded higher than expected under either indicator.</p>")
            continue
        body = []
        for code in codes:
            cells = []
            for ind in ("SHMI", "HSMR"):
                r = wide[ind].loc[code] if code in wide[ind].index else None
                if r is None:
                    cells.append('<td class="num"></td>' * 4 + band_cell(None, f"Not banded: no {ind} row"))
                    continue
                band, words = _basket_words(r.get("BANDING"))
                cells.append(f"{_num(r.get('OBSERVED'))}{_num(r.get('EXPECTED'), 1)}{_num(r.get('RATIO'), 4)}"
                             f"{_limits(r.get('LL95'), r.get('UL95'))}{band_cell(band, words)}")
            body.append(f'<tr><td><a href="trusts/{esc(code)}.html">{esc(code)}</a></td>'
                        f"<td>{esc(names.get(code, ''))}</td>{''.join(cells)}</tr>")
        group_head = ('<th scope="colgroup" colspan="5">SHMI (deaths in hospital or within 30 days)</th>'
                      '<th scope="colgroup" colspan="5">HSMR (deaths in hospital)</th>')
        sub_head = "".join(f'<th scope="col" class="{"" if h == "Banding" else "num"}">{h}</th>' for h in sub) * 2
        parts.append(f'<div class="scroll"><table class="basket" data-basket="{esc(basket)}"><caption>Basket '
                     f"{esc(basket)}, {esc(period)}: trusts banded higher than expected under either indicator"
                     '</caption><thead><tr><th scope="col" rowspan="2">Code</th><th scope="col" rowspan="2">Trust'
                     f"</th>{group_head}</tr><tr>{sub_head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    return "".join(parts)


def _hsmr_section(run: RunTables, figures: PageFigures) -> str:
    if not run.has_hsmr:
        return ""
    parts = ['<section id="shmi-hsmr" aria-label="SHMI and HSMR"><h2>SHMI and HSMR</h2>',
             "<p>The HSMR (hospital standardised mortality ratio, 100 for England) counts only the deaths in "
             "hospital, in the diagnosis groups with most of those deaths, per continuous inpatient spell across "
             "transfers (superspell), expected from a case mix with palliative care, prior emergency admissions, "
             "source of admission, deprivation and the Charlson score as a number; it is banded on the exact 95% "
             "Poisson limits of its observed deaths. Drawn and tabled as HSMR / 100, a ratio like the SHMI. "
             "The bridge on each trust's page goes from one indicator to the other one setting at a time.</p>"]
    for period in run.periods:
        rows = run.shmi_hsmr(period)
        if not rows["IN_HSMR"].any():
            continue
        parts.append(f'<section class="hsmr-period" data-period="{esc(period)}" id="hsmr-{esc(period_slug(period))}" '
                     f'aria-label="SHMI and HSMR, {esc(period)}"><h3>{esc(period)}</h3>'
                     f"{_coverage_text(run, period)}{_hsmr_facts(rows)}{_figure(figures.hsmr_scatter.get(period))}"
                     f"{_crosstab_table(rows, period)}{_disagree_table(rows, period)}{_basket_tables(run, period)}"
                     "</section>")
    parts.append("</section>")
    return "".join(parts)


_STEP_CAUSES = {
    2: ("when deaths after discharge are left out",
        "its deaths after discharge are higher, relative to those expected, than its deaths in hospital",
        "its deaths in hospital are higher, relative to those expected, than its deaths after discharge"),
    3: ("when only the HSMR's diagnosis groups are counted",
        "its ratio is higher in the diagnosis groups the HSMR leaves out",
        "its ratio is higher in the diagnosis groups the HSMR covers"),
    4: ("when spells joined by transfers are counted as one superspell",
        "transfers between hospitals change which deaths and which patients count as its own",
        "transfers between hospitals change which deaths and which patients count as its own"),
    5: ("",
        "allowing for palliative care, prior emergency admissions, source of admission, deprivation and the "
        "Charlson score, more of "
        "its patients are expected to die",
        "allowing for palliative care, prior emergency admissions, source of admission, deprivation and the "
        "Charlson score, fewer of "
        "its patients are expected to die"),
}


def bridge_sentence(rows: pd.DataFrame) -> str:
    """The bridge of one trust (its ``shmi_vs_hsmr`` rows in one period) in one sentence: its largest step.

    "Most of the difference" when that step's change is at least half of
    the sum of the sizes of every step's change, "the largest single change"
    otherwise; the step named in words, with the direction of its change and
    what that says of the trust.
    """
    if rows.empty:
        return "This trust has no bridge from its SHMI to its HSMR in this period."
    ordered = rows.sort_values("STEP", kind="stable")
    ratio = pd.to_numeric(ordered["RATIO"], errors="coerce").to_numpy()
    change = pd.to_numeric(ordered["CHANGE"], errors="coerce")
    largest = ordered[flag(ordered["LARGEST_CHANGE"]).to_numpy()]
    ends = (f"this trust's SHMI ({ratio[0]:.2f}) and its HSMR / 100 ({ratio[-1]:.2f})"
            if math.isfinite(ratio[0]) and math.isfinite(ratio[-1]) else "this trust's SHMI and its HSMR")
    if largest.empty:
        return (f"No step of the bridge between {ends} has a change to measure: at some step no deaths are "
                "expected.")
    top = largest.iloc[0]
    step, size = int(top["STEP"]), float(pd.to_numeric(top["CHANGE"], errors="coerce"))
    if size == 0:
        return f"No step of the bridge changes the ratio between {ends}."
    total = float(change.abs().sum())
    action, falls, rises = _STEP_CAUSES.get(step, ("at this step", "", ""))
    cause = falls if size < 0 else rises
    moves = f"its ratio {'falls' if size < 0 else 'rises'} by {abs(size):.2f}{' ' + action if action else ''}"
    name = str(top["STEP_NAME"]).split(" (", 1)[0]
    lead = (f"Most of the difference between {ends} comes from step {step}: {name}"
            if abs(size) >= 0.5 * total else f"The largest single change between {ends} is at step {step}: {name}")
    return f"{lead} — {moves}{': ' + cause if cause else ''}."


def index_page(run: RunTables, figures: PageFigures, *, compare_note: str = "") -> str:
    """``index.html``: the national summary per period, funnel plots, the trust table, model quality, the run."""
    run_id = run.summary.get("output", {}).get("run_id")
    head = (f"<header><h1>Summary Hospital-level Mortality Indicator</h1>"
            f"<p class=\"muted\">Periods: {esc(', '.join(run.periods))}. Run {esc(run_id)}"
            f", started {esc(when(run.summary.get('started_utc')))}.</p>"
            '<nav aria-label="Sections"><a href="#trusts">Trusts</a>'
            + ('<a href="#shmi-hsmr">SHMI and HSMR</a>' if run.has_hsmr else "")
            + '<a href="#model-quality">Model quality</a>'
            + ('<a href="#comparison">Comparison</a>' if figures.diffsum else "")
            + '<a href="#run-facts">The run</a></nav></header>')
    sections = "".join(_period_section(run, p, figures) for p in run.periods)
    body = (f"{head}<main>{_suppression_note(run)}"
            "<p>SHMI is the ratio of the deaths that followed a trust's admissions (in hospital or within 30 days "
            "of discharge) to the deaths expected given its patients. A trust is banded “higher than expected” "
            "when its SHMI is above the upper 95% over-dispersed control limit and “lower than expected” when "
            "below the lower one; points above the 99.8% limit are the development paper's outliers.</p>"
            f'<section id="trusts" aria-label="Trusts"><h2>Trusts</h2>{_controls(run)}'
            f"{sections}</section>{_hsmr_section(run, figures)}"
            f"{_quality_section(run, figures)}{_diffsum_section(figures, compare_note)}{_facts_section(run)}</main>")
    return html_page("SHMI report", body)


# ----------------------------------------------------------------------------------------------- trust pages


def _trust_periods_table(rows: pd.DataFrame) -> str:
    body = "".join(
        f"<tr><td>{esc(r['PERIOD'])}</td>{_num(r.get('SPELLS'))}{_num(r.get('OBSERVED'))}{_num(r.get('EXPECTED'), 1)}"
        f"{_num(r.get('SHMI'), 4)}{_limits(r.get('OD95_LL'), r.get('OD95_UL'))}"
        f"{_limits(r.get('OD998_LL'), r.get('OD998_UL'))}{band_cell(r.get('BANDING'), r.get('BANDING_LABEL'))}</tr>"
        for r in rows.to_dict("records"))
    return ('<table class="periods"><caption>SHMI by period</caption><thead><tr><th scope="col">Period</th>'
            '<th scope="col" class="num">Spells</th><th scope="col" class="num">Observed deaths</th>'
            '<th scope="col" class="num">Expected deaths</th><th scope="col" class="num">SHMI</th>'
            '<th scope="col" class="num">95% limits</th><th scope="col" class="num">99.8% limits</th>'
            f'<th scope="col">Banding</th></tr></thead><tbody>{body}</tbody></table>')


def _drill_table(table: pd.DataFrame | None, caption: str) -> str:
    if table is None or table.empty:
        return f"<p>{esc(caption)}: no deaths expected or observed to show.</p>"
    body = "".join(
        f"<tr><td>{esc(r['LABEL'])}</td>{_num(r['OBSERVED'])}{_num(r['EXPECTED'], 1)}{_num(r['O_MINUS_E'], 1)}"
        f"{_num(r['RATIO'], 2)}{_limits(r.get('RATIO_LL95'), r.get('RATIO_UL95'))}</tr>"
        for r in table.to_dict("records"))
    return (f'<table><caption>{esc(caption)}</caption><thead><tr><th scope="col">Group</th>'
            '<th scope="col" class="num">Observed</th><th scope="col" class="num">Expected</th>'
            '<th scope="col" class="num">Observed − expected</th><th scope="col" class="num">Observed / expected</th>'
            f'<th scope="col" class="num">95% interval</th></tr></thead><tbody>{body}</tbody></table>')


def england_value(ctx: pd.DataFrame, col: str) -> float | None:
    """A contextual percentage for England: the trusts' values weighted by their spells (``PCT_DEATHS_*``:
    deaths); ``None`` for a rate or mean whose denominator the table does not hold."""
    weight = "DEATHS" if col.startswith("PCT_DEATHS") else "SPELLS" if col.startswith("PCT_") else None
    if weight is None or weight not in ctx.columns:
        return None
    values, weights = pd.to_numeric(ctx[col], errors="coerce"), pd.to_numeric(ctx[weight], errors="coerce")
    known = values.notna() & weights.notna()
    total = float(weights[known].sum())
    return float((values[known] * weights[known]).sum() / total) if total > 0 else None


def _context_table(run: RunTables, code: str, period: str) -> str:
    ctx = run.contextual[run.contextual["PERIOD"] == period]
    mine = ctx[ctx["PROVIDER_CODE"] == code]
    if mine.empty:
        return ""
    rows = []
    for col, label in CONTEXT_LABELS.items():
        if col not in ctx.columns:
            continue
        values = pd.to_numeric(ctx[col], errors="coerce").dropna()
        if values.empty:
            continue
        lo, med, hi = values.quantile([0.1, 0.5, 0.9]).tolist()
        england = england_value(ctx, col)
        rows.append(f"<tr><td>{esc(label)}</td>{_num(mine[col].iloc[0], 2)}"
                    f"<td class=\"num\">{'' if england is None else f'{england:.2f}'}</td>"
                    f'<td class="num">{med:.2f}</td><td class="num">{lo:.2f}–{hi:.2f}</td></tr>')
    return (f"<table><caption>Contextual indicators, {esc(period)} (METHOD.md §7), beside England and all "
            "trusts</caption><thead><tr><th scope=\"col\">Indicator</th><th scope=\"col\" class=\"num\">This trust</th>"
            '<th scope="col" class="num">England</th><th scope="col" class="num">Median trust</th>'
            '<th scope="col" class="num">Middle 80% of trusts</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            '<p class="muted">England: the trusts\' percentages weighted by their spells (by their deaths for the '
            "percentages of deaths); blank for a rate or mean whose denominator is not published.</p>")


def _trust_hsmr_table(run: RunTables, code: str) -> str:
    rows = []
    for period in run.periods:
        both = run.shmi_hsmr(period)
        mine = both[both["PROVIDER_CODE"] == code]
        if mine.empty:
            continue
        r = mine.iloc[0].to_dict()
        rows.append(f"<tr><td>{esc(period)}</td>{_num(r.get('SHMI'), 4)}{_shmi_band_cell(r)}"
                    f"{_num(r.get('HSMR'), 2)}"
                    f"{_limits(_hsmr_ratio(r.get('HSMR_LL95')), _hsmr_ratio(r.get('HSMR_UL95')))}"
                    f"{_hsmr_band_cell(r)}{_num(r.get('HSMR_OBSERVED'))}{_num(r.get('HSMR_EXPECTED'), 1)}</tr>")
    return ('<table class="shmi-hsmr"><caption>SHMI and HSMR by period (HSMR: 100 for England; its 95% limits '
            'divided by 100, as ratios)</caption><thead><tr><th scope="col">Period</th>'
            '<th scope="col" class="num">SHMI</th>'
            '<th scope="col">SHMI banding</th><th scope="col" class="num">HSMR</th>'
            '<th scope="col" class="num">HSMR 95% limits ÷ 100</th><th scope="col">HSMR banding</th>'
            '<th scope="col" class="num">Deaths in hospital (HSMR)</th>'
            f'<th scope="col" class="num">Expected (HSMR)</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


_LARGEST_ROW = ' class="largest"'


def _bridge_table(rows: pd.DataFrame, period: str) -> str:
    largest = flag(rows["LARGEST_CHANGE"]).to_numpy()
    body = "".join(
        f'<tr{_LARGEST_ROW if big else ""}><td class="num">{int(r["STEP"])}</td>'
        f"<td>{esc(step_label(r['STEP'], r['STEP_NAME']).split('. ', 1)[-1])}</td>{_num(r.get('OBSERVED'))}"
        f"{_num(r.get('EXPECTED'), 1)}{_num(r.get('RATIO'), 4)}{_num(_signed_or_none(r.get('CHANGE')), 4)}"
        f"<td>{'◆ Largest change' if big else ''}</td></tr>"
        for r, big in zip(rows.to_dict("records"), largest, strict=True))
    return (f'<table class="bridge"><caption>From the SHMI to the HSMR, {esc(period)}: each step changes one '
            "setting of the indicator (the ratio at step 5 is HSMR / 100)</caption><thead><tr>"
            '<th scope="col" class="num">Step</th><th scope="col">What changes</th>'
            '<th scope="col" class="num">Observed deaths</th><th scope="col" class="num">Expected deaths</th>'
            '<th scope="col" class="num">Observed / expected</th><th scope="col" class="num">Change</th>'
            f'<th scope="col">Largest change</th></tr></thead><tbody>{body}</tbody></table>')


def _trust_hsmr_section(run: RunTables, code: str, figures: PageFigures, drill: pd.DataFrame | None = None) -> str:
    if not run.has_hsmr:
        return ""
    period = run.main_period
    bridge = run.bridge_rows(code, period)
    parts = ['<section id="shmi-hsmr" aria-label="SHMI and HSMR"><h2>SHMI and HSMR</h2>',
             _trust_hsmr_table(run, code)]
    if len(bridge):
        parts.append(f"<h3>From the SHMI to the HSMR, {esc(period)}</h3>"
                     f'<p class="bridge-sentence">{esc(bridge_sentence(bridge))}</p>'
                     f"{_figure(figures.bridge.get(code), '../')}{_bridge_table(bridge, period)}")
    else:
        parts.append(f"<p>This trust has no bridge from its SHMI to its HSMR in {esc(period)}.</p>")
    scatter = figures.trust_scatter.get(code)
    if scatter is not None:
        parts.append(f"<h3>Beside the other trusts, {esc(period)}</h3>{_figure(scatter, '../')}")
    if drill is not None:
        parts.append(f"<h3>The HSMR's diagnosis groups, {esc(period)}</h3>"
                     "<p>Deaths in hospital per continuous inpatient spell, observed minus expected under the HSMR's "
                     "case mix, in the groups the HSMR covers: the largest differences, any excess first.</p>"
                     f"{_drill_table(drill, f'HSMR diagnosis groups with the largest differences, {period}')}")
    parts.append("</section>")
    return "".join(parts)


def trust_page(run: RunTables, code: str, figures: PageFigures, *, drill: pd.DataFrame | None = None,
               drill_super: pd.DataFrame | None = None, hsmr_drill: pd.DataFrame | None = None) -> str:
    """``trusts/<code>.html``: the trust's SHMI by period, trend, drill-down and contextual indicators.

    With the HSMR: its section, with ``hsmr_drill`` (the HSMR's diagnosis groups with the largest differences).
    """
    rows = run.trusts[run.trusts["PROVIDER_CODE"] == code]
    rows = rows.set_index("PERIOD").reindex(run.periods).dropna(how="all").reset_index()
    name = str(rows["PROVIDER_NAME"].iloc[0]) if len(rows) else code
    period = run.main_period
    area = (run.trust_areas[(run.trust_areas["PROVIDER_CODE"] == code) & (run.trust_areas["PERIOD"] == period)]
            if len(run.trust_areas) else pd.DataFrame())
    where = (f"Region: {esc(area['REGION'].iloc[0])}; peer group (size third in {esc(period)}): "
             f"{esc(area['PEER_GROUP'].iloc[0])}." if len(area) else "")
    trend = figures.trend.get(code)
    trend_html = (f"<h2>Trend</h2>{_figure(trend, '../')}" if trend else "")
    body = (f'<header><p><a href="../index.html">← All trusts</a></p><h1>{esc(name)} ({esc(code)})</h1>'
            f'<p class="muted">{where}</p></header><main>{_suppression_note(run)}'
            f"<h2>SHMI by period</h2>{_trust_periods_table(rows)}{trend_html}"
            f"{_figure(figures.trust_funnel.get(code), '../')}{_trust_hsmr_section(run, code, figures, hsmr_drill)}"
            f"<h2>Diagnosis groups, {esc(period)}</h2>"
            "<p>Observed minus expected deaths by diagnosis group: the largest contributors to any excess first. "
            "Observed / expected with the exact 95% Poisson interval of the observed deaths.</p>"
            f"{_figure(figures.drilldown.get(code), '../')}"
            f"{_drill_table(drill, f'Diagnosis groups with the largest differences, {period}')}"
            f"<h2>Diagnosis supergroups (ICD-10 chapters), {esc(period)}</h2>"
            f"{_figure(figures.drilldown_super.get(code), '../')}"
            f"{_drill_table(drill_super, f'Supergroups, {period}')}"
            f"<h2>Contextual indicators</h2>{_context_table(run, code, period)}</main>")
    return html_page(f"SHMI: {name} ({code})", body, root="../")
