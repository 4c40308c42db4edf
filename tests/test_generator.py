"""Tests of the generator of Home-Credit-shaped application files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from flows import schema
from flows.cli import main
from flows.errors import CreditflowError
from flows.generator import generate_files, parse_shift

MONTHS = ["2020-10", "2020-11", "2020-12"]
HISTORY_ROWS = 20_000
ROWS_PER_MONTH = 5_000
SEED = 11
# Smaller than the files, so that every file is written in several chunks.
CHUNK_ROWS = 6_000
SHIFTED_MONTH = "2020-12"
SHIFTS = {("AMT_INCOME_TOTAL", SHIFTED_MONTH): 1.5, ("CODE_GENDER=M", SHIFTED_MONTH): 1.5}


def _generate(out: Path, seed: int = SEED, shifts=None, labeled: bool = True) -> list[Path]:
    return generate_files(out, MONTHS, HISTORY_ROWS, ROWS_PER_MONTH, seed, shifts=shifts,
                          labeled=labeled, chunk_rows=CHUNK_ROWS)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _generate(tmp_path_factory.mktemp("generated"))


@pytest.fixture(scope="module")
def history(files: list[Path]) -> pd.DataFrame:
    return _read(files[0])


@pytest.fixture(scope="module")
def shifted_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _generate(tmp_path_factory.mktemp("shifted"), shifts=SHIFTS)


def test_file_names_and_order(files):
    assert [path.name for path in files] == [
        "initial.csv", "20201001.csv", "20201101.csv", "20201201.csv"]


def test_header_is_contract_order(files):
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle))
        assert header == schema.COLUMN_NAMES, path.name


def test_row_counts(files):
    counts = [len(_read(path)) for path in files]
    assert counts == [HISTORY_ROWS] + [ROWS_PER_MONTH] * len(MONTHS)


def test_ids_unique_across_files(files):
    ids = pd.concat([_read(path)[schema.ID_COLUMN] for path in files])
    assert ids.is_unique
    assert ids.min() == 100_002
    assert ids.max() == 100_002 + HISTORY_ROWS + ROWS_PER_MONTH * len(MONTHS) - 1


def test_unlabeled_months_leave_out_target(tmp_path):
    paths = generate_files(tmp_path, ["2021-01"], 100, 50, SEED, labeled=False)
    history, month = (_read(path) for path in paths)
    assert list(history.columns) == schema.COLUMN_NAMES
    assert list(month.columns) == [c for c in schema.COLUMN_NAMES if c != schema.TARGET_COLUMN]


def test_no_history_file_when_zero_rows(tmp_path):
    paths = generate_files(tmp_path, ["2021-01"], 0, 50, SEED)
    assert [path.name for path in paths] == ["20210101.csv"]


def test_employment_sentinel_for_pensioners(history):
    not_employed = history["NAME_INCOME_TYPE"].isin(["Pensioner", "Unemployed"])
    sentinel = history["DAYS_EMPLOYED"] == schema.DAYS_EMPLOYED_NOT_EMPLOYED
    assert sentinel.any()
    assert (sentinel == not_employed).all()
    assert ((history["ORGANIZATION_TYPE"] == "XNA") == not_employed).all()
    assert (history.loc[not_employed, "FLAG_EMP_PHONE"] == 0).all()
    assert history.loc[not_employed, "OCCUPATION_TYPE"].isna().all()
    assert 0.15 < not_employed.mean() < 0.21


def test_gender_xna_occurs(history):
    assert (history["CODE_GENDER"] == "XNA").sum() >= 1
    assert (history["CODE_GENDER"] == "XNA").mean() < 0.002


def test_missing_rates_like_real_data(history):
    expected = {
        "EXT_SOURCE_1": 0.56, "EXT_SOURCE_2": 0.002, "EXT_SOURCE_3": 0.20,
        "OCCUPATION_TYPE": 0.31, "OWN_CAR_AGE": 0.66, "APARTMENTS_AVG": 0.51,
        "COMMONAREA_MEDI": 0.70, "TOTALAREA_MODE": 0.48, "FONDKAPREMONT_MODE": 0.68,
        "AMT_REQ_CREDIT_BUREAU_YEAR": 0.135, "NAME_TYPE_SUITE": 0.004,
    }
    for column, rate in expected.items():
        assert abs(history[column].isna().mean() - rate) < 0.025, column


def test_building_columns_missing_together(history):
    building = history[schema.BUILDING_COLUMNS
                       + ["FONDKAPREMONT_MODE", "HOUSETYPE_MODE", "WALLSMATERIAL_MODE",
                          "EMERGENCYSTATE_MODE"]]
    all_missing = building.isna().all(axis=1).mean()
    assert 0.43 < all_missing < 0.50
    stems = [c.removesuffix("_AVG") for c in schema.BUILDING_COLUMNS if c.endswith("_AVG")]
    assert len(stems) == 14
    for stem in stems:
        average, mode, median = (history[f"{stem}_{suffix}"].isna()
                                 for suffix in ("AVG", "MODE", "MEDI"))
        assert (average == mode).all(), stem
        assert (average == median).all(), stem


def test_car_age_missing_without_car(history):
    no_car = history["FLAG_OWN_CAR"] == "N"
    assert (history["OWN_CAR_AGE"].isna() == no_car).all()


def test_values_within_contract(history):
    for spec in schema.COLUMNS:
        values = history[spec.name]
        if spec.dtype == "str":
            unknown = set(values.dropna()) - set(schema.CATEGORIES[spec.name])
            assert not unknown, spec.name
            continue
        if spec.min_value is not None:
            assert values.min() >= spec.min_value, spec.name
        if spec.max_value is not None:
            assert values.max() <= spec.max_value, spec.name
        if not spec.nullable:
            assert values.notna().all(), spec.name


def test_default_rate_near_eight_percent(files):
    rates = [_read(path)[schema.TARGET_COLUMN].mean() for path in files]
    for rate in rates:
        assert 0.06 < rate < 0.10


def test_integers_without_decimals_and_commas_quoted(files):
    int_positions = [i for i, c in enumerate(schema.COLUMNS) if c.dtype == "int"]
    integer = re.compile(r"^-?\d+$")
    with files[1].open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            assert len(row) == len(schema.COLUMN_NAMES)
            bad = [schema.COLUMN_NAMES[i] for i in int_positions if not integer.match(row[i])]
            assert not bad, f"line {reader.line_num}: {bad}"
    text = files[0].read_text(encoding="utf-8")
    assert ',"Spouse, partner",' in text
    assert ',"Stone, brick",' in text
    assert ",Spouse, partner," not in text


def test_duckdb_reads_with_contract_types(files):
    types = ", ".join(f"'{c.name}': '{c.sql_type}'" for c in schema.COLUMNS)
    with duckdb.connect() as con:
        for path in files:
            rows = con.execute(
                f"select count(*), count(distinct sk_id_curr), sum(target) from read_csv(?, "
                f"header = true, auto_detect = false, delim = ',', quote = '\"', "
                f"columns = {{{types}}})", [str(path)]).fetchall()[0]
            assert rows[0] == rows[1] == len(_read(path)), path.name
            assert rows[2] > 0


def test_same_seed_same_bytes(files, tmp_path):
    again = _generate(tmp_path / "again")
    for first, second in zip(files, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_different_seed_differs(files, tmp_path):
    other = generate_files(tmp_path, MONTHS[:1], 100, 100, SEED + 1)
    this = generate_files(tmp_path / "this", MONTHS[:1], 100, 100, SEED)
    assert other[0].read_bytes() != this[0].read_bytes()
    assert other[1].read_bytes() != this[1].read_bytes()


def test_shift_changes_only_its_column_and_month(files, shifted_files):
    for plain, shifted in zip(files, shifted_files, strict=True):
        if plain.name != "20201201.csv":
            assert plain.read_bytes() == shifted.read_bytes(), plain.name
    plain, shifted = _read(files[-1]), _read(shifted_files[-1])
    changed = [c for c in schema.COLUMN_NAMES if not plain[c].equals(shifted[c])]
    assert changed == ["CODE_GENDER", "AMT_INCOME_TOTAL"]
    ratio = shifted["AMT_INCOME_TOTAL"] / plain["AMT_INCOME_TOTAL"]
    assert np.allclose(ratio, 1.5)


def test_category_shift_multiplies_share(files, shifted_files):
    plain = (_read(files[-1])["CODE_GENDER"] == "M").mean()
    shifted = (_read(shifted_files[-1])["CODE_GENDER"] == "M").mean()
    assert abs(shifted / plain - 1.5) < 0.1


def test_shift_clips_to_contract_range(tmp_path):
    shifts = {("EXT_SOURCE_2", "2021-01"): 3.0, ("DAYS_EMPLOYED", "2021-01"): 1.5}
    plain = _read(generate_files(tmp_path / "plain", ["2021-01"], 0, 2_000, SEED)[0])
    month = _read(generate_files(tmp_path / "shift", ["2021-01"], 0, 2_000, SEED, shifts)[0])
    assert month["EXT_SOURCE_2"].max() == 1.0
    sentinel = plain["DAYS_EMPLOYED"] == schema.DAYS_EMPLOYED_NOT_EMPLOYED
    assert (month.loc[sentinel, "DAYS_EMPLOYED"] == schema.DAYS_EMPLOYED_NOT_EMPLOYED).all()
    expected = np.round(plain.loc[~sentinel, "DAYS_EMPLOYED"] * 1.5)
    assert (month.loc[~sentinel, "DAYS_EMPLOYED"] == expected).all()


def test_parse_shift_value_with_colon():
    assert parse_shift("ORGANIZATION_TYPE=Industry: type 1:2021-01:2") == (
        ("ORGANIZATION_TYPE=Industry: type 1", "2021-01"), 2.0)


@pytest.mark.parametrize(("shift", "message"), [
    ("AMT_INCOME:2020-10:1.5", "unknown column 'AMT_INCOME'"),
    ("AMT_INCOME_TOTAL:2020-13:1.5", "invalid month '2020-13'"),
    ("AMT_INCOME_TOTAL:2021-05:1.5", "month '2021-05' is not generated"),
    ("AMT_INCOME_TOTAL:2020-10:abc", "factor 'abc' is not a number"),
    ("AMT_INCOME_TOTAL-2020-10", "expected COLUMN:MONTH:FACTOR"),
    ("AMT_INCOME_TOTAL:2020-10:-1", "factor must be a finite number >= 0"),
    ("CODE_GENDER:2020-10:2", "CODE_GENDER is a category column"),
    ("CODE_GENDER=Q:2020-10:2", "'Q' is not a value of CODE_GENDER"),
    ("AMT_CREDIT=1:2020-10:2", "AMT_CREDIT is numeric"),
    ("TARGET:2020-10:2", "TARGET is not an applicant column"),
])
def test_bad_shift_rejected(tmp_path, capsys, shift, message):
    code = main(["generate", "--out", str(tmp_path / "out"), "--months", "2020-10:2020-11",
                 "--history-rows", "10", "--rows-per-month", "10", "--shift", shift])
    assert code == 2
    error = capsys.readouterr().err
    assert message in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("months", "message"), [
    ("2021-01:2020-10", "empty month range"),
    ("2020-13:2021-01", "invalid month '2020-13'"),
    ("202010:202101", "invalid month '202010'"),
    ("history:2021-01", "calendar months"),
])
def test_bad_months_rejected(tmp_path, capsys, months, message):
    code = main(["generate", "--out", str(tmp_path / "out"), "--months", months,
                 "--history-rows", "10", "--rows-per-month", "10"])
    assert code == 2
    error = capsys.readouterr().err
    assert f"invalid --months {months!r}" in error
    assert message in error


def test_bad_row_counts_rejected(tmp_path):
    with pytest.raises(CreditflowError, match="each month at least 1"):
        generate_files(tmp_path, ["2021-01"], 10, 0, SEED)


def test_failed_write_leaves_no_file(tmp_path):
    def stop(rows: int) -> None:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        generate_files(tmp_path, ["2021-01"], 0, 300, SEED, chunk_rows=100, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_first_id_starts_sequence(tmp_path):
    paths = generate_files(tmp_path, ["2021-02"], 10, 20, SEED, first_id=500_000)
    ids = pd.concat([_read(path)[schema.ID_COLUMN] for path in paths])
    assert ids.tolist() == list(range(500_000, 500_030))


def test_gate_accepts_generated_files(settings, tmp_path):
    from flows.ingest import ingest_file

    paths = generate_files(tmp_path, ["2020-10"], 2_000, 500, SEED,
                           shifts={("AMT_INCOME_TOTAL", "2020-10"): 1.5})
    paths += generate_files(tmp_path / "scoring", ["2020-11"], 0, 300, SEED, labeled=False,
                            first_id=200_000)
    for path in paths:
        result = ingest_file(settings, path)
        assert result.outcome == "loaded", result.message


def test_cli_writes_files(tmp_path, capsys):
    code = main(["generate", "--out", str(tmp_path), "--months", "2020-11:2021-01",
                 "--history-rows", "300", "--rows-per-month", "100", "--seed", "3",
                 "--unlabeled", "--first-id", "700000"])
    assert code == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["20201101.csv", "20201201.csv", "20210101.csv", "initial.csv"]
    assert str(tmp_path / "initial.csv") in capsys.readouterr().out
    last_month = _read(tmp_path / "20210101.csv")
    assert schema.TARGET_COLUMN not in last_month.columns
    assert last_month[schema.ID_COLUMN].max() == 700_000 + 300 + 3 * 100 - 1


def test_model_reaches_auc_band_out_of_time(files, history):
    lightgbm = pytest.importorskip("lightgbm")
    from sklearn.metrics import roc_auc_score

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        result = frame.drop(columns=[schema.ID_COLUMN, schema.TARGET_COLUMN])
        for column, values in schema.CATEGORIES.items():
            result[column] = pd.Categorical(result[column], categories=values)
        return result

    month = _read(files[2])
    # One thread: OpenMP threads slow down badly on a busy two-core machine.
    model = lightgbm.LGBMClassifier(
        n_estimators=200, learning_rate=0.05, num_leaves=15, min_child_samples=50,
        subsample=0.8, subsample_freq=1, colsample_bytree=0.5, random_state=0, n_jobs=1,
        verbose=-1)
    model.fit(features(history), history[schema.TARGET_COLUMN])
    auc = roc_auc_score(month[schema.TARGET_COLUMN], model.predict_proba(features(month))[:, 1])
    assert 0.70 <= auc <= 0.80, f"out-of-time AUC {auc:.3f}"
