"""Start the monthly Prefect deployment for a file the watcher took, and follow its flow run.

The Prefect server is the one of ``PREFECT_API_URL``. The flow run executes in a worker (or
``creditflow serve``), which must use the same ``CREDITFLOW_HOME`` as the watcher, since the
watcher places the file in that data directory's inbox and reads the run's outputs from there.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from flows.config import Settings
from flows.errors import CreditflowError
from flows.pipeline_runs import RUN
from flows.warehouse import connect

logger = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class FlowRunState:
    """The state of a flow run as the Prefect API returned it."""

    flow_run_id: str
    flow_run_name: str
    # Prefect's state type (SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CRASHED, ...).
    type: str
    name: str
    message: str
    final: bool
    completed: bool


def check_deployment(name: str) -> str:
    """Return the id of deployment ``name`` (``flow/deployment``); raise when it is not found."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    flow_name, _, deployment_name = name.partition("/")
    if not flow_name or not deployment_name or "/" in deployment_name:
        raise CreditflowError(
            f"invalid deployment name {name!r} (--deployment or CREDITFLOW_DEPLOYMENT): expected "
            "flow-name/deployment-name, e.g. creditflow-monthly/monthly"
        )
    url = PREFECT_API_URL.value()
    if not url:
        raise CreditflowError(
            f"the watcher cannot trigger deployment {name}: PREFECT_API_URL is not set. Set it "
            "to the Prefect server of the deployment, e.g. http://127.0.0.1:4200/api"
        )
    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(name)
    except ObjectNotFound:
        raise CreditflowError(
            f"deployment {name} not found on the Prefect server {url}: create it with "
            "creditflow deploy (creditflow-monthly/monthly) or creditflow serve "
            "(creditflow-monthly/monthly-local), or correct the name"
        ) from None
    except httpx.HTTPError as error:
        raise CreditflowError(
            f"the Prefect server {url} of deployment {name} cannot be reached: "
            f"{type(error).__name__}: {error}. Start it (prefect server start) or correct "
            "PREFECT_API_URL"
        ) from error
    return str(deployment.id)


def trigger_deployment(name: str, parameters: dict[str, Any], idempotency_key: str) -> str:
    """Create a flow run of deployment ``name`` and return its id without waiting for it.

    Prefect returns the existing flow run for an ``idempotency_key`` it has already seen, so a
    watcher that stopped before it recorded the id gets the same run again, not a second one.
    """
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name, parameters=parameters, timeout=0,
                              idempotency_key=idempotency_key, as_subflow=False)
    return str(flow_run.id)


def read_state(flow_run_id: str) -> FlowRunState | None:
    """Return the current state of the flow run, or None when the server does not know it."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
    except ObjectNotFound:
        return None
    state = flow_run.state
    if state is None:
        return FlowRunState(flow_run_id, flow_run.name, "PENDING", "Pending", "", False, False)
    return FlowRunState(flow_run_id, flow_run.name, state.type.value, state.name,
                        state.message or "", state.is_final(), state.is_completed())


def follow(flow_run_id: str, poll_seconds: float = DEFAULT_POLL_SECONDS,
           max_seconds: float | None = None) -> FlowRunState | None:
    """Poll the flow run until it reaches a final state, logging each state change.

    Returns the last state read, which is not final when ``max_seconds`` passed first, or None
    when the server does not know the flow run.
    """
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    previous = None
    while True:
        state = read_state(flow_run_id)
        if state is None:
            return None
        if state.name != previous:
            logger.info("flow run %s (%s): %s%s", state.flow_run_name, flow_run_id, state.name,
                        f": {state.message}" if state.message and state.final else "")
            previous = state.name
        if state.final or (deadline is not None and time.monotonic() >= deadline):
            return state
        time.sleep(poll_seconds)


def run_summary(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """Return the summary a finished run recorded in ``pipeline_runs``, or None."""
    if not settings.warehouse.exists():
        return None
    with connect(settings.warehouse, read_only=True, wait_seconds=60) as connection:
        row = connection.execute(
            "select detail from pipeline_runs where run_id = ? and step = ?", [run_id, RUN]
        ).fetchone()
    return json.loads(row[0]) if row and row[0] else None
