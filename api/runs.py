"""Monthly runs started from the API, each in its own ``creditflow run`` process.

A separate process (:mod:`api.worker`, which calls ``flows.monthly.run_month``) keeps the API
responsive and away from the warehouse's write lock: the run holds the DuckDB file while it
writes, the API process never does. The API records each run in
``api_runs`` (state store) and reads step progress from the warehouse's ``pipeline_runs`` when
the file is free, keeping the last progress it saw for when it is not.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.store import StateStore, utc_now
from flows.config import Settings
from flows.month_lock import process_is_running
from flows.warehouse import WarehouseLockedError, connect, table_exists, warehouse_exists

logger = logging.getLogger(__name__)

STEPS = ("land", "gate", "build", "train", "score", "monitor", "export", "report", "notify")
ACTIVE_STATUSES = ("queued", "running")
# Seconds between two reads of pipeline_runs for one run, so polling pages do not keep the
# warehouse open while the run needs it.
_STEP_READ_INTERVAL = 3.0
_LOG_TAIL_BYTES = 4000


class RunConflictError(Exception):
    """A run for the month is already queued or running."""

    def __init__(self, month: str, run_id: str) -> None:
        super().__init__(f"a run for {month} is already in progress (run {run_id})")
        self.month = month
        self.run_id = run_id


@dataclass
class StepState:
    """Progress of one step of the monthly flow within a run."""

    step: str
    status: str = "pending"
    started_at: str | None = None
    ended_at: str | None = None
    error: str | None = None
    detail: str | None = None


@dataclass
class RunState:
    """One run started through the API, with the step progress last read."""

    run_id: str
    month: str
    from_step: str | None
    reuse_model: bool
    status: str
    requested_by: str
    requested_at: str
    ended_at: str | None
    exit_code: int | None
    message: str | None
    steps: list[StepState] = field(default_factory=list)
    steps_checked_at: str | None = None


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _steps_from_json(text: str | None, from_step: str | None) -> list[StepState]:
    if text:
        return [StepState(**item) for item in json.loads(text)]
    first = STEPS.index(from_step) if from_step in STEPS else 0
    return [StepState(step, "pending" if i >= first else "skipped") for i, step in enumerate(STEPS)]


def _run_from_row(row) -> RunState:
    return RunState(
        run_id=row["run_id"], month=row["month"], from_step=row["from_step"],
        reuse_model=bool(row["reuse_model"]), status=row["status"],
        requested_by=row["requested_by"], requested_at=row["requested_at"],
        ended_at=row["ended_at"], exit_code=row["exit_code"], message=row["message"],
        steps=_steps_from_json(row["steps_json"], row["from_step"]),
        steps_checked_at=row["steps_checked_at"],
    )


def read_pipeline_steps(settings: Settings, month: str, since: datetime,
                        from_step: str | None, gate: threading.Lock) -> list[StepState] | None:
    """Return the steps ``pipeline_runs`` records for ``month`` since ``since``, newest flow run.

    ``gate`` is the lock that serializes this process's use of the warehouse. Returns None when
    the warehouse is locked, busy in this process, or does not exist yet.
    """
    if not warehouse_exists(settings):
        return None
    if not gate.acquire(timeout=1.0):
        return None
    try:
        with connect(settings, read_only=True) as connection:
            if not table_exists(connection, "pipeline_runs"):
                return None
            rows = connection.execute(
                """
                select run_id, step, status, started_at, ended_at, error, detail
                from pipeline_runs
                where month = ? and started_at >= ?
                order by started_at
                """,
                [month, since.replace(tzinfo=None)],
            ).fetchall()
    except WarehouseLockedError:
        return None
    except Exception as error:  # duckdb raises its own error classes on a half-written file
        logger.warning("could not read pipeline_runs for %s: %s", month, error)
        return None
    finally:
        gate.release()
    steps = _steps_from_json(None, from_step)
    if not rows:
        return steps
    latest_run = rows[-1][0]
    by_step = {step.step: step for step in steps}
    for run_id, step, status, started_at, ended_at, error, detail in rows:
        if run_id != latest_run or step not in by_step:
            continue
        by_step[step] = StepState(
            step=step, status=str(status),
            started_at=started_at.isoformat() if started_at else None,
            ended_at=ended_at.isoformat() if ended_at else None,
            error=error, detail=detail,
        )
    return [by_step[step.step] for step in steps]


def _log_tail_message(log_path: Path) -> str | None:
    """Return the last error line the run printed, for the run's message."""
    try:
        with log_path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - _LOG_TAIL_BYTES, 0))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1].strip() if lines else None


class RunManager:
    """Start monthly runs as child processes and report their status and step progress."""

    def __init__(self, settings: Settings, store: StateStore, warehouse_gate: threading.Lock,
                 trials: int | None = None) -> None:
        self.settings = settings
        self.store = store
        self.warehouse_gate = warehouse_gate
        self.trials = trials
        self.log_dir = settings.home / "api_runs"
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen] = {}
        self._last_step_read: dict[str, float] = {}

    def recover(self) -> None:
        """Mark runs left active by an earlier server process as interrupted or keep watching."""
        with self.store.connect() as connection:
            rows = connection.execute(
                "select run_id, pid from api_runs where status in ('queued', 'running')"
            ).fetchall()
        for row in rows:
            # A run still queued has no pid yet.
            if row["pid"] is not None and process_is_running(row["pid"]):
                logger.info("run %s (pid %s) outlived an earlier server; watching it",
                            row["run_id"], row["pid"])
                threading.Thread(target=self._watch_foreign, args=(row["run_id"], row["pid"]),
                                 daemon=True, name=f"watch-{row['run_id']}").start()
            else:
                self._finish(row["run_id"], "interrupted", None,
                             "the API server stopped while this run was in progress: check "
                             "creditflow status, then start the month again")

    def start(self, month: str, from_step: str | None, reuse_model: bool, user: str) -> RunState:
        """Start a run for ``month`` and return it; raise RunConflictError if one is active."""
        run_id = uuid.uuid4().hex[:16]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{run_id}.log"
        with self._lock:
            with self.store.connect() as connection:
                active = connection.execute(
                    "select run_id from api_runs"
                    " where month = ? and status in ('queued', 'running')",
                    [month],
                ).fetchone()
                if active:
                    raise RunConflictError(month, active["run_id"])
                connection.execute(
                    "insert into api_runs (run_id, month, from_step, reuse_model, status,"
                    " requested_by, requested_at, log_path)"
                    " values (?, ?, ?, ?, 'queued', ?, ?, ?)",
                    [run_id, month, from_step, int(reuse_model), user, utc_now(), str(log_path)],
                )
            command = [sys.executable, "-m", "api.worker", "--home", str(self.settings.home),
                       "--month", month]
            if from_step:
                command += ["--from", from_step]
            if reuse_model:
                command.append("--reuse-model")
            if self.trials:
                command += ["--trials", str(self.trials)]
            try:
                with log_path.open("wb") as log:
                    process = subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        cwd=str(self.settings.home), start_new_session=True,
                    )
            except OSError as error:
                self._finish(run_id, "failed", None, f"could not start the run process: {error}")
                raise
            self._processes[run_id] = process
            with self.store.connect() as connection:
                connection.execute(
                    "update api_runs set status = 'running', pid = ? where run_id = ?",
                    [process.pid, run_id],
                )
        logger.info("started run %s for %s (pid %d) by %s", run_id, month, process.pid, user)
        threading.Thread(target=self._watch, args=(run_id, process), daemon=True,
                         name=f"watch-{run_id}").start()
        return self.get(run_id)

    def _watch(self, run_id: str, process: subprocess.Popen) -> None:
        exit_code = process.wait()
        status = "succeeded" if exit_code == 0 else "failed"
        message = None if exit_code == 0 else _log_tail_message(self.log_dir / f"{run_id}.log")
        self._finish(run_id, status, exit_code, message)
        self._processes.pop(run_id, None)

    def _watch_foreign(self, run_id: str, pid: int) -> None:
        while process_is_running(pid):
            threading.Event().wait(2.0)
        self._finish(run_id, "unknown", None, "the run outlived an earlier API server, so its "
                                              "exit status is unknown: check creditflow status")

    def _finish(self, run_id: str, status: str, exit_code: int | None, message: str | None) -> None:
        run = self.get(run_id, refresh_steps=False)
        steps = None
        if run is not None:
            steps = read_pipeline_steps(self.settings, run.month,
                                        _parse_time(run.requested_at) - timedelta(seconds=5),
                                        run.from_step, self.warehouse_gate)
        with self.store.connect() as connection:
            connection.execute(
                "update api_runs set status = ?, exit_code = ?, message = ?, ended_at = ?"
                " where run_id = ?",
                [status, exit_code, message, utc_now(), run_id],
            )
            if steps is not None:
                connection.execute(
                    "update api_runs set steps_json = ?, steps_checked_at = ? where run_id = ?",
                    [json.dumps([s.__dict__ for s in steps]), utc_now(), run_id],
                )
        logger.info("run %s ended: %s (exit code %s)", run_id, status, exit_code)

    def get(self, run_id: str, refresh_steps: bool = True) -> RunState | None:
        """Return the run, reading fresh step progress if the warehouse is free."""
        with self.store.connect() as connection:
            row = connection.execute("select * from api_runs where run_id = ?", [run_id]).fetchone()
        if row is None:
            return None
        run = _run_from_row(row)
        if refresh_steps and run.status in ACTIVE_STATUSES:
            self._refresh_steps(run)
        return run

    def _refresh_steps(self, run: RunState) -> None:
        now = datetime.now(UTC).timestamp()
        if now - self._last_step_read.get(run.run_id, 0.0) < _STEP_READ_INTERVAL:
            return
        self._last_step_read[run.run_id] = now
        since = _parse_time(run.requested_at) - timedelta(seconds=5)
        steps = read_pipeline_steps(self.settings, run.month, since, run.from_step,
                                    self.warehouse_gate)
        if steps is None:
            return
        run.steps = steps
        run.steps_checked_at = utc_now()
        with self.store.connect() as connection:
            connection.execute(
                "update api_runs set steps_json = ?, steps_checked_at = ? where run_id = ?",
                [json.dumps([s.__dict__ for s in steps]), run.steps_checked_at, run.run_id],
            )

    def recent(self, limit: int = 20) -> list[RunState]:
        with self.store.connect() as connection:
            rows = connection.execute(
                "select * from api_runs order by requested_at desc, rowid desc limit ?", [limit]
            ).fetchall()
        return [_run_from_row(row) for row in rows]

    def active_months(self) -> set[str]:
        with self.store.connect() as connection:
            rows = connection.execute(
                "select month from api_runs where status in ('queued', 'running')"
            ).fetchall()
        return {row["month"] for row in rows}

    def stop_all(self) -> None:
        """Ask the runs this process started to stop (used by tests and server shutdown)."""
        for run_id, process in list(self._processes.items()):
            if process.poll() is None:
                logger.warning("stopping run %s (pid %d)", run_id, process.pid)
                os.killpg(process.pid, signal.SIGTERM)
