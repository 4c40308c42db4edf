"""Running dbt in-process on the warehouse of one deployment.

dbt runs through its programmatic entry point (``dbtRunner``) with the project in
``dbt_project/`` and the profile in the repository root. The profile reads the warehouse path
from ``CREDITFLOW_HOME``, or, when the settings have a PostgreSQL URL, the ``postgres`` target
and its ``CREDITFLOW_PG_*`` variables; they are set from the settings for the duration of the
run. dbt's
compiled SQL, manifest and log go under the data directory (``dbt_target/``, ``dbt_logs/``), so
two deployments, or two test runs, never share them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from flows.config import DBT_PROJECT_DIR, PROFILES_DIR, Settings
from flows.errors import CreditflowError
from flows.warehouse import (
    WarehouseLockedError,
    connect,
    describe,
    init_warehouse,
    warehouse_url,
)

logger = logging.getLogger(__name__)
# dbt's own messages (progress, results, the SQL at debug level) are logged under this name.
dbt_logger = logging.getLogger(f"{__name__}.dbt")

# Seconds to wait for another process to release the warehouse before failing.
LOCK_WAIT_SECONDS = 5.0
# Parsed projects of this process, by project folder and --vars: (fingerprint of its files,
# manifest).
_MANIFESTS: dict[tuple[Path, str], tuple[str, object]] = {}
# dbt keeps process-wide state (flags, adapters, event manager), so one invocation runs at a time.
_DBT_LOCK = threading.Lock()

_FAILED_STATUSES = {"error", "fail", "runtime error"}
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


class DbtError(CreditflowError):
    """A dbt command failed; the message names the failed nodes and dbt's messages."""


def target_dir(settings: Settings) -> Path:
    """Return the folder of dbt's compiled SQL, manifest and docs for this deployment."""
    return settings.home.resolve() / "dbt_target"


def log_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "dbt_logs"


def run_dbt(settings: Settings, args: list[str], project_dir: Path | None = None) -> None:
    """Run the dbt command ``args`` (e.g. ``["build"]``) on the warehouse of ``settings``.

    Creates the tables that dbt reads as sources if they are missing, runs dbt in this process
    and releases the DuckDB file before returning, so the next step or process can open it.
    Raises :class:`DbtError` naming the failed models and tests with dbt's messages.
    """
    project_dir = Path(project_dir or DBT_PROJECT_DIR).resolve()
    if "--vars" not in args:
        args = [*args, "--vars", project_vars()]
    _prepare_warehouse(settings)
    common_args = [
        "--project-dir", str(project_dir),
        "--profiles-dir", str(PROFILES_DIR),
        "--target-path", str(target_dir(settings)),
        "--log-path", str(log_dir(settings)),
        # Output reaches the Python logger through the callback, not dbt's own stdout printer.
        # The file log (with every SQL statement) needs its own level, or it follows "none".
        "--log-level", "none",
        "--log-level-file", "debug",
        "--no-use-colors",
    ]
    logger.info("running dbt %s on %s", " ".join(args), describe(settings))

    from dbt.cli.main import dbtRunner

    with _DBT_LOCK, _profile_environment(settings):
        try:
            manifest = _parsed_project(project_dir, common_args, _dbt_vars(args), settings)
            outcome = dbtRunner(manifest=manifest, callbacks=[_log_dbt_event]).invoke(
                [*args, *common_args]
            )
        finally:
            _release_warehouse()

    failure = _describe_failure(outcome, args, settings)
    if failure:
        raise DbtError(failure)
    logger.info("dbt %s finished", " ".join(args))


def project_vars() -> str:
    """Return the ``--vars`` JSON that every dbt command of creditflow passes.

    These are the monitoring marts' parameters from flows/monitoring.yml. dbt parses the whole
    project again when the vars differ from its last parse (about 5 s at full size), so the
    feature build passes them too although its models do not read them.
    """
    from flows.monitoring import load_config

    return json.dumps(load_config().dbt_vars())


def build_features(settings: Settings) -> None:
    """Rebuild the applications and feature tables and run their tests (not monitoring)."""
    run_dbt(settings, ["build", "--exclude", "tag:monitoring"])


def build_monitoring(settings: Settings) -> None:
    """Rebuild the monitoring tables (dbt models tagged ``monitoring``) and run their tests.

    The marts' parameters (PSI bins, sensitive columns) come from flows/monitoring.yml, passed
    by :func:`run_dbt` as ``--vars``.
    """
    run_dbt(settings, ["build", "--select", "tag:monitoring"])


def generate_docs(settings: Settings) -> Path:
    """Write the dbt documentation site of the warehouse and return its ``index.html``."""
    run_dbt(settings, ["docs", "generate"])
    return target_dir(settings) / "index.html"


def command_build(args: argparse.Namespace, settings: Settings) -> int:
    """CLI: ``creditflow build [--select SELECTION] [--full-refresh]``."""
    dbt_args = ["build"]
    if args.select:
        dbt_args += ["--select", args.select]
    if getattr(args, "full_refresh", False):
        dbt_args.append("--full-refresh")
    run_dbt(settings, dbt_args)
    print(f"dbt build finished on {describe(settings)}")
    return 0


def _prepare_warehouse(settings: Settings) -> None:
    """Create the source tables, or fail fast naming the path when another process has it open."""
    settings.home.mkdir(parents=True, exist_ok=True)
    try:
        with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
            init_warehouse(connection)
    except WarehouseLockedError as error:
        raise DbtError(str(error)) from error


def _project_fingerprint(project_dir: Path) -> str:
    """Return a digest of the project's and the profile's file names, sizes and times."""
    digest = hashlib.sha256()
    paths = [PROFILES_DIR / "profiles.yml", project_dir / "dbt_project.yml"]
    for folder in ("models", "macros", "tests", "analyses", "seeds", "snapshots"):
        paths += sorted((project_dir / folder).rglob("*"))
    for path in paths:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _dbt_vars(args: list[str]) -> str:
    """Return the value of ``--vars`` in ``args``, or an empty string."""
    if "--vars" in args[:-1]:
        return args[args.index("--vars") + 1]
    return ""


def _parsed_project(project_dir: Path, common_args: list[str], dbt_vars: str,
                    settings: Settings):
    """Return the project's parsed manifest, parsing it only when its files or vars changed.

    dbt parses a project in several seconds, and a new data directory would parse it again
    (dbt's own partial parsing keys on the warehouse path). Manifests of the same files are
    the same whichever DuckDB warehouse they run on, because every warehouse file is named
    warehouse.duckdb and so is the same dbt database. A PostgreSQL target has its own manifest
    per database and schema, which the manifest names.
    """
    from dbt.cli.main import dbtRunner

    fingerprint = _project_fingerprint(project_dir)
    key = (project_dir, dbt_vars + "|" + _target_identity())
    cached = _MANIFESTS.get(key)
    if cached and cached[0] == fingerprint:
        return cached[1]
    parse_args = ["parse", *common_args]
    if dbt_vars:
        parse_args += ["--vars", dbt_vars]
    outcome = dbtRunner(callbacks=[_log_dbt_event]).invoke(parse_args)
    failure = _describe_failure(outcome, ["parse"], settings)
    if failure:
        raise DbtError(failure)
    _MANIFESTS[key] = (fingerprint, outcome.result)
    return outcome.result


def _profile_variables(settings: Settings) -> dict[str, str]:
    """Return the environment variables profiles.yml reads for the warehouse of ``settings``.

    Without a warehouse URL, dbt uses the ``dev`` target (the DuckDB file under
    ``CREDITFLOW_HOME``). With one, it uses the ``postgres`` target, whose connection settings
    come from the URL; the schema is the one the Python code writes to (the connection's
    current schema), so dbt's sources find raw_applications and the other Python tables.
    """
    variables = {"CREDITFLOW_HOME": str(settings.home.resolve())}
    url = warehouse_url(settings)
    if not url:
        variables["CREDITFLOW_DBT_TARGET"] = "dev"
        return variables
    parts = urlsplit(url)
    with connect(settings) as connection:
        schema = connection.execute("select current_schema()").fetchone()[0]
    variables.update({
        "CREDITFLOW_DBT_TARGET": "postgres",
        "CREDITFLOW_PG_HOST": parts.hostname or "localhost",
        "CREDITFLOW_PG_PORT": str(parts.port or 5432),
        "CREDITFLOW_PG_USER": unquote(parts.username or ""),
        "CREDITFLOW_PG_PASSWORD": unquote(parts.password or ""),
        "CREDITFLOW_PG_DBNAME": unquote(parts.path.lstrip("/")),
        "CREDITFLOW_PG_SCHEMA": schema,
    })
    query = parse_qs(parts.query)
    if query.get("host"):  # a Unix socket directory: postgresql:///db?host=/run/postgresql
        variables["CREDITFLOW_PG_HOST"] = query["host"][-1]
    if query.get("sslmode"):
        variables["CREDITFLOW_PG_SSLMODE"] = query["sslmode"][-1]
    return variables


def _target_identity() -> str:
    """Name the dbt target and database of the running invocation, without the password."""
    names = ("CREDITFLOW_DBT_TARGET", "CREDITFLOW_PG_HOST", "CREDITFLOW_PG_PORT",
             "CREDITFLOW_PG_DBNAME", "CREDITFLOW_PG_SCHEMA", "CREDITFLOW_PG_SSLMODE")
    return "|".join(os.environ.get(name, "") for name in names)


@contextlib.contextmanager
def _profile_environment(settings: Settings) -> Iterator[None]:
    """Set the variables profiles.yml reads while dbt runs, then restore the old values."""
    variables = _profile_variables(settings)
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _release_warehouse() -> None:
    """Close the DuckDB database that dbt-duckdb keeps open between invocations.

    dbt-duckdb 1.11 keeps one database environment per process in a class attribute, and its
    close_all_connections() only drops the reference, which leaves the file locked until the
    garbage collector runs.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    environment = DuckDBConnectionManager._ENV
    DuckDBConnectionManager._ENV = None
    if environment is not None:
        environment.close()


def _log_dbt_event(event) -> None:
    """Pass one dbt event message to the Python logger at its own level."""
    level = _LOG_LEVELS.get(event.info.level, logging.INFO)
    if not dbt_logger.isEnabledFor(level):
        return
    text = event.info.msg.strip()
    if text:
        dbt_logger.log(level, "%s", text)


def _describe_failure(outcome, args: list[str], settings: Settings) -> str | None:
    """Return the error message of a failed dbt invocation, or None when it succeeded."""
    if outcome.success:
        return None
    where = (
        f"See {log_dir(settings) / 'dbt.log'} for the SQL and the full log, fix the model or "
        "the data, then run `creditflow build` again."
    )
    head = f"dbt {' '.join(args)} failed on {describe(settings)}"
    if outcome.exception is not None:
        return f"{head}: {outcome.exception}. {where}"

    failures = []
    skipped = 0
    schema_changed = False
    for result in getattr(outcome.result, "results", None) or []:
        status = str(result.status).lower()
        if status == "skipped":
            skipped += 1
        elif status in _FAILED_STATUSES:
            node = result.node
            name = f"{node.resource_type} {node.name}"
            message = (result.message or "").strip()
            failures.append(f"- {name} ({status}): {message}")
            # dbt's error when an incremental model's columns differ from its stored table.
            schema_changed = schema_changed or "out of sync" in message
    if not failures:
        return f"{head} without naming a failed node. {where}"
    if schema_changed:
        where = ("A model's columns changed: run `creditflow build --full-refresh` to rebuild "
                 "the incremental tables from every stored month. " + where)
    lines = [f"{head}: {len(failures)} node(s) failed, {skipped} skipped.", *failures, where]
    return "\n".join(lines)
