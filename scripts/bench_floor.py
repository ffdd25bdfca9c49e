"""What Spark itself costs on this machine: the floors under the pipeline's first stages.

    .venv/bin/python scripts/bench_floor.py bench/world_4000000 [--driver-memory 8g] [--json FILE]

On one world's raw episodes (``hes_apc/``), in one local[2] session, after a
warm-up read, each step timed alone (wall seconds; the ``noop`` sink runs
the plan without writing):

* ``read``: every raw column read (the scan validation cannot avoid);
* ``read_write``: the raw columns read and written back to parquet, unchanged;
* ``conform``: the input contract's canonical types and bad values
  (:func:`shmi_spark.io.ingest.conform_frame`), not written;
* ``shuffle_sort``: the raw episodes shuffled by ``HESID`` and sorted within
  partitions by patient and admission (what building spells must at least do).

The pipeline's stages on the same world (``scripts/bench.sh``) divided by
these give how far each stage is from what the engine needs for its data
movement.  Quote the figures with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("world", help="a synthetic world (shmi synth --out) or any folder with hes_apc/ of parquet")
    p.add_argument("--driver-memory", default="8g")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    from shmi_spark.io.contract import EPISODE_CONTRACT
    from shmi_spark.io.ingest import conform_frame

    spark = (SparkSession.builder.master("local[2]").appName("shmi-bench-floor")
             .config("spark.driver.memory", args.driver_memory).config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").config("spark.sql.codegen.hugeMethodLimit", "8000")
             .config("spark.sql.shuffle.partitions", "200").config("spark.default.parallelism", "8")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    raw = spark.read.parquet(str(Path(args.world) / "hes_apc"))
    rows = raw.count()
    scratch = Path(tempfile.mkdtemp(prefix="shmi-floor-"))

    def timed(plan) -> float:
        t = time.perf_counter()
        plan()
        return round(time.perf_counter() - t, 2)

    def noop(df):
        return lambda: df.write.format("noop").mode("overwrite").save()

    try:
        timed(noop(raw))  # warm-up: JIT and the file system cache
        figures = {
            "read": timed(noop(raw)),
            "read_write": timed(lambda: raw.write.mode("overwrite").parquet(str(scratch / "copy"))),
            "conform": timed(noop(conform_frame(raw, EPISODE_CONTRACT, source="x"))),
            "shuffle_sort": timed(noop(raw.repartition("HESID").sortWithinPartitions("HESID", "ADMIDATE",
                                                                                      "EPIKEY"))),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        spark.stop()
    result = {"world": str(args.world), "episode_rows": rows, "seconds": figures,
              "microseconds_per_row_wall": {k: round(v / rows * 1e6, 2) for k, v in figures.items()},
              "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
