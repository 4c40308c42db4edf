"""The whole monthly flow on the real sample months, its failures, reruns and a killed run.

The ``backfilled_home`` fixture (tests/conftest.py) runs the flow for history + 2020-10 to 2021-01
once per session. Each test that changes data works on its own copy of that data directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from flows.cli import main
from flows.config import DBT_PROJECT_DIR, REPO_ROOT, Settings
from flows.month_lock import MonthLockedError, lock_path
from flows.monthly import STEPS, RunFailedError, command_status, run_month
from flows.warehouse import connect
from tests.conftest import REAL_MONTHS
from tests.prefect_server import start_process
from tests.webhook import WebhookReceiver

pytestmark = pytest.mark.slow


def _rows(home: Path, sql: str, parameters=()) -> list[tuple]:
    with connect(home / "warehouse.duckdb", read_only=True) as connection:
        return connection.execute(sql, list(parameters)).fetchall()


def _predictions(home: Path, month: str | None = None) -> list[tuple]:
    """Every prediction except its time stamp, in a stable order."""
    where, parameters = ("where score_month = ?", [month]) if month else ("", [])
    return _rows(home, "select score_month, sk_id_curr, model_id, default_probability, decision, "
                       f"reason_codes from predictions {where} order by score_month, sk_id_curr",
                 parameters)


def _registry(home: Path) -> list[tuple]:
    return _rows(home, "select model_id, status, artifact_sha256 from model_registry "
                       "order by model_id")


def _copy_home(backfilled_home: Path, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(backfilled_home, home)
    return Settings(home=home)


# --- the backfill itself ---------------------------------------------------------------------

def test_backfill_runs_every_step(backfilled_home):
    runs = _rows(backfilled_home, "select month, status, error from pipeline_runs "
                                  "where step = 'run' order by started_at")
    assert runs == [(month, "succeeded", None) for month in REAL_MONTHS]
    steps = _rows(backfilled_home, "select month, step, status from pipeline_runs "
                                   "where step <> 'run' order by started_at")
    for month in REAL_MONTHS:
        ran = [(step, status) for m, step, status in steps if m == month]
        assert ran == [(step, "succeeded") for step in STEPS], month


def test_backfill_loads_every_month(backfilled_home):
    counts = dict(_rows(backfilled_home,
                        "select month, count(*) from raw_applications group by month"))
    assert counts == {"history": 2999, **{month: 1000 for month in REAL_MONTHS}}
    assert list((backfilled_home / "inbox").iterdir()) == []
    assert not any(lock_path(Settings(home=backfilled_home), m).exists() for m in REAL_MONTHS)


def test_backfill_scores_every_month(backfilled_home):
    counts = dict(_rows(backfilled_home, "select score_month, count(distinct sk_id_curr) "
                                         "from predictions group by score_month"))
    assert counts == {month: 1000 for month in REAL_MONTHS}
    champions = _rows(backfilled_home, "select model_id from model_registry "
                                       "where status = 'champion'")
    assert len(champions) == 1


def test_backfill_reports_out_of_time_auc(backfilled_home):
    detail = _rows(backfilled_home, "select detail from pipeline_runs where month = '2021-01' "
                                    "and step = 'score'")
    score = json.loads(detail[0][0])
    assert score["rows"] == 1000
    # 2021-01 carries labels that its model never saw: a true out-of-time AUC.
    assert 0.6 < score["auc"] < 0.95
    training = json.loads(_rows(backfilled_home, "select detail from pipeline_runs where "
                                                 "month = '2021-01' and step = 'train'")[0][0])
    assert "2021-01" not in training["training_months"]


def test_backfill_exports_files(backfilled_home):
    for month in REAL_MONTHS:
        csv_path = backfilled_home / "exports" / f"predictions_{month}.csv"
        assert csv_path.exists(), csv_path
        assert len(csv_path.read_text(encoding="utf-8").splitlines()) == 1001
        assert (backfilled_home / "exports" / f"predictions_{month}.parquet").exists()


def test_status_lists_backfill(backfilled_home, tmp_path, capsys):
    settings = _copy_home(backfilled_home, tmp_path)
    assert command_status(SimpleNamespace(limit=2), settings) == 0
    output = capsys.readouterr().out
    assert output.index("2021-01  succeeded") < output.index("2020-12  succeeded")
    assert "2020-11  succeeded" not in output
    assert "promoted" in output or "champion kept" in output
    assert "1000 rows, model" in output
    assert "predictions_2021-01.csv" in output


def test_cli_run_one_step(backfilled_home, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CREDITFLOW_WEBHOOK_URL", raising=False)
    settings = _copy_home(backfilled_home, tmp_path)
    code = main(["--home", str(settings.home), "run", "--month", "2021-01", "--only", "export"])
    assert code == 0
    output = capsys.readouterr().out
    assert output.startswith("creditflow 2021-01 succeeded, 1,000 applications scored")
    assert f"predictions CSV: {settings.exports / 'predictions_2021-01.csv'}" in output


def test_cli_backfill_invalid_range(settings, capsys):
    code = main(["--home", str(settings.home), "backfill", "--from", "2021-01", "--to", "2020-10"])
    assert code == 2
    assert "empty month range 2021-01 to 2020-10" in capsys.readouterr().err


# --- a failure in the middle, the fix and the rerun ------------------------------------------

def _broken_project(tmp_path: Path) -> tuple[Path, Path, str]:
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    model = project / "models" / "intermediate" / "int_application_features_derived.sql"
    original = model.read_text(encoding="utf-8")
    broken = original.replace("as credit_income_ratio,",
                              "as credit_income_ratio,\n        no_such_column,", 1)
    assert broken != original
    model.write_text(broken, encoding="utf-8")
    return project, model, original


def test_failures_notify_and_rerun_from_step(backfilled_home, tmp_path, monkeypatch):
    settings = _copy_home(backfilled_home, tmp_path)
    home = settings.home
    predictions_before = _predictions(home)
    registry_before = _registry(home)
    champion_path = home / _rows(home, "select artifact_path from model_registry "
                                       "where status = 'champion'")[0][0]
    project, model_sql, original_sql = _broken_project(tmp_path)
    monkeypatch.setattr("flows.dbt_runner.DBT_PROJECT_DIR", project)

    with WebhookReceiver() as receiver:
        hooked = dataclasses.replace(settings, webhook_url=receiver.url)

        # 1. A broken feature model fails the build; nothing stored before changes.
        with pytest.raises(RunFailedError) as caught:
            run_month(hooked, "2021-01", from_step="build", reuse_model=True)
        assert caught.value.step == "build"
        assert "int_application_features_derived" in str(caught.value)
        assert receiver.messages[-1]["status"] == "failed"
        assert receiver.messages[-1]["failed_step"] == "build"
        assert "int_application_features_derived" in receiver.messages[-1]["error"]
        assert _predictions(home) == predictions_before
        assert _registry(home) == registry_before

        # 2. SQL fixed, but the champion's model file is corrupt: scoring fails.
        model_sql.write_text(original_sql, encoding="utf-8")
        model_bytes = champion_path.read_bytes()
        champion_path.write_bytes(model_bytes[: len(model_bytes) // 2])
        with pytest.raises(RunFailedError) as caught:
            run_month(hooked, "2021-01", from_step="build", reuse_model=True)
        assert caught.value.step == "score"
        assert "corrupted" in str(caught.value)
        assert receiver.messages[-1]["failed_step"] == "score"
        assert "corrupted" in receiver.messages[-1]["error"]
        assert _predictions(home) == predictions_before
        assert _registry(home) == registry_before

        # 3. Model file restored: the rerun from the failed step succeeds.
        champion_path.write_bytes(model_bytes)
        summary = run_month(hooked, "2021-01", from_step="score")
        assert receiver.messages[-1] == summary

    assert len(receiver.messages) == 3
    assert summary["status"] == "succeeded"
    assert summary["rows_scored"] == 1000
    assert summary["auc"] > 0.6
    assert Path(summary["predictions_csv"]).exists()
    # Same model, same features: the rerun reproduces every prediction; no other month moved.
    assert _predictions(home) == predictions_before
    assert _registry(home) == registry_before
    runs = _rows(home, "select status, error from pipeline_runs where month = '2021-01' and "
                       "step = 'run' order by started_at")
    assert [status for status, _ in runs] == ["succeeded", "failed", "failed", "succeeded"]
    assert runs[1][1].startswith("build: ")
    assert runs[2][1].startswith("score: ")


# --- a run killed while it writes the predictions --------------------------------------------

# Runs the score step of 2021-01 in a child process whose DuckDB connections stop just before the
# predictions write commits, writing a marker file and waiting there to be killed.
_PAUSE_BEFORE_COMMIT = r"""
import os, sys, time
from pathlib import Path

import duckdb

home, marker = sys.argv[1], Path(sys.argv[2])
open_connection = duckdb.connect


class PausingConnection:
    def __init__(self, connection):
        self._connection = connection
        self._writes_predictions = False

    def _pause_if_committing(self, text):
        if text == "commit" and self._writes_predictions:
            marker.write_text(str(os.getpid()))
            while True:
                time.sleep(1)

    def execute(self, sql, *args, **kwargs):
        text = " ".join(sql.split()).lower()
        if text.startswith(("delete from predictions", "insert into predictions")):
            self._writes_predictions = True
        self._pause_if_committing(text)
        self._connection.execute(sql, *args, **kwargs)
        return self

    def commit(self):
        self._pause_if_committing("commit")
        return self._connection.commit()

    def __getattr__(self, name):
        return getattr(self._connection, name)


duckdb.connect = lambda *args, **kwargs: PausingConnection(open_connection(*args, **kwargs))

from flows.config import Settings
from flows.monthly import run_month

run_month(Settings(home=Path(home)), "2021-01", only_step="score")
"""


def _wait_for(marker: Path, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"scoring process ended ({process.returncode}) before pausing:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"scoring process did not reach the commit in {seconds} s:\n"
                        f"{log.read_text()[-3000:]}")
        time.sleep(0.5)


def test_killed_scoring_leaves_month_whole(backfilled_home, prefect_server, tmp_path):
    settings = _copy_home(backfilled_home, tmp_path)
    home = settings.home
    before = _predictions(home)
    marker, log = tmp_path / "paused", tmp_path / "score.log"
    # The child process records its run on the session's Prefect server (PREFECT_API_URL).
    process = start_process([sys.executable, "-c", _PAUSE_BEFORE_COMMIT, str(home), str(marker)],
                            prefect_server.env, log)
    try:
        _wait_for(marker, process, log, seconds=240)

        # While that run has the month's lock, a second run of the month is rejected.
        with pytest.raises(MonthLockedError, match=f"process {process.pid}"):
            run_month(settings, "2021-01", only_step="score")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL

    # The killed transaction left the month's earlier predictions whole.
    assert _predictions(home, "2021-01") == [row for row in before if row[0] == "2021-01"]
    assert _predictions(home) == before
    assert lock_path(settings, "2021-01").exists()

    # The next run replaces the stale lock, closes the killed run's rows and scores the month.
    summary = run_month(settings, "2021-01", only_step="score")
    assert summary["rows_scored"] == 1000
    assert _predictions(home) == before
    statuses = _rows(home, "select step, status from pipeline_runs where month = '2021-01' "
                           "and step in ('run', 'score') order by started_at")
    assert statuses[-4:] == [("run", "interrupted"), ("score", "interrupted"),
                             ("run", "succeeded"), ("score", "succeeded")]
    assert not lock_path(settings, "2021-01").exists()


def test_ctrl_c_stops_run_and_its_server(backfilled_home, tmp_path):
    settings = _copy_home(backfilled_home, tmp_path)
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PREFECT_API_URL", "CREDITFLOW_WEBHOOK_URL")}
    environment["CREDITFLOW_HOME"] = str(settings.home)
    log = tmp_path / "run.log"
    # A session of its own, as a command in a terminal: Ctrl-C signals its whole process group.
    # SIGINT back to its default action, because a shell starts background jobs with SIGINT
    # ignored and the child would inherit that.
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--month", "2021-01", "--from", "train"],
            cwd=REPO_ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while "training for 2021-01" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run did not reach training:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text(errors="replace")
    assert process.returncode == 130, output[-3000:]
    assert output.rstrip().endswith("interrupted")

    # The temporary Prefect API server of the run was stopped with it.
    started = re.search(r"temporary Prefect API server on (http://127\.0\.0\.1:\d+/api)", output)
    assert started, output[-3000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{started.group(1)}/health", timeout=2)

    message = ("stopped by an interrupt (Ctrl-C or SIGTERM) during train: finish the month with "
               "creditflow run --month 2021-01 --from train")
    rows = _rows(settings.home, "select step, status, error from pipeline_runs where month = "
                                "'2021-01' and step in ('run', 'train') order by started_at")
    assert rows[-2:] == [("run", "interrupted", message), ("train", "interrupted", message)]
    assert not lock_path(settings, "2021-01").exists()
