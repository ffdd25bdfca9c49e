"""Typed run configuration, read once from a TOML profile and passed down.

Every **[choice]** of METHOD.md is a setting here, never a constant in a stage,
and its default is here too.  Configuration is layered: these typed defaults,
then a profile (``conf/local.toml``, ``conf/cluster.toml``, ``conf/test.toml``:
TOML files holding only what differs, such as Spark sizing and paths), then
``--set section.key=value`` overrides (the value in TOML syntax, or a bare
string), then the command's own flags.  An unknown section or key, or a value
of the wrong type, is a :class:`ConfigError` naming the key.

Relative paths inside a profile are resolved against the profile's folder;
paths given on the command line against the current directory.  Paths with a
URI scheme (``hdfs:``, ``s3a:``, ``file:``) are left as they are.

>>> cfg = load_config(None, overrides=["method.death_window_days=30"])
>>> cfg.method.death_window_days
30
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from shmi_spark.io.paths import resolve_path

__all__ = [
    "DEFAULT_PROFILE", "ConfigError", "SparkConfig", "InputConfig", "ReferenceConfig", "MethodConfig",
    "ModelConfig", "QualityConfig", "OutputConfig", "HsmrConfig", "Config", "parse_override", "load_config",
    "validate_config",
]

#: ``conf/local.toml`` of a source checkout (absent from an installed package).
DEFAULT_PROFILE = Path(__file__).resolve().parent.parent / "conf" / "local.toml"


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


@dataclass(frozen=True)
class SparkConfig:
    """Local-mode sizing; under spark-submit only ``app_name`` and ``extra`` apply."""

    master: str = "local[2]"
    app_name: str = "shmi-spark"
    driver_memory: str = "8g"
    # spark.sql.shuffle.partitions; 0: sized from the input once it is counted, one partition per
    # 500,000 episode rows and at least ``parallelism`` (8 for a small world, 108 for the full one,
    # whose sorts then fit in memory at 8g); adaptive execution coalesces the small shuffles.
    shuffle_partitions: int = 0
    # spark.default.parallelism: RDD partitions, and the fewest partitions adaptive execution keeps.
    parallelism: int = 8
    ui: bool = False
    # Spark's own console progress bars (off: shmi prints one line per stage; --verbose shows them)
    console_progress: bool = False
    log_level: str = "WARN"
    local_dir: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InputConfig:
    """Where the run reads HES episodes, ONS deaths and the trust reference.

    ``dir`` is a folder holding ``hes_apc/``, ``ons_deaths/`` and
    ``reference/trusts.csv``; ``hes``, ``deaths`` and ``trusts`` override its
    parts one by one.  ``format`` is ``auto`` (by extension / folder content),
    ``parquet`` or ``csv``; ``delimiter`` is ``auto`` (sniffed from the header
    line) or a single character.  ``spells`` is an existing spell table (a
    previous run's ``spells/``, docs/tables.md): the run starts from it and
    skips ingest, validation, spells and linkage (the trust reference is still
    read, from ``trusts`` or ``dir``).
    """

    dir: str = ""
    spells: str = ""
    hes: str = ""
    deaths: str = ""
    trusts: str = ""
    format: str = "auto"
    delimiter: str = "auto"


@dataclass(frozen=True)
class ReferenceConfig:
    """Diagnosis-group lookup and Charlson list (METHOD.md §1, §4).

    ``diag_lookup`` and ``charlson`` empty mean the project's own tables,
    packaged with it (``shmi_spark/data/reference/``, see its README).
    ``diag_lookup_format`` is ``default`` (the project's range table) or ``nhs`` (NHS England's published
    ``ICD10_CODE, CCS_CATEGORY, SHMI_DIAGNOSIS_GROUP`` file, labels from
    ``diag_labels``).  ``charlson_format`` is ``default`` or ``nhs`` (the
    multi-source code list; ``charlson_source`` picks its rows).
    """

    diag_lookup: str = ""
    diag_lookup_format: str = "default"
    diag_labels: str = ""
    charlson: str = ""
    charlson_format: str = "default"
    charlson_source: str = "SHMI spec"


@dataclass(frozen=True)
class MethodConfig:
    """The method's **[choice]** settings (METHOD.md §2, §3, §5, §6)."""

    # §2: when the first episode's primary diagnosis is a symptom code
    # (chapter R) and the spell has a second episode, use the second's.
    symptom_second_episode: bool = False
    # §4: apply the Charlson hierarchy (metastatic over cancer, severe over
    # mild liver disease) before summing weights.
    charlson_hierarchy: bool = False
    # §3: a death counts if DOD - DISDATE <= this many days.
    death_window_days: int = 30
    # §2: the group id given to unmapped or invalid primary diagnoses.
    invalid_diagnosis_group: int = 0
    # §6: scale expected deaths so that national sum E = sum O.
    rescale_expected: bool = True
    # §6: share of trusts trimmed from each end of the z distribution.
    trim_fraction: float = 0.10
    # §5: modelling window length in months, ending with the period.
    modelling_window_months: int = 36
    # §6: reporting period length in months.
    period_months: int = 12
    # §6: last month of the reporting period, "YYYY-MM"; empty = latest
    # complete month in the data.
    period_end: str = ""
    # The paper's design: fit and score each financial year and the pooled
    # five years 2005/06-2009/10.
    five_year: bool = False
    five_year_first: int = 2005
    five_year_count: int = 5
    # §6: a trust expected to have fewer deaths than this (after rescaling) is
    # reported but not banded, and takes no part in the over-dispersion estimate.
    min_expected_deaths: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    """Per-group logistic regression (METHOD.md §5)."""

    # "grouped": every group's IRLS in one Spark job, numpy per group where its cells
    # are (shmi_spark/model/grouped.py); "spark_ml": Spark ML's GeneralizedLinearRegression,
    # in batches and one group at a time (the reference; far more Spark jobs).
    engine: str = "grouped"
    # spark_ml: how many fits run at once
    parallelism: int = 8
    # spark_ml: groups are fitted together in block-diagonal batches of up to this many
    # parameters (exactly the per-group MLE, far fewer Spark jobs); 0 fits
    # every group on its own.
    batch_parameters: int = 400
    # IRLS converges in under 10 iterations when the MLE exists; more means (quasi-)separation
    max_iter: int = 25
    # IRLS stops when no coefficient moved more than this; Newton's method converges
    # quadratically, so the estimates are then within ~1e-15 of the MLE.
    tol: float = 1e-8
    # What a group whose data separate (or whose design is aliased) gets (model/rules.py):
    # "ml_limit": the exact limit of the maximum-likelihood fit, what statsmodels or R's
    #   glm converge to: the separated cells (found by linear programme) at fitted
    #   probability 0 or 1, the other cells the MLE of their own fit;
    # "ridge": every level refitted with the L2 penalty ridge_penalty (finite, shrunk);
    # "firth": Firth's bias-reduced (penalised) likelihood over every level (engine = "grouped");
    # "crude": the group's crude rate.
    degenerate_rule: str = "ml_limit"
    # L2 penalty of the ridge rule, and of the fallback when an unpenalised fit fails numerically
    ridge_penalty: float = 1e-4
    # ml_limit: the published coefficients put every separated cell at least this far from 0
    # on the log-odds (fitted probability within 1/(1+e^40) = 4e-18 of its limit)
    separation_logit: float = 40.0
    # Groups with fewer deaths than this use their crude rate.
    min_deaths: int = 1
    scheduler_pool: str = "shmi_models"
    # An unpenalised fit with any |coefficient| above this is treated as
    # separated (degenerate_rule applies).
    max_abs_coef: float = 15.0


@dataclass(frozen=True)
class HsmrConfig:
    """The HSMR beside the SHMI, and the bridge between them (README "SHMI and HSMR").

    Every choice of the HSMR's definition (as commonly computed in England) is
    a setting; ``shmi_spark.indicator.definitions`` states the rules.
    """

    # compute the HSMR, its bridge from the SHMI (shmi_vs_hsmr.csv) and the baskets
    enabled: bool = True
    # the trust a continuous inpatient spell (superspell) counts against: first, last or each
    attribution: str = "first"
    # a transfer continues a superspell when the next admission is at most this many days after discharge
    transfer_gap_days: int = 2
    # the diagnosis groups covered: those with the most in-hospital deaths in the modelling window,
    # taken until this share of them is reached ...
    coverage: float = 0.80
    # ... or an explicit list: a CSV with a DIAG_GROUP column (overrides coverage)
    groups_file: str = ""
    # baskets of diagnoses (CSV: BASKET and CODE, an ICD-10 code or prefix or a diagnosis group number)
    basket_file: str = ""


@dataclass(frozen=True)
class QualityConfig:
    """The data-quality gate (METHOD.md §1–§2): when the input is too damaged to trust.

    A run fails (exit code 2) when any reject reason takes more than
    ``max_reject_share`` of an input's rows, when invalid codes in any field
    exceed ``max_invalid_share`` of the accepted episodes, when a file loses
    every row, or when a financial year of episodes or deaths inside the data
    has fewer than ``min_year_share`` of the median year's rows.  A month has
    a normal volume of discharges when it has at least ``min_month_share`` of
    the usual month's (periods follow the data, not a stray record).  Dates
    outside ``earliest_date``..``latest_date`` (empty: the run date) are
    implausible.  ``skip_bad_files`` skips (and lists) files that fail the
    input contract instead of stopping the run.
    """

    max_reject_share: float = 0.005
    max_invalid_share: float = 0.005
    min_year_share: float = 0.5
    min_month_share: float = 0.5
    earliest_date: str = "1900-01-01"
    latest_date: str = ""
    skip_bad_files: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """Where a run writes, and disclosure control (METHOD.md §9).

    A run writes into a staging folder beside ``dir`` and moves it into place
    only when every file is written and checked; ``overwrite`` false refuses an
    existing non-empty ``dir``.  A lock beside ``dir`` keeps concurrent runs
    apart; a lock whose holder is gone (or, on another host, silent for
    ``lock_stale_seconds``) is taken over with a warning.  The run's log goes
    to ``log_dir`` (empty: ``<dir>.logs/`` beside a local ``dir``, ``logs/``
    in the current folder otherwise).  ``report``: write the HTML report
    (``report/index.html``, :mod:`shmi_spark.report`) into a local ``dir`` at
    the end of the run (``shmi run --no-report`` turns it off).
    """

    dir: str = "out/run"
    overwrite: bool = True
    lock_stale_seconds: int = 600
    log_dir: str = ""
    publication: bool = False
    suppress_min: int = 1
    suppress_max: int = 7
    round_to: int = 5
    report: bool = True


@dataclass(frozen=True)
class Config:
    """The whole run configuration."""

    spark: SparkConfig = field(default_factory=SparkConfig)
    input: InputConfig = field(default_factory=InputConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    hsmr: HsmrConfig = field(default_factory=HsmrConfig)
    profile: str = ""

    def to_dict(self) -> dict:
        """Plain nested dict (for summary.json)."""
        return dataclasses.asdict(self)

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with some keys of one section changed."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "profile"}
_PATH_KEYS = {
    ("input", "dir"), ("input", "hes"), ("input", "deaths"), ("input", "trusts"),
    ("reference", "diag_lookup"), ("reference", "diag_labels"), ("reference", "charlson"),
    ("output", "dir"), ("output", "log_dir"), ("spark", "local_dir"),
    ("hsmr", "groups_file"), ("hsmr", "basket_file"),
}


def _section_class(name: str):
    hints = get_type_hints(Config)
    return hints[name]


def _coerce(section: str, key: str, value: Any, typ: Any) -> Any:
    name = f"{section}.{key}"
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"setting '{name}' must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"setting '{name}' must be an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"setting '{name}' must be a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"setting '{name}' must be a string, got {value!r}")
    if typ is dict:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        raise ConfigError(f"setting '{name}' must be a table, got {value!r}")
    raise ConfigError(f"setting '{name}' has unsupported type")  # pragma: no cover


def _apply(raw: dict, base: Path, sections: dict[str, dict], origin: str) -> None:
    for section, body in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section '{section}' in {origin} "
                              f"(known: {', '.join(sorted(_SECTIONS))})")
        if not isinstance(body, dict):
            raise ConfigError(f"config section '{section}' in {origin} must be a table")
        cls = _section_class(section)
        hints = get_type_hints(cls)
        for key, value in body.items():
            if key not in hints:
                raise ConfigError(f"unknown setting '{section}.{key}' in {origin} "
                                  f"(known: {', '.join(sorted(hints))})")
            value = _coerce(section, key, value, hints[key])
            if (section, key) in _PATH_KEYS:
                value = resolve_path(value, base)
            sections.setdefault(section, {})[key] = value


def parse_override(text: str) -> dict:
    """``'section.key=value'`` → ``{section: {key: value}}`` (value as TOML, else string)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    dotted, value = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return {section: {key: parsed}}


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                settings: dict | None = None) -> Config:
    """The typed defaults, layered with a profile, then ``--set`` overrides, then command-line flags.

    The profile is ``path``, or ``conf/local.toml`` of a source checkout when
    there is one (an installed or zipped package has none: the defaults
    stand).  A profile holds only what differs from the defaults.
    ``overrides`` are ``section.key=value`` strings (command line ``--set``),
    ``settings`` a nested dict from specific command-line flags; both are
    resolved against the current directory.
    """
    sections: dict[str, dict] = {}
    profile = Path(path) if path else (DEFAULT_PROFILE if DEFAULT_PROFILE.is_file() else None)
    if profile is not None:
        if not profile.is_file():
            raise ConfigError(f"config file not found: {profile}")
        try:
            raw = tomllib.loads(profile.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {profile} is not valid TOML: {exc}") from None
        _apply(raw, profile.resolve().parent, sections, str(profile))
    cwd = Path.cwd()
    for text in overrides or []:
        _apply(parse_override(text), cwd, sections, f"--set {text}")
    if settings:
        _apply(settings, cwd, sections, "the command line")
    built = {name: _section_class(name)(**sections.get(name, {})) for name in _SECTIONS}
    cfg = Config(**built, profile=str(profile.resolve()) if profile else "")
    validate_config(cfg)
    return cfg


_LOG_LEVELS = {"ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN"}


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) is not None


def validate_config(cfg: Config) -> None:
    """Check values that have a closed set or a range."""
    checks = [
        (cfg.input.format in {"auto", "parquet", "csv"}, "input.format", "auto, parquet or csv"),
        (cfg.input.delimiter == "auto" or len(cfg.input.delimiter) == 1, "input.delimiter",
         "'auto' or one character"),
        (cfg.reference.diag_lookup_format in {"default", "nhs"}, "reference.diag_lookup_format",
         "default or nhs"),
        (cfg.reference.charlson_format in {"default", "nhs"}, "reference.charlson_format",
         "default or nhs"),
        (cfg.method.death_window_days >= 0, "method.death_window_days", ">= 0"),
        (0 <= cfg.method.trim_fraction < 0.5, "method.trim_fraction", "in [0, 0.5)"),
        (cfg.method.modelling_window_months >= cfg.method.period_months >= 1,
         "method.modelling_window_months", ">= method.period_months >= 1"),
        (cfg.method.period_end == "" or re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", cfg.method.period_end),
         "method.period_end", "YYYY-MM"),
        (cfg.model.parallelism >= 1, "model.parallelism", ">= 1"),
        (0 <= cfg.model.batch_parameters <= 4096, "model.batch_parameters", "in [0, 4096]"),
        (cfg.model.engine in {"grouped", "spark_ml"}, "model.engine", "grouped or spark_ml"),
        (cfg.model.degenerate_rule in {"ml_limit", "ridge", "firth", "crude"}, "model.degenerate_rule",
         "ml_limit, ridge, firth or crude"),
        (cfg.model.degenerate_rule != "firth" or cfg.model.engine == "grouped", "model.degenerate_rule",
         "firth only with model.engine = grouped (Spark ML has no Firth fit)"),
        (cfg.model.separation_logit > 0, "model.separation_logit", "> 0"),
        (cfg.model.max_abs_coef > 0, "model.max_abs_coef", "> 0"),
        (cfg.model.ridge_penalty >= 0, "model.ridge_penalty", ">= 0"),
        (cfg.output.round_to >= 1, "output.round_to", ">= 1"),
        (cfg.output.lock_stale_seconds >= 10, "output.lock_stale_seconds", ">= 10"),
        (cfg.method.min_expected_deaths >= 0, "method.min_expected_deaths", ">= 0"),
        (0 <= cfg.quality.max_reject_share <= 1, "quality.max_reject_share", "in [0, 1]"),
        (0 <= cfg.quality.max_invalid_share <= 1, "quality.max_invalid_share", "in [0, 1]"),
        (0 <= cfg.quality.min_year_share <= 1, "quality.min_year_share", "in [0, 1]"),
        (0 < cfg.quality.min_month_share <= 1, "quality.min_month_share", "in (0, 1]"),
        (_is_date(cfg.quality.earliest_date), "quality.earliest_date", "a date YYYY-MM-DD"),
        (cfg.quality.latest_date == "" or _is_date(cfg.quality.latest_date), "quality.latest_date",
         "empty (the run date) or a date YYYY-MM-DD"),
        (cfg.spark.shuffle_partitions >= 0, "spark.shuffle_partitions", ">= 0 (0: sized from the input)"),
        (cfg.spark.parallelism >= 1, "spark.parallelism", ">= 1"),
        (re.fullmatch(r"[1-9][0-9]*[kKmMgGtT]?", cfg.spark.driver_memory) is not None,
         "spark.driver_memory", "a size such as 8g or 4096m"),
        (cfg.spark.log_level.upper() in _LOG_LEVELS, "spark.log_level", " or ".join(sorted(_LOG_LEVELS))),
        (re.fullmatch(r"local(\[([1-9][0-9]*|\*)(,[1-9][0-9]*)?\])?|(spark|k8s|mesos)://.+|yarn",
                      cfg.spark.master) is not None, "spark.master",
         "local, local[N], local[*], spark://HOST:PORT, yarn or k8s://URL"),
        (cfg.spark.app_name.strip() != "", "spark.app_name", "not empty"),
        (cfg.hsmr.attribution in {"first", "last", "each"}, "hsmr.attribution", "first, last or each"),
        (cfg.hsmr.transfer_gap_days >= 0, "hsmr.transfer_gap_days", ">= 0"),
        (0 < cfg.hsmr.coverage <= 1, "hsmr.coverage", "in (0, 1]"),
    ]
    for ok, key, want in checks:
        if not ok:
            section, name = key.split(".")
            got = getattr(getattr(cfg, section), name)
            raise ConfigError(f"setting '{key}' must be {want}, got {got!r}")
