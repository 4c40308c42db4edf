"""Ingestion gate on the real sample: loads, replacements, and bad files that must be rejected
with a message naming the line, column and value while the warehouse stays as it was."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import shutil
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows.config import Settings
from flows.ingest import command_ingest, format_result, ingest_file
from flows.schema import COLUMNS
from tests.conftest import REAL_MONTHS, REAL_SPLIT, REAL_UNLABELED

# --- helpers ------------------------------------------------------------------------------


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def write_rows(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",",
               line_ending: str = "\n", bom: bool = False) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator=line_ending)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def warehouse_state(settings: Settings) -> dict:
    """Rows per month and a digest of the whole raw_applications content."""
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        counts = dict(connection.execute(
            "select month, count(*) from raw_applications group by month").fetchall())
        digest = connection.execute(
            "select md5(string_agg(cast(r as varchar), chr(10) order by month, sk_id_curr)) "
            "from raw_applications as r").fetchone()[0]
    return {"counts": counts, "digest": digest}


def load_log(settings: Settings) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        return connection.execute(
            "select file_name, month, rows, outcome, sha256, user_name, message, report_path "
            "from load_log order by loaded_at, load_id").fetchall()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base_warehouse(real_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse holding the history and 2020-10, built once for the bad-file tests."""
    from flows.config import load_settings

    settings = load_settings(tmp_path_factory.mktemp("base_home"))
    for path in real_files[:2]:
        assert ingest_file(settings, path).outcome == "loaded"
    return settings.warehouse


@pytest.fixture
def loaded(settings: Settings, base_warehouse: Path) -> Settings:
    """Settings whose warehouse contains the history and 2020-10 of the real sample."""
    shutil.copyfile(base_warehouse, settings.warehouse)
    return settings


@pytest.fixture
def november(real_files: list[Path]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the real 2020-11 file, not yet loaded in ``loaded``."""
    return read_rows(real_files[2])


# --- loading the real sample --------------------------------------------------------------


def test_real_sample_loads_every_month(settings: Settings, real_files: list[Path]) -> None:
    for path in real_files:
        result = ingest_file(settings, path, user="analyst")
        assert result.outcome == "loaded", result.message
        assert result.report["failures"] == []

    expected = {"history": 2999} | {month: 1000 for month in REAL_MONTHS}
    assert warehouse_state(settings)["counts"] == expected

    log = load_log(settings)
    assert [(row[0], row[1], row[2], row[3]) for row in log] == [
        (name, month, count, "loaded")
        for (name, count), month in zip(REAL_SPLIT, ["history", *REAL_MONTHS], strict=True)
    ]
    assert all(row[5] == "analyst" for row in log)
    assert [row[4] for row in log] == [sha256_of(path) for path in real_files]


def test_loaded_values_keep_contract_types(settings: Settings, real_files: list[Path]) -> None:
    ingest_file(settings, real_files[1])
    header, rows = read_rows(real_files[1])
    first = dict(zip(header, rows[0], strict=True))
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        types = dict(connection.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_name = 'raw_applications'").fetchall())
        row = connection.execute(
            "select sk_id_curr, target, amt_credit, name_type_suite, days_birth, load_id "
            "from raw_applications where sk_id_curr = ?", [int(first["SK_ID_CURR"])]).fetchone()
    assert types["sk_id_curr"] == "BIGINT"
    assert types["amt_credit"] == "DOUBLE"
    assert types["name_contract_type"] == "VARCHAR"
    assert row[1] == int(first["TARGET"])
    assert row[2] == float(first["AMT_CREDIT"])
    assert row[3] == (first["NAME_TYPE_SUITE"] or None)
    assert row[4] == int(first["DAYS_BIRTH"])
    assert row[5]


def test_kept_original_is_immutable_copy(settings: Settings, real_files: list[Path]) -> None:
    result = ingest_file(settings, real_files[1])
    assert result.stored_path.parent == settings.landed / "2020-10"
    assert result.stored_path.name == f"{result.sha256[:12]}_20201001.csv"
    assert result.stored_path.read_bytes() == real_files[1].read_bytes()
    assert result.stored_path.stat().st_mode & 0o222 == 0
    assert json.loads(result.report_path.read_text())["passed"] is True


def test_unlabeled_rows_load_as_scoring_month(settings: Settings, tmp_path: Path) -> None:
    if not REAL_UNLABELED.exists():
        pytest.skip(f"real unlabeled sample not found at {REAL_UNLABELED}")
    path = tmp_path / "20210201.csv"
    shutil.copyfile(REAL_UNLABELED, path)

    result = ingest_file(settings, path)

    assert result.outcome == "loaded", result.message
    assert result.month == "2021-02"
    assert result.rows == 49
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        rows, labeled = connection.execute(
            "select count(*), count(target) from raw_applications where month = '2021-02'"
        ).fetchone()
    assert rows == 49
    assert labeled == 0


def test_same_bytes_twice_is_unchanged(loaded: Settings, real_files: list[Path]) -> None:
    before = warehouse_state(loaded)

    result = ingest_file(loaded, real_files[1])

    assert result.outcome == "unchanged"
    assert result.rows == 1000
    assert warehouse_state(loaded) == before
    assert [row[3] for row in load_log(loaded)] == ["loaded", "loaded", "unchanged"]


def test_other_bytes_replace_the_month(loaded: Settings, real_files: list[Path],
                                       tmp_path: Path) -> None:
    header, rows = read_rows(real_files[1])
    path = write_rows(tmp_path / "20201001.csv", header, rows[:600])
    history_before = warehouse_state(loaded)["counts"]["history"]

    result = ingest_file(loaded, path)

    assert result.outcome == "replaced", result.message
    assert "previously 1000 rows" in result.message
    assert warehouse_state(loaded)["counts"] == {"history": history_before, "2020-10": 600}
    assert load_log(loaded)[-1][3] == "replaced"
    again = ingest_file(loaded, path)
    assert again.outcome == "unchanged"
    assert warehouse_state(loaded)["counts"]["2020-10"] == 600


def test_replacing_scored_month_warns(loaded: Settings, real_files: list[Path],
                                      tmp_path: Path) -> None:
    header, rows = read_rows(real_files[1])
    target = header.index("TARGET")
    labels = sum(1 for row in rows if row[target] != "")
    ids = [int(row[header.index("SK_ID_CURR")]) for row in rows[:3]]
    with duckdb.connect(str(loaded.warehouse)) as connection:
        connection.executemany(
            "insert into predictions values (?, '2020-10', 'm1', 0.5, 'approve', null, now())",
            [[item] for item in ids])
    unlabeled = [row[:target] + [""] + row[target + 1:] for row in rows]
    path = write_rows(tmp_path / "20201001.csv", header, unlabeled)

    result = ingest_file(loaded, path)

    assert result.outcome == "replaced", result.message
    assert labels > 0
    assert "3 prediction(s) of month 2020-10 now describe replaced data" in result.message
    assert f"{labels} label(s) (TARGET) of the loaded rows are dropped" in result.message
    assert "The previous file is kept at " in result.message
    assert f"landed/2020-10/{sha256_of(real_files[1])[:12]}_" in result.message
    assert "`creditflow run --month 2020-10`" in result.message
    assert load_log(loaded)[-1][6] == result.message
    assert "WARNING: 3 prediction(s)" in format_result(result)


def test_replacement_keeping_labels_has_no_warning(loaded: Settings, real_files: list[Path],
                                                   tmp_path: Path) -> None:
    header, rows = read_rows(real_files[1])
    path = write_rows(tmp_path / "20201001.csv", header, rows[::-1])

    result = ingest_file(loaded, path)

    assert result.outcome == "replaced", result.message
    assert result.replacement_warning == ""
    assert "WARNING" not in result.message


def test_parquet_content_is_read_as_parquet(loaded: Settings, november, tmp_path: Path) -> None:
    header, rows = november
    frame = pd.DataFrame(rows[:100], columns=header).replace("", None)
    for column in COLUMNS:
        if column.dtype != "str":
            frame[column.name] = pd.to_numeric(frame[column.name])
    path = tmp_path / "20201101.csv"  # Parquet bytes under a .csv name: content decides
    frame.to_parquet(path)

    result = ingest_file(loaded, path)

    assert result.outcome == "loaded", result.message
    assert result.report["file_format"] == "parquet"
    assert warehouse_state(loaded)["counts"]["2020-11"] == 100


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom_and_crlf"])
def test_bom_and_crlf_are_accepted(loaded: Settings, november, tmp_path: Path,
                                   variant: str) -> None:
    header, rows = november
    path = write_rows(tmp_path / "20201101.csv", header, rows,
                      line_ending="\r\n" if "crlf" in variant else "\n", bom="bom" in variant)

    result = ingest_file(loaded, path)

    assert result.outcome == "loaded", result.message
    assert warehouse_state(loaded)["counts"]["2020-11"] == 1000
    with duckdb.connect(str(loaded.warehouse), read_only=True) as connection:
        last = connection.execute(
            "select max(length(amt_req_credit_bureau_year::varchar)), count(sk_id_curr) "
            "from raw_applications where month = '2020-11'").fetchone()
    assert last[1] == 1000


# --- bad files ----------------------------------------------------------------------------


def _set(header: list[str], row: list[str], column: str, value: str) -> list[str]:
    row = list(row)
    row[header.index(column)] = value
    return row


def missing_column(header, rows, path):
    index = header.index("AMT_CREDIT")
    write_rows(path, header[:index] + header[index + 1:],
               [r[:index] + r[index + 1:] for r in rows])
    return ["missing column(s): AMT_CREDIT"]


def duplicate_id(header, rows, path):
    rows = list(rows)
    rows[9] = _set(header, rows[9], "SK_ID_CURR", rows[2][0])
    write_rows(path, header, rows)
    return ["column SK_ID_CURR: 2 rows share their value", f"e.g. {rows[2][0]} on lines 4, 11"]


def id_from_history(header, rows, path, history_id):
    rows = list(rows)
    rows[20] = _set(header, rows[20], "SK_ID_CURR", history_id)
    write_rows(path, header, rows)
    return ["already loaded for another month", f"{history_id} (line 22, loaded for history)"]


def empty_file(header, rows, path):
    path.write_bytes(b"")
    return ["the file is empty"]


def header_only(header, rows, path):
    write_rows(path, header, [])
    return ["the file has 0 data rows", "expected at least 1"]


def semicolons(header, rows, path):
    write_rows(path, header, rows, delimiter=";")
    return ["separated by semicolons (';')", "comma-separated"]


def too_many_fields(header, rows, path):
    rows = list(rows)
    rows[5] = rows[5] + ["surplus"]
    write_rows(path, header, rows)
    return ["1 malformed row(s), too many columns", "line(s) 7"]


def target_two(header, rows, path):
    rows = list(rows)
    rows[40] = _set(header, rows[40], "TARGET", "2")
    write_rows(path, header, rows)
    return ["column TARGET: 1 value(s) not in {0, 1}: line 42: 2"]


def negative_credit(header, rows, path):
    rows = list(rows)
    rows[99] = _set(header, rows[99], "AMT_CREDIT", "-1000.0")
    write_rows(path, header, rows)
    return ["column AMT_CREDIT: 1 value(s) out of range (at least 0): line 101: -1000"]


def not_utf8(header, rows, path):
    write_rows(path, header, rows)
    lines = path.read_bytes().split(b"\n")
    lines[30] = lines[30].replace(b"Cash loans", b"Cash l\xf6ans", 1)
    path.write_bytes(b"\n".join(lines))
    return ["the file is not UTF-8", "on line 31"]


def whole_number_with_fraction(header, rows, path):
    rows = list(rows)
    rows[3] = _set(header, rows[3], "CNT_CHILDREN", "1.5")
    write_rows(path, header, rows)
    return ["column CNT_CHILDREN: 1 value(s) are not a whole number", "line 5: '1.5'"]


def unclosed_quote(header, rows, path):
    write_rows(path, header, rows)
    lines = path.read_bytes().split(b"\n")
    lines[14] = lines[14].replace(b",Cash loans,", b',"Cash loans,', 1)
    path.write_bytes(b"\n".join(lines))
    return ["malformed row(s), unquoted value", "line(s) 15"]


def gzip_file(header, rows, path):
    plain = write_rows(path.with_name("plain.csv"), header, rows)
    path.write_bytes(gzip.compress(plain.read_bytes()))
    return ["the file is a gzip archive, not CSV text"]


BAD_FILES: dict[str, Callable] = {
    "unclosed_quote": unclosed_quote,
    "gzip_file": gzip_file,
    "missing_column": missing_column,
    "duplicate_id": duplicate_id,
    "empty_file": empty_file,
    "header_only": header_only,
    "semicolons": semicolons,
    "too_many_fields": too_many_fields,
    "target_two": target_two,
    "negative_credit": negative_credit,
    "not_utf8": not_utf8,
    "whole_number_with_fraction": whole_number_with_fraction,
}


def assert_rejected(settings: Settings, path: Path, before: dict, expected: list[str]):
    result = ingest_file(settings, path)

    assert result.outcome == "rejected"
    for text in expected:
        assert text in result.message
    assert warehouse_state(settings) == before
    assert result.stored_path.parent == settings.quarantine / result.month
    assert result.stored_path.read_bytes() == path.read_bytes()
    report = json.loads(result.report_path.read_text())
    assert report["outcome"] == "rejected"
    assert report["file"] == path.name
    assert report["sha256"] == sha256_of(path)
    assert report["failures"]
    assert not list(settings.landed.glob("2020-11/*"))
    log = load_log(settings)[-1]
    assert log[1:4] == (result.month, result.rows, "rejected")
    assert log[7] == str(result.report_path)
    return result


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_rejected(loaded: Settings, november, tmp_path: Path, case: str) -> None:
    header, rows = november
    path = tmp_path / "20201101.csv"
    expected = BAD_FILES[case](header, rows, path)
    before = warehouse_state(loaded)

    assert_rejected(loaded, path, before, expected)


def test_short_row_counts_rows_not_fields(loaded: Settings, november, tmp_path: Path) -> None:
    header, rows = november
    rows = [list(row) for row in rows[:5]]
    rows[4] = rows[4][:32]
    path = write_rows(tmp_path / "20201101.csv", header, rows)

    result = ingest_file(loaded, path)

    assert result.outcome == "rejected"
    assert "1 malformed row(s), missing columns" in result.message
    assert "on line(s) 6" in result.message
    assert result.rows == 5
    assert format_result(result).startswith("REJECTED: 20201101.csv -> month 2020-11, 5 rows")


def test_empty_id_is_shown_as_empty(loaded: Settings, november, tmp_path: Path) -> None:
    header, rows = november
    rows = list(rows)
    rows[17] = _set(header, rows[17], "SK_ID_CURR", "")
    path = write_rows(tmp_path / "20201101.csv", header, rows)

    result = ingest_file(loaded, path)

    assert result.outcome == "rejected"
    assert "column SK_ID_CURR: 1 row(s) have no value: line 19: (empty)" in result.message
    assert "None" not in result.message


def test_id_of_earlier_month_is_rejected(loaded: Settings, november, real_files: list[Path],
                                         tmp_path: Path) -> None:
    header, rows = november
    history_id = read_rows(real_files[0])[1][0][0]
    path = tmp_path / "20201101.csv"
    expected = id_from_history(header, rows, path, history_id)
    before = warehouse_state(loaded)

    assert_rejected(loaded, path, before, expected)


def test_text_on_line_5000_is_named(loaded: Settings, real_files: list[Path],
                                    tmp_path: Path) -> None:
    header, _ = read_rows(real_files[0])
    rows = [row for path in real_files for row in read_rows(path)[1]]
    # New IDs, so that no row collides with the months already loaded.
    rows = [_set(header, row, "SK_ID_CURR", str(900000 + i)) for i, row in enumerate(rows)]
    rows[4998] = _set(header, rows[4998], "AMT_CREDIT", "abc")
    path = write_rows(tmp_path / "20201101.csv", header, rows)
    before = warehouse_state(loaded)

    result = assert_rejected(loaded, path, before, [
        "column AMT_CREDIT: 1 value(s) are not a finite number (contract type float): "
        "line 5000: 'abc'",
    ])

    failure = result.report["failures"][0]
    assert failure["check"] == "expect_column_values_to_be_in_type_list"
    assert failure["column"] == "AMT_CREDIT"
    assert failure["samples"] == [{"line": 5000, "value": "abc"}]
    assert result.rows == len(rows)


def test_late_line_numbers_after_skipped_row(loaded: Settings, real_files: list[Path],
                                             tmp_path: Path) -> None:
    header, rows = read_rows(real_files[2])
    rows = list(rows)
    rows[10] = _set(header, rows[10], "AMT_ANNUITY", "n/a")
    rows[700] = _set(header, rows[700], "DAYS_BIRTH", "5")
    path = write_rows(tmp_path / "20201101.csv", header, rows)

    result = ingest_file(loaded, path)

    messages = [f["message"] for f in result.report["failures"]]
    assert "column AMT_ANNUITY: 1 value(s) are not a finite number (contract type float): " \
           "line 12: 'n/a'" in messages
    assert "column DAYS_BIRTH: 1 value(s) out of range (between -36525 and -6570): " \
           "line 702: 5" in messages


def test_unseen_category_is_a_warning(loaded: Settings, november, tmp_path: Path) -> None:
    header, rows = november
    rows = [_set(header, row, "NAME_TYPE_SUITE", "Neighbour") if i in (5, 6, 50) else row
            for i, row in enumerate(rows)]
    path = write_rows(tmp_path / "20201101.csv", header, rows)

    result = ingest_file(loaded, path)

    assert result.outcome == "loaded", result.message
    warning = result.report["warnings"][0]
    assert warning["column"] == "NAME_TYPE_SUITE"
    assert warning["count"] == 3
    assert "'Neighbour' (3 row(s), first on line 7)" in warning["message"]
    assert "1 warning(s)" in result.message


def test_same_bad_file_gives_same_report(loaded: Settings, november, tmp_path: Path) -> None:
    header, rows = november
    path = tmp_path / "20201101.csv"
    target_two(header, rows, path)

    first = ingest_file(loaded, path)
    second = ingest_file(loaded, path)

    volatile = ("load_id", "checked_at", "message")
    assert first.outcome == second.outcome == "rejected"
    assert {k: v for k, v in first.report.items() if k not in volatile} == \
           {k: v for k, v in second.report.items() if k not in volatile}
    assert first.report_path != second.report_path


def test_unknown_month_name_raises(settings: Settings, november, tmp_path: Path) -> None:
    from flows.errors import CreditflowError

    header, rows = november
    path = write_rows(tmp_path / "november.csv", header, rows)
    with pytest.raises(CreditflowError, match="cannot tell the month of 'november.csv'"):
        ingest_file(settings, path)
    assert ingest_file(settings, path, month="2020-11").outcome == "loaded"


def test_month_other_than_file_name_warns(settings: Settings, november, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    header, rows = november
    path = write_rows(tmp_path / "20201101.csv", header, rows)
    with caplog.at_level("WARNING", logger="flows.ingest"):
        assert ingest_file(settings, path, month="2020-12").month == "2020-12"
    assert "20201101.csv is named for month 2020-11 but is loaded as 2020-12" in caplog.text

    caplog.clear()
    (tmp_path / "other").mkdir()
    other = write_rows(tmp_path / "other" / "20201201.csv", header, rows)
    with caplog.at_level("WARNING", logger="flows.ingest"):
        ingest_file(settings, other, month="2020-12")
    assert "is named for month" not in caplog.text


def test_command_exit_codes_and_report(loaded: Settings, november, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = november
    bad = tmp_path / "bad" / "20201101.csv"
    bad.parent.mkdir()
    negative_credit(header, rows, bad)
    good = write_rows(tmp_path / "20201101.csv", header, rows)

    assert command_ingest(Namespace(file=str(bad), month=None), loaded) == 1
    output = capsys.readouterr().out
    assert "REJECTED: 20201101.csv -> month 2020-11" in output
    assert "[expect_column_values_to_be_between]" in output
    assert "line 101: -1000" in output
    assert "what to do:" in output
    assert str(loaded.quarantine) in output

    assert command_ingest(Namespace(file=str(good), month="2020-11"), loaded) == 0
    assert "LOADED: 20201101.csv -> month 2020-11, 1000 rows" in capsys.readouterr().out


def test_rejected_replacement_keeps_month(loaded: Settings, november, tmp_path: Path) -> None:
    header, rows = november
    good = write_rows(tmp_path / "20201101.csv", header, rows)
    assert ingest_file(loaded, good).outcome == "loaded"
    before = warehouse_state(loaded)
    bad = tmp_path / "bad" / "20201101.csv"
    bad.parent.mkdir()
    negative_credit(header, rows, bad)

    result = ingest_file(loaded, bad)

    assert result.outcome == "rejected"
    assert warehouse_state(loaded) == before
    assert warehouse_state(loaded)["counts"]["2020-11"] == 1000


def test_parquet_text_in_number_column(loaded: Settings, november, tmp_path: Path) -> None:
    header, rows = november
    frame = pd.DataFrame(rows[:50], columns=header).replace("", None)
    for column in COLUMNS:
        if column.dtype != "str" and column.name != "AMT_CREDIT":
            frame[column.name] = pd.to_numeric(frame[column.name])
    frame.loc[9, "AMT_CREDIT"] = "abc"
    path = tmp_path / "20201101.parquet"
    frame.to_parquet(path)
    before = warehouse_state(loaded)

    result = ingest_file(loaded, path)

    assert result.outcome == "rejected"
    assert "column AMT_CREDIT: 1 value(s) are not a finite number (contract type float): " \
           "row 10: 'abc'" in result.message
    assert warehouse_state(loaded) == before
