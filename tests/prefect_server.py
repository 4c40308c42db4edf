"""A Prefect server on 127.0.0.1 for tests, and helpers for the processes that use it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flows.config import REPO_ROOT
from flows.prefect_api import stop_process_group


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as output:
        # A session of its own, so stopping it also stops the processes it started.
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(process: subprocess.Popen) -> None:
    stop_process_group(process, timeout=30)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


class PrefectServer:
    """A Prefect server process and the environment of the processes that use it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{free_port()}/api"
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
        self.process = start_process([sys.executable, "-m", "prefect", "server", "start",
                                      "--host", "127.0.0.1", "--port", port], env, self.log)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"Prefect server exited ({self.process.returncode}):\n"
                            f"{tail(self.log)}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                stop_process(self.process)
                pytest.fail(f"Prefect server not healthy after 180 s:\n{tail(self.log)}")
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

    def stop(self) -> None:
        stop_process(self.process)
