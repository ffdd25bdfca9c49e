"""Reference data: diagnosis-group lookup, Charlson code list, trusts (pure pandas).

METHOD.md §1 lists the reference data a run needs: the trusts, the
diagnosis-group lookup (ICD-10 code → SHMI diagnosis group, with labels) and
the Charlson code list with weights (§4).  Two formats are read for the first
two:

* ``default`` — the project's own tables, packaged in ``shmi_spark/data/reference/``
  (:func:`reference_paths` finds them when the configuration leaves the paths empty):
  ``diag_groups.csv`` (``DIAG_GROUP, LABEL, ICD10_FROM, ICD10_TO, PERINATAL``,
  one row per inclusive code range) and ``charlson.csv``
  (``CONDITION, LABEL, WEIGHT, PREFIXES``).
* ``nhs`` — NHS England's published files: the code-level mapping
  ``ICD10_CODE, CCS_CATEGORY, SHMI_DIAGNOSIS_GROUP`` with the labels file
  ``SHMI_DIAGNOSIS_GROUP, CCS_CATEGORIES, LABEL_FROM_PHS_LOOKUP``, and the
  multi-source Charlson list
  ``condition_key, condition_label, source, weight, icd10_prefixes``.

Both lookups load into one shape, :class:`DiagLookup`: a code-level table
where a 4-character code takes precedence over its 3-character prefix.  Codes
in no range are "unmapped" and go to the invalid-diagnosis group at run time
(METHOD.md §2).

Every loader raises :class:`~shmi_spark.errors.InputError` naming the file and
the column, line or value for a missing file, a missing column or a bad value.
Paths are local; reference files on ``hdfs:``/``s3a:`` are read with Spark by
the caller.  No Spark import here: the synthetic-data generator and the tests
use this module on its own.
"""

from __future__ import annotations

import re
import string
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shmi_spark.errors import InputError
from shmi_spark.io.paths import is_uri, local_path, uri_scheme

__all__ = [
    "TRUST_TYPES", "ICD10_CHAPTERS", "icd10_chapter", "normalise_code",
    "DiagLookup", "DEFAULT_DIAG_LOOKUP", "DEFAULT_CHARLSON", "reference_paths",
    "load_diag_lookup", "group_codes", "load_charlson", "load_trusts",
]

#: ICD-10 chapters (WHO 2019): (first block, last block, name); a code's chapter is
#: the one whose block range holds its first three characters.
ICD10_CHAPTERS = (
    ("A00", "B99", "Infectious and parasitic diseases"), ("C00", "D48", "Neoplasms"),
    ("D50", "D89", "Blood and immune disorders"), ("E00", "E90", "Endocrine, nutritional and metabolic"),
    ("F00", "F99", "Mental and behavioural disorders"), ("G00", "G99", "Nervous system"),
    ("H00", "H59", "Eye"), ("H60", "H95", "Ear"), ("I00", "I99", "Circulatory system"),
    ("J00", "J99", "Respiratory system"), ("K00", "K93", "Digestive system"), ("L00", "L99", "Skin"),
    ("M00", "M99", "Musculoskeletal system"), ("N00", "N99", "Genitourinary system"),
    ("O00", "O99", "Pregnancy and childbirth"), ("P00", "P96", "Perinatal conditions"),
    ("Q00", "Q99", "Congenital anomalies"), ("R00", "R99", "Symptoms and abnormal findings"),
    ("S00", "T98", "Injury and poisoning"), ("U00", "U99", "Codes for special purposes"),
    ("V01", "Y98", "External causes"), ("Z00", "Z99", "Factors influencing health status"),
)


def icd10_chapter(code: str) -> str | None:
    """The ICD-10 chapter name of a normalised code (its first three characters), ``None`` if none."""
    block = str(code)[:3].upper()
    for first, last, name in ICD10_CHAPTERS:
        if first <= block <= last:
            return name
    return None


_STRIP = re.compile(r"[.\-\s]")
_CODE3 = re.compile(r"^[A-Z][0-9]{2}$")
_CODE4 = re.compile(r"^[A-Z][0-9]{2}[0-9X]$")
_PREFIX = re.compile(r"^[A-Z][0-9][0-9A-Z][0-9A-Z]?$")

TRUST_TYPES = ("acute", "specialist", "mental_health", "community", "independent")

# Every 3-character ICD-10-shaped code (letter + two digits) and every
# 4-character one (3-character code + digit or X filler), in sorted order.
_ALL3 = [f"{letter}{n:02d}" for letter in string.ascii_uppercase for n in range(100)]
_FOURTH = "0123456789X"
_ALL4 = [c + d for c in _ALL3 for d in _FOURTH]


def normalise_code(value: Any) -> str | None:
    """Normalise one ICD-10 code as METHOD.md §1 says.

    Upper case; strip ``.``, ``-`` and spaces; pad a 3-character code with
    ``X``; blank (or ``None``/NaN) → ``None``.  Longer codes are cut to four
    characters (HES ``DIAG_4_nn`` fields hold four).  Only the shape is
    fixed here; whether the code is in the lookup is the lookup's business.

    >>> normalise_code("i21.9"), normalise_code("a09"), normalise_code(" J-18 1")
    ('I219', 'A09X', 'J181')
    >>> normalise_code("  ") is None
    True
    """
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    text = _STRIP.sub("", str(value)).upper()
    if not text:
        return None
    if len(text) == 3:
        return text + "X"
    return text[:4]


# --------------------------------------------------------------------------- files


def _local_path(path: str | Path, what: str) -> Path:
    text = str(path)
    if not text:
        raise InputError(f"no path given for the {what}")
    scheme = uri_scheme(text)
    if is_uri(text):
        raise InputError(
            f"{what} {text}: reference files must be local paths "
            f"(or read via Spark by the caller), not a '{scheme}:' URI")
    p = local_path(text)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    return p


def _read_csv(path: str | Path, what: str, required: tuple[str, ...]) -> tuple[pd.DataFrame, Path]:
    """Read a CSV as strings (blanks kept as ''), check the required columns."""
    p = _local_path(path, what)
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                         skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{what} {p} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{what} {p} is not a readable CSV file: {first}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{what} {p} is missing column(s) {', '.join(missing)} "
                         f"(has: {', '.join(df.columns)})")
    for c in df.columns:
        df[c] = df[c].str.strip()
    return df, p


def _line(i: int) -> int:
    """File line of data row ``i`` (0-based), the header being line 1."""
    return i + 2


def _int(value: str, p: Path, what: str, column: str, i: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{what} {p}, line {_line(i)}: column {column} must be an integer, "
                         f"got {value!r}") from None


# --------------------------------------------------------------------------- diagnosis groups


@dataclass
class DiagLookup:
    """The diagnosis-group lookup of METHOD.md §1–§2, in code-level form.

    ``codes``: ``CODE`` (3 or 4 characters, str), ``DIAG_GROUP`` (int); a
    4-character code takes precedence over its 3-character prefix.
    ``groups``: ``DIAG_GROUP`` (int), ``LABEL`` (str), ``PERINATAL`` (bool:
    the group's model uses the birth-weight covariate, METHOD.md §4).
    """

    codes: pd.DataFrame
    groups: pd.DataFrame
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = dict(zip(self.codes["CODE"].astype(str), self.codes["DIAG_GROUP"].astype(int), strict=True))

    def group_of(self, code: Any) -> int | None:
        """The group of one code (normalised first): 4-character entry, else 3-character.

        ``None`` when the code is blank or unmapped (the run puts those in the
        invalid-diagnosis group, METHOD.md §2).
        """
        c = normalise_code(code)
        if c is None:
            return None
        if c in self._index:
            return self._index[c]
        return self._index.get(c[:3])

    def label_of(self, group: int) -> str | None:
        """The label of a group id, ``None`` if there is no such group."""
        hit = self.groups.loc[self.groups["DIAG_GROUP"] == int(group), "LABEL"]
        return None if hit.empty else str(hit.iloc[0])

    def supergroups(self) -> pd.DataFrame:
        """Each group's supergroup: the ICD-10 chapter that holds most of its codes.

        SHMI's diagnosis groups have no published parent, so the report's
        drill-down by supergroup groups them by chapter: the chapter of the
        most codes mapped to the group, ties to the earlier chapter.
        Columns ``DIAG_GROUP, LABEL, SUPERGROUP``, one row per group.
        """
        order = {name: i for i, (_, _, name) in enumerate(ICD10_CHAPTERS)}
        codes = self.codes.assign(SUPERGROUP=self.codes["CODE"].map(icd10_chapter)).dropna(subset=["SUPERGROUP"])
        counts = codes.groupby(["DIAG_GROUP", "SUPERGROUP"]).size().rename("N").reset_index()
        counts["ORDER"] = counts["SUPERGROUP"].map(order)
        best = (counts.sort_values(["DIAG_GROUP", "N", "ORDER"], ascending=[True, False, True])
                .drop_duplicates("DIAG_GROUP")[["DIAG_GROUP", "SUPERGROUP"]])
        out = self.groups[["DIAG_GROUP", "LABEL"]].merge(best, on="DIAG_GROUP", how="left")
        out["SUPERGROUP"] = out["SUPERGROUP"].fillna("Other")
        return out.sort_values("DIAG_GROUP").reset_index(drop=True)

    @property
    def perinatal_groups(self) -> list[int]:
        """Ids of the groups whose model uses birth weight."""
        return sorted(int(g) for g in self.groups.loc[self.groups["PERINATAL"], "DIAG_GROUP"])


_DEFAULT_COLS = ("DIAG_GROUP", "LABEL", "ICD10_FROM", "ICD10_TO", "PERINATAL")
_NHS_COLS = ("ICD10_CODE", "SHMI_DIAGNOSIS_GROUP")
_LABEL_COLS = ("SHMI_DIAGNOSIS_GROUP", "LABEL_FROM_PHS_LOOKUP")


def _expand(lo: str, hi: str) -> list[str]:
    """The codes of an inclusive range (METHOD.md §1 code shapes).

    Both bounds 3 characters: 3-character codes ``lo..hi``.  Otherwise the
    4-character codes ``c`` with ``c[:len(lo)] >= lo and c[:len(hi)] <= hi``.
    """
    if len(lo) == 3 and len(hi) == 3:
        return _ALL3[bisect_left(_ALL3, lo):bisect_right(_ALL3, hi)]
    end = hi if len(hi) == 4 else hi + "~"  # '~' sorts after every 4th character
    return _ALL4[bisect_left(_ALL4, lo):bisect_right(_ALL4, end)]


def _bound(value: str, p: Path, column: str, i: int) -> str:
    text = _STRIP.sub("", value).upper()
    if not (_CODE3.match(text) or _CODE4.match(text)):
        raise InputError(f"diagnosis-group table {p}, line {_line(i)}: column {column} must be "
                         f"an ICD-10 code of 3 or 4 characters (e.g. A00, I252), got {value!r}")
    return text


def _load_default_lookup(path: str | Path) -> DiagLookup:
    what = "diagnosis-group table"
    df, p = _read_csv(path, what, _DEFAULT_COLS)
    if df.empty:
        raise InputError(f"{what} {p} has no rows")
    owner: dict[tuple[int, str], int] = {}  # (level, code) -> row index
    rows: list[tuple[str, int]] = []
    labels: dict[int, tuple[str, bool, int]] = {}
    ranges: list[str] = []
    for i, r in enumerate(df.itertuples(index=False)):
        rec = r._asdict()
        group = _int(rec["DIAG_GROUP"], p, what, "DIAG_GROUP", i)
        if group < 1:
            raise InputError(f"{what} {p}, line {_line(i)}: DIAG_GROUP must be >= 1 "
                             f"(0 is the invalid-diagnosis group), got {group}")
        label = rec["LABEL"]
        if not label:
            raise InputError(f"{what} {p}, line {_line(i)}: column LABEL is blank")
        flag = rec["PERINATAL"]
        if flag not in ("0", "1"):
            raise InputError(f"{what} {p}, line {_line(i)}: column PERINATAL must be 0 or 1, "
                             f"got {flag!r}")
        perinatal = flag == "1"
        if group in labels:
            label0, peri0, i0 = labels[group]
            if label0 != label or peri0 != perinatal:
                raise InputError(f"{what} {p}: group {group} has a different LABEL or PERINATAL "
                                 f"on line {_line(i)} than on line {_line(i0)}")
        else:
            labels[group] = (label, perinatal, i)
        lo = _bound(rec["ICD10_FROM"], p, "ICD10_FROM", i)
        hi = _bound(rec["ICD10_TO"], p, "ICD10_TO", i)
        codes = _expand(lo, hi)
        if not codes:
            raise InputError(f"{what} {p}, line {_line(i)}: empty range {lo}..{hi} "
                             f"(ICD10_FROM after ICD10_TO)")
        level = len(codes[0])
        ranges.append(f"{lo}..{hi}")
        for c in codes:
            prev = owner.get((level, c))
            if prev is not None:
                raise InputError(f"{what} {p}: overlapping ranges: line {_line(i)} ({lo}..{hi}, "
                                 f"group {group}) and line {_line(prev)} ({ranges[prev]}, group "
                                 f"{df['DIAG_GROUP'].iloc[prev]}) both cover {c}")
            owner[(level, c)] = i
            rows.append((c, group))
    codes_df = pd.DataFrame(rows, columns=["CODE", "DIAG_GROUP"]).astype({"DIAG_GROUP": "int64"})
    groups_df = pd.DataFrame(
        [(g, lab, per) for g, (lab, per, _) in sorted(labels.items())],
        columns=["DIAG_GROUP", "LABEL", "PERINATAL"],
    ).astype({"DIAG_GROUP": "int64", "PERINATAL": bool})
    return DiagLookup(codes_df.sort_values("CODE").reset_index(drop=True), groups_df)


def _load_nhs_lookup(path: str | Path, labels_path: str | Path = "",
                     perinatal_groups: list[int] | None = None) -> DiagLookup:
    what = "NHS diagnosis-group mapping"
    df, p = _read_csv(path, what, _NHS_COLS)
    if df.empty:
        raise InputError(f"{what} {p} has no rows")
    seen: dict[str, tuple[int, int]] = {}
    for i, (raw, g) in enumerate(zip(df["ICD10_CODE"], df["SHMI_DIAGNOSIS_GROUP"], strict=True)):
        code = normalise_code(raw)
        if code is None or not _CODE4.match(code):
            raise InputError(f"{what} {p}, line {_line(i)}: column ICD10_CODE is not an ICD-10 "
                             f"code: {raw!r}")
        group = _int(g, p, what, "SHMI_DIAGNOSIS_GROUP", i)
        if group < 1:
            raise InputError(f"{what} {p}, line {_line(i)}: SHMI_DIAGNOSIS_GROUP must be >= 1, "
                             f"got {group}")
        if code in seen and seen[code][0] != group:
            raise InputError(f"{what} {p}: code {code} is in group {seen[code][0]} on line "
                             f"{_line(seen[code][1])} and group {group} on line {_line(i)}")
        seen.setdefault(code, (group, i))
    codes_df = pd.DataFrame([(c, g) for c, (g, _) in sorted(seen.items())],
                            columns=["CODE", "DIAG_GROUP"]).astype({"DIAG_GROUP": "int64"})

    labels: dict[int, str] = {}
    if labels_path:
        lwhat = "NHS diagnosis-group labels"
        ldf, lp = _read_csv(labels_path, lwhat, _LABEL_COLS)
        for i, (g, lab) in enumerate(zip(ldf["SHMI_DIAGNOSIS_GROUP"], ldf["LABEL_FROM_PHS_LOOKUP"], strict=True)):
            labels[_int(g, lp, lwhat, "SHMI_DIAGNOSIS_GROUP", i)] = lab or f"Group {g}"

    if perinatal_groups is None:
        # A group is perinatal when most of its codes are chapter P or Z38 (a
        # few P codes sit in infection or congenital groups; those stay as is).
        peri = codes_df["CODE"].str.match(r"^(P|Z38)")
        share = peri.groupby(codes_df["DIAG_GROUP"]).mean()
        perinatal = {int(g) for g, s in share.items() if s > 0.5}
    else:
        perinatal = {int(g) for g in perinatal_groups}

    ids = sorted(set(codes_df["DIAG_GROUP"].astype(int)) | set(labels))
    groups_df = pd.DataFrame(
        [(g, labels.get(g, f"Group {g}"), g in perinatal) for g in ids],
        columns=["DIAG_GROUP", "LABEL", "PERINATAL"],
    ).astype({"DIAG_GROUP": "int64", "PERINATAL": bool})
    return DiagLookup(codes_df, groups_df)


#: The packaged defaults (shmi_spark.data).
DEFAULT_DIAG_LOOKUP = "reference/diag_groups.csv"
DEFAULT_CHARLSON = "reference/charlson.csv"


def reference_paths(diag_lookup: str, charlson: str) -> tuple[str, str]:
    """The configured lookup and Charlson paths, the packaged defaults where a path is empty."""
    from shmi_spark.data import packaged_file

    return (diag_lookup or str(packaged_file(DEFAULT_DIAG_LOOKUP)),
            charlson or str(packaged_file(DEFAULT_CHARLSON)))


def load_diag_lookup(path: str | Path, fmt: str = "default", labels_path: str | Path = "",
                     perinatal_groups: list[int] | None = None) -> DiagLookup:
    """Load the diagnosis-group lookup (METHOD.md §1; ``reference.*`` settings).

    ``fmt="default"``: the project's range table, expanded to codes; ranges
    of the same code length must not overlap (a 4-character range overrides
    a 3-character one).  ``fmt="nhs"``: NHS England's code-level mapping,
    labels from ``labels_path`` (``Group N`` without it), perinatal groups
    from ``perinatal_groups`` or, by default, the groups whose codes are
    mostly chapter P or ``Z38``.
    """
    if fmt == "default":
        return _load_default_lookup(path)
    if fmt == "nhs":
        return _load_nhs_lookup(path, labels_path, perinatal_groups)
    raise InputError(f"unknown diagnosis lookup format {fmt!r} (default or nhs)")


def group_codes(lookup: DiagLookup, rng: Any = None) -> dict[int, list[str]]:
    """For each group, 4-character HES codes that map to it (for synthetic data).

    A 4-character entry gives itself; a 3-character entry gives ``code+X``
    and ``code+0..9``, less the ones a 4-character entry sends elsewhere.
    With ``rng`` (``random.Random`` or ``numpy.random.Generator``; only its
    ``random()`` is used) each 3-character code is made to look like a real
    category: either undivided (``X`` filler only) or subdivided into a few
    4th digits.  Every group with any code gets at least one.
    """
    four = {c: int(g) for c, g in zip(lookup.codes["CODE"], lookup.codes["DIAG_GROUP"], strict=True) if len(c) == 4}
    out: dict[int, list[str]] = {int(g): [] for g in lookup.groups["DIAG_GROUP"]}
    full: dict[int, list[str]] = {g: [] for g in out}
    for code, g in zip(lookup.codes["CODE"], lookup.codes["DIAG_GROUP"], strict=True):
        g = int(g)
        out.setdefault(g, [])
        full.setdefault(g, [])
        if len(code) == 4:
            out[g].append(code)
            full[g].append(code)
            continue
        own = [code + d for d in _FOURTH if four.get(code + d, g) == g]
        full[g].extend(own)
        if rng is None:
            out[g].extend(own)
            continue
        if code + "X" in own and rng.random() < 0.4:
            out[g].append(code + "X")
        else:
            digits = [c for c in own if c[3] != "X" and rng.random() < 0.5]
            out[g].extend(digits or [c for c in own if c[3] != "X"][:1] or own[:1])
    for g, codes in out.items():
        if not codes:
            out[g] = full[g]
    return {g: sorted(set(codes)) for g, codes in sorted(out.items())}


# --------------------------------------------------------------------------- Charlson


_CHARLSON_COLS = ("CONDITION", "LABEL", "WEIGHT", "PREFIXES")
_NHS_CHARLSON_COLS = ("condition_key", "condition_label", "source", "weight", "icd10_prefixes")


def _prefixes(text: str, p: Path, what: str, column: str, i: int) -> list[str]:
    out = []
    for raw in text.split():
        pre = _STRIP.sub("", raw).upper()
        if not _PREFIX.match(pre):
            raise InputError(f"{what} {p}, line {_line(i)}: column {column} has a bad ICD-10 "
                             f"prefix {raw!r} (3 or 4 characters, e.g. I21 or I252)")
        out.append(pre)
    if not out:
        raise InputError(f"{what} {p}, line {_line(i)}: column {column} is blank")
    return list(dict.fromkeys(out))


def load_charlson(path: str | Path, fmt: str = "default", source: str = "SHMI spec") -> pd.DataFrame:
    """The Charlson code list of METHOD.md §4, one row per prefix.

    Columns ``CONDITION, LABEL, WEIGHT`` (int), ``PREFIX``.  ``fmt="default"``
    reads ``CONDITION, LABEL, WEIGHT, PREFIXES`` (space-separated prefixes).
    ``fmt="nhs"`` reads the multi-source list and keeps the rows whose
    ``source`` contains ``source``; rows with a blank weight are dropped when
    the condition has a weighted row from another matching source, and a
    condition with two weighted matching rows is an error (pick a more
    specific ``reference.charlson_source``).
    """
    if fmt == "default":
        what = "Charlson list"
        df, p = _read_csv(path, what, _CHARLSON_COLS)
        keys = ("CONDITION", "LABEL", "WEIGHT", "PREFIXES")
        picked = list(range(len(df)))
    elif fmt == "nhs":
        what = "NHS Charlson code list"
        df, p = _read_csv(path, what, _NHS_CHARLSON_COLS)
        keys = _NHS_CHARLSON_COLS[:2] + _NHS_CHARLSON_COLS[3:]
        match = [i for i, s in enumerate(df["source"]) if source in s]
        if not match:
            raise InputError(f"{what} {p}: no row has a source containing {source!r} "
                             f"(column source; set reference.charlson_source)")
        picked = []
        by_cond: dict[str, list[int]] = {}
        for i in match:
            by_cond.setdefault(df["condition_key"].iloc[i], []).append(i)
        for cond, idx in by_cond.items():
            weighted = [i for i in idx if df["weight"].iloc[i] != ""]
            if len(weighted) > 1:
                srcs = "; ".join(df["source"].iloc[i] for i in weighted)
                raise InputError(f"{what} {p}: condition {cond!r} has weighted rows from more than "
                                 f"one source matching {source!r} ({srcs}); set "
                                 f"reference.charlson_source to one of them")
            picked.append(weighted[0] if weighted else idx[0])
        picked.sort()
    else:
        raise InputError(f"unknown Charlson list format {fmt!r} (default or nhs)")
    cond_col, label_col, weight_col, pre_col = keys
    if not picked:
        raise InputError(f"{what} {p} has no rows")
    rows = []
    seen: dict[str, int] = {}
    for i in picked:
        cond = df[cond_col].iloc[i]
        if not cond:
            raise InputError(f"{what} {p}, line {_line(i)}: column {cond_col} is blank")
        if cond in seen:
            raise InputError(f"{what} {p}: condition {cond!r} appears on line {_line(seen[cond])} "
                             f"and line {_line(i)}")
        seen[cond] = i
        if df[weight_col].iloc[i] == "":
            raise InputError(f"{what} {p}, line {_line(i)}: column {weight_col} is blank "
                             f"for condition {cond!r}")
        weight = _int(df[weight_col].iloc[i], p, what, weight_col, i)
        label = df[label_col].iloc[i] or cond
        for pre in _prefixes(df[pre_col].iloc[i], p, what, pre_col, i):
            rows.append((cond, label, weight, pre))
    return pd.DataFrame(rows, columns=["CONDITION", "LABEL", "WEIGHT", "PREFIX"]).astype(
        {"WEIGHT": "int64"})


# --------------------------------------------------------------------------- trusts


def load_trusts(path: str | Path) -> pd.DataFrame:
    """The trust reference (docs/tables.md; METHOD.md §1–§2): ``PROCODE3, NAME, TYPE, REGION``.

    ``PROCODE3`` upper-cased and stripped, unique and non-blank; ``TYPE``
    lower-cased, one of ``acute, specialist, mental_health, community,
    independent`` (only acute trusts enter SHMI, METHOD.md §2).
    """
    what = "trusts reference"
    df, p = _read_csv(path, what, ("PROCODE3", "NAME", "TYPE", "REGION"))
    df = df[["PROCODE3", "NAME", "TYPE", "REGION"]].copy()
    df["PROCODE3"] = df["PROCODE3"].str.upper()
    df["TYPE"] = df["TYPE"].str.lower()
    seen: dict[str, int] = {}
    for i, (code, typ) in enumerate(zip(df["PROCODE3"], df["TYPE"], strict=True)):
        if not code:
            raise InputError(f"{what} {p}, line {_line(i)}: column PROCODE3 is blank")
        if code in seen:
            raise InputError(f"{what} {p}: PROCODE3 {code!r} appears on line {_line(seen[code])} "
                             f"and line {_line(i)}")
        seen[code] = i
        if typ not in TRUST_TYPES:
            raise InputError(f"{what} {p}, line {_line(i)}: column TYPE has unknown value {typ!r} "
                             f"(expected one of {', '.join(TRUST_TYPES)})")
    return df.reset_index(drop=True)
