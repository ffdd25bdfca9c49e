"""Parquet and CSV writing (deterministic: no timestamps, stable row order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shmi_spark.synth.episodes import COLUMNS


def fyear_label(fy: int) -> str:
    """2005 → ``0506``."""
    return f"{fy % 100:02d}{(fy + 1) % 100:02d}"


def write_parquet(table: pa.Table, path: Path) -> None:
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
    for s, e in zip(starts, ends):
        if e <= s:
            continue
        label = fyear_label(int(fys[s]))
        write_parquet(table.slice(int(s), int(e - s)), out / "hes_apc" / f"FYEAR={label}" / f"part-{chunk:05d}.parquet")
        counts[label] = int(e - s)
    return counts
