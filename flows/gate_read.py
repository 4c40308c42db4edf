"""Reading an incoming file with the column contract into a DuckDB table for the gate.

The file's columns are read with their contract types, never inferred: numbers (whole or not)
as DOUBLE, so a whole-number column holding ``1.5`` is caught by the gate instead of being
rounded by the reader, and text as VARCHAR. Columns outside the contract are read as VARCHAR.
The result is the temporary view ``gate_staged`` with a ``line`` column (the line number in a
CSV file, header = line 1, or the 1-based row number in a Parquet file) and columns ``c0``,
``c1``, ... in file order. Values that cannot be read as their type go to the temporary table
``gate_type_errors`` with their line and the text as written.
"""

from __future__ import annotations

import codecs
import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flows.gate_report import MAX_SAMPLES, Finding

logger = logging.getLogger(__name__)

STAGED_VIEW = "gate_staged"
TYPE_ERRORS_TABLE = "gate_type_errors"
_DATA_TABLE = "gate_staged_data"
_REJECTS_TABLE = "gate_rejects"
PARQUET_MAGIC = b"PAR1"
_CHUNK_BYTES = 8 * 1024 * 1024
_NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"}


@dataclass
class StagedFile:
    """A file read into the staged view, or the reasons it could not be read."""

    file_format: str
    columns: list[str] = field(default_factory=list)
    location: str = "line"  # "line" for CSV, "row" for Parquet
    findings: list[Finding] = field(default_factory=list)
    # Data rows the reader found, including malformed ones; None when the file was not read.
    rows: int | None = None


def storage_type(contract_type: str | None) -> str:
    """Return the DuckDB type a contract column is staged as."""
    return "DOUBLE" if contract_type in ("int", "float") else "VARCHAR"


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_identifier(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def detect_format(path: Path) -> str:
    """Return ``parquet`` when the file starts with the Parquet magic bytes, else ``csv``."""
    with path.open("rb") as handle:
        return "parquet" if handle.read(4) == PARQUET_MAGIC else "csv"


def stage_file(connection: duckdb.DuckDBPyConnection, path: Path,
               contract_types: dict[str, str]) -> StagedFile:
    """Read ``path`` into the staged view as CSV or Parquet, detected from its content."""
    if detect_format(path) == "parquet":
        return _stage_parquet(connection, path, contract_types)
    return _stage_csv(connection, path, contract_types)


# --- CSV ----------------------------------------------------------------------------------


def check_utf8(path: Path) -> Finding | None:
    """Return a finding with the line of the first byte sequence that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines_before = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                line = lines_before + chunk[: error.start].count(b"\n") + 1
                bad = chunk[error.start: error.start + 4]
                return Finding(
                    check="file_is_utf8", column=None, count=1,
                    message=f"the file is not UTF-8: invalid byte sequence {bad!r} on line {line}",
                    hint="save the file as UTF-8 (for example `iconv -f latin1 -t utf-8 FILE`) "
                         "and ingest it again",
                    samples=[{"line": line, "value": repr(bad)}],
                )
            lines_before += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return Finding(
            check="file_is_utf8", column=None, count=1,
            message="the file is not UTF-8: it ends inside a multi-byte character "
                    f"(line {lines_before + 1})",
            hint="save the file as UTF-8 and ingest it again",
        )
    return None


def delimiter_finding(header_line: str) -> Finding | None:
    """Return a finding when a header line without commas is separated by ';', tabs or '|'."""
    if "," in header_line:
        return None
    for delimiter, word in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
        if delimiter in header_line:
            return Finding(
                check="csv_delimiter", column=None, count=0,
                message=f"line 1 is separated by {word} ({delimiter!r}), but the contract "
                        "requires comma-separated values",
                hint="export the file again with ',' as the delimiter and '\"' as the "
                     "quote character",
                samples=[{"line": 1, "value": header_line[:120]}],
            )
    return None


def read_csv_header(path: Path) -> tuple[list[str], list[Finding]]:
    """Return the column names of the header line and findings about the header."""
    with path.open("rb") as handle:
        first_line = handle.readline()
    if not first_line:
        return [], [Finding(
            check="file_not_empty", column=None, count=0,
            message="the file is empty: expected a header line with the contract columns "
                    "and at least one row",
            hint="check that the export finished writing the file, then ingest it again",
        )]
    text = first_line.decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r\n")
    if not text.strip():
        return [], [Finding(
            check="csv_header", column=None, count=0,
            message="line 1 is blank: expected the header line with the column names",
            hint="remove the blank line at the top of the file",
            samples=[{"line": 1, "value": text}],
        )]
    try:
        columns = next(csv.reader([text], delimiter=",", quotechar='"'))
    except csv.Error as error:
        return [], [Finding(
            check="csv_header", column=None, count=0,
            message=f"line 1 cannot be read as a CSV header: {error}",
            hint="export the file again as comma-separated UTF-8 text with one header line",
            samples=[{"line": 1, "value": text[:120]}],
        )]
    findings = []
    if len(columns) == 1:
        delimiter = delimiter_finding(text)
        if delimiter:
            findings.append(delimiter)
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        findings.append(Finding(
            check="csv_header", column=", ".join(duplicates), count=len(duplicates),
            message=f"the header names these columns more than once: {', '.join(duplicates)}",
            hint="keep one column of each name",
            samples=[{"line": 1, "value": name} for name in duplicates[:MAX_SAMPLES]],
        ))
    return columns, findings


def _stage_csv(connection: duckdb.DuckDBPyConnection, path: Path,
               contract_types: dict[str, str]) -> StagedFile:
    staged = StagedFile(file_format="csv", location="line")
    compressed = _compressed_format(path)
    if compressed:
        staged.findings = [Finding(
            check="file_is_text", column=None, count=0,
            message=f"the file is a {compressed}, not CSV text",
            hint="extract the CSV file from it and ingest that file",
        )]
        return staged
    if path.stat().st_size:
        encoding = check_utf8(path)
        if encoding:
            staged.findings = [encoding]
            return staged
    staged.columns, staged.findings = read_csv_header(path)
    if staged.findings:
        return staged
    columns = staged.columns

    spec = ", ".join(f"'c{i}': '{storage_type(contract_types.get(name))}'"
                     for i, name in enumerate(columns))
    options = (
        f"header = true, delim = ',', quote = '\"', escape = '\"', columns = {{{spec}}}, "
        "auto_detect = false, strict_mode = true, null_padding = false"
    )
    if _read_valid_csv(connection, path, options):
        read_rows = connection.execute(f"select count(*) from {_DATA_TABLE}").fetchone()[0]
        staged.rows = int(read_rows)
        connection.execute(
            f"create or replace temp table {TYPE_ERRORS_TABLE} "
            "(line bigint, column_ref varchar, value varchar)")
        _create_staged_view(connection, columns, contract_types, first_line=2,
                            skipped_lines=[])
        return staged

    source = (
        f"read_csv({sql_text(str(path))}, {options}, store_rejects = true, "
        f"rejects_table = '{_REJECTS_TABLE}', rejects_scan = 'gate_reject_scans')"
    )
    connection.execute(f"drop table if exists {_REJECTS_TABLE}")
    connection.execute("drop table if exists gate_reject_scans")
    try:
        connection.execute(f"create or replace temp table {_DATA_TABLE} as select * from {source}")
    except (duckdb.InvalidInputException, duckdb.ConversionException) as error:
        logger.info("DuckDB cannot read %s as CSV: %s", path, str(error).splitlines()[0])
        staged.findings = [Finding(
            check="csv_structure", column=None, count=0,
            message=f"the file cannot be read as CSV: {str(error).splitlines()[0]}",
            hint="look for mixed line endings (\\n and \\r\\n in one file) or a stray quote, "
                 "or export the file again as comma-separated UTF-8 text",
        )]
        return staged

    rejects = connection.execute(
        f"select line, error_type, error_message, csv_line, column_idx, column_name "
        f"from {_REJECTS_TABLE} order by line, column_idx"
    ).fetchall()
    read_rows = connection.execute(f"select count(*) from {_DATA_TABLE}").fetchone()[0]
    staged.rows = int(read_rows) + len({r[0] for r in rejects})
    staged.findings = _structure_findings([r for r in rejects if r[1] != "CAST"], len(columns))
    if staged.findings:
        return staged

    connection.execute(
        f"create or replace temp table {TYPE_ERRORS_TABLE} "
        "(line bigint, column_ref varchar, value varchar)")
    cast_errors = [(line, name, _field(csv_line, index))
                   for line, _, _, csv_line, index, name in rejects]
    if cast_errors:
        connection.executemany(f"insert into {TYPE_ERRORS_TABLE} values (?, ?, ?)", cast_errors)
    _create_staged_view(connection, columns, contract_types, first_line=2,
                        skipped_lines=sorted({line for line, _, _ in cast_errors}))
    return staged


def _read_valid_csv(connection: duckdb.DuckDBPyConnection, path: Path, options: str) -> bool:
    """Read the CSV file into the data table when every row is well formed and typed.

    Returns False, leaving no table, when DuckDB raises on a row. Without the rejects table
    DuckDB 2.0.1 read a 307,511-row month in 5.7 s instead of 8.6 s (a shared 2-core machine),
    so a valid file, the usual case, is read once this way. An invalid file is read again with
    the rejects table, which locates every bad row.
    """
    try:
        connection.execute(f"create or replace temp table {_DATA_TABLE} as select * from "
                           f"read_csv({sql_text(str(path))}, {options})")
    except duckdb.Error as error:
        logger.debug("%s needs the rejects table: %s", path, str(error).splitlines()[0])
        connection.execute(f"drop table if exists {_DATA_TABLE}")
        return False
    return True


def _compressed_format(path: Path) -> str | None:
    """Return the kind of archive the file is, judged from its first bytes, or None."""
    with path.open("rb") as handle:
        start = handle.read(4)
    if start.startswith(b"\x1f\x8b"):
        return "gzip archive"
    if start.startswith(b"PK\x03\x04"):
        return "zip archive"
    return None


def _field(csv_line: str | None, column_index: int | None) -> str | None:
    """Return field ``column_index`` (1-based) of a CSV line, as written."""
    if csv_line is None or not column_index:
        return None
    fields = next(csv.reader([csv_line.strip("\r\n")], delimiter=",", quotechar='"'), [])
    return fields[column_index - 1] if len(fields) >= column_index else None


def _structure_findings(rejects: list[tuple], expected_fields: int) -> list[Finding]:
    by_kind: dict[str, list[tuple]] = {}
    for row in rejects:
        by_kind.setdefault(row[1], []).append(row)
    findings = []
    for kind, rows in by_kind.items():
        # DuckDB stores one reject per missing field, so a short row has several: count lines.
        first_reject: dict[int, str | None] = {}
        for row in rows:
            first_reject.setdefault(row[0], row[3])
        distinct_lines = sorted(first_reject)
        lines = ", ".join(str(line) for line in distinct_lines[:MAX_SAMPLES])
        hidden = len(distinct_lines) - MAX_SAMPLES
        more = f" and {hidden} more" if hidden > 0 else ""
        findings.append(Finding(
            check="csv_structure", column=None, count=len(distinct_lines),
            message=f"{len(distinct_lines)} malformed row(s), {kind.lower()}: {rows[0][2]} "
                    f"(the header has {expected_fields} fields) on line(s) {lines}{more}",
            hint="fix these lines (a missing or extra comma, or an unclosed quote) and ingest "
                 "the file again",
            samples=[{"line": line, "value": (first_reject[line] or "").strip()[:200]}
                     for line in distinct_lines[:MAX_SAMPLES]],
        ))
    return findings


def _create_staged_view(connection: duckdb.DuckDBPyConnection, columns: list[str],
                        contract_types: dict[str, str], first_line: int,
                        skipped_lines: list[int]) -> None:
    """Create the staged view with each row's line number.

    DuckDB keeps the file order on insert, so a row's rowid counts the rows before it.
    Rows the reader skipped (values of the wrong type) move the later lines down:
    ``gate_line_shift`` stores, from which rowid on, how many lines were skipped.
    NOTE: this counts one line per record. Line numbers are off after a quoted value that
    spans several lines or a blank line between rows, which the Home Credit exports do not have.
    """
    shifts = []
    for skipped_before, line in enumerate(skipped_lines):
        shifts.append((line - first_line - skipped_before, skipped_before + 1))
    connection.execute(
        "create or replace temp table gate_line_shift (first_rowid bigint, shift bigint)")
    if shifts:
        connection.executemany("insert into gate_line_shift values (?, ?)", shifts)
    selected = ", ".join(
        f"nullif(data.c{i}, '') as c{i}" if storage_type(contract_types.get(name)) == "VARCHAR"
        else f"data.c{i}"
        for i, name in enumerate(columns)
    )
    if shifts:
        connection.execute(
            f"create or replace temp view {STAGED_VIEW} as "
            f"select data.rowid + {first_line} + coalesce(shift.shift, 0) as line, {selected} "
            f"from {_DATA_TABLE} as data asof left join "
            "(select first_rowid, max(shift) as shift from gate_line_shift group by first_rowid)"
            " as shift on data.rowid >= shift.first_rowid"
        )
    else:
        connection.execute(
            f"create or replace temp view {STAGED_VIEW} as "
            f"select data.rowid + {first_line} as line, {selected} from {_DATA_TABLE} as data"
        )


# --- Parquet ------------------------------------------------------------------------------


def _stage_parquet(connection: duckdb.DuckDBPyConnection, path: Path,
                   contract_types: dict[str, str]) -> StagedFile:
    staged = StagedFile(file_format="parquet", location="row")
    source = f"read_parquet({sql_text(str(path))}, file_row_number = true)"
    try:
        described = connection.execute(f"describe select * from {source}").fetchall()
    except (duckdb.InvalidInputException, duckdb.IOException) as error:
        staged.findings = [Finding(
            check="parquet_structure", column=None, count=0,
            message=f"the file cannot be read as Parquet: {str(error).splitlines()[0]}",
            hint="write the file again (pandas DataFrame.to_parquet or DuckDB COPY)",
        )]
        return staged
    staged.columns = [row[0] for row in described if row[0] != "file_row_number"]
    native_types = {row[0]: row[1] for row in described}

    selected, type_checks = [], []
    for i, name in enumerate(staged.columns):
        as_text = f"cast({quote_identifier(name)} as varchar)"
        if storage_type(contract_types.get(name)) == "DOUBLE":
            selected.append(f"try_cast({quote_identifier(name)} as double) as c{i}")
            if native_types[name] in _NUMERIC_TYPES or native_types[name].startswith("DECIMAL"):
                continue
            type_checks.append(
                f"select file_row_number + 1, 'c{i}', {as_text} from {source} "
                f"where {as_text} is not null and try_cast({quote_identifier(name)} as double) "
                "is null")
        else:
            selected.append(f"{as_text} as c{i}")
    connection.execute(
        f"create or replace temp table {_DATA_TABLE} as "
        f"select {', '.join(selected)} from {source} order by file_row_number")
    connection.execute(
        f"create or replace temp table {TYPE_ERRORS_TABLE} "
        "(line bigint, column_ref varchar, value varchar)")
    if type_checks:
        connection.execute(
            f"insert into {TYPE_ERRORS_TABLE} {' union all '.join(type_checks)}")
    _create_staged_view(connection, staged.columns, contract_types, first_line=1,
                        skipped_lines=[])
    return staged
