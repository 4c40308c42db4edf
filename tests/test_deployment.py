"""The scheduled deployment on a real Prefect server started on 127.0.0.1 (``prefect_server``).

The server, the worker and ``creditflow serve`` run as child processes. The flow runs they start
work on copies of the backfilled real sample (``backfilled_home`` in tests/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from flows.config import REPO_ROOT
from flows.deployment import SERVED_NAME, check_schedule, full_name, require_server
from flows.errors import CreditflowError
from flows.warehouse import connect
from tests.prefect_server import PrefectServer, start_process, stop_process, tail

pytestmark = pytest.mark.slow

TIMEZONE = "Europe/Paris"


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer, backfilled_home: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[PrefectServer, Path]:
    """``creditflow deploy`` run against the server, for a copy of the backfilled data."""
    home = tmp_path_factory.mktemp("deployed") / "home"
    shutil.copytree(backfilled_home, home)
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--home", str(home), "deploy",
         "--timezone", TIMEZONE],
        cwd=REPO_ROOT, env=prefect_server.env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"deployment {full_name()}" in result.stdout
    assert "prefect worker start --pool creditflow" in result.stdout
    return prefect_server, home


def _run_status(home: Path, run_id: str) -> list[tuple]:
    with connect(home / "warehouse.duckdb", read_only=True) as connection:
        return connection.execute(
            "select step, status from pipeline_runs where run_id = ? order by started_at",
            [run_id],
        ).fetchall()


def test_deploy_sets_monthly_schedule(deployed):
    server, home = deployed
    with server.client() as client:
        deployment = client.read_deployment_by_name(full_name())
    assert len(deployment.schedules) == 1
    schedule = deployment.schedules[0]
    assert schedule.active
    assert schedule.schedule.cron == "0 6 1 * *"
    assert schedule.schedule.timezone == TIMEZONE
    assert deployment.work_pool_name == "creditflow"
    assert deployment.entrypoint == "flows.monthly.monthly_run"
    # No month parameter: each run takes the month that ended before it.
    assert deployment.parameters == {}
    assert deployment.job_variables["env"]["CREDITFLOW_HOME"] == str(home)


def test_deploy_next_runs_on_first_of_month(deployed):
    from prefect.client.schemas.filters import DeploymentFilter, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    server, _ = deployed
    with server.client() as client:
        deployment = client.read_deployment_by_name(full_name())
        response = httpx.post(f"{server.url}/deployments/{deployment.id}/schedule",
                              json={"min_runs": 3}, timeout=30)
        assert response.status_code == 200, response.text
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id={"any_": [deployment.id]}),
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["SCHEDULED"]}}),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
    assert len(runs) >= 3
    local = [run.expected_start_time.astimezone(ZoneInfo(TIMEZONE)) for run in runs[:3]]
    for moment in local:
        assert (moment.day, moment.hour, moment.minute) == (1, 6, 0), moment
    months = [moment.year * 12 + moment.month for moment in local]
    assert months == [months[0], months[0] + 1, months[0] + 2]
    assert all(run.parameters == {} for run in runs)


def test_worker_completes_triggered_run(deployed, tmp_path):
    server, home = deployed
    log = tmp_path / "worker.log"
    worker = start_process([sys.executable, "-m", "prefect", "worker", "start",
                            "--pool", "creditflow", "--type", "process"], server.env, log)
    try:
        flow_run = server.run_deployment(full_name(), {"month": "2021-01", "only_step": "score"})
    finally:
        stop_process(worker)
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{tail(log)}"
    assert _run_status(home, str(flow_run.id)) == [("run", "succeeded"), ("score", "succeeded")]


def test_serve_completes_triggered_run(prefect_server, backfilled_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(backfilled_home, home)
    log = tmp_path / "serve.log"
    serve = start_process([sys.executable, "-m", "flows.cli", "--home", str(home), "serve"],
                          prefect_server.env, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            from prefect.exceptions import ObjectNotFound

            try:
                with prefect_server.client() as client:
                    deployment = client.read_deployment_by_name(full_name(SERVED_NAME))
                break
            except ObjectNotFound:
                if serve.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"creditflow serve did not register its deployment:\n"
                                f"{tail(log)}")
                time.sleep(1)
        assert deployment.schedules[0].schedule.cron == "0 6 1 * *"
        flow_run = prefect_server.run_deployment(full_name(SERVED_NAME),
                                                 {"month": "2021-01", "only_step": "export"})
    finally:
        stop_process(serve)
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{tail(log)}"
    assert _run_status(home, str(flow_run.id)) == [("run", "succeeded"), ("export", "succeeded")]


def test_prefect_yaml_deploys_same_schedule(prefect_server, deployed):
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=REPO_ROOT, env=prefect_server.env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with prefect_server.client() as client:
        deployment = client.read_deployment_by_name(full_name())
    assert deployment.schedules[0].schedule.cron == "0 6 1 * *"
    assert deployment.schedules[0].schedule.timezone == "UTC"
    assert deployment.work_pool_name == "creditflow"
    assert deployment.entrypoint == "flows/monthly.py:monthly_run"
    assert deployment.parameters == {}


def test_invalid_cron_rejected():
    with pytest.raises(CreditflowError, match="invalid cron schedule '0 6 32 \\* \\*'"):
        check_schedule("0 6 32 * *", "UTC")


def test_unknown_time_zone_rejected():
    with pytest.raises(CreditflowError, match="unknown time zone 'Europe/Atlantis'"):
        check_schedule("0 6 1 * *", "Europe/Atlantis")


def test_deploy_without_server_rejected():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(CreditflowError, match="needs a Prefect server") as caught:
            require_server()
    assert "creditflow serve" in str(caught.value)
