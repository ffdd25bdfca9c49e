"""spark-submit entry point for `shmi run` alone (kept for existing job definitions; jobs/shmi.py runs any command).

    spark-submit --master yarn --py-files shmi_spark.zip jobs/shmi_run.py --conf cluster.toml --input ... --out ...
"""

import sys

from shmi_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
