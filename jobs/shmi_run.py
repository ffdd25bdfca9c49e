"""spark-submit entry point: the same as `shmi run`, with master and resources from spark-submit.

    spark-submit --master yarn jobs/shmi_run.py --conf conf/cluster.toml --input hdfs:///... --out hdfs:///...
"""

import sys

from shmi_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
