"""The scheduled deployment on a real Prefect server started on 127.0.0.1 for this module.

The server, the worker and ``creditflow serve`` run as child processes; the flow runs they start
work on copies of the backfilled real sample (``backfilled_home`` in tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from flows.config import REPO_ROOT
from flows.deployment import SERVED_NAME, full_name
from flows.warehouse import connect

pytestmark = pytest.mark.slow

TIMEZONE = "Europe/Paris"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as output:
        # A session of its own, so stopping it also stops the processes it started.
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


class PrefectServer:
    """A Prefect server process and the environment of the processes that use it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{_free_port()}/api"
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("PREFECT_", "CREDITFLOW_"))}
        self.env.update({
            "PREFECT_HOME": str(root / "client"),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        })

    def start(self) -> None:
        port = self.url.split(":")[2].split("/")[0]
        env = {key: value for key, value in self.env.items() if key != "PREFECT_API_URL"}
        env.update({"PREFECT_HOME": str(self.root / "server"), "PREFECT_UI_ENABLED": "false"})
        self.log = self.root / "server.log"
        self.process = _start([sys.executable, "-m", "prefect", "server", "start",
                               "--host", "127.0.0.1", "--port", port], env, self.log)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"Prefect server exited ({self.process.returncode}):\n"
                            f"{_tail(self.log)}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                _stop(self.process)
                pytest.fail(f"Prefect server not healthy after 180 s:\n{_tail(self.log)}")
            time.sleep(1)

    def client(self):
        """Return a Prefect client of this server, for use as a context manager."""
        from prefect import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        server = self

        class _Client:
            def __enter__(self):
                self._settings = temporary_settings({PREFECT_API_URL: server.url})
                self._settings.__enter__()
                self._client = get_client(sync_client=True)
                return self._client.__enter__()

            def __exit__(self, *exc):
                self._client.__exit__(*exc)
                self._settings.__exit__(*exc)

        return _Client()

    def run_deployment(self, name: str, parameters: dict, timeout: float = 300):
        """Trigger a run of deployment ``name`` and wait for its final state."""
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}):
            return run_deployment(name, parameters=parameters, timeout=timeout, poll_interval=2)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    server = PrefectServer(tmp_path_factory.mktemp("prefect_server"))
    server.start()
    yield server
    _stop(server.process)


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
    worker = _start([sys.executable, "-m", "prefect", "worker", "start", "--pool", "creditflow",
                     "--type", "process"], server.env, log)
    try:
        flow_run = server.run_deployment(full_name(), {"month": "2021-01", "only_step": "score"})
    finally:
        _stop(worker)
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{_tail(log)}"
    assert _run_status(home, str(flow_run.id)) == [("run", "succeeded"), ("score", "succeeded")]


def test_serve_completes_triggered_run(prefect_server, backfilled_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(backfilled_home, home)
    log = tmp_path / "serve.log"
    serve = _start([sys.executable, "-m", "flows.cli", "--home", str(home), "serve"],
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
                                f"{_tail(log)}")
                time.sleep(1)
        assert deployment.schedules[0].schedule.cron == "0 6 1 * *"
        flow_run = prefect_server.run_deployment(full_name(SERVED_NAME),
                                                 {"month": "2021-01", "only_step": "export"})
    finally:
        _stop(serve)
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{_tail(log)}"
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
