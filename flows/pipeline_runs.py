"""The ``pipeline_runs`` table: one row per run (step ``run``) and one per step it ran.

Each write opens the warehouse, writes one row and closes it, so the DuckDB file lock is never
held between steps. Times are UTC.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from typing import Any

from flows.config import Settings
from flows.month_lock import lock_path, process_is_running, read_holder
from flows.warehouse import connect, init_warehouse, table_exists, warehouse_exists

RUN = "run"  # the step name of the row that records the whole run
RUNNING, SUCCEEDED, FAILED, SKIPPED, INTERRUPTED = (
    "running", "succeeded", "failed", "skipped", "interrupted"
)
_WAIT_SECONDS = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def start(settings: Settings, run_id: str, month: str, step: str,
          detail: dict[str, Any] | None = None) -> None:
    """Insert the row of ``step`` with status ``running``."""
    with connect(settings, wait_seconds=_WAIT_SECONDS) as connection:
        init_warehouse(connection)
        connection.execute(
            "insert into pipeline_runs (run_id, month, step, started_at, status, detail) "
            "values (?, ?, ?, ?, ?, ?)",
            [run_id, month, step, utc_now(), RUNNING, _to_json(detail)],
        )


def finish(settings: Settings, run_id: str, step: str, status: str, error: str | None = None,
           detail: dict[str, Any] | None = None) -> None:
    """Set the outcome of ``step`` in run ``run_id``."""
    with connect(settings, wait_seconds=_WAIT_SECONDS) as connection:
        connection.execute(
            "update pipeline_runs set ended_at = ?, status = ?, error = ?, "
            "detail = coalesce(?, detail) where run_id = ? and step = ?",
            [utc_now(), status, error, _to_json(detail), run_id, step],
        )


def mark_interrupted(settings: Settings, month: str) -> int:
    """Close the rows of ``month`` still marked running; call it only while holding the month lock.

    A row stays ``running`` only when its process ended without recording an outcome (killed).
    Returns how many rows were closed.
    """
    if not warehouse_exists(settings):
        return 0
    with connect(settings, wait_seconds=_WAIT_SECONDS) as connection:
        if not table_exists(connection, "pipeline_runs"):
            return 0
        rows = connection.execute(
            "update pipeline_runs set status = ?, ended_at = coalesce(ended_at, ?), "
            "error = coalesce(error, ?) where month = ? and status = ? returning run_id",
            [INTERRUPTED, utc_now(), "the process stopped before the step ended (killed?)",
             month, RUNNING],
        ).fetchall()
    return len(rows)


def latest_detail(settings: Settings, month: str, step: str) -> dict[str, Any] | None:
    """Return the detail of the latest succeeded ``step`` of ``month``, or None."""
    if not warehouse_exists(settings):
        return None
    with connect(settings, wait_seconds=_WAIT_SECONDS) as connection:
        if not table_exists(connection, "pipeline_runs"):
            return None
        row = connection.execute(
            "select detail from pipeline_runs where month = ? and step = ? and status = ? "
            "order by started_at desc limit 1",
            [month, step, SUCCEEDED],
        ).fetchone()
    return json.loads(row[0]) if row and row[0] else None


def recent_runs(settings: Settings, limit: int = 10) -> list[dict[str, Any]]:
    """Return the latest ``limit`` runs, newest first, each with its steps in run order."""
    if not warehouse_exists(settings):
        return []
    with connect(settings, wait_seconds=_WAIT_SECONDS) as connection:
        if not table_exists(connection, "pipeline_runs"):
            return []
        columns = ["run_id", "month", "step", "started_at", "ended_at", "status", "error",
                   "detail"]
        runs = connection.execute(
            f"select {', '.join(columns)} from pipeline_runs where step = ? "
            "order by started_at desc limit ?",
            [RUN, limit],
        ).fetchall()
        result = []
        for run in runs:
            record = dict(zip(columns, run, strict=True))
            steps = connection.execute(
                f"select {', '.join(columns)} from pipeline_runs where run_id = ? and step <> ? "
                "order by started_at",
                [record["run_id"], RUN],
            ).fetchall()
            record["steps"] = [dict(zip(columns, step, strict=True)) for step in steps]
            if record["status"] == RUNNING and not _run_process_alive(settings, record):
                _show_interrupted(record)
            result.append(record)
    return result


def _run_process_alive(settings: Settings, run: dict[str, Any]) -> bool:
    """Return False when no live process holds the month lock for ``run``.

    A lock held on another host, or with unreadable content, counts as alive because this
    host cannot check it.
    """
    holder = read_holder(lock_path(settings, run["month"]))
    if holder is None:
        return False
    if not holder:
        return True
    if holder.get("run_id") != run["run_id"]:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    return process_is_running(int(holder.get("pid", 0)))


def _show_interrupted(run: dict[str, Any]) -> None:
    """Show a ``running`` run whose process ended as ``interrupted``, without writing it.

    The next run of the month records the same status in the table (see mark_interrupted).
    """
    message = ("the process of this run ended without recording an outcome (killed?). Finish "
               f"the month with creditflow run --month {run['month']} --from <first step not "
               "succeeded>")
    run["status"] = INTERRUPTED
    run["error"] = run["error"] or message
    for step in run["steps"]:
        if step["status"] == RUNNING:
            step["status"] = INTERRUPTED


def _to_json(detail: dict[str, Any] | None) -> str | None:
    return None if detail is None else json.dumps(detail, default=str, sort_keys=True)
