"""Write the HTML report of a finished run: OUT_DIR/report/index.html, one page per
trust under report/trusts/, and the figures (PNG and SVG) under report/img/.

The report opens from disk with no network: the national summary per period, the
funnel plot, a sortable and searchable table of trusts (filters by region, peer
group and banding), a page per trust (trend, diagnosis-group drill-down,
contextual indicators), model quality and the run's facts.  In a publication run
the counts are those of the publication files (small counts suppressed).
`shmi run` writes the same report at its end unless given --no-report.

examples:
  shmi report --run out/run                          # writes out/run/report/
  shmi report --run out/run --out /tmp/shmi-report   # elsewhere
  shmi report --run out/run --compare out/run-ridge  # with the diffsum plot of two runs
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="OUT_DIR", help="a finished run's output folder (local)")
    parser.add_argument("--out", metavar="DIR", help="where to write the report (default OUT_DIR/report); "
                        "absent, empty, or an earlier report")
    parser.add_argument("--compare", metavar="OTHER_RUN",
                        help="another run on the same data: add the diffsum plot of expected deaths per trust "
                             "(the development paper's Figure 1)")


def run(args) -> int:
    from shmi_spark.report.build import write_report

    result = write_report(args.run, out=args.out, compare=args.compare,
                          say=lambda line: print(f"[shmi] {line}", flush=True))
    print(f"[shmi] report written in {result.seconds}s: {result.index} ({result.trust_pages} trust pages, "
          f"{result.figures} figures)", flush=True)
    return 0
