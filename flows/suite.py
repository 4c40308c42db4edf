"""The Great Expectations suite of incoming application files, kept as JSON in ``expectations/``.

The JSON file is the declared contract of the gate and is reviewed like code. It is written by
:func:`build_suite` from the column contract in :mod:`flows.schema` (``python -m flows.suite``
rewrites it), and a test checks that the committed file still equals that output and that GX's
own ``ExpectationSuite`` accepts it.

At run time the gate reads the JSON with :mod:`json` and evaluates it as DuckDB SQL
(:mod:`flows.gate`), because GX is too slow for a monthly gate. With GX 1.24.1 on a busy 2-core
machine, importing ``great_expectations`` took 6 to 20 s, and its pandas data source took 20 to
28 s to validate this suite on 1,000 rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.config import EXPECTATIONS_DIR
from flows.errors import CreditflowError
from flows.schema import CATEGORIES, COLUMNS, ID_COLUMN, TARGET_COLUMN

SUITE_NAME = "applications"
SUITE_PATH = EXPECTATIONS_DIR / f"{SUITE_NAME}.json"

# Columns a file may leave out: months still waiting for their labels have no TARGET.
OPTIONAL_COLUMNS = [TARGET_COLUMN]

# GX pandas type names per contract type. They match the dtypes that
# flows.gate_gx.read_with_contract gives each column: nullable Int64, float64 and StringDtype.
TYPE_LISTS: dict[str, list[str]] = {
    "int": ["int64", "Int64Dtype"],
    "float": ["float64", "Float64Dtype"],
    "str": ["StringDtype", "object"],
}

# Expectation types the SQL evaluator supports. Any other type in the JSON is rejected on load.
SUPPORTED_TYPES = {
    "expect_table_row_count_to_be_between",
    "expect_table_columns_to_match_set",
    "expect_column_values_to_be_in_type_list",
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_unique",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_be_between",
}


def _expectation(kind: str, severity: str = "critical", **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {}, "severity": severity}


def build_suite() -> dict[str, Any]:
    """Build the suite as a GX 1.x JSON document from the column contract."""
    expectations = [
        _expectation("expect_table_row_count_to_be_between", min_value=1, max_value=None),
        _expectation("expect_table_columns_to_match_set",
                     column_set=[c.name for c in COLUMNS], exact_match=True),
    ]
    for column in COLUMNS:
        expectations.append(_expectation(
            "expect_column_values_to_be_in_type_list",
            column=column.name, type_list=TYPE_LISTS[column.dtype],
        ))
        if not column.nullable:
            expectations.append(
                _expectation("expect_column_values_to_not_be_null", column=column.name))
        if column.name == ID_COLUMN:
            expectations.append(
                _expectation("expect_column_values_to_be_unique", column=column.name))
        if column.name == TARGET_COLUMN:
            expectations.append(_expectation(
                "expect_column_values_to_be_in_set", column=column.name, value_set=[0, 1]))
            continue
        if column.name in CATEGORIES:
            # An unseen category is reported with its counts but does not reject the file.
            expectations.append(_expectation(
                "expect_column_values_to_be_in_set", severity="warning",
                column=column.name, value_set=list(CATEGORIES[column.name]),
            ))
        if column.min_value is not None or column.max_value is not None:
            expectations.append(_expectation(
                "expect_column_values_to_be_between", column=column.name,
                min_value=column.min_value, max_value=column.max_value,
            ))
    return {
        "name": SUITE_NAME,
        "id": None,
        "expectations": expectations,
        "meta": {
            "great_expectations_version": "1.24.1",
            "description": (
                "Contract of an incoming Home Credit application file (initial.csv or "
                "YYYYMMDD.csv). Written by `python -m flows.suite` from flows/schema.py."
            ),
            "optional_columns": OPTIONAL_COLUMNS,
        },
        "notes": None,
    }


def load_suite(path: Path = SUITE_PATH) -> dict[str, Any]:
    """Read the suite JSON and check that the gate can evaluate every expectation in it."""
    try:
        suite = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CreditflowError(
            f"cannot read the expectation suite {path}: {error}. "
            "Restore it from git or rewrite it with `python -m flows.suite`."
        ) from error
    for index, expectation in enumerate(suite.get("expectations", [])):
        kind = expectation.get("type")
        if kind not in SUPPORTED_TYPES:
            raise CreditflowError(
                f"expectation suite {path}, expectation {index}: type {kind!r} is not supported "
                f"by the gate (supported: {', '.join(sorted(SUPPORTED_TYPES))})"
            )
    return suite


def applicable_expectations(suite: dict[str, Any], file_columns: list[str]) -> list[dict[str, Any]]:
    """Return the suite's expectations that apply to a file with these columns.

    An optional column (``meta.optional_columns``) that the file lacks is taken out of the
    column set, and the expectations on that column are dropped. Real GX validation in the
    tests runs the same reduced list, so both evaluate the same suite.
    """
    present = set(file_columns)
    absent_optional = {c for c in suite.get("meta", {}).get("optional_columns", [])
                       if c not in present}
    result = []
    for expectation in suite["expectations"]:
        kwargs = expectation["kwargs"]
        if kwargs.get("column") in absent_optional:
            continue
        if expectation["type"] == "expect_table_columns_to_match_set":
            expectation = {
                **expectation,
                "kwargs": {**kwargs, "column_set": [c for c in kwargs["column_set"]
                                                    if c not in absent_optional]},
            }
        result.append(expectation)
    return result


def write_suite(path: Path = SUITE_PATH) -> Path:
    """Write :func:`build_suite` to ``path`` as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_suite(), indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_suite())
