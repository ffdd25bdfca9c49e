"""Run ``shmi`` with a pause at named checkpoints of a refresh, so a crash test can kill it there.

    python tests/paused_shmi.py POINT[,POINT] SECONDS refresh --as-of 2010-04 ...

Replaces :func:`shmi_spark.io.publication.checkpoint` (a no-op) with one that prints
``test pause at POINT`` on stderr and sleeps SECONDS at those points.
"""

import os
import sys
import time

import shmi_spark.io.publication as publication
from shmi_spark.cli import main


def _pause_at(points: set[str], seconds: float):
    def checkpoint(point: str) -> None:
        if point in points:
            print(f"[shmi] test pause at {point} (pid {os.getpid()})", file=sys.stderr, flush=True)
            time.sleep(seconds)
    return checkpoint


if __name__ == "__main__":
    publication.checkpoint = _pause_at(set(sys.argv[1].split(",")), float(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
