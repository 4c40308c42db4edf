"""The monthly flow: one month from the inbox file to scored, monitored and exported predictions.

The steps run in this order:

- ``land`` picks up the month's file from the inbox.
- ``gate`` validates it and loads it into the warehouse.
- ``build`` rebuilds the dbt feature models.
- ``train`` trains a challenger, or keeps the champion.
- ``score`` writes the month's predictions.
- ``monitor`` rebuilds the dbt monitoring models.
- ``export`` writes the predictions to CSV and Parquet.
- ``report`` writes the HTML monitoring report.
- ``notify`` posts the outcome to the webhook.

Each step is a Prefect task that reads and writes the warehouse or files and returns only a small
JSON summary, never a data frame, so a month can be rerun whole or from any step. Every run and
step is recorded in the ``pipeline_runs`` table.
"""

from __future__ import annotations

import os

# Prefect reads these when it is imported. Without PREFECT_API_URL, Prefect 3.9 starts a temporary
# local server. Its start-up took 22 s on a busy 2-core machine, past Prefect's 20 s default.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import contextvars  # noqa: E402
import dataclasses  # noqa: E402
import getpass  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: E402

from prefect import flow, get_run_logger, runtime, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows import pipeline_runs  # noqa: E402
from flows.config import Settings, load_settings  # noqa: E402
from flows.errors import CreditflowError  # noqa: E402
from flows.month_lock import month_lock  # noqa: E402
from flows.months import (  # noqa: E402
    HISTORY,
    month_from_filename,
    month_range,
    month_sort_key,
    monthly_file_name,
    previous_month,
)
from flows.notify import build_payload, notify  # noqa: E402
from flows.pipeline_runs import FAILED, INTERRUPTED, RUN, SKIPPED, SUCCEEDED  # noqa: E402
from flows.run_command import STEPS, select_steps, validate_month  # noqa: E402, F401
from flows.warehouse import (  # noqa: E402
    WarehouseLockedError,
    WarehouseUnavailableError,
    connect,
    table_exists,
    warehouse_exists,
)

logger = logging.getLogger(__name__)

FLOW_NAME = "creditflow-monthly"

# Settings of the run started by run_month; a deployment run reads them from the environment.
_SETTINGS: contextvars.ContextVar[Settings | None] = contextvars.ContextVar(
    "creditflow_settings", default=None
)


class RunFailedError(CreditflowError):
    """A step of a monthly run failed; the message names the month, the step and the cause."""

    def __init__(self, month: str, step: str, error: str) -> None:
        advice = rerun_advice(month, step)
        super().__init__(f"month {month} failed at step {step}: {error}\n{advice}")
        self.month = month
        self.step = step
        self.error = error


def rerun_advice(month: str, step: str) -> str:
    """Return the command that reruns ``month`` after a failure at ``step``.

    A rerun from ``gate`` skips ``land``, so it never reads a fixed file put back in the inbox.
    After a failure at ``land`` or ``gate`` the advice is to run the whole month.
    """
    if step in ("land", "gate"):
        return f"After fixing the cause, run the month again: creditflow run --month {month}"
    return (f"After fixing the cause, rerun from that step: "
            f"creditflow run --month {month} --from {step}")


# --- choosing what to run -------------------------------------------------------------------

def month_before(moment: datetime, timezone: str) -> str:
    """Return the calendar month before the one ``moment`` falls in, in ``timezone``."""
    try:
        local = moment.astimezone(ZoneInfo(timezone))
    except ZoneInfoNotFoundError as error:
        raise CreditflowError(
            f"unknown time zone {timezone!r} (CREDITFLOW_TIMEZONE): use an IANA name such as "
            "UTC or Europe/Paris"
        ) from error
    return previous_month(f"{local.year:04d}-{local.month:02d}")


def resolve_month(month: str | None, timezone: str) -> str:
    """Validate ``month``; without one, take the month that ended before the run was scheduled."""
    if month is None:
        scheduled = runtime.flow_run.scheduled_start_time or datetime.now(UTC)
        return month_before(scheduled, timezone)
    return validate_month(month)


# --- retries --------------------------------------------------------------------------------

def is_transient(error: BaseException | None) -> bool:
    """Return True for errors worth retrying: the warehouse file briefly locked by a process,
    or a PostgreSQL warehouse that did not accept the connection (a restart, a full server)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, WarehouseLockedError | WarehouseUnavailableError):
            return True
        text = str(error).lower()
        if "could not set lock on file" in text or "conflicting lock" in text:
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _retry_when_transient(task_: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as error:  # noqa: BLE001 - the failure of the task, whatever its type
        return is_transient(error)
    return False


def step_task(name: str) -> Callable[[Callable[..., dict[str, Any]]], Any]:
    """Make a step a Prefect task retried only on a locked warehouse, never on bad data."""
    return task(
        name=name,
        task_run_name=f"{name} {{month}}",
        cache_policy=NO_CACHE,
        persist_result=False,
        retries=3,
        retry_delay_seconds=[5, 15, 30],
        retry_condition_fn=_retry_when_transient,
    )


# --- the steps ------------------------------------------------------------------------------

def incoming_dir(settings: Settings, month: str) -> Path:
    """Folder of the files landed for ``month`` and not yet through the gate."""
    return settings.home / "runs" / month / "incoming"


def _query_one(settings: Settings, sql: str, parameters: list[Any], table: str) -> Any:
    if not warehouse_exists(settings):
        return None
    with connect(settings, wait_seconds=60) as connection:
        if not table_exists(connection, table):
            return None
        row = connection.execute(sql, parameters).fetchone()
    return row[0] if row else None


def loaded_rows(settings: Settings, month: str) -> int:
    """Return how many applications of ``month`` the warehouse holds."""
    count = _query_one(settings, "select count(*) from raw_applications where month = ?",
                       [month], "raw_applications")
    return int(count or 0)


def _inbox_files(settings: Settings, month: str) -> tuple[list[Path], Path | None, list[Path]]:
    """Return the inbox files of ``month``, the history file, and the files of no month."""
    monthly, history, unnamed = [], None, []
    if not settings.inbox.is_dir():
        return monthly, history, unnamed
    for path in sorted(settings.inbox.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            file_month = month_from_filename(path)
        except ValueError:
            unnamed.append(path)
            continue
        if file_month == month:
            monthly.append(path)
        elif file_month == HISTORY:
            history = path
    return monthly, history, unnamed


@step_task("land")
def land(settings: Settings, month: str) -> dict[str, Any]:
    """Move the month's file, and the history file while no history is loaded, out of the inbox."""
    log = get_run_logger()
    monthly, history, unnamed = _inbox_files(settings, month)
    for path in unnamed:
        log.warning("%s land: ignoring %s in %s: its name gives no month. Name the history file "
                    "initial.csv and a monthly file YYYYMMDD.csv (%s for %s); CSV or Parquet",
                    month, path.name, settings.inbox, monthly_file_name(month), month)
    if len(monthly) > 1:
        names = ", ".join(path.name for path in monthly)
        raise CreditflowError(
            f"{len(monthly)} files for month {month} in {settings.inbox}: {names}. A month has one "
            "file: keep the right one and move the others away"
        )
    picked = list(monthly)
    if history is not None:
        if loaded_rows(settings, HISTORY):
            log.warning("%s stays in the inbox: history is already loaded. To replace it, run "
                        "creditflow ingest %s", history.name, history)
        else:
            picked.insert(0, history)

    target = incoming_dir(settings, month)
    target.mkdir(parents=True, exist_ok=True)
    for path in picked:
        for earlier in target.iterdir():
            if month_from_filename(earlier) == month_from_filename(path):
                log.warning("%s replaces %s, landed earlier and not yet through the gate",
                            path.name, earlier.name)
                earlier.unlink()
        shutil.move(str(path), str(target / path.name))
    names = [path.name for path in picked]
    log.info("%s land: %s", month,
             ", ".join(names) if names else f"no new file in {settings.inbox}")
    return {"files": names}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "creditflow"


@step_task("gate")
def gate(settings: Settings, month: str) -> dict[str, Any]:
    """Validate and load the landed files (history first); a rejected file fails the run."""
    from flows.ingest import ingest_file

    log = get_run_logger()
    folder = incoming_dir(settings, month)
    pending = sorted(folder.iterdir(), key=lambda p: month_sort_key(month_from_filename(p))) \
        if folder.is_dir() else []
    files = []
    for path in pending:
        file_month = month_from_filename(path)
        log.info("%s gate: validating %s", month, path.name)
        result = ingest_file(settings, path, month=file_month, user=_user())
        # The gate kept the original bytes (landed or quarantined), so the pending copy can go.
        path.unlink()
        if result.outcome == "rejected":
            raise CreditflowError(
                f"{result.message or f'the gate rejected {path.name}'} "
                f"(report: {result.report_path}). "
                f"Fix the file, put it in {settings.inbox} and run the month again"
            )
        log.info("%s gate: %s %s, %s rows", month, path.name, result.outcome, result.rows)
        files.append({"file": path.name, "month": file_month, "outcome": result.outcome,
                      "rows": result.rows, "load_id": result.load_id})
    rows = loaded_rows(settings, month)
    if rows == 0:
        raise CreditflowError(
            f"no applications loaded for month {month}: put its file ({monthly_file_name(month)}) "
            f"in {settings.inbox} and run the month again"
        )
    return {"files": files, "month_rows": rows}


@step_task("build")
def build(settings: Settings, month: str) -> dict[str, Any]:
    """Rebuild the feature tables with dbt (all models except the monitoring ones)."""
    from flows.dbt_runner import build_features

    log = get_run_logger()
    log.info("%s build: dbt build of the feature models", month)
    build_features(settings)
    rows = _query_one(settings, "select count(*) from application_features where month = ?",
                      [month], "application_features")
    if not rows:
        raise CreditflowError(
            f"dbt built no feature rows for month {month}: check that its file passed the gate "
            "(creditflow status) and the dbt models' filters"
        )
    log.info("%s build: %s feature rows", month, rows)
    return {"feature_rows": int(rows)}


def labeled_rows_before(settings: Settings, month: str) -> int:
    """Return how many labeled applications precede ``month`` (history included)."""
    count = _query_one(
        settings,
        "select count(*) from application_features where target is not null "
        "and (month = ? or (month <> ? and month < ?))",
        [HISTORY, HISTORY, month],
        "application_features",
    )
    return int(count or 0)


@step_task("train")
def train(settings: Settings, month: str, reuse_model: bool, trials: int | None
          ) -> dict[str, Any]:
    """Train a challenger for ``month`` (promoted if not worse), or keep the champion."""
    from ml import service

    log = get_run_logger()
    champion = service.champion(settings)
    champion_id = champion.get("model_id") if champion else None
    if reuse_model and champion_id:
        log.info("%s train: reusing champion %s", month, champion_id)
        return {"status": SKIPPED, "reason": "reuse of the champion requested",
                "model_id": champion_id}
    if labeled_rows_before(settings, month) == 0:
        if champion_id:
            log.info("%s train: no labeled applications before %s, scoring with champion %s",
                     month, month, champion_id)
            return {"status": SKIPPED, "reason": f"no labeled applications before {month}",
                    "model_id": champion_id}
        raise CreditflowError(
            f"cannot score {month}: no labeled applications before it to train on and no "
            "champion model. Load the history file (initial.csv) or an earlier labeled month first"
        )
    if reuse_model:
        log.warning("%s train: reuse requested, but there is no champion yet: training one", month)
    log.info("%s train: tuning and training (trials: %s)", month,
             trials if trials is not None else "from ml/params.yml")
    outcome = as_detail(service.train_month(settings, month, trials=trials))
    log.info("%s train: model %s, validation AUC %s on %s, %s", month, outcome.get("model_id"),
             _number(outcome.get("validation_auc")), outcome.get("validation_month"),
             "promoted to champion" if outcome.get("promoted") else
             f"champion kept ({outcome.get('reason')})")
    return outcome


@step_task("score")
def score(settings: Settings, month: str) -> dict[str, Any]:
    """Score the month's applications with the champion into ``predictions`` (one transaction)."""
    from ml import service

    log = get_run_logger()
    outcome = as_detail(service.score_month(settings, month))
    log.info("%s score: %s applications scored by model %s, decisions %s, AUC %s", month,
             outcome.get("rows"), outcome.get("model_id"), outcome.get("decision_counts"),
             _number(outcome.get("auc")))
    return outcome


@step_task("monitor")
def monitor(settings: Settings, month: str) -> dict[str, Any]:
    """Rebuild the dbt monitoring models (drift, fairness, performance)."""
    from flows.dbt_runner import build_monitoring

    get_run_logger().info("%s monitor: dbt build of the monitoring models", month)
    build_monitoring(settings)
    return {}


@step_task("export")
def export(settings: Settings, month: str) -> dict[str, Any]:
    """Write the month's predictions to CSV and Parquet for download."""
    from ml import service

    outcome = as_detail(service.export_predictions(settings, month))
    get_run_logger().info("%s export: %s rows to %s", month, outcome.get("rows"),
                          outcome.get("csv_path"))
    return outcome


@step_task("report")
def report(settings: Settings, month: str) -> dict[str, Any]:
    """Write the month's HTML monitoring report."""
    from flows.report import write_report

    path = write_report(settings, month)
    get_run_logger().info("%s report: %s", month, path)
    return {"report_path": str(path)}


STEP_TASKS: dict[str, Any] = {
    "land": land, "gate": gate, "build": build, "train": train, "score": score,
    "monitor": monitor, "export": export, "report": report,
}


def as_detail(outcome: Any) -> dict[str, Any]:
    """Turn a step's outcome (dataclass or dict) into plain JSON values."""
    if dataclasses.is_dataclass(outcome) and not isinstance(outcome, type):
        outcome = dataclasses.asdict(outcome)
    return {str(key): plain(value) for key, value in dict(outcome).items()}


def plain(value: Any) -> Any:
    """Return ``value`` as JSON types: paths as text, NumPy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


# --- the summary and the notification -------------------------------------------------------

def monitoring_alerts(settings: Settings, month: str) -> list[dict[str, Any]]:
    """Return the month's monitoring alerts, or none when reading them fails (logged)."""
    from flows.monitoring import alerts

    try:
        return plain(list(alerts(settings, month)))
    except Exception as error:  # noqa: BLE001 - alerts must never fail the notification
        logger.warning("reading the monitoring alerts of %s failed: %s: %s", month,
                       type(error).__name__, error)
        return []


def month_summary(settings: Settings, month: str, run_id: str, results: dict[str, dict],
                  status: str = SUCCEEDED, trigger_file: str | None = None) -> dict[str, Any]:
    """Build the notification payload of a successful run from the warehouse and the steps.

    Facts of steps not run this time (``--from``, ``--only``) come from their latest success.
    """
    def detail(step: str) -> dict[str, Any]:
        return results.get(step) or pipeline_runs.latest_detail(settings, month, step) or {}

    scored = _query_one(settings, "select count(*) from predictions where score_month = ?",
                        [month], "predictions")
    return build_payload(
        month=month,
        status=status,
        run_id=run_id,
        rows_scored=int(scored) if scored is not None else None,
        auc=detail("score").get("auc"),
        model_id=detail("score").get("model_id"),
        predictions_csv=detail("export").get("csv_path"),
        predictions_parquet=detail("export").get("parquet_path"),
        report_path=detail("report").get("report_path"),
        alerts=monitoring_alerts(settings, month),
        steps=[{"step": step, "status": result.get("status", SUCCEEDED)}
               for step, result in results.items()],
        trigger_file=trigger_file,
    )


def _record(write: Callable[..., Any], settings: Settings, run_id: str, *args: Any,
            **kwargs: Any) -> bool:
    """Call the ``pipeline_runs`` function ``write``, and log and return False when it raises.

    Used on the failure path, where an unreachable warehouse must not stop the notification.
    """
    try:
        write(settings, run_id, *args, **kwargs)
    except Exception as error:  # noqa: BLE001 - psycopg, duckdb and lock errors alike
        logger.warning("recording run %s in pipeline_runs (%s) failed: %s: %s", run_id,
                       write.__name__, type(error).__name__, error)
        return False
    return True


def _send(settings: Settings, run_id: str, month: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` as the run's notify step; nothing here fails the run.

    The ``pipeline_runs`` rows of the notify step are best effort, so the message is sent even
    when the warehouse cannot be written.
    """
    _record(pipeline_runs.start, settings, run_id, month, "notify")
    try:
        delivered = notify(settings, payload)
    except Exception as error:  # noqa: BLE001 - a notification never fails the run
        logger.warning("notification of %s failed: %s: %s", month, type(error).__name__, error)
        _record(pipeline_runs.finish, settings, run_id, "notify", FAILED, error=str(error))
        return
    configured = bool(settings.webhook_url)
    status = FAILED if configured and not delivered else SUCCEEDED
    error = "the webhook did not accept the message (see the log)" if status == FAILED else None
    _record(pipeline_runs.finish, settings, run_id, "notify", status, error=error,
            detail={"webhook": configured, "delivered": delivered, "text": payload["text"]})


def _fail_run(settings: Settings, run_id: str, month: str, step: str, error: BaseException,
              results: dict[str, dict[str, Any]], trigger_file: str | None) -> RunFailedError:
    """Record the failure of ``step`` (best effort), post the failure notification and return
    the error to raise."""
    log = get_run_logger()
    message = _error_text(error)
    log.error("%s: step %s failed: %s", month, step, message)
    _record(pipeline_runs.finish, settings, run_id, step, FAILED, error=message)
    results[step] = {"status": FAILED}
    payload = build_payload(month=month, status=FAILED, run_id=run_id, failed_step=step,
                            error=message, trigger_file=trigger_file,
                            steps=[{"step": name, "status": value.get("status", SUCCEEDED)}
                                   for name, value in results.items()])
    _send(settings, run_id, month, payload)
    _record(pipeline_runs.finish, settings, run_id, RUN, FAILED, error=f"{step}: {message}")
    return RunFailedError(month, step, message)


# --- the flow -------------------------------------------------------------------------------

def _run_id() -> str:
    flow_run_id = runtime.flow_run.id
    return str(flow_run_id) if flow_run_id else uuid.uuid4().hex


def _error_text(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if isinstance(error, CreditflowError) else f"{type(error).__name__}: {text}"


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def monthly_run(
    month: str | None = None,
    from_step: str | None = None,
    only_step: str | None = None,
    reuse_model: bool = False,
    trials: int | None = None,
    trigger_file: str | None = None,
) -> dict[str, Any]:
    """Run one month end to end: land, gate, build, train, score, monitor, export, report, notify.

    Args:
        month: the month to run, ``YYYY-MM``; by default the month before the scheduled start.
        from_step: start at this step (earlier steps' results stay as they are).
        only_step: run this step alone.
        reuse_model: score with the current champion instead of training a challenger.
        trials: Optuna trials of the training step (default from ``ml/params.yml``).
        trigger_file: URL of the file whose arrival started the run, for the notification.

    Returns the run's summary, which is also the success notification. When a step fails, the
    run posts a failure notification, even without the notify step, and raises
    :class:`RunFailedError`.
    """
    settings = _SETTINGS.get() or load_settings()
    settings.ensure_dirs()
    month = resolve_month(month, settings.schedule_timezone)
    steps = select_steps(from_step, only_step)
    run_id = _run_id()
    log = get_run_logger()
    with month_lock(settings, month, run_id):
        try:
            interrupted = pipeline_runs.mark_interrupted(settings, month)
            pipeline_runs.start(settings, run_id, month, RUN, detail={
                "steps": steps, "reuse_model": reuse_model, "trials": trials,
                "trigger_file": trigger_file})
        except Exception as error:
            # The warehouse is unreachable before the first step: that step is the failed one.
            raise _fail_run(settings, run_id, month, steps[0], error, {},
                            trigger_file) from error
        if interrupted:
            log.warning("%s: %s step(s) of an earlier run never ended (process killed?); "
                        "marked interrupted", month, interrupted)
        log.info("%s: run %s started, steps: %s", month, run_id, ", ".join(steps))
        return _run_steps(settings, run_id, month, steps, reuse_model, trials, trigger_file)


def _run_steps(settings: Settings, run_id: str, month: str, steps: list[str],
               reuse_model: bool, trials: int | None,
               trigger_file: str | None = None) -> dict[str, Any]:
    log = get_run_logger()
    results: dict[str, dict[str, Any]] = {}
    for step in steps:
        if step == "notify":
            continue
        arguments: dict[str, Any] = {"reuse_model": reuse_model, "trials": trials} \
            if step == "train" else {}
        try:
            pipeline_runs.start(settings, run_id, month, step)
            result = STEP_TASKS[step](settings, month, **arguments)
            status = result.pop("status", SUCCEEDED)
            pipeline_runs.finish(settings, run_id, step, status, detail=result)
        except Exception as error:
            raise _fail_run(settings, run_id, month, step, error, results,
                            trigger_file) from error
        except KeyboardInterrupt:
            _record_interrupt(settings, run_id, month, step)
            raise
        results[step] = {"status": status, **result}

    summary = month_summary(settings, month, run_id, results, trigger_file=trigger_file)
    if "notify" in steps:
        _send(settings, run_id, month, summary)
    pipeline_runs.finish(settings, run_id, RUN, SUCCEEDED, detail=summary)
    log.info("%s: run %s succeeded: %s", month, run_id, summary["text"])
    return summary


def _record_interrupt(settings: Settings, run_id: str, month: str, step: str) -> None:
    """Record that the user stopped the run (Ctrl-C or SIGTERM) during ``step``.

    Best effort: the process is on its way out, and the next run of the month closes rows left
    running anyway.
    """
    message = (f"stopped by an interrupt (Ctrl-C or SIGTERM) during {step}: finish the month "
               f"with creditflow run --month {month} --from {step}")
    try:
        pipeline_runs.finish(settings, run_id, step, INTERRUPTED, error=message)
        pipeline_runs.finish(settings, run_id, RUN, INTERRUPTED, error=message)
    except Exception as error:
        logger.warning("could not record the interruption of run %s: %s", run_id, error)


# --- Python and command-line entry points ---------------------------------------------------

def run_month(settings: Settings, month: str | None, from_step: str | None = None,
              only_step: str | None = None, reuse_model: bool = False,
              trials: int | None = None, trigger_file: str | None = None) -> dict[str, Any]:
    """Run the monthly flow for ``month`` with ``settings`` and return its summary.

    Raises :class:`RunFailedError` when a step fails and
    :class:`flows.month_lock.MonthLockedError` when the month is already running.
    """
    token = _SETTINGS.set(settings)
    try:
        return monthly_run(month=month, from_step=from_step, only_step=only_step,
                           reuse_model=reuse_model, trials=trials, trigger_file=trigger_file)
    finally:
        _SETTINGS.reset(token)


def backfill(settings: Settings, first: str, last: str, reuse_model: bool = False,
             trials: int | None = None) -> list[dict[str, Any]]:
    """Run every month from ``first`` to ``last`` in order, stopping at the first failure."""
    try:
        months = month_range(first, last)
    except ValueError as error:
        raise CreditflowError(str(error)) from error
    summaries = []
    for month in months:
        try:
            summaries.append(run_month(settings, month, reuse_model=reuse_model, trials=trials))
        except RunFailedError as error:
            remaining = months[months.index(month):]
            # The cause alone: the run's own advice names `creditflow run`, not the backfill.
            raise CreditflowError(
                f"backfill stopped: month {month} failed at step {error.step}: {error.error}\n"
                f"Months done: "
                f"{', '.join(s['month'] for s in summaries) or 'none'}; not done: "
                f"{', '.join(remaining)}. After the fix: creditflow backfill --from {month} "
                f"--to {months[-1]}"
            ) from error
    return summaries


def _duration(started: datetime | None, ended: datetime | None) -> str:
    if started is None or ended is None:
        return "-"
    seconds = (ended - started).total_seconds()
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def describe_step(step: str, detail: dict[str, Any] | None) -> str:
    """Return the facts of one recorded step in a few words, for ``creditflow status``."""
    detail = detail or {}
    if "reason" in detail and step != "train":
        return str(detail["reason"])
    facts = {
        "land": lambda d: ", ".join(d.get("files", [])) or "no new file",
        "gate": lambda d: f"{d.get('month_rows')} applications in the month",
        "build": lambda d: f"{d.get('feature_rows')} feature rows",
        "train": lambda d: (f"model {d.get('model_id')}, validation AUC "
                            f"{_number(d.get('validation_auc'))}, "
                            f"{'promoted' if d.get('promoted') else 'champion kept'}"
                            if "validation_auc" in d else str(d.get("reason", ""))),
        "score": lambda d: (f"{d.get('rows')} rows, model {d.get('model_id')}, "
                            f"AUC {_number(d.get('auc'))}"),
        "export": lambda d: str(d.get("csv_path", "")),
        "report": lambda d: str(d.get("report_path", "")),
        "notify": lambda d: "sent" if d.get("delivered") else (
            "not delivered" if d.get("webhook") else "logged (no webhook)"),
    }
    return facts[step](detail) if step in facts and detail else ""


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"


def format_status(runs: list[dict[str, Any]]) -> str:
    """Lay out recent runs and their steps as a text table."""
    if not runs:
        return "no runs recorded yet: start one with creditflow run --month YYYY-MM"
    lines = []
    for run in runs:
        started = run["started_at"]
        lines.append(f"{run['month']}  {run['status']:<11}  started {started:%Y-%m-%d %H:%M:%S} "
                     f"UTC  {_duration(started, run['ended_at']):>7}  run {run['run_id']}")
        if run.get("error"):
            lines.append(f"    error: {run['error'].splitlines()[0]}")
        for step in run["steps"]:
            text = step["error"].splitlines()[0] if step.get("error") else describe_step(
                step["step"], json.loads(step["detail"]) if step.get("detail") else None)
            lines.append(f"    {step['step']:<8} {step['status']:<11} "
                         f"{_duration(step['started_at'], step['ended_at']):>7}  {text}")
    return "\n".join(lines)


def format_summary(summary: dict[str, Any]) -> str:
    lines = [summary["text"]]
    for label, key in (("predictions CSV", "predictions_csv"),
                       ("predictions Parquet", "predictions_parquet"),
                       ("report", "report_path")):
        if summary.get(key):
            lines.append(f"  {label}: {summary[key]}")
    for alert in summary.get("alerts") or []:
        lines.append(f"  alert: {alert.get('message') or alert}")
    return "\n".join(lines)


def command_status(args: Any, settings: Settings) -> int:
    print(format_status(pipeline_runs.recent_runs(settings, limit=args.limit)))
    return 0
