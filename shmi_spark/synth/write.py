"""Parquet writing of the episode rows (deterministic: no timestamps, stable row order).

One file per chunk and financial year, ``hes_apc/FYEAR=xxyy/part-{chunk:05d}.parquet``
(the partitioned HES APC extract of METHOD.md §1), every column a string in the
order of :data:`.episodes.COLUMNS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shmi_spark.synth.episodes import COLUMNS

__all__ = ["fyear_label", "write_parquet", "write_partitions"]


def fyear_label(fy: int) -> str:
    """2005 → ``0506``."""
    return f"{fy % 100:02d}{(fy + 1) % 100:02d}"


def write_parquet(table: pa.Table, path: Path) -> None:
    """``table`` as one snappy parquet file (no schema metadata, so the bytes depend on the rows only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy", use_dictionary=True, store_schema=False,
                   write_statistics=True, row_group_size=1 << 20)


def write_partitions(table: pa.Table, rows: np.ndarray, fy: np.ndarray, out: Path, chunk: int) -> dict:
    """Write one chunk's output rows (``table`` rows ``rows``, in order, by FY of ``fy``)
    under ``hes_apc/FYEAR=xxyy/part-{chunk:05d}.parquet``."""
    order = np.argsort(fy, kind="stable")
    fys = fy[order]
    table = table.select(COLUMNS).take(pa.array(rows[order]))
    counts = {}
    bounds = np.flatnonzero(np.diff(fys)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(fys)]])
    for start, end in zip(starts, ends, strict=True):
        if end <= start:
            continue
        label = fyear_label(int(fys[start]))
        write_parquet(table.slice(int(start), int(end - start)),
                      out / "hes_apc" / f"FYEAR={label}" / f"part-{chunk:05d}.parquet")
        counts[label] = int(end - start)
    return counts
