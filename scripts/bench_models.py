"""Benchmark the model stage alone: fit all groups of one period from an existing spell table.

    .venv/bin/python scripts/bench_models.py SPELLS_DIR [--period-end YYYY-MM]
                                             [--fits grouped spark_ml:400 spark_ml:0 ...]

Builds the period's covariate cells (METHOD.md §5, 36-month window by default) once,
caches them, then times ``fit_group_models`` for each fit given: ``grouped`` (the default
engine, one Spark job) or ``spark_ml:N`` (Spark ML with ``model.batch_parameters = N``;
0 = every group alone), in one process so the figures compare as ratios. Prints cells,
seconds, Spark jobs, batches and rules, and the largest difference in estimates from the
first fit. Quote the figures with the machine they came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spells", help="a run's spells/ folder (docs/tables.md)")
    parser.add_argument("--conf", default=str(ROOT / "conf" / "local.toml"))
    parser.add_argument("--period-end", default="", metavar="YYYY-MM")
    parser.add_argument("--fits", nargs="+", default=["grouped", "spark_ml:400"], metavar="ENGINE[:N]")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()

    # imported after parsing, so that --help does not start pyspark
    import numpy as np

    from shmi_spark.config import load_config
    from shmi_spark.indicator.compute import plan_run_periods
    from shmi_spark.model.cells import covariate_cells
    from shmi_spark.model.fit import fit_group_models
    from shmi_spark.session import build_session

    settings = {"method": {"period_end": args.period_end}} if args.period_end else {}
    cfg = load_config(args.conf, overrides=args.set, settings=settings)
    spark = build_session(cfg.spark, testing=True)
    print(f"machine: {os.cpu_count()} cores, master {spark.sparkContext.master}, Spark {spark.version}")
    spells = spark.read.parquet(args.spells)
    t0 = time.perf_counter()
    period = plan_run_periods(spells, cfg).periods[-1]
    cells = covariate_cells(spells, window_start=period.window_start, window_end=period.window_end,
                            invalid_group=cfg.method.invalid_diagnosis_group).cache()
    n_cells = cells.count()
    print(f"period {period.label}, window {period.window_start}..{period.window_end}: "
          f"{n_cells:,} cells in {time.perf_counter() - t0:.1f} s")
    scheduler = spark.sparkContext._jsc.sc().dagScheduler()  # job counter (internal API)
    results = {}
    for fit in args.fits:
        engine, _, batch = fit.partition(":")
        mc = dataclasses.replace(cfg.model, engine=engine,
                                 batch_parameters=int(batch) if batch else cfg.model.batch_parameters)
        j0, t0 = scheduler.nextJobId(), time.perf_counter()
        models = fit_group_models(spark, cells, config=mc)
        seconds = time.perf_counter() - t0
        d = models.diagnostics
        print(f"{fit}: {len(d)} groups in {seconds:.1f} s, "
              f"{scheduler.nextJobId() - j0} Spark jobs, {d['BATCH'].dropna().nunique()} batches, "
              f"{int(d['BATCH'].isna().sum())} groups alone, rules {d['RULE'].value_counts().to_dict()}")
        results[fit] = models.coefficients
    first = args.fits[0]
    for fit in args.fits[1:]:
        diff = np.nanmax(np.abs(results[first]["ESTIMATE"] - results[fit]["ESTIMATE"]))
        print(f"largest |estimate difference| {first} vs {fit}: {diff:.2g}")


if __name__ == "__main__":
    main()
