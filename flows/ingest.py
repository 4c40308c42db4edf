"""Land a monthly application file: keep its bytes, gate it, load it into the warehouse or
quarantine it.

One call of :func:`ingest_file` is one attempt and writes one ``load_log`` row:

- ``loaded``: the month was empty and the file passed the gate;
- ``replaced``: the month held rows from other bytes; they were deleted and the file's rows
  inserted in one transaction. When the month has predictions, or the new file drops labels of
  the old rows, the message warns and names the kept previous file and the run to repeat;
- ``unchanged``: the month already contains these exact bytes (same SHA-256), so nothing is done;
- ``rejected``: the file failed the gate or the cross-month check; a copy of it and a JSON report
  go to the quarantine folder and the warehouse keeps its earlier rows.

Accepted bytes are kept read-only under ``landed/<month>/<sha256 prefix>_<file name>``, or under
that key of ``CREDITFLOW_LANDED_URL`` when it is set. Rejected bytes and their report go to
``quarantine/<month>/`` or ``CREDITFLOW_QUARANTINE_URL`` the same way (see flows.storage).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from flows.config import Settings
from flows.errors import CreditflowError
from flows.gate import find_ids_in_other_months, validate_file
from flows.gate_read import STAGED_VIEW
from flows.gate_report import Finding, GateReport, format_findings
from flows.months import month_from_filename, parse_month
from flows.schema import COLUMNS, ID_COLUMN, TARGET_COLUMN
from flows.storage import Location, landed_url, quarantine_url
from flows.suite import SUITE_NAME, SUITE_PATH, load_suite
from flows.warehouse import (
    Warehouse,
    WarehouseLockedError,
    connect,
    file_engine,
    init_warehouse,
    portable_type,
    stage_in_warehouse,
)

logger = logging.getLogger(__name__)

OUTCOMES = ("loaded", "replaced", "unchanged", "rejected")
_HASH_PREFIX = 12


@dataclass
class IngestResult:
    """Outcome of one ingest attempt, as logged in ``load_log``."""

    outcome: str
    month: str
    rows: int
    sha256: str
    load_id: str
    report: dict[str, Any] = field(default_factory=dict)
    # Local paths, or URLs (str) when the landed or quarantine location is an object store.
    report_path: Path | str | None = None
    message: str = ""
    stored_path: Path | str | None = None
    # Set when a replacement changes data that predictions or labels of the month depend on.
    replacement_warning: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome != "rejected"


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


def _new_load_id(now: datetime, sha256: str) -> str:
    return f"{now:%Y%m%dT%H%M%S%f}-{sha256[:8]}-{uuid.uuid4().hex[:6]}"


def _copy_and_hash(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` and return the SHA-256 of the copied bytes."""
    digest = hashlib.sha256()
    with source.open("rb") as reader, target.open("wb") as writer:
        while chunk := reader.read(8 * 1024 * 1024):
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


def _keep(received: Path, location: Location, month: str, name: str) -> Path | str:
    """Move the received copy to ``<location>/<month>/<name>``; keep an existing one.

    A local copy becomes read-only. Returns the local path, or the URL of the object.
    """
    if not location.is_local:
        key = f"{month}/{name}"
        # NOTE: the object stays writable in the store. Make the prefix immutable in the bucket
        # itself, with S3 Object Lock or a policy that denies overwriting keys.
        stored = location.path_of(key) if location.exists(key) else \
            location.put_object(received, key)
        received.unlink()
        return stored
    folder = Path(location.root) / month
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.exists():  # same hash prefix and name: the same bytes were kept before
        received.unlink()
    else:
        os.replace(received, target)
        target.chmod(0o444)
    return target


def _write_report(location: Location, month: str, name: str,
                  report: dict[str, Any]) -> Path | str:
    """Write the JSON report as ``<location>/<month>/<name>``; return its path or URL."""
    text = json.dumps(report, indent=2, default=str) + "\n"
    stored = location.write_bytes(f"{month}/{name}", text.encode("utf-8"))
    return Path(stored) if location.is_local else stored


def _resolve_month(path: Path, month: str | None) -> str:
    try:
        if not month:
            return month_from_filename(path)
        month = parse_month(month)
    except ValueError as error:
        raise CreditflowError(f"{path}: {error}") from error
    # The given month wins, but a file named for another month is more often a slip than intent.
    with contextlib.suppress(ValueError):
        named = month_from_filename(path)
        if named != month:
            logger.warning("%s is named for month %s but is loaded as %s because the month was "
                           "given explicitly (--month); check that this is intended", path.name,
                           named, month)
    return month


class CurrentLoad(NamedTuple):
    """The bytes a month's rows were loaded from: their hash, row count and kept file."""

    sha256: str
    rows: int
    stored_path: str | None


def _current_load(connection: Warehouse, month: str) -> CurrentLoad | None:
    """Return the load behind the month's rows, or None when the month is empty."""
    rows = connection.execute(
        "select count(*) from raw_applications where month = ?", [month]).fetchone()[0]
    if not rows:
        return None
    latest = connection.execute(
        "select sha256, stored_path from load_log where month = ? "
        "and outcome in ('loaded', 'replaced') order by loaded_at desc limit 1",
        [month]).fetchone()
    if latest is None:
        return CurrentLoad("", int(rows), None)
    return CurrentLoad(latest[0] or "", int(rows), latest[1])


def _replacement_warning(connection: Warehouse, columns: list[str],
                         month: str, current: CurrentLoad) -> str:
    """Describe what replacing the month's rows by the staged file invalidates, or return "".

    Counts the month's predictions (``score_month = month``) and the labels (non-null TARGET)
    of the loaded rows that the staged file no longer has, either because the row is gone
    or because its TARGET is empty.
    """
    predictions = int(connection.execute(
        "select count(*) from predictions where score_month = ?", [month]).fetchone()[0])
    if TARGET_COLUMN in columns:
        staged_id = f"cast(staged.c{columns.index(ID_COLUMN)} as bigint)"
        staged_target = f"staged.c{columns.index(TARGET_COLUMN)}"
        kept_label = (f"exists (select 1 from {STAGED_VIEW} as staged "
                      f"where {staged_id} = loaded.sk_id_curr and {staged_target} is not null)")
    else:
        kept_label = "false"
    dropped_labels = int(connection.execute(
        "select count(*) from raw_applications as loaded where loaded.month = ? "
        f"and loaded.target is not null and not {kept_label}", [month]).fetchone()[0])
    if not predictions and not dropped_labels:
        return ""

    affected = []
    if predictions:
        affected.append(f"{predictions} prediction(s) of month {month} now describe replaced "
                        "data")
    if dropped_labels:
        affected.append(f"{dropped_labels} label(s) (TARGET) of the loaded rows are dropped")
    if current.stored_path:
        previous = f"The previous file is kept at {current.stored_path}."
    else:
        previous = "No load_log entry names the previous file."
    if month == "history":
        next_step = "run the next calendar month again (`creditflow run --month YYYY-MM`)"
    else:
        next_step = f"run the month again: `creditflow run --month {month}`"
    return f"WARNING: {'; '.join(affected)}. {previous} To update them, {next_step}."


def _log_attempt(connection: Warehouse, result: IngestResult, file_name: str,
                 user: str, now: datetime) -> None:
    connection.execute(
        "insert into load_log (load_id, file_name, month, rows, sha256, user_name, loaded_at, "
        "outcome, message, stored_path, report_path) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [result.load_id, file_name, result.month, result.rows, result.sha256, user, now,
         result.outcome, result.message,
         str(result.stored_path) if result.stored_path else None,
         str(result.report_path) if result.report_path else None],
    )


def _insert_month(connection: Warehouse, columns: list[str], month: str,
                  load_id: str) -> None:
    """Replace the month's rows by the staged file's rows, typed by the column contract."""
    selected = []
    for column in COLUMNS:
        if column.name in columns:
            selected.append(
                f"cast(c{columns.index(column.name)} as {portable_type(column.sql_type)})")
        else:
            selected.append(f"cast(null as {portable_type(column.sql_type)})")
    names = ", ".join(c.name.lower() for c in COLUMNS)
    connection.execute("delete from raw_applications where month = ?", [month])
    connection.execute(
        f"insert into raw_applications ({names}, month, load_id) "
        f"select {', '.join(selected)}, ?, ? from {STAGED_VIEW}",
        [month, load_id],
    )


def ingest_file(settings: Settings, path: str | os.PathLike, month: str | None = None,
                user: str | None = None) -> IngestResult:
    """Gate the file at ``path`` and load it as ``month`` (default: from the file name).

    Returns the outcome; a rejected file is a result, not an exception. Raises
    :class:`CreditflowError` when the file does not exist, its month cannot be determined, or the
    warehouse is locked by another process.
    """
    source = Path(path)
    if not source.is_file():
        raise CreditflowError(f"file not found: {source}")
    month = _resolve_month(source, month)
    user = user or _current_user()
    settings.ensure_dirs()

    incoming = settings.landed / f".incoming-{uuid.uuid4().hex}"
    try:
        sha256 = _copy_and_hash(source, incoming)
        return _ingest_copy(settings, source.name, incoming, sha256, month, user)
    finally:
        with contextlib.suppress(FileNotFoundError):
            incoming.unlink()


def _ingest_copy(settings: Settings, file_name: str, incoming: Path, sha256: str, month: str,
                 user: str) -> IngestResult:
    now = datetime.now(UTC).replace(tzinfo=None)
    load_id = _new_load_id(now, sha256)
    kept_name = f"{sha256[:_HASH_PREFIX]}_{file_name}"
    suite = load_suite(SUITE_PATH)
    try:
        with connect(settings) as connection, file_engine(connection) as engine:
            init_warehouse(connection)
            current = _current_load(connection, month)
            if current and current.sha256 == sha256:
                return _log_unchanged(settings, connection, file_name, incoming, sha256, month,
                                      current.rows, load_id, user, now)

            # The file engine reads and checks the file. Only a file that passed is staged where
            # the warehouse's queries can join it with the stored months.
            report = validate_file(engine, incoming, file_name, suite)
            if report.passed:
                stage_in_warehouse(connection, engine, STAGED_VIEW)
                location = "row" if report.file_format == "parquet" else "line"
                overlap = find_ids_in_other_months(connection, report.columns, month, ID_COLUMN,
                                                   location)
                if overlap:
                    report.failures.append(overlap)
            result = IngestResult(outcome="rejected", month=month, rows=report.rows or 0,
                                  sha256=sha256, load_id=load_id)
            if not report.passed:
                return _reject(settings, connection, result, report, file_name, incoming,
                               kept_name, user, now)
            return _accept(settings, connection, result, report, current, file_name, incoming,
                           kept_name, user, now)
    except WarehouseLockedError as error:
        raise CreditflowError(str(error)) from error


def _report_dict(report: GateReport, result: IngestResult, now: datetime) -> dict[str, Any]:
    return {
        "file": report.file, "month": result.month, "sha256": result.sha256,
        "load_id": result.load_id, "checked_at": now.isoformat(timespec="seconds"),
        "suite": SUITE_NAME, "outcome": result.outcome, "message": result.message,
        **report.to_dict(),
    }


def _reject(settings: Settings, connection: Warehouse, result: IngestResult,
            report: GateReport, file_name: str, incoming: Path, kept_name: str, user: str,
            now: datetime) -> IngestResult:
    quarantine = Location(quarantine_url(settings))
    result.stored_path = _keep(incoming, quarantine, result.month, kept_name)
    report_name = f"{kept_name}.{result.load_id}.report.json"
    first = report.failures[0]
    others = len(report.failures) - 1
    result.message = (f"{file_name} rejected for month {result.month}: {first.message}"
                      + (f" (and {others} more failed check(s))" if others else ""))
    result.report = _report_dict(report, result, now)
    result.report_path = _write_report(quarantine, result.month, report_name, result.report)
    _log_attempt(connection, result, file_name, user, now)
    logger.warning("rejected %s for month %s: %s", file_name, result.month, first.message)
    return result


def _accept(settings: Settings, connection: Warehouse, result: IngestResult,
            report: GateReport, current: tuple[str, int] | None, file_name: str, incoming: Path,
            kept_name: str, user: str, now: datetime) -> IngestResult:
    landed = Location(landed_url(settings))
    result.outcome = "replaced" if current else "loaded"
    result.stored_path = _keep(incoming, landed, result.month, kept_name)
    report_name = f"{kept_name}.{result.load_id}.report.json"
    # The report is written after the commit, so load_log names it before it exists.
    result.report_path = landed.path_of(f"{result.month}/{report_name}")
    if landed.is_local:
        result.report_path = Path(result.report_path)
    result.message = f"{file_name}: {result.rows} rows {result.outcome} for month {result.month}"
    if current:
        result.message += f" (previously {current.rows} rows from other bytes)"
        result.replacement_warning = _replacement_warning(connection, report.columns,
                                                          result.month, current)
    if report.warnings:
        result.message += f", {len(report.warnings)} warning(s)"
    if result.replacement_warning:
        result.message += f". {result.replacement_warning}"
    result.report = _report_dict(report, result, now)

    with connection.transaction():
        _insert_month(connection, report.columns, result.month, result.load_id)
        _log_attempt(connection, result, file_name, user, now)
    _write_report(landed, result.month, report_name, result.report)
    if result.replacement_warning:
        logger.warning("%s", result.message)
    else:
        logger.info("%s", result.message)
    return result


def _log_unchanged(settings: Settings, connection: Warehouse, file_name: str,
                   incoming: Path, sha256: str, month: str, rows: int, load_id: str, user: str,
                   now: datetime) -> IngestResult:
    landed = Location(landed_url(settings))
    key = f"{month}/{sha256[:_HASH_PREFIX]}_{file_name}"
    stored: Path | str = landed.path_of(key)
    if landed.is_local:
        stored = Path(stored)
    result = IngestResult(
        outcome="unchanged", month=month, rows=rows, sha256=sha256, load_id=load_id,
        stored_path=stored if landed.exists(key) else None,
        message=f"{file_name}: month {month} already contains these bytes ({rows} rows), so "
                "nothing changed",
    )
    result.report = {"file": file_name, "month": month, "sha256": sha256, "load_id": load_id,
                     "outcome": "unchanged", "message": result.message, "rows": rows}
    _log_attempt(connection, result, file_name, user, now)
    logger.info("%s", result.message)
    return result


def format_result(result: IngestResult) -> str:
    """Return the readable CLI report of an ingest attempt."""
    report = result.report
    lines = [
        f"{result.outcome.upper()}: {report.get('file')} -> month {result.month}, "
        f"{result.rows} rows, sha256 {result.sha256[:16]}",
    ]
    failures = report.get("failures") or []
    warnings = report.get("warnings") or []
    lines += format_findings([Finding(**f) for f in failures], "failed checks")
    lines += format_findings([Finding(**w) for w in warnings], "warnings")
    if result.outcome == "rejected":
        lines.append(
            f"Nothing of this file was loaded; the warehouse keeps its earlier months. The file "
            f"is kept at {result.stored_path} and the report at {result.report_path}. "
            f"Correct the file and run `creditflow ingest FILE --month {result.month}` again."
        )
    elif result.report_path:
        if result.replacement_warning:
            lines.append(result.replacement_warning)
        lines.append(f"Kept at {result.stored_path}; report at {result.report_path}.")
    else:
        lines.append(result.message)
    return "\n".join(lines)


def command_ingest(args, settings: Settings) -> int:
    """Run ``creditflow ingest FILE [--month YYYY-MM]``: 0 when the file is in the warehouse,
    1 when it was rejected."""
    result = ingest_file(settings, args.file, month=args.month)
    print(format_result(result))
    return 0 if result.accepted else 1
