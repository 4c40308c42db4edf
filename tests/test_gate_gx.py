"""The suite JSON is a valid GX suite, and the SQL gate agrees with real GX on it.

Real GX (pandas data source, ephemeral context) validates the same files with the same
expectations. Both must give the same pass or fail per expectation, and the same count of
unexpected rows where GX reports one. GX needs about 20 s for the full suite on a loaded
2-core machine, so the bad files run the table-level expectations and those of a few columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from flows.gate import validate_file
from flows.gate_gx import read_with_contract, validate_with_gx
from flows.schema import CATEGORIES, COLUMNS_BY_NAME, EXT_SOURCE_COLUMNS
from flows.suite import SUITE_PATH, applicable_expectations, build_suite, load_suite

FOCUS_COLUMNS = {"SK_ID_CURR", "TARGET", "CNT_CHILDREN", "AMT_CREDIT", "AMT_ANNUITY",
                 "NAME_TYPE_SUITE", "DAYS_BIRTH"}


def test_committed_suite_matches_contract() -> None:
    assert json.loads(SUITE_PATH.read_text(encoding="utf-8")) == build_suite()


def test_suite_loads_as_gx_suite() -> None:
    from great_expectations.core.expectation_suite import ExpectationSuite

    document = load_suite()
    suite = ExpectationSuite(**document)

    assert suite.name == "applications"
    assert len(suite.expectations) == len(document["expectations"])
    by_type: dict[str, int] = {}
    for expectation in suite.expectations:
        by_type[expectation.expectation_type] = by_type.get(expectation.expectation_type, 0) + 1
    assert by_type["expect_column_values_to_be_in_type_list"] == 122
    assert by_type["expect_column_values_to_be_unique"] == 1
    severities = {e.column: e.severity for e in suite.expectations
                  if e.expectation_type == "expect_column_values_to_be_in_set"}
    assert severities["TARGET"] == "critical"
    assert all(severities[name] == "warning" for name in CATEGORIES)


def test_suite_ranges_follow_schema() -> None:
    ranges = {e["kwargs"]["column"]: (e["kwargs"]["min_value"], e["kwargs"]["max_value"])
              for e in load_suite()["expectations"]
              if e["type"] == "expect_column_values_to_be_between"}
    assert ranges["AMT_CREDIT"] == (0, None)
    assert ranges["DAYS_BIRTH"] == (-36525, -6570)
    for name in EXT_SOURCE_COLUMNS:
        assert ranges[name] == (0, 1)
    assert COLUMNS_BY_NAME["CNT_CHILDREN"].max_value == ranges["CNT_CHILDREN"][1]


def test_unlabeled_file_drops_target_expectations() -> None:
    suite = load_suite()
    columns = [c for c in suite["expectations"][1]["kwargs"]["column_set"] if c != "TARGET"]
    expectations = applicable_expectations(suite, columns)
    assert all(e["kwargs"].get("column") != "TARGET" for e in expectations)
    column_set = next(e for e in expectations
                      if e["type"] == "expect_table_columns_to_match_set")
    assert "TARGET" not in column_set["kwargs"]["column_set"]
    assert len(column_set["kwargs"]["column_set"]) == 121


def compare_with_gx(path: Path, focus: set[str] | None) -> list[dict]:
    """Return the SQL gate's results after asserting that GX gives the same ones."""
    suite = load_suite()
    with duckdb.connect() as connection:
        report = validate_file(connection, path, path.name, suite)
    expectations = applicable_expectations(suite, report.columns)
    pairs = list(zip(expectations, report.results, strict=True))
    if focus is not None:
        pairs = [(e, r) for e, r in pairs
                 if e["kwargs"].get("column") in focus or "column" not in e["kwargs"]]
    frame = read_with_contract(path, [e for e, _ in pairs] if focus is None else expectations)
    # A file without rows is still validated; GX needs the columns even if there are none.
    gx_results = validate_with_gx(frame, [e for e, _ in pairs])

    for (expectation, ours), theirs in zip(pairs, gx_results, strict=True):
        label = f"{expectation['type']} on {expectation['kwargs'].get('column')}"
        assert ours["success"] == theirs["success"], f"{label}: SQL {ours} != GX {theirs}"
        if ours["unexpected_count"] is not None and theirs["unexpected_count"] is not None:
            assert ours["unexpected_count"] == theirs["unexpected_count"], label
    return [r for _, r in pairs]


def _edit(source: Path, target: Path, edits: dict[tuple[int, str], str],
          drop: str | None = None, rows: int = 200) -> Path:
    """Write the first ``rows`` rows of ``source`` with cells changed: (row index, column)."""
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        body = [next(reader) for _ in range(rows)]
    for (index, column), value in edits.items():
        body[index][header.index(column)] = value
    if drop:
        position = header.index(drop)
        header = header[:position] + header[position + 1:]
        body = [r[:position] + r[position + 1:] for r in body]
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(body)
    return target


@pytest.mark.slow
def test_gx_agrees_on_real_month(real_files: list[Path]) -> None:
    results = compare_with_gx(real_files[1], focus=None)
    assert len(results) == 248
    assert all(r["success"] for r in results if r["severity"] == "critical")


def test_gx_agrees_on_bad_values(real_files: list[Path], tmp_path: Path) -> None:
    second_id = "100003"
    path = _edit(real_files[0], tmp_path / "20201101.csv", {
        (3, "AMT_CREDIT"): "abc",
        (4, "TARGET"): "2",
        (5, "SK_ID_CURR"): second_id,
        (6, "DAYS_BIRTH"): "-100",
        (7, "NAME_TYPE_SUITE"): "Neighbour",
        (8, "CNT_CHILDREN"): "1.5",
        (9, "AMT_ANNUITY"): "-5.0",
    })
    results = {(r["type"], r["column"]): r for r in compare_with_gx(path, FOCUS_COLUMNS)}

    assert not results[("expect_column_values_to_be_in_type_list", "AMT_CREDIT")]["success"]
    assert not results[("expect_column_values_to_be_between", "AMT_CREDIT")]["evaluated"]
    assert results[("expect_column_values_to_be_unique", "SK_ID_CURR")]["unexpected_count"] == 2
    assert results[("expect_column_values_to_be_in_set", "TARGET")]["unexpected_count"] == 1
    assert results[("expect_column_values_to_be_between", "DAYS_BIRTH")]["unexpected_count"] == 1
    assert results[("expect_column_values_to_be_between", "AMT_ANNUITY")]["unexpected_count"] == 1
    assert results[("expect_column_values_to_be_in_set", "NAME_TYPE_SUITE")]["severity"] == \
        "warning"


def test_gx_agrees_on_header_problems(real_files: list[Path], tmp_path: Path) -> None:
    missing = _edit(real_files[0], tmp_path / "missing.csv", {}, drop="AMT_CREDIT")
    results = compare_with_gx(missing, FOCUS_COLUMNS)
    assert not next(r for r in results if r["type"] == "expect_table_columns_to_match_set")[
        "success"]

    unlabeled = _edit(real_files[0], tmp_path / "unlabeled.csv", {}, drop="TARGET")
    results = compare_with_gx(unlabeled, FOCUS_COLUMNS)
    assert all(r["success"] for r in results if r["severity"] == "critical")

    header_only = _edit(real_files[0], tmp_path / "header_only.csv", {}, rows=0)
    results = compare_with_gx(header_only, FOCUS_COLUMNS)
    failed = [r["type"] for r in results if not r["success"]]
    assert failed == ["expect_table_row_count_to_be_between"]
