"""A real uvicorn process serving the operations API on 127.0.0.1, for the API and page tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.store import StateStore
from api.tokens import create_token
from flows.config import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
# Optuna trials of runs started by these tests: enough to train a real model, few enough for CI.
TEST_TRIALS = "2"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ApiServer:
    """A running server, its data directory and one token per role."""

    url: str
    settings: Settings
    process: subprocess.Popen
    log_path: Path
    tokens: dict[str, str]

    def client(self, role: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_server(home: Path, extra_env: dict[str, str] | None = None) -> ApiServer:
    """Start uvicorn with ``create_app_from_env`` on a free port and wait until it responds."""
    settings = load_settings(home)
    settings.ensure_dirs()
    store = StateStore.for_settings(settings)
    store.init()
    tokens = {role: create_token(store, f"test-{role}", role, created_by="tests")[1]
              for role in ("viewer", "operator", "admin")}
    port = free_port()
    env = {**os.environ, "CREDITFLOW_HOME": str(home), "CREDITFLOW_TRIALS": TEST_TRIALS,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", **(extra_env or {})}
    env.pop("CREDITFLOW_WEBHOOK_URL", None)
    log_path = home.parent / f"uvicorn-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.server:create_app_from_env",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT),
        )
    url = f"http://127.0.0.1:{port}"
    server = ApiServer(url, settings, process, log_path, tokens)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"uvicorn did not answer within 60 s:\n{server.log()}")


def stop_server(server: ApiServer) -> None:
    """Stop uvicorn and any run process it started."""
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    store = StateStore.for_settings(server.settings)
    with store.connect() as connection:
        pids = [row["pid"] for row in connection.execute(
            "select pid from api_runs where status in ('queued', 'running') and pid is not null")]
    for pid in pids:
        try:
            os.killpg(pid, 15)
        except (ProcessLookupError, PermissionError):
            pass


def upload(client: httpx.Client, path: Path, month: str, filename: str | None = None,
           content_type: str = "text/csv") -> httpx.Response:
    with path.open("rb") as handle:
        return client.post("/api/v1/uploads", data={"month": month},
                           files={"file": (filename or path.name, handle, content_type)})


def wait_for_run(client: httpx.Client, run_id: str, timeout: float = 600.0) -> dict:
    """Poll a run until it leaves queued/running and return its last state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run = response.json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(1.0)
    raise AssertionError(f"run {run_id} did not finish within {timeout} s")
