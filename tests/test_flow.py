"""The monthly flow's framework: step selection, month lock, retries, run records, failures.

These tests run the real Prefect flow (temporary local server) on empty or tiny deployments. The
whole flow on the real sample months is in ``test_flow_real.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows import pipeline_runs
from flows.config import REPO_ROOT
from flows.errors import CreditflowError
from flows.month_lock import MonthLockedError, lock_path, month_lock, process_is_running
from flows.monthly import (
    STEPS,
    RunFailedError,
    backfill,
    command_status,
    is_transient,
    month_before,
    resolve_month,
    run_month,
    select_steps,
    step_task,
)
from flows.run_command import hide_expected_tracebacks
from flows.warehouse import WarehouseLockedError, connect
from tests.webhook import WebhookReceiver


def _rows(settings, sql, parameters=()):
    with connect(settings.warehouse, read_only=True) as connection:
        return connection.execute(sql, list(parameters)).fetchall()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- step selection and months ---------------------------------------------------------------

def test_select_steps_default_is_all():
    assert select_steps() == list(STEPS)


def test_select_steps_from_score():
    assert select_steps(from_step="score") == ["score", "monitor", "export", "report", "notify"]


def test_select_steps_only_one():
    assert select_steps(only_step="build") == ["build"]


def test_select_steps_unknown_step():
    with pytest.raises(CreditflowError, match="unknown step 'scoring': choose one of land, gate"):
        select_steps(from_step="scoring")


def test_select_steps_from_and_only():
    with pytest.raises(CreditflowError, match="not both"):
        select_steps(from_step="gate", only_step="score")


def test_month_before_in_time_zone():
    moment = datetime(2021, 2, 1, 3, 0, tzinfo=UTC)
    assert month_before(moment, "UTC") == "2021-01"
    # 03:00 UTC on 1 February is still 31 January in New York.
    assert month_before(moment, "America/New_York") == "2020-12"


def test_month_before_unknown_zone():
    with pytest.raises(CreditflowError, match="unknown time zone 'Mars/Base'"):
        month_before(datetime(2021, 2, 1, tzinfo=UTC), "Mars/Base")


def test_resolve_month_default_is_previous():
    now = datetime.now(UTC)
    expected = month_before(now, "UTC")
    assert resolve_month(None, "UTC") == expected


def test_resolve_month_rejects_history():
    with pytest.raises(CreditflowError, match="history file is loaded by the run"):
        resolve_month("history", "UTC")


def test_resolve_month_rejects_invalid():
    with pytest.raises(CreditflowError, match="invalid month '2021-13'"):
        resolve_month("2021-13", "UTC")


def test_rerun_advice_after_gate_runs_month():
    # A rerun from gate skips land, so a fixed file put back in the inbox would never be read.
    for step in ("land", "gate"):
        message = str(RunFailedError("2021-03", step, "the gate rejected 20210301.csv"))
        assert message.endswith("run the month again: creditflow run --month 2021-03"), step
        assert "--from" not in message, step


def test_rerun_advice_after_build_from_step():
    message = str(RunFailedError("2021-03", "build", "dbt failed"))
    assert message.endswith("rerun from that step: creditflow run --month 2021-03 --from build")


# --- the command line before Prefect starts --------------------------------------------------

_CLI_WITHOUT_PREFECT = (
    "import sys\n"
    "from flows.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('prefect imported' if 'prefect' in sys.modules else 'prefect not imported')\n"
    "sys.exit(code)\n"
)


@pytest.mark.parametrize(("arguments", "error"), [
    (["run", "--month", "2021-13"], "error: invalid month '2021-13'"),
    (["run", "--month", "history"], "error: the history file is loaded by the run"),
    (["run", "--month", "2021-03", "--from", "gat"], "error: unknown step 'gat'"),
    (["run", "--month", "2021-03", "--only", "scoring"], "error: unknown step 'scoring'"),
    (["backfill", "--from", "2021-03", "--to", "2021-01"], "error: empty month range"),
    (["backfill", "--from", "2021-3", "--to", "2021-04"], "error: invalid month '2021-3'"),
])
def test_cli_rejects_arguments_before_prefect(settings, arguments, error):
    completed = subprocess.run(
        [sys.executable, "-c", _CLI_WITHOUT_PREFECT, "--home", str(settings.home), *arguments],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.startswith(error), completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout.strip() == "prefect not imported"


def _format_with_console_handler(error: BaseException) -> tuple[str, logging.LogRecord]:
    try:
        raise error
    except type(error):
        record = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1,
                                   "Encountered exception during execution: %r", (error,),
                                   sys.exc_info())
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    # Only this handler, so that pytest's own log handlers keep their formatters.
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        hide_expected_tracebacks()
    finally:
        root.handlers = saved
    return handler.format(record), record


def test_console_hides_creditflow_traceback():
    text, record = _format_with_console_handler(RunFailedError("2021-03", "gate", "rejected"))
    assert text.startswith("ERROR Encountered exception during execution: RunFailedError(")
    assert "Traceback" not in text
    # Other handlers of the record, such as Prefect's API log handler, keep the traceback.
    assert record.exc_info is not None


def test_console_keeps_other_traceback():
    text, _ = _format_with_console_handler(ValueError("a bug"))
    assert "Traceback (most recent call last)" in text
    assert "ValueError: a bug" in text


# --- retries -------------------------------------------------------------------------------

def test_transient_locked_warehouse():
    assert is_transient(WarehouseLockedError("warehouse x is locked"))


def test_transient_wrapped_lock():
    try:
        try:
            raise WarehouseLockedError("locked")
        except WarehouseLockedError as error:
            raise CreditflowError("dbt failed") from error
    except CreditflowError as wrapped:
        assert is_transient(wrapped)


def test_bad_data_not_transient():
    assert not is_transient(CreditflowError("column AMT_CREDIT: value -5 is negative"))
    assert not is_transient(ValueError("x"))


def test_step_retried_on_locked_warehouse():
    from prefect import flow

    calls = []

    @step_task("probe")
    def probe(settings, month):
        calls.append(month)
        if len(calls) == 1:
            raise WarehouseLockedError("warehouse x is locked by another process")
        return {"attempts": len(calls)}

    @flow
    def one_step():
        return probe(None, "2021-01")

    assert one_step() == {"attempts": 2}


def test_step_not_retried_on_bad_data():
    from prefect import flow

    calls = []

    @step_task("probe")
    def probe(settings, month):
        calls.append(month)
        raise CreditflowError("column AMT_CREDIT: value -5 is negative")

    @flow
    def one_step():
        return probe(None, "2021-01")

    with pytest.raises(CreditflowError, match="AMT_CREDIT"):
        one_step()
    assert calls == ["2021-01"]


# --- month lock ------------------------------------------------------------------------------

def test_lock_released_after_block(settings):
    with month_lock(settings, "2021-01", "run-a") as path:
        assert path.exists()
        assert json.loads(path.read_text())["run_id"] == "run-a"
    assert not lock_path(settings, "2021-01").exists()


def test_lock_rejects_second_holder(settings):
    with month_lock(settings, "2021-01", "run-a"):
        with pytest.raises(MonthLockedError, match="already being run by process") as caught:
            with month_lock(settings, "2021-01", "run-b"):
                pass
    assert "run run-a" in str(caught.value)
    assert "creditflow status" in str(caught.value)


def test_lock_other_month_allowed(settings):
    with month_lock(settings, "2021-01", "run-a"), month_lock(settings, "2020-12", "run-b"):
        assert lock_path(settings, "2020-12").exists()


def test_lock_of_dead_process_replaced(settings):
    import socket

    path = lock_path(settings, "2021-01")
    path.parent.mkdir(parents=True, exist_ok=True)
    pid = _dead_pid()
    assert not process_is_running(pid)
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "run_id": "old"}))
    with month_lock(settings, "2021-01", "run-new"):
        assert json.loads(path.read_text())["run_id"] == "run-new"


def test_lock_of_other_host_kept(settings):
    path = lock_path(settings, "2021-01")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": _dead_pid(), "host": "another-host", "run_id": "old"}))
    with pytest.raises(MonthLockedError, match="on another-host"):
        with month_lock(settings, "2021-01", "run-new"):
            pass
    assert json.loads(path.read_text())["run_id"] == "old"


def test_lock_unreadable_file_replaced(settings, caplog):
    path = lock_path(settings, "2021-01")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="flows.month_lock"):
        with month_lock(settings, "2021-01", "run-new"):
            assert json.loads(path.read_text())["run_id"] == "run-new"
    assert f"replacing damaged lock {path} of month 2021-01" in caplog.text
    assert "process None" not in caplog.text


# --- run records ------------------------------------------------------------------------------

def test_interrupted_rows_closed(settings):
    pipeline_runs.start(settings, "killed-run", "2021-01", "run")
    pipeline_runs.start(settings, "killed-run", "2021-01", "score")
    pipeline_runs.start(settings, "other-month", "2020-12", "score")
    assert pipeline_runs.mark_interrupted(settings, "2021-01") == 2
    statuses = _rows(settings, "select month, step, status from pipeline_runs order by month, step")
    assert statuses == [("2020-12", "score", "running"), ("2021-01", "run", "interrupted"),
                        ("2021-01", "score", "interrupted")]


# --- the flow on an empty or tiny deployment ------------------------------------------------

def test_run_without_file_fails_at_gate(settings):
    with WebhookReceiver() as receiver:
        hooked = dataclasses.replace(settings, webhook_url=receiver.url)
        with pytest.raises(RunFailedError) as caught:
            run_month(hooked, "2021-01")
    error = caught.value
    assert error.step == "gate"
    assert "no applications loaded for month 2021-01" in str(error)
    assert "20210101.csv" in str(error)
    assert str(error).endswith("run the month again: creditflow run --month 2021-01")

    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    assert message["status"] == "failed"
    assert message["failed_step"] == "gate"
    assert message["month"] == "2021-01"
    assert "no applications loaded" in message["error"]
    assert message["text"].startswith("creditflow 2021-01 failed at step gate")

    rows = _rows(settings, "select step, status from pipeline_runs order by started_at")
    assert rows == [("run", "failed"), ("land", "succeeded"), ("gate", "failed"),
                    ("notify", "succeeded")]
    assert not lock_path(settings, "2021-01").exists()


def test_unreadable_warehouse_still_notifies(settings, caplog):
    # Not a DuckDB file: every write of pipeline_runs fails, as with PostgreSQL stopped.
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    settings.warehouse.write_bytes(b"not a database" * 1000)
    caplog.set_level(logging.WARNING, logger="flows.monthly")
    with WebhookReceiver() as receiver:
        hooked = dataclasses.replace(settings, webhook_url=receiver.url)
        with pytest.raises(RunFailedError) as caught:
            run_month(hooked, "2021-01")

    assert caught.value.step == "land"
    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    assert message["status"] == "failed"
    assert message["failed_step"] == "land"
    assert message["month"] == "2021-01"
    assert any("recording run" in text and "pipeline_runs" in text for text in caplog.messages)
    assert not lock_path(settings, "2021-01").exists()


def _api_server_children(parent_pid: int) -> list[int]:
    """Return the ids of Prefect API server processes whose parent is ``parent_pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        if int(ppid) == parent_pid and "prefect.server.api.server" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_sigterm_stops_prefect_server(settings):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PREFECT_API_URL", "CREDITFLOW_WEBHOOK_URL")}
    environment["CREDITFLOW_HOME"] = str(settings.home)
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--month", "2021-01"],
                               cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        servers: list[int] = []
        while not servers and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            servers = _api_server_children(process.pid)
        assert servers, "the run started no Prefect API server"

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130, output
    deadline = time.monotonic() + 15
    while any(process_is_running(pid) for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(process_is_running(pid) for pid in servers)
    assert not lock_path(settings, "2021-01").exists()


def test_land_warns_of_unnamed_file(settings, caplog):
    unnamed = settings.inbox / "march.csv"
    unnamed.write_text("SK_ID_CURR,TARGET\n1,0\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        run_month(settings, "2021-03", only_step="land")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ignoring march.csv" in text for text in warnings), warnings
    assert any("initial.csv" in text and "YYYYMMDD.csv" in text for text in warnings), warnings
    assert unnamed.exists()


def test_backfill_failure_names_one_command(settings):
    with pytest.raises(CreditflowError) as caught:
        backfill(settings, "2021-01", "2021-02")
    message = str(caught.value)
    assert message.startswith("backfill stopped: month 2021-01 failed at step gate: no "
                              "applications loaded for month 2021-01")
    assert message.endswith("After the fix: creditflow backfill --from 2021-01 --to 2021-02")
    assert "creditflow run" not in message


def test_run_rejected_file_fails_at_gate(settings, real_files):
    lines = real_files[1].read_text(encoding="utf-8").splitlines()[:21]
    target = lines[0].split(",").index("TARGET")
    fields = lines[5].split(",")
    fields[target] = "2"
    lines[5] = ",".join(fields)
    (settings.inbox / "20201001.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RunFailedError, match="20201001.csv rejected for month 2020-10") as caught:
        run_month(settings, "2020-10")
    assert caught.value.step == "gate"
    assert "TARGET" in str(caught.value)
    assert list(settings.inbox.iterdir()) == []
    quarantined = [p.name for p in settings.quarantine.rglob("*.csv")]
    assert len(quarantined) == 1
    assert quarantined[0].endswith("20201001.csv")
    assert _rows(settings, "select count(*) from raw_applications") == [(0,)]


def test_run_refused_while_month_running(settings):
    with month_lock(settings, "2021-01", "running-elsewhere"):
        with pytest.raises(MonthLockedError, match="month 2021-01 is already being run"):
            run_month(settings, "2021-01")
    # The refused run recorded nothing.
    assert not settings.warehouse.exists() or \
        _rows(settings, "select count(*) from pipeline_runs") == [(0,)]


def test_status_shows_failed_run(settings, capsys):
    with pytest.raises(RunFailedError):
        run_month(settings, "2021-01", only_step="gate")
    assert command_status(SimpleNamespace(limit=5), settings) == 0
    output = capsys.readouterr().out
    assert "2021-01  failed" in output
    assert "gate     failed" in output
    assert "no applications loaded for month 2021-01" in output
    assert "land" not in output


def _write_lock(lock: Path, pid: int, run_id: str) -> None:
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "run_id": run_id,
                                "started_at": datetime.now(UTC).isoformat()}))


def test_status_shows_dead_run_interrupted(settings, capsys):
    pipeline_runs.start(settings, "dead-run", "2021-01", pipeline_runs.RUN)
    pipeline_runs.start(settings, "dead-run", "2021-01", "land")
    # The lock file of a process that ended without removing it.
    lock = lock_path(settings, "2021-01")
    lock.parent.mkdir(parents=True, exist_ok=True)
    _write_lock(lock, _dead_pid(), "dead-run")

    assert command_status(SimpleNamespace(limit=5), settings) == 0
    output = capsys.readouterr().out
    assert "2021-01  interrupted" in output
    assert "land     interrupted" in output
    assert "creditflow run --month 2021-01 --from" in output

    _write_lock(lock, os.getpid(), "dead-run")
    assert command_status(SimpleNamespace(limit=5), settings) == 0
    output = capsys.readouterr().out
    assert "2021-01  running" in output
    assert "land     running" in output


def test_status_without_runs(settings, capsys):
    assert command_status(SimpleNamespace(limit=5), settings) == 0
    assert "no runs recorded yet" in capsys.readouterr().out
