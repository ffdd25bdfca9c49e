"""A corpus of altered inputs, built from a small synthetic world, each with its expected outcome.

Every case is an ordinary variation or fault a real user meets: dates as
timestamps or ``dd/mm/yyyy`` text, an age column written by pandas as
``float64``, a file cut short, a year missing, ``--out`` pointed at the input,
a lock held by another run.  Its expected outcome is one of

* exit 0, every input row accounted for (read = accepted + rejected by
  reason), and the clean world's spells and deaths per trust and year where
  the variation is harmless (plus the case's own check);
* exit 2 with a message naming the file and field (a regular expression), the
  inputs untouched and any earlier output byte-identical.

Build the whole corpus into a folder (each case a subfolder with ``case.json``)::

    python tests/bad_inputs.py --world WORLD --out CORPUS

``tests/test_bad_inputs.py`` runs every case through ``shmi`` (in-process).
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["Case", "Context", "CASES", "build_all"]
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class Case:
    """One altered input: how to build it, how to run it, what must happen."""

    name: str
    what: str                                   # the variation, in a line
    build: Callable[["Context"], list[str]]     # returns the shmi argv
    exit: int = 0
    message: str = ""                           # regex the one-line error must match (exit 2)
    check: Callable[[dict, dict], None] | None = None   # (summary, clean summary) for exit 0
    same_counts: bool = True                    # exit 0: the clean world's spells and deaths per trust-year
    untouched: tuple[str, ...] = ("input",)     # folders that must stay byte-identical
    stage: str = "spells"


@dataclass
class Context:
    """Where a case is built: the clean world, the case's folder, the clean run's output."""

    world: Path
    root: Path
    clean_out: Path
    paths: dict = field(default_factory=dict)   # name → folder checked for being untouched

    def copy_world(self, name: str = "input") -> Path:
        dst = self.root / name
        shutil.copytree(self.world, dst, ignore=shutil.ignore_patterns("truth", "_SHMI_OUTPUT.json"))
        self.paths.setdefault("input", dst)
        return dst

    def earlier_output(self) -> Path:
        """A copy of the clean run's output, as the earlier output the run must not destroy."""
        out = self.root / "out"
        shutil.copytree(self.clean_out, out)
        self.paths["earlier output"] = out
        return out

    def run(self, inp: Path, *extra: str, out: Path | None = None) -> list[str]:
        out = out or self.root / "out"
        return ["run", "--input", str(inp), "--out", str(out), *extra]


# ---------------------------------------------------------------- table helpers

def hes_files(world: Path) -> list[Path]:
    return sorted((world / "hes_apc").rglob("*.parquet"))


def read_hes(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def write_parquet(df: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), path)


def alter_hes(world: Path, fn: Callable[[pd.DataFrame], pd.DataFrame], files: slice = slice(None)) -> None:
    for f in hes_files(world)[files]:
        write_parquet(fn(read_hes(f)), f)


def deaths_path(world: Path) -> Path:
    return world / "ons_deaths" / "part-00000.parquet"


def alter_deaths(world: Path, table: pa.Table) -> None:
    pq.write_table(table, deaths_path(world))


def deaths_frame(world: Path) -> pd.DataFrame:
    return pq.read_table(deaths_path(world)).to_pandas()


def every_nth(df: pd.DataFrame, share: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(len(df)) < share


def hes_as_csv(world: Path, *, sep: str = ",", reorder_second: bool = False, lower: bool = False) -> None:
    files = hes_files(world)
    for i, f in enumerate(files):
        df = read_hes(f)
        if lower:
            df.columns = [c.lower() for c in df.columns]
            for c in df.columns:
                if c.startswith("diag") or c in ("procode3",):
                    df[c] = df[c].str.lower()
        if reorder_second and i == 1:
            df = df[list(reversed(df.columns))]
        df.to_csv(f.with_suffix(".csv"), index=False, sep=sep)
        f.unlink()


# ---------------------------------------------------------------- checks

def expect_reject(reason: str, field_: str, n: int) -> Callable[[dict, dict], None]:
    def check(summary: dict, clean: dict) -> None:
        got = summary["validate"]["episode_rejects_by_reason"].get(f"{reason}:{field_}", 0)
        base = clean["validate"]["episode_rejects_by_reason"].get(f"{reason}:{field_}", 0)
        assert got - base == n, (reason, field_, got, base)
    return check


def expect_exclusion(reason: str, n: int) -> Callable[[dict, dict], None]:
    def check(summary: dict, clean: dict) -> None:
        assert summary["spells"]["exclusions_by_reason"][reason] - clean["spells"]["exclusions_by_reason"][reason] == n
    return check


def expect_same_period(summary: dict, clean: dict) -> None:
    assert summary["period_plan"]["periods"] == clean["period_plan"]["periods"], summary["period_plan"]


def expect_skipped(n: int) -> Callable[[dict, dict], None]:
    def check(summary: dict, clean: dict) -> None:
        assert len(summary["inputs"]["hes"]["skipped"]) == n, summary["inputs"]["hes"]
    return check


def expect_invalid(field_: str, value: str, n: int) -> Callable[[dict, dict], None]:
    def check(summary: dict, clean: dict) -> None:
        got = summary["validate"]["invalid_codes"].get(field_, {}).get("values", {}).get(value, 0)
        base = clean["validate"]["invalid_codes"].get(field_, {}).get("values", {}).get(value, 0)
        assert got - base == n, (field_, value, got, base)
    return check


# ---------------------------------------------------------------- builders

def _out_is_input(c: Context) -> list[str]:
    inp = c.copy_world()
    return c.run(inp, out=inp)


def _out_inside_input(c: Context) -> list[str]:
    inp = c.copy_world()
    return c.run(inp, out=inp / "results")


def _out_contains_input(c: Context) -> list[str]:
    inp = c.copy_world("data/world")
    return c.run(inp, out=c.root / "data")


def _out_is_file(c: Context) -> list[str]:
    inp = c.copy_world()
    (c.root / "report.csv").write_text("mine\n")
    c.paths["user file"] = c.root / "report.csv"
    return c.run(inp, out=c.root / "report.csv")


def _out_parent_is_file(c: Context) -> list[str]:
    inp = c.copy_world()
    (c.root / "notes").write_text("mine\n")
    return c.run(inp, out=c.root / "notes" / "run")


def _out_user_folder(c: Context) -> list[str]:
    inp = c.copy_world()
    mine = c.root / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work\n")
    c.paths["user folder"] = mine
    return c.run(inp, out=mine)


def _foreign_file_in_earlier_output(c: Context) -> list[str]:
    inp = c.copy_world()
    out = c.earlier_output()
    (out / "my_notes.txt").write_text("added by hand\n")
    return c.run(inp)


def _missing_deaths_earlier_output(c: Context) -> list[str]:
    inp = c.copy_world()
    shutil.rmtree(inp / "ons_deaths")
    c.earlier_output()
    return c.run(inp)


def _missing_column_earlier_output(c: Context) -> list[str]:
    inp = c.copy_world()
    alter_hes(inp, lambda df: df.drop(columns=["ADMIMETH"]), slice(2, 3))
    c.earlier_output()
    return c.run(inp)


def _bad_trust_type_earlier_output(c: Context) -> list[str]:
    inp = c.copy_world()
    t = pd.read_csv(inp / "reference" / "trusts.csv", dtype=str)
    t.loc[3, "TYPE"] = "hospital"
    t.to_csv(inp / "reference" / "trusts.csv", index=False)
    c.earlier_output()
    return c.run(inp)


def _lock_held(c: Context) -> list[str]:
    import os
    import socket

    inp = c.copy_world()
    (c.root / ".out.lock").write_text(json.dumps({
        "run_id": "20261129T000000Z-deadbeef", "pid": os.getpid(), "host": socket.gethostname(),
        "started_utc": "2026-11-29T00:00:00+00:00", "command": "shmi run (another analyst)"}))
    return c.run(inp)


def _stale_lock(c: Context) -> list[str]:
    import socket

    inp = c.copy_world()
    (c.root / ".out.lock").write_text(json.dumps({
        "run_id": "20261129T000000Z-deadbeef", "pid": 2 ** 22 + 7, "host": socket.gethostname(),
        "started_utc": "2026-11-29T00:00:00+00:00", "command": "shmi run (killed)"}))
    stale = c.root / ".out.staging-20261129T000000Z-deadbeef"
    stale.mkdir()
    (stale / "_STAGING").write_text("20261129T000000Z-deadbeef")
    return c.run(inp)


def _check_stale_taken_over(summary: dict, clean: dict) -> None:
    assert summary["output"]["run_id"] != "20261129T000000Z-deadbeef"


def _dod_timestamp(unit: str) -> Callable[[Context], list[str]]:
    def build(c: Context) -> list[str]:
        inp = c.copy_world()
        d = deaths_frame(inp)
        dod = pd.to_datetime(d["DOD"]) + pd.Timedelta(hours=13)
        alter_deaths(inp, pa.table({"HESID": d["HESID"], "DOD": pa.array(dod, pa.timestamp(unit))}))
        return c.run(inp)
    return build


def _dod_date32(c: Context) -> list[str]:
    inp = c.copy_world()
    d = deaths_frame(inp)
    alter_deaths(inp, pa.table({"HESID": d["HESID"], "DOD": pa.array(pd.to_datetime(d["DOD"]).dt.date, pa.date32())}))
    return c.run(inp)


def _dod_yyyymmdd_int(c: Context) -> list[str]:
    inp = c.copy_world()
    d = deaths_frame(inp)
    alter_deaths(inp, pa.table({"HESID": d["HESID"], "DOD": pa.array(d["DOD"].str.replace("-", "").astype(int))}))
    return c.run(inp)


def _dod_dmy_csv(c: Context) -> list[str]:
    inp = c.copy_world()
    d = deaths_frame(inp)
    deaths_path(inp).unlink()
    d.assign(DOD=pd.to_datetime(d["DOD"]).dt.strftime("%d/%m/%Y")).to_csv(inp / "ons_deaths" / "deaths.csv",
                                                                           index=False)
    return c.run(inp)


def _hesid_lower_in_ons(c: Context) -> list[str]:
    inp = c.copy_world()
    d = deaths_frame(inp)
    alter_deaths(inp, pa.table({"HESID": d["HESID"].str.lower(), "DOD": d["DOD"]}))
    return c.run(inp)


def _hesid_padded_in_hes(c: Context) -> list[str]:
    inp = c.copy_world()
    alter_hes(inp, lambda df: df.assign(HESID=" " + df["HESID"].str.upper() + " "))
    return c.run(inp)


def _procode_lower(c: Context) -> list[str]:
    inp = c.copy_world()
    alter_hes(inp, lambda df: df.assign(PROCODE3=df["PROCODE3"].str.lower()))
    return c.run(inp)


def _startage_float(c: Context) -> list[str]:
    """pandas: an integer column with a missing value is written as float64."""
    inp = c.copy_world()

    def to_float(df: pd.DataFrame) -> pd.DataFrame:
        age = pd.to_numeric(df["STARTAGE"], errors="coerce")  # blanks → NaN; planted invalid text → NaN
        return df.assign(STARTAGE=age.astype("float64"))
    alter_hes(inp, to_float)
    return c.run(inp)


def _dates_timestamp_zoned(c: Context) -> list[str]:
    """Episode dates as local-midnight timestamps in Europe/London, milliseconds."""
    inp = c.copy_world()

    def zoned(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        for col in ("ADMIDATE", "EPISTART", "EPIEND", "DISDATE"):
            parsed = pd.to_datetime(out[col], format="%Y-%m-%d", errors="coerce")
            out[col] = parsed.dt.tz_localize("Europe/London", nonexistent="shift_forward",
                                             ambiguous=False).astype("datetime64[ms, Europe/London]")
        return out
    # the planted unparseable dates cannot be timestamps: those rows (and some good ones, as a
    # real second extract would have) stay in a file of text dates
    for f in hes_files(inp):
        df = read_hes(f)
        bad = pd.Series(False, index=df.index)
        for col in ("ADMIDATE", "EPISTART", "EPIEND", "DISDATE"):
            bad |= df[col].notna() & (df[col] != "") & pd.to_datetime(df[col], format="%Y-%m-%d", errors="coerce").isna()
        as_text = bad | (df.index < 50)
        write_parquet(zoned(df[~as_text]), f)
        write_parquet(df[as_text], f.with_name("dates-as-text.parquet"))
    return c.run(inp)


def _codes_as_integers(c: Context) -> list[str]:
    inp = c.copy_world()

    def ints(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        for col in ("EPISTAT", "CLASSPAT", "DISMETH", "SEX", "EPIORDER"):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
        return out
    alter_hes(inp, ints)
    return c.run(inp)


def _types_differ_between_files(c: Context) -> list[str]:
    inp = c.copy_world()
    alter_hes(inp, lambda df: df.assign(EPIORDER=pd.to_numeric(df["EPIORDER"]).astype("int32")), slice(0, 2))
    return c.run(inp)


def _csv_reordered(c: Context) -> list[str]:
    inp = c.copy_world()
    hes_as_csv(inp, reorder_second=True)
    return c.run(inp)


def _csv_pipe_lower(c: Context) -> list[str]:
    inp = c.copy_world()
    hes_as_csv(inp, sep="|", lower=True)
    return c.run(inp)


def _header_only_csv(c: Context) -> list[str]:
    inp = c.copy_world()
    hes_as_csv(inp)
    cols = pd.read_csv(next((inp / "hes_apc").rglob("*.csv")), nrows=0).columns
    (inp / "hes_apc" / "empty-extract.csv").write_text(",".join(cols) + "\n")
    return c.run(inp)


def _extra_columns(c: Context) -> list[str]:
    inp = c.copy_world()
    alter_hes(inp, lambda df: df.assign(OPERTN_4_01="X999", MYNOTE="checked"))
    return c.run(inp)


def _one_file_without_primary(c: Context) -> list[str]:
    inp = c.copy_world()
    alter_hes(inp, lambda df: df.drop(columns=["DIAG_4_01"]), slice(3, 4))
    return c.run(inp)


def _one_file_without_optional(c: Context) -> list[str]:
    inp = c.copy_world()
    alter_hes(inp, lambda df: df.drop(columns=["DIAG_4_05"]), slice(1, 2))
    return c.run(inp)


def _zero_byte_file(c: Context) -> list[str]:
    inp = c.copy_world()
    (inp / "hes_apc" / "FYEAR=0708" / "part-00001.parquet").write_bytes(b"")
    return c.run(inp)


def _zero_byte_file_skipped(c: Context) -> list[str]:
    return _zero_byte_file(c) + ["--skip-bad-files"]


def _corrupt_file(c: Context) -> list[str]:
    inp = c.copy_world()
    f = hes_files(inp)[2]
    raw = bytearray(f.read_bytes())
    raw[-40:-8] = b"\x00" * 32  # the footer
    f.write_bytes(bytes(raw))
    return c.run(inp)


def _truncated_file(c: Context) -> list[str]:
    inp = c.copy_world()
    f = hes_files(inp)[2]
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) * 2 // 3])
    return c.run(inp)


def _dod_boolean(c: Context) -> list[str]:
    inp = c.copy_world()
    d = deaths_frame(inp)
    alter_deaths(inp, pa.table({"HESID": d["HESID"], "DOD": pa.array([True] * len(d))}))
    return c.run(inp)


def _mixed_formats(c: Context) -> list[str]:
    inp = c.copy_world()
    f = hes_files(inp)[0]
    read_hes(f).head(5).to_csv(f.with_name("extra.csv"), index=False)
    return c.run(inp)


def _zero_rows(c: Context) -> list[str]:
    inp = c.copy_world()
    alter_hes(inp, lambda df: df.head(0))
    return c.run(inp)


def _dod_garbage(c: Context) -> list[str]:
    inp = c.copy_world()
    d = deaths_frame(inp)
    alter_deaths(inp, pa.table({"HESID": d["HESID"], "DOD": d["DOD"].str.replace("-", ".")}))
    return c.run(inp)


def _share_set_to(column: str, value: str, share: float) -> Callable[[Context], list[str]]:
    """A share of the episodes get ``value`` in ``column``."""
    def build(c: Context) -> list[str]:
        inp = c.copy_world()

        def alter(df: pd.DataFrame) -> pd.DataFrame:
            out = df.copy()
            out.loc[every_nth(df, share), column] = value
            return out
        alter_hes(inp, alter)
        return c.run(inp)
    return build


def _trust_missing_from_reference(c: Context) -> list[str]:
    inp = c.copy_world()
    t = pd.read_csv(inp / "reference" / "trusts.csv", dtype=str)
    busiest = pd.concat([read_hes(f)["PROCODE3"] for f in hes_files(inp)]).value_counts().index[0]
    t[t["PROCODE3"] != busiest].to_csv(inp / "reference" / "trusts.csv", index=False)
    return c.run(inp)


def _year_of_hes_missing(c: Context) -> list[str]:
    inp = c.copy_world()
    shutil.rmtree(inp / "hes_apc" / "FYEAR=0708")
    return c.run(inp)


def _year_of_deaths_missing(c: Context) -> list[str]:
    inp = c.copy_world()
    d = deaths_frame(inp)
    dod = pd.to_datetime(d["DOD"])
    keep = ~((dod >= "2007-04-01") & (dod <= "2008-03-31"))
    alter_deaths(inp, pa.Table.from_pandas(d[keep], preserve_index=False))
    return c.run(inp)


def _file_delivered_twice(c: Context) -> list[str]:
    inp = c.copy_world()
    f = hes_files(inp)[2]
    shutil.copy(f, f.with_name("part-00000-resent.parquet"))
    return c.run(inp)


def _first_row_of(inp: Path) -> tuple[Path, pd.DataFrame]:
    f = hes_files(inp)[2]
    return f, read_hes(f)


def _implausible_admission(c: Context) -> list[str]:
    inp = c.copy_world()
    f, df = _first_row_of(inp)
    row = df.iloc[[0]].assign(EPIKEY="999999999991", HESID="ZZZANCIENT", PROVSPNOPS="99999999991",
                              ADMIDATE="0208-01-02", EPISTART="0208-01-02")
    write_parquet(pd.concat([df, row], ignore_index=True), f)
    return c.run(inp)


def _malformed_csv_line(c: Context) -> list[str]:
    inp = c.copy_world()
    hes_as_csv(inp)
    f = sorted((inp / "hes_apc").rglob("*.csv"))[0]
    with open(f, "a") as fh:
        fh.write("only,three,fields\n")
    return c.run(inp)


def _resubmitted_spell(c: Context) -> list[str]:
    """One complete spell sent again with new EPIKEYs and a new PROVSPNOPS."""
    inp = c.copy_world()
    f, df = _first_row_of(inp)
    finished = df[(df["EPISTAT"] == "3") & (df["CLASSPAT"] == "1")]
    spell = finished["PROVSPNOPS"].iloc[0]
    copy = df[df["PROVSPNOPS"] == spell].copy()
    copy["EPIKEY"] = [f"77777777{i:04d}" for i in range(len(copy))]
    copy["PROVSPNOPS"] = "77777777777"
    write_parquet(pd.concat([df, copy], ignore_index=True), f)
    return c.run(inp)


def _stray_spell(c: Context) -> list[str]:
    """One spell discharged long after the end of the data."""
    inp = c.copy_world()
    f, df = _first_row_of(inp)
    row = df[(df["EPISTAT"] == "3") & (df["CLASSPAT"] == "1") & (df["EPIORDER"].astype(int) == 1)].iloc[[0]]
    row = row.assign(EPIKEY="888888888881", HESID="ZZZSTRAY", PROVSPNOPS="88888888881", ADMIDATE="2011-06-01",
                     EPISTART="2011-06-01", EPIEND="2011-06-03", DISDATE="2011-06-03", DISMETH="1")
    write_parquet(pd.concat([df, row], ignore_index=True), f)
    return c.run(inp)


def _period_after_data(c: Context) -> list[str]:
    return c.run(c.copy_world(), "--period-end", "2012-03")


def _period_before_data(c: Context) -> list[str]:
    return c.run(c.copy_world(), "--period-end", "2005-09")


def _five_year_short_data(c: Context) -> list[str]:
    """The data end in March 2009: the five-year run's 2009/10 is missing."""
    inp = c.copy_world()
    for fy in ("0910", "1011"):
        shutil.rmtree(inp / "hes_apc" / f"FYEAR={fy}")
    return c.run(inp, "--five-year")


def _spells_input(c: Context) -> list[str]:
    spells = c.root / "spells"
    shutil.copytree(c.clean_out / "spells", spells)
    c.paths["input"] = spells
    return ["run", "--spells", str(spells), "--trusts", str(c.world / "reference" / "trusts.csv"),
            "--out", str(c.root / "out")]


def _spells_without_success(c: Context) -> list[str]:
    argv = _spells_input(c)
    (c.root / "spells" / "_SUCCESS").unlink()
    return argv


def _spells_year_missing(c: Context) -> list[str]:
    argv = _spells_input(c)
    shutil.rmtree(sorted((c.root / "spells").glob("DIS_FYEAR=*"))[2])
    return argv


def _spells_inside_out(c: Context) -> list[str]:
    out = c.earlier_output()
    return ["run", "--spells", str(out / "spells"), "--trusts", str(c.world / "reference" / "trusts.csv"),
            "--out", str(out)]


def _with_settings(*settings: str) -> Callable[[Context], list[str]]:
    def build(c: Context) -> list[str]:
        return c.run(c.copy_world(), *[a for s in settings for a in ("--set", s)])
    return build


def _no_acute_trust(c: Context) -> list[str]:
    inp = c.copy_world()
    t = pd.read_csv(inp / "reference" / "trusts.csv", dtype=str)
    t.assign(TYPE="specialist").to_csv(inp / "reference" / "trusts.csv", index=False)
    return c.run(inp)


def _trusts_missing_column(c: Context) -> list[str]:
    inp = c.copy_world()
    t = pd.read_csv(inp / "reference" / "trusts.csv", dtype=str)
    t.drop(columns=["TYPE"]).to_csv(inp / "reference" / "trusts.csv", index=False)
    return c.run(inp)


def _synth_onto_file(c: Context) -> list[str]:
    (c.root / "world.txt").write_text("mine\n")
    c.paths["user file"] = c.root / "world.txt"
    return ["synth", "--out", str(c.root / "world.txt"), "--admissions", "1000"]


def _band(observed: str) -> Callable[[Context], list[str]]:
    def build(c: Context) -> list[str]:
        rng = np.random.default_rng(3)
        e = rng.uniform(50, 500, 30)
        o = rng.poisson(e).astype(str)
        o[4] = observed
        f = c.root / "trusts.csv"
        pd.DataFrame({"PROVIDER": [f"R{i:02d}" for i in range(30)], "OBSERVED": o, "EXPECTED": e.round(3)}).to_csv(
            f, index=False)
        c.paths["input"] = f
        return ["band", "--input", str(f), "--out", str(c.root / "banded.csv")]
    return build


EARLIER = ("input", "earlier output")

CASES: list[Case] = [
    # --- never destroy data
    Case("out_is_input", "--out is the input folder", _out_is_input, 2, r"overlaps the input"),
    Case("out_inside_input", "--out inside the input folder", _out_inside_input, 2, r"overlaps the input"),
    Case("out_contains_input", "--out contains the input folder", _out_contains_input, 2, r"overlaps the input"),
    Case("out_is_file", "--out is an existing file", _out_is_file, 2, r"report\.csv", untouched=("input", "user file")),
    Case("out_parent_is_file", "--out under a file", _out_parent_is_file, 2, r"notes"),
    Case("out_user_folder", "--out is a user's folder", _out_user_folder, 2, r"mine",
         untouched=("input", "user folder")),
    Case("foreign_file_in_earlier_output", "a file added by hand to an earlier output",
         _foreign_file_in_earlier_output, 2, r"my_notes\.txt", untouched=EARLIER),
    Case("missing_input_keeps_earlier_output", "ons_deaths/ missing, an earlier output in --out",
         _missing_deaths_earlier_output, 2, r"deaths input not found", untouched=EARLIER),
    Case("missing_column_keeps_earlier_output", "one file without ADMIMETH, an earlier output in --out",
         _missing_column_earlier_output, 2, r"FYEAR=0708.*missing required column\(s\): ADMIMETH",
         untouched=EARLIER),
    Case("bad_trust_type_keeps_earlier_output", "a trust TYPE outside the list, an earlier output in --out",
         _bad_trust_type_earlier_output, 2, r"trusts\.csv.*TYPE.*hospital", untouched=EARLIER),
    Case("lock_held", "another run holds the output's lock", _lock_held, 2,
         r"\.out\.lock.*20261129T000000Z-deadbeef"),
    Case("stale_lock", "a dead run's lock and staging folder", _stale_lock, 0, check=_check_stale_taken_over),
    # --- an ordinary variation of the input is harmless
    Case("dod_timestamp_us", "DOD as parquet timestamp[us]", _dod_timestamp("us")),
    Case("dod_timestamp_ns", "DOD as parquet timestamp[ns] (pandas' default)", _dod_timestamp("ns")),
    Case("dod_date32", "DOD as parquet date", _dod_date32),
    Case("dod_yyyymmdd_int", "DOD as an integer yyyymmdd", _dod_yyyymmdd_int),
    Case("dod_dmy_text", "deaths as CSV with DOD dd/mm/yyyy", _dod_dmy_csv),
    Case("hesid_lower_in_ons", "HESID lower-case in the ONS file", _hesid_lower_in_ons),
    Case("hesid_padded_in_hes", "HESID with spaces in HES", _hesid_padded_in_hes),
    Case("procode_lower", "PROCODE3 lower-case in HES", _procode_lower),
    Case("startage_float", "STARTAGE as float64 with NaN (pandas)", _startage_float,
         check=None),
    Case("dates_zoned_timestamps", "episode dates as Europe/London midnight timestamps[ms]", _dates_timestamp_zoned),
    Case("codes_as_integers", "EPISTAT, CLASSPAT, DISMETH, SEX, EPIORDER as integers", _codes_as_integers),
    Case("types_differ_between_files", "EPIORDER int32 in two files, text in the others",
         _types_differ_between_files),
    Case("csv_reordered_columns", "CSV, one file's columns in another order", _csv_reordered),
    Case("csv_pipe_lower_case", "pipe-delimited, lower-case header and codes", _csv_pipe_lower),
    Case("csv_header_only_file", "an extra CSV file with a header and no rows", _header_only_csv),
    Case("extra_columns", "columns the contract does not know", _extra_columns),
    Case("implausible_admission", "an ADMIDATE of 0208-01-02", _implausible_admission,
         check=expect_reject("IMPLAUSIBLE_DATE", "ADMIDATE", 1)),
    Case("malformed_csv_line", "a short line in a CSV file", _malformed_csv_line,
         check=expect_reject("MALFORMED_LINE", "", 0)),
    Case("resubmitted_spell", "a spell sent again under new EPIKEYs and PROVSPNOPS", _resubmitted_spell,
         check=expect_exclusion("DUPLICATE_SPELL", 1)),
    Case("stray_spell", "one spell discharged in 2011-06, after the data", _stray_spell,
         check=expect_same_period, same_counts=False),
    Case("zero_byte_file_skipped", "a zero-byte extra file with --skip-bad-files", _zero_byte_file_skipped,
         check=expect_skipped(1)),
    # --- the input contract: a clear error naming the file and the column
    Case("file_without_primary_diagnosis", "one file lacks DIAG_4_01", _one_file_without_primary, 2,
         r"FYEAR=0809.*missing required column\(s\): DIAG_4_01"),
    Case("file_without_optional_column", "one file lacks DIAG_4_05, the others have it",
         _one_file_without_optional, 2, r"FYEAR=0607.*no column DIAG_4_05"),
    Case("zero_byte_file", "a zero-byte parquet file", _zero_byte_file, 2, r"part-00001\.parquet is empty"),
    Case("corrupt_file", "a parquet file with a damaged footer", _corrupt_file, 2,
         r"FYEAR=0708.*(not a readable parquet file|corrupt or truncated)"),
    Case("truncated_file", "a parquet file cut short", _truncated_file, 2, r"FYEAR=0708.*not a readable parquet"),
    Case("dod_boolean", "DOD of a type no date can come from", _dod_boolean, 2, r"ons_deaths.*DOD has type boolean"),
    Case("mixed_formats", "parquet and CSV files in one input", _mixed_formats, 2, r"mixes parquet and delimited"),
    Case("zero_rows", "every episode file has no rows", _zero_rows, 2, r"hes episodes: the input has no rows"),
    # --- the data-quality gate
    Case("dod_garbage", "every DOD as yyyy.mm.dd text", _dod_garbage, 2,
         r"deaths: none of the [\d,]+ rows was accepted: INVALID_DATE DOD, e\.g\. '\d{4}\.\d\d\.\d\d'"),
    Case("admidate_garbled_2pc", "2% of ADMIDATE unparseable", _share_set_to("ADMIDATE", "2007.05.12", 0.02), 2,
         r"INVALID_DATE on ADMIDATE rejects .*limit 0\.5%.*'2007\.05\.12'"),
    Case("sex_invalid_5pc", "5% of SEX 'M'", _share_set_to("SEX", "M", 0.05), 2, r"invalid SEX, e\.g\. 'M'"),
    Case("trust_missing_from_reference", "the busiest trust missing from trusts.csv", _trust_missing_from_reference,
         2, r"UNKNOWN_PROVIDER on PROCODE3 rejects"),
    Case("year_of_hes_missing", "hes_apc/FYEAR=0708 missing", _year_of_hes_missing, 2,
         r"financial year 2007/08 has 0 accepted rows"),
    Case("year_of_deaths_missing", "no deaths registered in 2007/08", _year_of_deaths_missing, 2,
         r"deaths: financial year 2007/08"),
    Case("file_delivered_twice", "one file delivered twice under another name", _file_delivered_twice, 2,
         r"DUPLICATE_EPIKEY on EPIKEY rejects"),
    # --- periods follow the data
    Case("period_after_data", "--period-end after the data", _period_after_data, 2, r"--period-end 2012-03"),
    Case("period_before_data", "--period-end before the data", _period_before_data, 2,
         r"--period-end 2005-09.*starts before the data"),
    Case("five_year_missing_year", "--five-year with the data ending 2009-03", _five_year_short_data, 2,
         r"five-year run: financial year 2009/10"),
    # --- starting from a spell table
    Case("spells_input", "--spells from a complete table", _spells_input, 0, same_counts=False),
    Case("spells_without_success", "--spells without its _SUCCESS marker", _spells_without_success, 2,
         r"no _SUCCESS marker"),
    Case("spells_year_missing", "--spells with a DIS_FYEAR folder removed", _spells_year_missing, 2,
         r"DIS_FYEAR=\d+ has 0 rows"),
    Case("spells_inside_out", "--spells inside --out", _spells_inside_out, 2, r"overlaps the input",
         untouched=("earlier output",)),
    # --- settings and commands
    Case("bad_driver_memory", "spark.driver_memory = '8 GB'", _with_settings('spark.driver_memory="8 GB"'), 2,
         r"spark\.driver_memory.*'8 GB'"),
    Case("bad_log_level", "spark.log_level = LOUD", _with_settings('spark.log_level="LOUD"'), 2,
         r"spark\.log_level.*'LOUD'"),
    Case("unknown_setting", "a setting that does not exist", _with_settings("method.windw=30"), 2,
         r"unknown setting 'method\.windw'"),
    Case("bad_reject_share", "quality.max_reject_share = 2", _with_settings("quality.max_reject_share=2"), 2,
         r"quality\.max_reject_share"),
    Case("no_acute_trust", "trusts.csv with no acute trust", _no_acute_trust, 2, r"no acute trust"),
    Case("trusts_missing_column", "trusts.csv without TYPE", _trusts_missing_column, 2, r"trusts\.csv.*TYPE"),
    Case("synth_onto_file", "shmi synth --out an existing file", _synth_onto_file, 2, r"world\.txt",
         untouched=("user file",)),
    Case("band_fractional_deaths", "shmi band with 2.5 observed deaths", _band("2.5"), 2, r"OBSERVED.*'2\.5'"),
    Case("band_scientific_deaths", "shmi band with 1e9 observed deaths", _band("1e9"), 2, r"OBSERVED.*'1e9'"),
    Case("band_negative_deaths", "shmi band with -4 observed deaths", _band("-4"), 2, r"OBSERVED.*'-4'"),
]


def build_all(world: Path, clean_out: Path, root: Path) -> list[dict]:
    """Build every case under ``root/<name>/``; returns their descriptions (also each ``case.json``)."""
    described = []
    for case in CASES:
        folder = root / case.name
        folder.mkdir(parents=True)
        ctx = Context(world=world, root=folder, clean_out=clean_out)
        argv = case.build(ctx)
        info = {"name": case.name, "what": case.what, "argv": argv, "exit": case.exit, "message": case.message,
                "untouched": {k: str(v) for k, v in ctx.paths.items()}}
        (folder / "case.json").write_text(json.dumps(info, indent=2) + "\n")
        described.append(info)
    return described


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the bad-input corpus from a synthetic world.")
    parser.add_argument("--world", required=True, help="a world written by `shmi synth`")
    parser.add_argument("--clean-out", required=True, help="a clean `shmi run --stage spells` of that world")
    parser.add_argument("--out", required=True, help="an absent folder for the corpus")
    args = parser.parse_args()
    for info in build_all(Path(args.world), Path(args.clean_out), Path(args.out)):
        print(f"{info['name']:<40} exit {info['exit']}  {info['what']}")


if __name__ == "__main__":
    main()

