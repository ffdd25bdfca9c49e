"""``shmi band`` end to end on small CSV files, and the funnel plot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shmi_spark.indicator.banding import OUTPUT_COLUMNS, band_table
from shmi_spark.cli import main
from shmi_spark.indicator.plots import funnel_plot


def _write_trusts(path: Path, n=40, seed=11, cols=("PROVIDER", "OBSERVED", "EXPECTED")) -> Path:
    rng = np.random.default_rng(seed)
    e = np.round(rng.uniform(150, 4000, n), 2)
    o = rng.poisson(e * rng.lognormal(0, 0.1, n))
    pd.DataFrame({cols[0]: [f"R{i:03d}" for i in range(n)], "NAME": [f"Trust {i}" for i in range(n)],
                  cols[1]: o, cols[2]: e}).to_csv(path, index=False)
    return path


def _edit(path: Path, row: int, col: str, value: str) -> Path:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[row, col] = value
    df.to_csv(path, index=False)
    return path


def _run(argv, capsys):
    rc = main(["band", *map(str, argv)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.out, captured.err


def test_happy_path(tmp_path, capsys):
    src = _write_trusts(tmp_path / "in.csv")
    out = tmp_path / "out.csv"
    rc, stdout, _ = _run(["--input", src, "--out", out], capsys)
    assert rc == 0
    got = pd.read_csv(out, keep_default_na=False, dtype={"FLAG": str})
    assert list(got.columns) == ["PROVIDER", "NAME", "OBSERVED", "EXPECTED"] + OUTPUT_COLUMNS
    assert len(got) == 40
    expect, summary = band_table(pd.read_csv(src), "PROVIDER", "OBSERVED", "EXPECTED")
    np.testing.assert_array_equal(got["OD95_UL"], expect["OD95_UL"])
    np.testing.assert_array_equal(got["BANDING"], expect["BANDING"].astype(int))
    assert "40 trusts" in stdout
    assert f"{summary['n_kept']} kept after the 10% trim" in stdout
    assert f"phi = {summary['phi']:.4f}" in stdout
    assert f"tau^2 = {summary['tau2']:.6f}" in stdout


def test_custom_columns_trim_and_rounding(tmp_path, capsys):
    src = _write_trusts(tmp_path / "in.csv", cols=("CODE", "DEATHS", "EXP_DEATHS"))
    out = tmp_path / "out.csv"
    rc, stdout, _ = _run(["--input", src, "--out", out, "--id-col", "CODE", "--observed-col",
                          "DEATHS", "--expected-col", "EXP_DEATHS", "--trim", "0.05",
                          "--round-expected", "0"], capsys)
    assert rc == 0
    got = pd.read_csv(out)
    assert "CODE" in got.columns and "SHMI" in got.columns
    raw = pd.read_csv(src)
    np.testing.assert_allclose(got["SHMI"], np.round(raw["DEATHS"] / raw["EXP_DEATHS"].round(0), 4))
    assert "kept after the 5% trim" in stdout


def test_flagged_rows_are_kept_in_output(tmp_path, capsys):
    src = _edit(_write_trusts(tmp_path / "in.csv", n=12), 3, "OBSERVED", "abc")
    out = tmp_path / "out.csv"
    rc, stdout, _ = _run(["--input", src, "--out", out, "--skip-bad-rows"], capsys)
    assert rc == 0
    got = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert got.loc[3, "FLAG"] == "OBSERVED not numeric ('abc')"
    assert got.loc[3, "OD95_LL"] == "" and got.loc[3, "BANDING"] == ""
    assert "11 trusts (1 row(s) flagged" in stdout


def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    rc, _, err = _run(["--input", missing, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 2
    assert str(missing) in err and "not found" in err
    assert err.count("\n") == 1


def test_empty_and_garbled_files(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    rc, _, err = _run(["--input", empty, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 2 and "empty.csv" in err
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    rc, _, err = _run(["--input", binary, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 2 and "bin.csv" in err


@pytest.mark.parametrize("flag, column", [("--id-col", "TRUST"), ("--observed-col", "DEATHS"),
                                          ("--expected-col", "EXP")])
def test_missing_column(tmp_path, capsys, flag, column):
    src = _write_trusts(tmp_path / "in.csv")
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv", flag, column], capsys)
    assert rc == 2
    assert "in.csv" in err and f"'{column}'" in err


@pytest.mark.parametrize("col, value, message", [
    ("OBSERVED", "many", "OBSERVED not numeric"),
    ("OBSERVED", "-2", "OBSERVED negative"),
    ("EXPECTED", "-10.5", "EXPECTED negative"),
    ("EXPECTED", "0", "EXPECTED is zero"),
    ("EXPECTED", "", "EXPECTED missing"),
    ("OBSERVED", "", "OBSERVED missing"),
])
def test_bad_values_strict_exit_2(tmp_path, capsys, col, value, message):
    src = _edit(_write_trusts(tmp_path / "in.csv"), 4, col, value)
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv", "--strict"], capsys)
    assert rc == 2
    assert "in.csv" in err and message in err and "R004" in err
    assert not (tmp_path / "o.csv").exists()


def test_fewer_than_ten_valid_trusts(tmp_path, capsys):
    src = _write_trusts(tmp_path / "in.csv", n=11)
    _edit(src, 0, "EXPECTED", "0")
    _edit(src, 1, "EXPECTED", "x")
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv", "--skip-bad-rows"], capsys)
    assert rc == 2
    assert "in.csv" in err and "only 9 trust(s)" in err and "'EXPECTED'" in err
    small = _write_trusts(tmp_path / "small.csv", n=9)
    rc, _, err = _run(["--input", small, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 2 and "small.csv" in err and "at least 10" in err


def test_duplicate_ids(tmp_path, capsys):
    src = _edit(_write_trusts(tmp_path / "in.csv"), 7, "PROVIDER", "R002")
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 2
    assert "in.csv" in err and "'PROVIDER'" in err and "R002" in err


def test_bad_trim_and_unwritable_output(tmp_path, capsys):
    src = _write_trusts(tmp_path / "in.csv")
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv", "--trim", "0.3"], capsys)
    assert rc == 2 and "trim fraction" in err
    rc, _, err = _run(["--input", src, "--out", tmp_path / "no" / "such" / "o.csv"], capsys)
    assert rc == 2 and "o.csv" in err and "cannot write" in err


def test_plot_option_and_funnel_plot(tmp_path, capsys):
    src = _write_trusts(tmp_path / "in.csv", n=60)
    png = tmp_path / "funnel.png"
    rc, stdout, _ = _run(["--input", src, "--out", tmp_path / "o.csv", "--plot", png], capsys)
    assert rc == 0 and "funnel.png" in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    # direct call on band_table output, tau^2 re-estimated from the rows
    out, _ = band_table(pd.read_csv(src), "PROVIDER", "OBSERVED", "EXPECTED")
    png2 = tmp_path / "direct.png"
    funnel_plot(out, png2, "test funnel")
    assert png2.read_bytes()[:4] == b"\x89PNG" and png2.stat().st_size > 5000
    with pytest.raises(ValueError):
        funnel_plot(pd.read_csv(src), tmp_path / "x.png", "no SHMI column")


def test_console_script_on_150_rows(tmp_path):
    shmi = Path(sys.executable).parent / "shmi"
    if not shmi.exists():
        pytest.fail(f"console script not installed at {shmi}")
    src = _write_trusts(tmp_path / "t150.csv", n=150)
    out = tmp_path / "out.csv"
    proc = subprocess.run([str(shmi), "band", "--input", str(src), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "150 trusts" in proc.stdout and "kept after the 10% trim" in proc.stdout
    assert len(pd.read_csv(out)) == 150
    bad = subprocess.run([str(shmi), "band", "--input", str(tmp_path / "missing.csv"),
                          "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing.csv" in bad.stderr and "Traceback" not in bad.stderr


def test_band_modules_do_not_import_spark_or_scipy_stats():
    code = ("import sys; from shmi_spark.indicator import funnel, banding, plots; "
            "from shmi_spark.commands import band; "
            "bad = [m for m in ('pyspark', 'scipy.stats', 'matplotlib') if m in sys.modules]; "
            "print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


# ------------------------------------------ impossible counts, small trusts

@pytest.mark.parametrize("col, value, message", [
    ("OBSERVED", "2.5", "OBSERVED not a whole number ('2.5')"),
    ("OBSERVED", "-1", "OBSERVED negative ('-1')"),
    ("OBSERVED", "1e9", "OBSERVED not written in digits ('1e9')"),
    ("OBSERVED", "abc", "OBSERVED not numeric ('abc')"),
    ("OBSERVED", "inf", "OBSERVED not finite ('inf')"),
    ("EXPECTED", "-4.5", "EXPECTED negative ('-4.5')"),
    ("EXPECTED", "nan", "EXPECTED not finite ('nan')"),
])
def test_impossible_count_exit_2(tmp_path, capsys, col, value, message):
    src = _edit(_write_trusts(tmp_path / "in.csv"), 4, col, value)
    rc, stdout, err = _run(["--input", src, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 2
    assert err.count("\n") == 1
    assert f"in.csv: line 6, PROVIDER R004: {message}" in err
    assert "--skip-bad-rows" in err
    assert not (tmp_path / "o.csv").exists() and stdout == ""


def test_skip_bad_rows_flags_and_leaves_out(tmp_path, capsys):
    src = _edit(_write_trusts(tmp_path / "in.csv"), 4, "OBSERVED", "2.5")
    _edit(src, 9, "OBSERVED", "1e9")
    out = tmp_path / "o.csv"
    rc, stdout, err = _run(["--input", src, "--out", out, "--skip-bad-rows"], capsys)
    assert rc == 0 and err == ""
    got = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert got.loc[4, "FLAG"] == "OBSERVED not a whole number ('2.5')"
    assert got.loc[9, "FLAG"] == "OBSERVED not written in digits ('1e9')"
    assert got.loc[4, "SHMI"] == "" and got.loc[9, "BANDING"] == ""
    assert "38 trusts (2 row(s) flagged" in stdout


def test_blank_is_flagged_not_an_error(tmp_path, capsys):
    src = _edit(_write_trusts(tmp_path / "in.csv"), 4, "OBSERVED", "")
    out = tmp_path / "o.csv"
    rc, stdout, _ = _run(["--input", src, "--out", out], capsys)
    assert rc == 0
    got = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert got.loc[4, "FLAG"] == "OBSERVED missing" and got.loc[4, "BANDING"] == ""
    assert "39 trusts (1 row(s) flagged" in stdout
    rc, _, err = _run(["--input", src, "--out", out, "--strict"], capsys)
    assert rc == 2 and "line 6, PROVIDER R004: OBSERVED missing" in err
    assert "--strict" in err


def test_strict_and_skip_bad_rows_exclusive(tmp_path, capsys):
    src = _write_trusts(tmp_path / "in.csv")
    with pytest.raises(SystemExit) as exc:
        main(["band", "--input", str(src), "--out", str(tmp_path / "o.csv"), "--strict",
              "--skip-bad-rows"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_observed_above_spells_exit_2(tmp_path, capsys):
    src = _write_trusts(tmp_path / "in.csv")
    df = pd.read_csv(src)
    df["SPELLS"] = df["OBSERVED"] * 25
    df.loc[4, "SPELLS"] = df.loc[4, "OBSERVED"] - 1
    df.to_csv(src, index=False)
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 2
    assert "line 6, PROVIDER R004: OBSERVED greater than SPELLS" in err
    # named explicitly with --spells-col
    df.rename(columns={"SPELLS": "ADMISSIONS"}).to_csv(src, index=False)
    rc, _, _ = _run(["--input", src, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 0
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv", "--spells-col", "ADMISSIONS"],
                      capsys)
    assert rc == 2 and "OBSERVED greater than ADMISSIONS" in err
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv", "--spells-col", "NOPE"],
                      capsys)
    assert rc == 2 and "'NOPE'" in err


@pytest.mark.parametrize("factor", [0.1, 3.0])
def test_national_shmi_warning(tmp_path, capsys, factor):
    src = _write_trusts(tmp_path / "in.csv")
    df = pd.read_csv(src)
    df["EXPECTED"] = (df["EXPECTED"] * factor).round(2)
    df.to_csv(src, index=False)
    rc, stdout, err = _run(["--input", src, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 0
    assert err.startswith("shmi band: warning: national SHMI") and err.count("\n") == 1
    assert "outside [0.5, 2.0]" in err and "unscaled or the columns are swapped" in err
    _write_trusts(src)
    rc, _, err = _run(["--input", src, "--out", tmp_path / "o.csv"], capsys)
    assert rc == 0 and err == ""


def test_small_trust_not_banded_and_no_inf_in_csv(tmp_path, capsys):
    src = _edit(_write_trusts(tmp_path / "in.csv"), 4, "EXPECTED", "0.001")
    _edit(src, 4, "OBSERVED", "0")
    _edit(src, 5, "EXPECTED", "1e-300")
    _edit(src, 5, "OBSERVED", "1")
    _edit(src, 6, "OBSERVED", "0")
    out = tmp_path / "o.csv"
    png = tmp_path / "f.png"
    rc, stdout, _ = _run(["--input", src, "--out", out, "--plot", png], capsys)
    assert rc == 0
    text = out.read_text()
    assert "inf" not in text.lower()
    got = pd.read_csv(out, keep_default_na=False, dtype=str)
    for row in (4, 5):
        assert got.loc[row, "BANDING"] == "" and got.loc[row, "OUTLIER_998"] == ""
        assert got.loc[row, "BANDING_LABEL"] == "Not banded: fewer than 1 expected death"
        assert got.loc[row, "SHMI"] != ""
    assert got.loc[5, "OD998_UL"] == ""
    assert got.loc[6, "Z"] == "" and got.loc[6, "SHMI"] == "0.0" and got.loc[6, "BANDING"] == "3"
    assert "not banded: 2 trust(s) with fewer than 1 expected death(s)" in stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    rc, _, _ = _run(["--input", src, "--out", out, "--min-expected", "0.0001"], capsys)
    assert rc == 0
    # banded when allowed: SHMI 0 is below its lower limit, a small positive number printed as 0.0000
    # (METHOD.md §6 compares unrounded values); compared as printed, 0.0000 is not below 0.0000
    small = pd.read_csv(out, keep_default_na=False, dtype=str).loc[4]
    assert (small["BANDING"], small["SHMI"], small["OD95_LL"]) == ("3", "0.0", "0.0")
    rc, _, _ = _run(["--input", src, "--out", out, "--min-expected", "0.0001", "--compare-rounded"], capsys)
    assert rc == 0 and pd.read_csv(out, keep_default_na=False, dtype=str).loc[4, "BANDING"] == "2"
    with pytest.raises(SystemExit):
        main(["band", "--input", str(src), "--out", str(out), "--min-expected", "-1"])
    assert "--min-expected" in capsys.readouterr().err


def test_plot_title_names_the_period_not_a_file():
    from shmi_spark.commands.band import default_title

    assert default_title(pd.DataFrame({"PERIOD": ["2009/10", "2009/10"]})) == "SHMI funnel plot, 2009/10"
    assert default_title(pd.DataFrame({"PERIOD": ["2008/09", "2009/10"]})) == "SHMI funnel plot"
    assert default_title(pd.DataFrame({"PROVIDER": ["R1"]})) == "SHMI funnel plot"
