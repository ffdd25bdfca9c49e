"""Reference data: code normalisation, diagnosis-group lookups, Charlson list, trusts."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shmi_spark.data import packaged_file

from shmi_spark.errors import InputError
from shmi_spark.io.reference import (
    group_codes,
    load_charlson,
    load_diag_lookup,
    load_trusts,
    normalise_code,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIAG = packaged_file("reference/diag_groups.csv")
DEFAULT_CHARLSON = packaged_file("reference/charlson.csv")


@pytest.fixture(scope="module")
def default_lookup():
    return load_diag_lookup(DEFAULT_DIAG)


@pytest.fixture(scope="module")
def nhs_lookup(shared_dir):
    ref = shared_dir / "reference"
    return load_diag_lookup(ref / "shmi_icd10_ccs_shmigroup_mapping.csv", fmt="nhs",
                            labels_path=ref / "shmi_diag_group_labels.csv")


def _label(lookup, code: str) -> str:
    group = lookup.group_of(code)
    assert group is not None, f"{code} is unmapped"
    return lookup.label_of(group).lower()


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("raw, want", [
    ("i21.9", "I219"),
    ("a09", "A09X"),
    (" J-18 1", "J181"),
    ("I10X", "I10X"),
    ("c34.9 ", "C349"),
    ("", None),
    ("   ", None),
    (None, None),
    (float("nan"), None),
])
def test_normalise_code(raw, want):
    assert normalise_code(raw) == want


# --------------------------------------------------------------------------- default table


def test_default_table_shape(default_lookup):
    groups = default_lookup.groups
    ids = sorted(groups["DIAG_GROUP"])
    assert 135 <= len(ids) <= 142
    assert ids == list(range(1, len(ids) + 1))  # stable ids 1..N, 0 reserved
    assert groups["LABEL"].str.len().min() > 0
    assert set(default_lookup.codes.columns) == {"CODE", "DIAG_GROUP"}
    assert default_lookup.codes["CODE"].str.len().isin([3, 4]).all()
    assert not default_lookup.codes["CODE"].duplicated().any()
    per_group = default_lookup.codes.groupby("DIAG_GROUP").size()
    assert set(per_group.index) == set(ids)  # every group has at least one code


@pytest.mark.parametrize("code, words", [
    ("I219", ["myocardial infarction"]),
    ("I639", ["stroke"]),
    ("I64X", ["stroke"]),
    ("I619", ["stroke", "haemorrhage"]),
    ("J189", ["pneumonia"]),
    ("A481", ["pneumonia"]),
    ("S720", ["neck of femur"]),
    ("S722", ["neck of femur"]),
    ("S723", ["lower limb"]),
    ("C349", ["lung"]),
    ("A419", ["septicaemia"]),
    ("A021", ["septicaemia"]),
    ("A020", ["intestinal infection"]),
    ("J440", ["obstructive pulmonary"]),
    ("I509", ["heart failure"]),
    ("K922", ["haemorrhage"]),
    ("K250", ["haemorrhage"]),
    ("K251", ["ulcer"]),
    ("E119", ["without complication"]),
    ("E11X", ["without complication"]),
    ("E112", ["with complications"]),
    ("I490", ["cardiac arrest"]),
    ("I499", ["dysrhythmias"]),
    ("N390", ["urinary tract infection"]),
    ("N393", ["other diseases of kidney"]),
])
def test_default_clinically_obvious_codes(default_lookup, code, words):
    label = _label(default_lookup, code)
    for w in words:
        assert w in label, f"{code} -> {label!r}, expected {w!r}"


def test_default_perinatal_groups(default_lookup):
    g = default_lookup.group_of("P073")
    assert g is not None
    row = default_lookup.groups.set_index("DIAG_GROUP").loc[g]
    assert bool(row["PERINATAL"])
    # Exactly the groups of chapter P and Z38 are perinatal.
    codes = default_lookup.codes
    want = set(codes.loc[codes["CODE"].str.match(r"^(P|Z38)"), "DIAG_GROUP"])
    assert set(default_lookup.perinatal_groups) == want
    assert not default_lookup.groups.set_index("DIAG_GROUP").loc[default_lookup.group_of("O800"), "PERINATAL"]
    assert "livebirth" in _label(default_lookup, "Z380")
    assert "pregnancy" in _label(default_lookup, "O800")


def test_default_unmapped_and_blank(default_lookup):
    assert default_lookup.group_of("U071") is None
    assert default_lookup.group_of("") is None
    assert default_lookup.group_of("i21.9") == default_lookup.group_of("I219")


def test_default_covers_nhs_codes(default_lookup, nhs_lookup):
    """Every code of the official mapping outside chapter U has a default group."""
    codes = [c for c in nhs_lookup.codes["CODE"] if not c.startswith("U")]
    assert len(codes) > 12000
    unmapped = [c for c in codes if default_lookup.group_of(c) is None]
    assert unmapped == []


# Hand-written: code -> (word in our default label, word in the NHS label).
AGREEMENT = {
    "I219": ("myocardial infarction", "myocardial infarction"),
    "I639": ("stroke", "acute cerebrovascular"),
    "I619": ("stroke", "acute cerebrovascular"),
    "G459": ("transient cerebral ischaemia", "transient cerebral ischemia"),
    "J189": ("pneumonia", "pneumonia"),
    "J440": ("obstructive pulmonary", "obstructive pulmonary"),
    "J459": ("asthma", "asthma"),
    "J22X": ("acute lower respiratory", "acute bronchitis"),
    "I509": ("heart failure", "heart failure"),
    "I48X": ("atrial fibrillation", "dysrhythmias"),
    "I10X": ("hypertension", "hypertension"),
    "I251": ("ischaemic heart disease", "coronary atherosclerosis"),
    "A419": ("septicaemia", "septicaemia"),
    "N390": ("urinary tract infection", "urinary tract infection"),
    "N179": ("acute kidney", "acute and unspecified renal failure"),
    "S720": ("neck of femur", "neck of femur"),
    "S721": ("neck of femur", "neck of femur"),
    "S062": ("intracranial injury", "intracranial injury"),
    "C349": ("lung", "lung"),
    "C509": ("breast", "breast"),
    "C189": ("colon", "colon"),
    "C61X": ("prostate", "prostate"),
    "C259": ("pancreas", "pancreas"),
    "C159": ("oesophagus", "oesophagus"),
    "C169": ("stomach", "stomach"),
    "C787": ("secondary malignancies", "secondary malignancies"),
    "K922": ("gastrointestinal haemorrhage", "gastrointestinal hemorrhage"),
    "K566": ("intestinal obstruction", "intestinal obstruction"),
    "K802": ("biliary", "biliary"),
    "K859": ("pancreatic", "pancreatic"),
    "K703": ("alcohol", "alcohol"),
    "L031": ("skin and subcutaneous tissue infections", "skin and subcutaneous tissue infections"),
    "E119": ("without complication", "without complication"),
    "E871": ("fluid and electrolyte", "fluid and electrolyte"),
    "F03X": ("dementia", "senility"),
    "G409": ("epilepsy", "epilepsy"),
    "G20X": ("parkinson", "parkinson"),
    "R55X": ("syncope", "syncope"),
    "R074": ("chest pain", "chest pain"),
    "R104": ("abdominal pain", "abdominal pain"),
    "D649": ("anaemia", "anemia"),
    "T424": ("poisoning", "poisoning"),
    "P073": ("short gestation", "short gestation"),
    "Z380": ("livebirth", "livebirth"),
}


@pytest.mark.parametrize("code", sorted(AGREEMENT))
def test_default_agrees_with_nhs_for_common_codes(default_lookup, nhs_lookup, code):
    ours, theirs = AGREEMENT[code]
    assert ours in _label(default_lookup, code)
    assert theirs in _label(nhs_lookup, code)


def test_group_codes_map_back(default_lookup):
    for rng in (None, random.Random(7)):
        pools = group_codes(default_lookup, rng)
        assert set(pools) == set(default_lookup.groups["DIAG_GROUP"])
        for group, codes in pools.items():
            assert codes, f"group {group} has no codes"
            for c in codes:
                assert len(c) == 4 and normalise_code(c) == c
                assert default_lookup.group_of(c) == group, (c, group)
    full = group_codes(default_lookup)
    assert "E112" in full[default_lookup.group_of("E112")]
    assert "E119" not in full[default_lookup.group_of("E112")]
    assert "S720" not in full[default_lookup.group_of("S729")]
    sampled = group_codes(default_lookup, random.Random(7))
    assert sum(map(len, sampled.values())) < sum(map(len, full.values()))
    assert group_codes(default_lookup, random.Random(7)) == sampled  # deterministic per seed


# --------------------------------------------------------------------------- NHS files


def test_nhs_lookup(nhs_lookup):
    assert len(nhs_lookup.groups) == 142
    assert nhs_lookup.group_of("A021") == 2
    assert nhs_lookup.group_of("I10X") == 56
    assert nhs_lookup.group_of("i10") == 56
    assert nhs_lookup.codes["CODE"].str.len().eq(4).all()
    assert nhs_lookup.perinatal_groups == [117, 118, 119, 141]
    assert "myocardial infarction" in nhs_lookup.label_of(57).lower()
    assert nhs_lookup.group_of("P073") == 117


def test_nhs_lookup_without_labels(shared_dir):
    lk = load_diag_lookup(shared_dir / "reference" / "shmi_icd10_ccs_shmigroup_mapping.csv",
                          fmt="nhs", perinatal_groups=[141])
    assert lk.label_of(57) == "Group 57"
    assert lk.perinatal_groups == [141]
    pools = group_codes(lk, random.Random(1))
    assert all(lk.group_of(c) == g for g, codes in pools.items() for c in codes)


# --------------------------------------------------------------------------- Charlson


SHMI_WEIGHTS = {"ami": 5, "cevd": 11, "chf": 13, "rheumd": 4, "dementia": 14, "diab": 3,
                "mld": 8, "pud": 9, "pvd": 6, "copd": 4, "canc": 8, "diabwc": -1, "hp": 1,
                "rend": 10, "metacanc": 14, "msld": 18, "aids": 2}


def _by_condition(df):
    return {c: (int(g["WEIGHT"].iloc[0]), frozenset(g["PREFIX"])) for c, g in df.groupby("CONDITION")}


def test_charlson_default_weights():
    df = load_charlson(DEFAULT_CHARLSON)
    assert list(df.columns) == ["CONDITION", "LABEL", "WEIGHT", "PREFIX"]
    assert str(df["WEIGHT"].dtype) == "int64"
    got = _by_condition(df)
    assert {c: w for c, (w, _) in got.items()} == SHMI_WEIGHTS
    assert df["PREFIX"].str.len().isin([3, 4]).all()
    assert "I21" in got["ami"][1] and "I252" in got["ami"][1]


def test_charlson_default_equals_nhs_shmi_spec(shared_dir):
    ours = _by_condition(load_charlson(DEFAULT_CHARLSON))
    nhs = _by_condition(load_charlson(shared_dir / "reference" / "charlson_icd10_code_lists.csv",
                                      fmt="nhs", source="SHMI spec"))
    assert set(ours) == set(nhs)
    for cond in ours:
        assert ours[cond] == nhs[cond], cond


def test_charlson_nhs_ambiguous_and_missing_source(shared_dir, tmp_path):
    path = shared_dir / "reference" / "charlson_icd10_code_lists.csv"
    with pytest.raises(InputError, match="no row has a source"):
        load_charlson(path, fmt="nhs", source="no such source")
    bad = tmp_path / "two.csv"
    bad.write_text("condition_key,condition_label,source,weight,icd10_prefixes\n"
                   "chf,CHF,A (SHMI spec),13,I50\n"
                   "chf,CHF,B (SHMI spec),12,I50\n")
    with pytest.raises(InputError, match="more than one source"):
        load_charlson(bad, fmt="nhs")


# --------------------------------------------------------------------------- bad input


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_diag_missing_column(tmp_path):
    p = _write(tmp_path, "d.csv", "DIAG_GROUP,LABEL,ICD10_FROM,PERINATAL\n1,X,A00,0\n")
    with pytest.raises(InputError, match="ICD10_TO") as exc:
        load_diag_lookup(p)
    assert str(p) in str(exc.value)


def test_diag_overlapping_ranges(tmp_path):
    p = _write(tmp_path, "d.csv", "DIAG_GROUP,LABEL,ICD10_FROM,ICD10_TO,PERINATAL\n"
                                  "1,One,A00,A09,0\n"
                                  "2,Two,B00,B09,0\n"
                                  "3,Three,A05,A20,0\n")
    with pytest.raises(InputError, match="overlapping") as exc:
        load_diag_lookup(p)
    assert "line 4" in str(exc.value) and "line 2" in str(exc.value)


def test_diag_overlapping_four_char_ranges(tmp_path):
    p = _write(tmp_path, "d.csv", "DIAG_GROUP,LABEL,ICD10_FROM,ICD10_TO,PERINATAL\n"
                                  "1,One,A00,A09,0\n"
                                  "2,Two,A010,A015,0\n"
                                  "3,Three,A015,A019,0\n")
    with pytest.raises(InputError, match="overlapping"):
        load_diag_lookup(p)


def test_diag_four_char_override(tmp_path):
    p = _write(tmp_path, "d.csv", "DIAG_GROUP,LABEL,ICD10_FROM,ICD10_TO,PERINATAL\n"
                                  "1,One,A00,A09,0\n"
                                  "2,Two,A010,A01X,1\n")
    lk = load_diag_lookup(p)
    assert lk.group_of("A001") == 1
    assert lk.group_of("A013") == 2
    assert lk.group_of("a01") == 2  # A01X
    assert lk.group_of("A10") is None
    assert lk.perinatal_groups == [2]


@pytest.mark.parametrize("row, word", [
    ("1,One,A0,A09,0", "ICD10_FROM"),
    ("1,One,A00,A09,2", "PERINATAL"),
    ("x,One,A00,A09,0", "DIAG_GROUP"),
    ("0,One,A00,A09,0", "DIAG_GROUP"),
    ("1,One,A09,A00,0", "empty range"),
    ("1,,A00,A09,0", "LABEL"),
])
def test_diag_bad_values(tmp_path, row, word):
    p = _write(tmp_path, "d.csv", "DIAG_GROUP,LABEL,ICD10_FROM,ICD10_TO,PERINATAL\n" + row + "\n")
    with pytest.raises(InputError, match=word):
        load_diag_lookup(p)


def test_diag_inconsistent_label(tmp_path):
    p = _write(tmp_path, "d.csv", "DIAG_GROUP,LABEL,ICD10_FROM,ICD10_TO,PERINATAL\n"
                                  "1,One,A00,A09,0\n1,Uno,B00,B09,0\n")
    with pytest.raises(InputError, match="group 1"):
        load_diag_lookup(p)


def test_missing_file_and_uri(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_diag_lookup(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="local"):
        load_diag_lookup("hdfs:///ref/diag_groups.csv")
    with pytest.raises(InputError, match="local"):
        load_charlson("s3a://bucket/charlson.csv")
    assert len(load_diag_lookup(f"file://{DEFAULT_DIAG}").groups) >= 135
    with pytest.raises(InputError, match="format"):
        load_diag_lookup(DEFAULT_DIAG, fmt="cms")


def test_nhs_bad_code(tmp_path):
    p = _write(tmp_path, "m.csv", "ICD10_CODE,CCS_CATEGORY,SHMI_DIAGNOSIS_GROUP\nA000,135,83\n??,1,1\n")
    with pytest.raises(InputError, match="line 3"):
        load_diag_lookup(p, fmt="nhs")
    p = _write(tmp_path, "m2.csv", "ICD10_CODE,CCS_CATEGORY\nA000,135\n")
    with pytest.raises(InputError, match="SHMI_DIAGNOSIS_GROUP"):
        load_diag_lookup(p, fmt="nhs")


def test_charlson_bad_input(tmp_path):
    p = _write(tmp_path, "c.csv", "CONDITION,LABEL,WEIGHT\nami,AMI,5\n")
    with pytest.raises(InputError, match="PREFIXES"):
        load_charlson(p)
    p = _write(tmp_path, "c.csv", "CONDITION,LABEL,WEIGHT,PREFIXES\nami,AMI,five,I21\n")
    with pytest.raises(InputError, match="WEIGHT"):
        load_charlson(p)
    p = _write(tmp_path, "c.csv", "CONDITION,LABEL,WEIGHT,PREFIXES\nami,AMI,5,I21 21I\n")
    with pytest.raises(InputError, match="21I"):
        load_charlson(p)


# --------------------------------------------------------------------------- trusts


def test_trusts_load(tmp_path):
    p = _write(tmp_path, "t.csv", "PROCODE3,NAME,TYPE,REGION\n"
                                  " rxx ,Acute One,Acute,North\n"
                                  "RYY,Mental,mental_health,South\n")
    df = load_trusts(p)
    assert list(df.columns) == ["PROCODE3", "NAME", "TYPE", "REGION"]
    assert list(df["PROCODE3"]) == ["RXX", "RYY"]
    assert list(df["TYPE"]) == ["acute", "mental_health"]


def test_trusts_unknown_type(tmp_path):
    p = _write(tmp_path, "t.csv", "PROCODE3,NAME,TYPE,REGION\nRXX,A,acute,N\nRYY,B,hospice,S\n")
    with pytest.raises(InputError, match="hospice") as exc:
        load_trusts(p)
    assert "TYPE" in str(exc.value) and "line 3" in str(exc.value)


def test_trusts_missing_column_and_duplicates(tmp_path):
    p = _write(tmp_path, "t.csv", "PROCODE3,NAME,REGION\nRXX,A,N\n")
    with pytest.raises(InputError, match="TYPE"):
        load_trusts(p)
    p = _write(tmp_path, "t.csv", "PROCODE3,NAME,TYPE,REGION\nRXX,A,acute,N\nrxx,B,acute,S\n")
    with pytest.raises(InputError, match="RXX"):
        load_trusts(p)
    p = _write(tmp_path, "t.csv", "")
    with pytest.raises(InputError, match="empty"):
        load_trusts(p)


@pytest.mark.parametrize("code, chapter", [
    ("A419", "Infectious and parasitic diseases"), ("C349", "Neoplasms"), ("D489", "Neoplasms"),
    ("D500", "Blood and immune disorders"), ("H590", "Eye"), ("H600", "Ear"), ("I219", "Circulatory system"),
    ("S720", "Injury and poisoning"), ("T983", "Injury and poisoning"), ("U071", "Codes for special purposes"),
    ("Z515", "Factors influencing health status"), ("P969", "Perinatal conditions"), ("P97X", None)])
def test_icd10_chapter(code, chapter):
    from shmi_spark.io.reference import icd10_chapter
    assert icd10_chapter(code) == chapter


def test_supergroups_are_the_chapter_of_most_codes(default_lookup, tmp_path):
    s = default_lookup.supergroups()
    assert list(s.columns) == ["DIAG_GROUP", "LABEL", "SUPERGROUP"]
    assert len(s) == len(default_lookup.groups) and s["DIAG_GROUP"].is_unique
    by_label = dict(zip(s["LABEL"], s["SUPERGROUP"], strict=True))
    assert by_label["Acute myocardial infarction"] == "Circulatory system"
    assert by_label["Fracture of neck of femur (hip)"] == "Injury and poisoning"
    # a group over two chapters takes the one with more codes; a tie, the earlier chapter
    path = tmp_path / "groups.csv"
    path.write_text("DIAG_GROUP,LABEL,ICD10_FROM,ICD10_TO,PERINATAL\n"
                    "1,Mixed,A00,A01,0\n1,Mixed,J00,J02,0\n2,Tied,K00,K00,0\n2,Tied,B00,B00,0\n")
    got = load_diag_lookup(path).supergroups().set_index("DIAG_GROUP")["SUPERGROUP"]
    assert got[1] == "Respiratory system" and got[2] == "Infectious and parasitic diseases"
