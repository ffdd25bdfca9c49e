"""spark-submit entry point for every `shmi` command, with master and resources from spark-submit.

    scripts/submit.sh --master yarn -- run --input hdfs:///... --out hdfs:///...       (the documented way)
    spark-submit --master yarn --py-files shmi_spark.zip jobs/shmi.py run --conf cluster.toml --input ... --out ...

The arguments are exactly those of the `shmi` command; the exit code is shmi's
(spark-submit passes it on in client mode).
"""

import sys

from shmi_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
