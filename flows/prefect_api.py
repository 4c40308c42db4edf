"""A temporary Prefect API server for the commands that run the monthly flow in this process.

Without ``PREFECT_API_URL``, Prefect starts a temporary server as a child process in the
command's process group. Ctrl-C in a terminal signals the whole group, so that server stops
together with the command, and the interrupted flow then retries the dead server for about a
minute and waits at exit for a second Ctrl-C. The server started here runs the same way as
Prefect's, but in a session of its own: Ctrl-C reaches only the command, the flow records the
interruption through the live server, and the server is stopped when the command ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from flows.errors import CreditflowError

logger = logging.getLogger(__name__)

# The variable monthly.py raises to 120 s for Prefect's own temporary server.
STARTUP_TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop ``process``, started in a session of its own, with every process of that session.

    Sends SIGTERM, and SIGKILL when the process has not ended after ``timeout`` seconds.
    """
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_until_healthy(process: subprocess.Popen, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CreditflowError(
                f"the temporary Prefect API server exited with code {process.returncode} before "
                "it responded: run the command with --verbose, or set PREFECT_API_URL to a "
                "running Prefect server")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise CreditflowError(
        f"the temporary Prefect API server on {url} did not respond within {timeout:.0f} s: "
        f"raise {STARTUP_TIMEOUT_VARIABLE}, or set PREFECT_API_URL to a running Prefect server")


def _drain_prefect_workers() -> None:
    """Send the run logs and events Prefect still queues, while the server can take them."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        # Best effort, like Prefect's own drain at exit: a failure here loses log lines only.
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=5)


@contextlib.contextmanager
def api_server_for_flows() -> Iterator[None]:
    """Provide a Prefect API for the block: the configured one, or a temporary server.

    When ``PREFECT_API_URL`` is set (in the environment or a Prefect profile), the block runs
    unchanged. Otherwise a server like Prefect's temporary one is started on a free port of
    127.0.0.1 in a new session, used for the block, and stopped after it.
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    settings = get_current_settings()
    if settings.api.url:
        yield
        return
    port = str(_free_port())
    url = f"http://127.0.0.1:{port}/api"
    environment = {
        **os.environ,
        **settings.to_environment_variables(exclude_unset=True),
        # What Prefect sets for its own temporary server: no UI, ephemeral mode.
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", port,
               "--log-level", "error", "--lifespan", "on"]
    logger.info("starting a temporary Prefect API server on %s (stopped when the command "
                "ends; set PREFECT_API_URL to use a running server)", url)
    process = subprocess.Popen(command, env=environment, start_new_session=True)
    try:
        _wait_until_healthy(process, url, float(os.environ.get(STARTUP_TIMEOUT_VARIABLE, 120)))
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        _drain_prefect_workers()
        stop_process_group(process)
        logger.info("stopped the temporary Prefect API server on %s", url)
