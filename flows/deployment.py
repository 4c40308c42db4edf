"""The scheduled Prefect deployment of the monthly flow.

``creditflow deploy`` registers the deployment ``creditflow-monthly/monthly`` on the Prefect server
of ``PREFECT_API_URL``, in a process work pool; a worker started with
``prefect worker start --pool creditflow`` runs it. ``prefect.yaml`` in the repository root
describes the same deployment for ``prefect deploy``. ``creditflow serve`` registers
``creditflow-monthly/monthly-local`` and runs it from its own process with Prefect's ``serve``,
without a work pool or, when ``PREFECT_API_URL`` is unset, without a server. Run one of the two:
both on the same schedule would start each month twice, and the month lock rejects the second.

Both schedule 06:00 on the 1st of every month by default. A scheduled run has no month parameter,
so it takes the month that ended before its scheduled start (:func:`flows.monthly.resolve_month`).
"""

from __future__ import annotations

import argparse
import logging
import os
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flows.config import REPO_ROOT, Settings
from flows.errors import CreditflowError
from flows.monthly import FLOW_NAME, monthly_run

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "monthly"
SERVED_NAME = "monthly-local"
WORK_POOL = "creditflow"
DEFAULT_CRON = "0 6 1 * *"
DESCRIPTION = (
    "Runs the month that just ended: gate the inbox file, build features, train, score, "
    "monitor, export and notify."
)


def full_name(name: str = DEPLOYMENT_NAME) -> str:
    """Return a deployment's name as Prefect shows it (``flow/deployment``)."""
    return f"{FLOW_NAME}/{name}"


def check_schedule(cron: str, timezone: str) -> None:
    """Raise :class:`CreditflowError` for a cron expression or time zone Prefect cannot use."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise CreditflowError(
            f"unknown time zone {timezone!r}: use an IANA name such as UTC or Europe/Paris"
        ) from error
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValueError as error:
        raise CreditflowError(
            f"invalid cron schedule {cron!r}: give five fields, minute hour day month weekday "
            f"(e.g. {DEFAULT_CRON!r} for 06:00 on the 1st)"
        ) from error


def _schedule(cron: str, timezone: str):
    from prefect.schedules import Cron

    check_schedule(cron, timezone)
    return Cron(cron, timezone=timezone)


def run_environment(settings: Settings, timezone: str) -> dict[str, str]:
    """Return the variables a deployment's runs need to find this deployment's data."""
    env = {"CREDITFLOW_HOME": str(settings.home), "CREDITFLOW_TIMEZONE": timezone}
    # The gate step of a run keeps originals and rejected files at these locations. The AWS
    # credentials are not copied into the deployment, so the worker needs them in its own
    # environment.
    if settings.landed_url:
        env["CREDITFLOW_LANDED_URL"] = settings.landed_url
    if settings.quarantine_url:
        env["CREDITFLOW_QUARANTINE_URL"] = settings.quarantine_url
    return env


def build_deployment(settings: Settings, cron: str = DEFAULT_CRON, timezone: str | None = None,
                     work_pool: bool = True):
    """Describe the deployment for a work pool, or, without ``work_pool``, the served one."""
    from prefect.deployments.runner import EntrypointType

    timezone = timezone or settings.schedule_timezone
    options = {}
    if work_pool:
        options["job_variables"] = {
            "env": run_environment(settings, timezone),
            "working_dir": str(REPO_ROOT),
        }
    return monthly_run.to_deployment(
        name=DEPLOYMENT_NAME if work_pool else SERVED_NAME,
        schedule=_schedule(cron, timezone),
        parameters={},
        description=DESCRIPTION,
        tags=["creditflow"],
        # The worker imports flows.monthly from the installed package, so the deployment does
        # not depend on the folder it was created from.
        entrypoint_type=EntrypointType.MODULE_PATH,
        **options,
    )


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool ``name`` on the server unless it exists."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            return
    logger.info("created process work pool %s", name)


def require_server() -> str:
    """Return ``PREFECT_API_URL``; raise when it is unset, since a deployment needs a server."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise CreditflowError(
            "creditflow deploy needs a Prefect server: start one (prefect server start) and set "
            "PREFECT_API_URL, e.g. http://127.0.0.1:4200/api. To run the schedule without a "
            "server, use creditflow serve"
        )
    return url


def deploy(settings: Settings, cron: str = DEFAULT_CRON, timezone: str | None = None,
           work_pool: str = WORK_POOL) -> UUID:
    """Create or update the deployment on the server of ``PREFECT_API_URL``; return its id."""
    require_server()
    deployment = build_deployment(settings, cron, timezone)
    ensure_work_pool(work_pool)
    deployment_id = deployment.apply(work_pool_name=work_pool)
    logger.info("deployment %s (%s) scheduled %r in %s", full_name(), deployment_id, cron,
                timezone or settings.schedule_timezone)
    return deployment_id


def command_deploy(args: argparse.Namespace, settings: Settings) -> int:
    timezone = args.timezone or settings.schedule_timezone
    url = require_server()
    deployment_id = deploy(settings, args.cron, timezone)
    print(f"deployment {full_name()} ({deployment_id}) on {url}")
    print(f"  schedule: {args.cron} ({timezone}); each run takes the month that just ended")
    print(f"  data directory of its runs: {settings.home}")
    print(f"start a worker to run it: prefect worker start --pool {WORK_POOL}")
    print(f"run a month now: prefect deployment run {full_name()} --param month=YYYY-MM")
    return 0


def command_serve(args: argparse.Namespace, settings: Settings) -> int:
    timezone = args.timezone or settings.schedule_timezone
    deployment = build_deployment(settings, args.cron, timezone, work_pool=False)
    # The runner starts each flow run as a child process, which reads its settings from these.
    os.environ.update(run_environment(settings, timezone))
    print(f"serving {full_name(SERVED_NAME)}, schedule {args.cron} ({timezone}), data directory "
          f"{settings.home}; stop with Ctrl+C")
    from prefect import serve

    serve(deployment)
    return 0
