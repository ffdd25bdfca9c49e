"""Write a synthetic national HES APC + ONS world with a planted truth.

Writes DIR/hes_apc/FYEAR=xxyy/part-NNNNN.parquet (episodes, all columns strings),
DIR/ons_deaths/part-00000.parquet, DIR/reference/ (trusts.csv and copies of the
diagnosis-group and Charlson files) and DIR/truth/ (params.json, coefficients.csv,
trust_effects.csv, planted_outliers.csv, planted_post_discharge.csv (the trust with
excess deaths after discharge only), trust_year_counts.csv, trust_year_casemix.csv,
trust_year_hsmr.csv (transfers, palliative spells, in-hospital deaths), trust_profiles.csv,
summary.json, ...).
--admissions is the number of analysis admissions (acute-trust spells that survive
METHOD.md §2's exclusions; 36500000 is the paper's full scale).  The same seed and
N give byte-identical files whatever the number of workers.

DIR must be absent, empty, or an earlier world written by `shmi synth` (it has a
_SHMI_OUTPUT.json marker): the world is generated beside it and replaces it only
when complete; any other folder is refused and left untouched.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from shmi_spark.errors import InputError

__all__ = ["add_arguments", "write_world", "run"]


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: absent, empty, or an earlier world (replaced when done)")
    parser.add_argument("--admissions", required=True, type=int, metavar="N",
                        help="analysis admissions (acute spells surviving the exclusions)")
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    parser.add_argument("--start", default="2005-04-01", help="window start (default 2005-04-01)")
    parser.add_argument("--end", default="2010-09-30", help="window end (default 2010-09-30)")
    parser.add_argument("--workers", type=int, default=2, metavar="W", help="worker processes (default 2)")
    parser.add_argument("--check", action="store_true",
                        help="print Tables 2 and 3 of the world beside the paper's figures, and per financial "
                             "year the R² of the trusts' crude on expected death rate and their sizes")


def _date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise InputError(f"--{what}: not a YYYY-MM-DD date: {text!r}") from None


def write_world(out_dir: str, admissions: int, seed: int, start: date, end: date, *, workers: int = 2,
                log=print) -> dict | None:
    """Generate a world into a staging folder beside ``out_dir`` and move it into place when complete.

    Refused (an :class:`InputError`) when ``out_dir`` is a file, a user's
    folder or a run's output, before anything is generated.  Returns the
    generator's summary, or None (``out_dir`` left unchanged) when the truth's
    rule and the plan disagree — an internal error.
    """
    from shmi_spark.io.filesystems import real_path
    from shmi_spark.io.outputs import OutputFolder
    from shmi_spark.synth.generate import generate

    with OutputFolder(real_path(out_dir), kind="world", command=" ".join(sys.argv)) as out:
        summary = generate(Path(out.staging), admissions, seed, start, end, workers=workers, log=log)
        mm = summary["rule_vs_plan_mismatches"]
        if mm["included"] or mm["died"]:
            print(f"shmi synth: internal error: truth rule and plan disagree: {mm}; {out_dir} left unchanged",
                  file=sys.stderr)
            return None
        out.commit({"admissions": admissions, "seed": seed, "start": start.isoformat(), "end": end.isoformat()})
    return summary


def run(args) -> int:
    start, end = _date(args.start, "start"), _date(args.end, "end")
    if args.admissions < 1000:
        raise InputError(f"--admissions: must be at least 1000, got {args.admissions}")
    if args.admissions > 200_000_000:
        raise InputError(f"--admissions: at most 200000000, got {args.admissions}")
    if args.seed < 0:
        raise InputError(f"--seed: must be a non-negative integer, got {args.seed}")
    if not 1 <= args.workers <= 64:
        raise InputError(f"--workers: must be 1..64, got {args.workers}")
    if (end - start).days < 400:
        raise InputError(f"--start/--end: the window must span more than a year ({start} .. {end})")
    if start.month != 4 or start.day != 1:
        raise InputError(f"--start: the window must start on 1 April (a financial year), got {start}")
    from shmi_spark.io.paths import is_uri
    if is_uri(args.out):
        raise InputError(f"--out {args.out}: shmi synth writes to a local folder (or a file: URI) only")
    summary = write_world(args.out, args.admissions, args.seed, start, end, workers=args.workers)
    if summary is None:
        return 1
    if args.check:
        from shmi_spark.synth.check import calibration_tables, casemix_fit, format_calibration, format_casemix
        print(format_calibration(calibration_tables(summary["_calibration"])))
        print(format_casemix(casemix_fit(summary["_casemix"])))
    sk = summary["spells_by_kind"]
    print(f"shmi synth: wrote {summary['episode_rows_written']:,} episode rows, "
          f"{sum(sk.values()):,} spells ({sk['analysis']:,} analysis, {summary['analysis_deaths']:,} deaths), "
          f"{summary['ons_rows']:,} ONS rows to {args.out} in {summary['seconds']}s")
    return 0
