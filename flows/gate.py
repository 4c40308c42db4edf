"""The ingestion gate: evaluate the GX suite of ``expectations/`` as SQL over a staged file.

:mod:`flows.gate_read` reads the file with the column contract into the view ``gate_staged``,
which has line numbers. This module evaluates every expectation of the suite over it in one
aggregate query, then fetches sample values and line numbers for the ones that failed.
A test runs real GX (pandas data source) with the same suite and checks that both agree on
every expectation. Semantics shared with GX: nulls are ignored by every value check except
``not_be_null``; a missing column fails every expectation on it; a column with values of the
wrong type fails its ``in_set`` and ``between`` checks, which are reported as not checked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb

from flows.gate_read import (
    STAGED_VIEW,
    TYPE_ERRORS_TABLE,
    quote_identifier,
    sql_text,
    stage_file,
)
from flows.gate_report import (
    MAX_SAMPLES,
    Finding,
    GateReport,
    display_value,
    list_samples,
)
from flows.suite import TYPE_LISTS, applicable_expectations
from flows.warehouse import Warehouse

logger = logging.getLogger(__name__)

MAX_CATEGORY_SAMPLES = 10
# Contract type of a GX type list, e.g. ["int64", "Int64Dtype"] -> "int".
_CONTRACT_TYPE = {tuple(types): name for name, types in TYPE_LISTS.items()}
_TYPE_WORDS = {"int": "a whole number", "float": "a finite number", "str": "text"}


def contract_types(expectations: list[dict[str, Any]]) -> dict[str, str]:
    """Return the contract type of each column that has a type expectation."""
    return {
        e["kwargs"]["column"]: _CONTRACT_TYPE.get(tuple(e["kwargs"]["type_list"]), "str")
        for e in expectations if e["type"] == "expect_column_values_to_be_in_type_list"
    }


def _sql_literal(value: Any) -> str:
    if isinstance(value, str):
        return sql_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class _Evaluator:
    """Evaluates one list of expectations over the staged view."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, columns: list[str],
                 expectations: list[dict[str, Any]], location: str) -> None:
        self.connection = connection
        self.columns = columns
        self.expectations = expectations
        self.location = location
        self.reference = {name: f"c{i}" for i, name in enumerate(columns)}
        self.types = contract_types(expectations)

    def sample_value(self, column: str, value: Any) -> Any:
        """Return a staged value for the JSON report: whole-number columns as int."""
        if self.types.get(column) == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def condition(self, expectation: dict[str, Any]) -> str | None:
        """Return SQL that is true for a staged row violating a column expectation."""
        kind, kwargs = expectation["type"], expectation["kwargs"]
        column = kwargs.get("column")
        if column not in self.reference:
            return None
        value = self.reference[column]
        if kind == "expect_column_values_to_be_in_type_list":
            contract_type = self.types.get(column, "str")
            if contract_type == "int":
                return f"({value} is not null and not ({value} = trunc({value})))"
            if contract_type == "float":
                return f"({value} is not null and not isfinite({value}))"
            return "false"
        if kind == "expect_column_values_to_not_be_null":
            return f"({value} is null)"
        if kind == "expect_column_values_to_be_in_set":
            values = ", ".join(_sql_literal(v) for v in kwargs["value_set"])
            return f"({value} is not null and {value} not in ({values}))"
        if kind == "expect_column_values_to_be_between":
            parts = []
            if kwargs.get("min_value") is not None:
                parts.append(f"{value} < {_sql_literal(kwargs['min_value'])}")
            if kwargs.get("max_value") is not None:
                parts.append(f"{value} > {_sql_literal(kwargs['max_value'])}")
            return "(" + " or ".join(parts or ["false"]) + ")"
        return None

    def evaluate(self) -> GateReport:
        report = GateReport(file="", file_format="", columns=list(self.columns))
        conditions = {i: self.condition(e) for i, e in enumerate(self.expectations)}
        selected = ["count(*)"] + [f"count_if({c})" for c in conditions.values() if c]
        counts_row = self.connection.execute(
            f"select {', '.join(selected)} from {STAGED_VIEW}").fetchone()
        counts = iter(counts_row[1:])
        violations = {i: int(next(counts) or 0) for i, c in conditions.items() if c}
        unreadable = dict(self.connection.execute(
            f"select column_ref, count(*) from {TYPE_ERRORS_TABLE} group by column_ref"
        ).fetchall())
        unreadable_lines = self.connection.execute(
            f"select count(distinct line) from {TYPE_ERRORS_TABLE}").fetchone()[0]
        # Rows with a value the reader could not convert are not in the staged view.
        report.rows = int(counts_row[0]) + int(unreadable_lines)

        type_ok = {}
        for index, expectation in enumerate(self.expectations):
            if expectation["type"] != "expect_column_values_to_be_in_type_list":
                continue
            column = expectation["kwargs"]["column"]
            if column in self.reference:
                violations[index] += unreadable.get(self.reference[column], 0)
                type_ok[column] = violations[index] == 0

        for index, expectation in enumerate(self.expectations):
            result, finding = self._judge(expectation, violations.get(index), report.rows,
                                          type_ok, conditions.get(index))
            report.results.append(result)
            if finding is None:
                continue
            if expectation.get("severity", "critical") == "critical":
                report.failures.append(finding)
            else:
                report.warnings.append(finding)
        return report

    def _judge(self, expectation: dict[str, Any], violations: int | None, rows: int,
               type_ok: dict[str, bool], condition: str | None
               ) -> tuple[dict[str, Any], Finding | None]:
        kind, kwargs = expectation["type"], expectation["kwargs"]
        column = kwargs.get("column")
        severity = expectation.get("severity", "critical")
        result = {"type": kind, "column": column, "severity": severity,
                  "success": True, "unexpected_count": None, "evaluated": True}

        if kind == "expect_table_row_count_to_be_between":
            return self._judge_row_count(kwargs, rows, result, severity)
        if kind == "expect_table_columns_to_match_set":
            return self._judge_columns(kwargs, result, severity)

        if column not in self.reference:
            result.update(success=False, evaluated=False, note="column missing")
            return result, None  # reported by the column-set expectation

        if kind in ("expect_column_values_to_be_in_set", "expect_column_values_to_be_between") \
                and not type_ok.get(column, True):
            result.update(success=False, evaluated=False,
                          note="not checked: the column has values of the wrong type")
            return result, None  # the type finding names the values

        if kind == "expect_column_values_to_be_unique":
            value = self.reference[column]
            violations = int(self.connection.execute(
                f"select coalesce(sum(n), 0) from (select count(*) as n from {STAGED_VIEW} "
                f"where {value} is not null group by {value} having count(*) > 1)"
            ).fetchone()[0])
        result.update(unexpected_count=violations, success=violations == 0)
        if violations == 0:
            return result, None
        return result, self._finding(expectation, column, violations, condition)

    def _judge_row_count(self, kwargs: dict[str, Any], rows: int, result: dict[str, Any],
                         severity: str) -> tuple[dict[str, Any], Finding | None]:
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        ok = (low is None or rows >= low) and (high is None or rows <= high)
        result.update(success=ok, observed_value=rows)
        if ok:
            return result, None
        expected = f"at least {low}" + (f" and at most {high}" if high is not None else "")
        return result, Finding(
            check="expect_table_row_count_to_be_between", column=None, count=rows,
            severity=severity,
            message=f"the file has {rows} data rows under the header; expected {expected}",
            hint="a month file needs at least one application row under the header; check "
                 "that the export selected the right month",
        )

    def _judge_columns(self, kwargs: dict[str, Any], result: dict[str, Any], severity: str
                       ) -> tuple[dict[str, Any], Finding | None]:
        expected = kwargs["column_set"]
        exact = kwargs.get("exact_match", True) is not False
        missing = [c for c in expected if c not in self.columns]
        unexpected = [c for c in self.columns if c not in expected] if exact else []
        ok = not missing and not unexpected
        result.update(success=ok, observed_value=sorted(self.columns),
                      missing=missing, unexpected=unexpected)
        if ok:
            return result, None
        parts = []
        if missing:
            parts.append(f"missing column(s): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected column(s): {', '.join(unexpected)}")
        hint = "export the file with exactly the contract columns (listed in flows/schema.py)"
        near = {c.strip().upper(): c for c in unexpected}
        renamed = [f"{near[m]!r} to {m}" for m in missing if m in near]
        if renamed:
            hint = f"rename {', '.join(renamed)}; " + hint
        return result, Finding(
            check="expect_table_columns_to_match_set", severity=severity,
            column=", ".join(missing + unexpected), count=len(missing) + len(unexpected),
            message="the header does not match the contract: " + "; ".join(parts), hint=hint,
            samples=[{"line": 1, "value": c} for c in (missing + unexpected)[:MAX_SAMPLES]],
        )

    def _finding(self, expectation: dict[str, Any], column: str, violations: int,
                 condition: str | None) -> Finding:
        kind, kwargs = expectation["type"], expectation["kwargs"]
        severity = expectation.get("severity", "critical")
        value, where = self.reference[column], self.location

        if kind == "expect_column_values_to_be_unique":
            return self._duplicate_finding(column, violations, severity)
        if kind == "expect_column_values_to_be_in_set" and severity != "critical":
            return self._category_finding(column, violations, condition, severity)

        if kind == "expect_column_values_to_be_in_type_list":
            rows = self.connection.execute(
                f"select line, value from (select line, cast({value} as varchar) as value "
                f"from {STAGED_VIEW} where {condition} union all select line, value "
                f"from {TYPE_ERRORS_TABLE} where column_ref = ?) order by line "
                f"limit {MAX_SAMPLES}", [value]).fetchall()
        else:
            rows = self.connection.execute(
                f"select line, {value} from {STAGED_VIEW} where {condition} order by line "
                f"limit {MAX_SAMPLES}").fetchall()
        samples = [{where: line, "value": self.sample_value(column, item)} for line, item in rows]
        shown = list_samples(rows, violations, where)
        contract_type = self.types.get(column, "str")

        if kind == "expect_column_values_to_be_in_type_list":
            message = (f"column {column}: {violations} value(s) are not "
                       f"{_TYPE_WORDS[contract_type]} (contract type {contract_type}): {shown}")
            hint = f"correct the values of {column} on these {where}s"
        elif kind == "expect_column_values_to_not_be_null":
            message = f"column {column}: {violations} row(s) have no value: {shown}"
            hint = f"every row needs a {column}"
        elif kind == "expect_column_values_to_be_in_set":
            allowed = ", ".join(display_value(v) for v in kwargs["value_set"])
            message = f"column {column}: {violations} value(s) not in {{{allowed}}}: {shown}"
            hint = f"{column} may only take the values {allowed}, or be empty"
        else:
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            if low is not None and high is not None:
                bounds = f"between {display_value(low)} and {display_value(high)}"
            elif low is not None:
                bounds = f"at least {display_value(low)}"
            else:
                bounds = f"at most {display_value(high)}"
            message = f"column {column}: {violations} value(s) out of range ({bounds}): {shown}"
            hint = f"check {column} on these {where}s: the contract expects values {bounds}"
        return Finding(check=kind, column=column, count=violations, severity=severity,
                       samples=samples, message=message, hint=hint)

    def _duplicate_finding(self, column: str, violations: int, severity: str) -> Finding:
        value, where = self.reference[column], self.location
        groups = self.connection.execute(
            f"select {value}, list(line order by line) from {STAGED_VIEW} where {value} in "
            f"(select {value} from {STAGED_VIEW} where {value} is not null group by {value} "
            f"having count(*) > 1) group by {value} order by min(line) limit {MAX_SAMPLES}"
        ).fetchall()
        first_value, first_lines = groups[0]
        return Finding(
            check="expect_column_values_to_be_unique", column=column, count=violations,
            severity=severity,
            samples=[{"value": self.sample_value(column, item), where + "s": lines[:MAX_SAMPLES]}
                     for item, lines in groups],
            message=f"column {column}: {violations} rows share their value with another row, "
                    f"e.g. {display_value(first_value)} on {where}s "
                    + ", ".join(str(n) for n in first_lines[:MAX_SAMPLES]),
            hint=f"each application must appear once: remove the duplicate {column} rows",
        )

    def _category_finding(self, column: str, violations: int, condition: str | None,
                          severity: str) -> Finding:
        value, where = self.reference[column], self.location
        groups = self.connection.execute(
            f"select {value}, count(*), min(line) from {STAGED_VIEW} where {condition} "
            f"group by {value} order by count(*) desc, {value} limit {MAX_CATEGORY_SAMPLES}"
        ).fetchall()
        listed = ", ".join(f"{item!r} ({count} row(s), first on {where} {line})"
                           for item, count, line in groups)
        return Finding(
            check="expect_column_values_to_be_in_set", column=column, count=violations,
            severity=severity,
            samples=[{"value": item, "count": count, where: line}
                     for item, count, line in groups],
            message=f"column {column}: {violations} row(s) have a category outside the "
                    f"contract: {listed}",
            hint="accepted with a warning; if the category is real, add it to "
                 "flows/schema.py and rewrite the suite (python -m flows.suite)",
        )


def evaluate_expectations(connection: duckdb.DuckDBPyConnection, columns: list[str],
                          expectations: list[dict[str, Any]], location: str = "line"
                          ) -> GateReport:
    """Evaluate GX expectations as SQL over the staged view of a file with ``columns``."""
    return _Evaluator(connection, columns, expectations, location).evaluate()


def validate_file(connection: duckdb.DuckDBPyConnection, path: Path, file_name: str,
                  suite: dict[str, Any]) -> GateReport:
    """Read ``path`` into the staged view and evaluate the suite on it.

    A file that cannot be read (not UTF-8, wrong delimiter, malformed rows) is reported
    without evaluating the suite. The staged view stays for :func:`find_ids_in_other_months`
    and the load that follow on the same connection.
    """
    staged = stage_file(connection, path, contract_types(suite["expectations"]))
    if staged.findings:
        return GateReport(file=file_name, file_format=staged.file_format, rows=staged.rows,
                          columns=staged.columns, failures=staged.findings)
    expectations = applicable_expectations(suite, staged.columns)
    report = evaluate_expectations(connection, staged.columns, expectations, staged.location)
    report.file, report.file_format = file_name, staged.file_format
    logger.debug("gate of %s: %d rows, %d failures, %d warnings", file_name, report.rows,
                 len(report.failures), len(report.warnings))
    return report


def find_ids_in_other_months(connection: Warehouse, columns: list[str],
                             month: str, id_column: str, location: str = "line"
                             ) -> Finding | None:
    """Return a finding when an ID of the staged file is already loaded for another month.

    ``connection`` is the warehouse with the staged file in it (see
    flows.warehouse.stage_in_warehouse).
    """
    value = f"staged.c{columns.index(id_column)}"
    matches = f"""
        from {STAGED_VIEW} as staged
        inner join raw_applications as loaded
            on loaded.{quote_identifier(id_column.lower())} = cast({value} as bigint)
        where loaded.month <> ?"""
    count = connection.execute(f"select count(*) {matches}", [month]).fetchone()[0]
    if not count:
        return None
    rows = connection.execute(
        f"select staged.line, cast({value} as bigint), loaded.month {matches} "
        f"order by staged.line limit {MAX_SAMPLES}", [month]
    ).fetchall()
    shown = ", ".join(f"{display_value(item)} ({location} {line}, loaded for {other})"
                      for line, item, other in rows)
    if count > len(rows):
        shown += f" and {count - len(rows)} more"
    return Finding(
        check="ids_not_in_other_months", column=id_column, count=int(count),
        message=f"column {id_column}: {count} application(s) are already loaded for another "
                f"month: {shown}",
        hint="an application must not sit in two months: remove these rows, or ingest the "
             "other month again without them",
        samples=[{location: line, "value": item, "month": other} for line, item, other in rows],
    )
