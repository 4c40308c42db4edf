"""Validate a file with real Great Expectations (GX Core 1.x, pandas data source).

This is the reference the SQL gate (:mod:`flows.gate`) is tested against: the same suite JSON,
the same file, and the same pass or fail per expectation. It is too slow for the gate itself
(see :mod:`flows.suite` for the measured times), so only tests use it.

The file is read with the column contract: text columns become ``StringDtype``, whole-number
columns nullable ``Int64`` and number columns ``float64``. A column whose values do not all
convert stays text, so its type expectation fails, as it does in the SQL gate.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from flows.gate_read import detect_format
from flows.suite import TYPE_LISTS

_CONTRACT_TYPE = {tuple(types): name for name, types in TYPE_LISTS.items()}
_WHOLE_NUMBER = re.compile(r"^[+-]?\d+(\.0*)?$")


def read_with_contract(path: Path, expectations: list[dict[str, Any]]) -> pd.DataFrame:
    """Read a CSV or Parquet file with the contract types of the suite's type expectations."""
    types = {e["kwargs"]["column"]: _CONTRACT_TYPE[tuple(e["kwargs"]["type_list"])]
             for e in expectations if e["type"] == "expect_column_values_to_be_in_type_list"}
    if detect_format(path) == "parquet":
        text = pd.read_parquet(path).astype("string").astype(object)
        text = text.where(text.notna(), None)
    else:
        text = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                           encoding="utf-8-sig")
    frame = pd.DataFrame(index=text.index)
    for name in text.columns:
        frame[name] = _convert(text[name], types.get(name, "str"))
    return frame


def _convert(values: pd.Series, contract_type: str) -> pd.Series:
    as_text = values.astype(pd.StringDtype())
    present = [str(v) for v in as_text.dropna()]
    if contract_type == "int" and all(_WHOLE_NUMBER.match(v) for v in present):
        return pd.to_numeric(as_text).astype("Int64")
    if contract_type == "float":
        numbers = pd.to_numeric(pd.Series(present, dtype=object), errors="coerce")
        if all(math.isfinite(v) for v in numbers):
            return pd.to_numeric(as_text).astype("float64")
    return as_text


def validate_with_gx(frame: pd.DataFrame, expectations: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """Run the expectations on ``frame`` with an ephemeral GX context.

    Returns one dict per expectation in input order: type, column, success, unexpected_count.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("incoming")
             .add_dataframe_asset("application_file")
             .add_batch_definition_whole_dataframe("whole_file")
             .get_batch(batch_parameters={"dataframe": frame}))
    suite = context.suites.add(ExpectationSuite(name="applications", expectations=expectations))
    validation = batch.validate(suite, result_format="SUMMARY")
    # GX returns results grouped by its own order; match them back by type and kwargs.
    by_key = {_key(r.expectation_config.type, r.expectation_config.kwargs): r
              for r in validation.results}
    results = []
    for expectation in expectations:
        result = by_key[_key(expectation["type"], expectation["kwargs"])]
        results.append({
            "type": expectation["type"],
            "column": expectation["kwargs"].get("column"),
            "success": bool(result.success),
            "unexpected_count": result.result.get("unexpected_count"),
        })
    return results


def _key(kind: str, kwargs: dict[str, Any]) -> tuple[str, str | None]:
    return kind, kwargs.get("column")
