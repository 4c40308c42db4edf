"""Connections to the DuckDB warehouse, and the one place that handles its file lock.

DuckDB lets one process hold a read-write connection to a file, and that connection locks the
file against every other process, read-only ones included. Every step therefore opens the
warehouse, does its work and closes it, so the next step or process can open it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

logger = logging.getLogger(__name__)


class WarehouseLockedError(RuntimeError):
    """Raised when another process has the DuckDB file open."""


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


@contextlib.contextmanager
def connect(path: Path, read_only: bool = False, wait_seconds: float = 0.0
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse at ``path``, waiting up to ``wait_seconds`` for another process's lock.

    Raises :class:`WarehouseLockedError` naming the file when it stays locked.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"warehouse {path} does not exist yet: ingest a file first "
            "(creditflow ingest FILE) or check CREDITFLOW_HOME"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.Error as error:
            if not _is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"warehouse {path} is locked by another process ({error}). Wait for the "
                    "running step to finish (creditflow status) or stop the process that holds it."
                ) from error
            logger.info("warehouse %s is locked, retrying in 0.5 s", path)
            time.sleep(0.5)
    try:
        yield connection
    finally:
        connection.close()


def table_exists(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = connection.execute(
        "select count(*) from information_schema.tables where table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


def _raw_applications_ddl() -> str:
    from flows.schema import COLUMNS

    columns = ",\n    ".join(f"{c.name.lower()} {c.sql_type}" for c in COLUMNS)
    return f"""
create table if not exists raw_applications (
    {columns},
    month varchar not null,
    load_id varchar not null
)"""


# Tables written by Python code. dbt declares them as sources, so they exist before the first
# `dbt build` and the lineage in dbt docs starts at the landed file.
_TABLES = {
    "load_log": """
create table if not exists load_log (
    load_id varchar primary key,
    file_name varchar not null,
    month varchar,
    rows bigint,
    sha256 varchar,
    user_name varchar,
    loaded_at timestamp not null,
    outcome varchar not null,
    message varchar,
    stored_path varchar,
    report_path varchar
)""",
    "predictions": """
create table if not exists predictions (
    sk_id_curr bigint not null,
    score_month varchar not null,
    model_id varchar not null,
    default_probability double not null,
    decision varchar not null,
    reason_codes varchar,
    scored_at timestamp not null,
    primary key (sk_id_curr, score_month)
)""",
    "model_registry": """
create table if not exists model_registry (
    model_id varchar primary key,
    trained_at timestamp not null,
    score_month varchar,
    training_months varchar not null,
    validation_month varchar,
    params varchar,
    features varchar,
    metrics varchar,
    data_fingerprint varchar,
    status varchar not null,
    artifact_path varchar not null,
    artifact_sha256 varchar not null,
    note varchar
)""",
    "model_features": """
create table if not exists model_features (
    model_id varchar not null,
    feature varchar not null,
    is_categorical boolean not null,
    gain_importance double,
    primary key (model_id, feature)
)""",
    "model_training_months": """
create table if not exists model_training_months (
    model_id varchar not null,
    month varchar not null,
    primary key (model_id, month)
)""",
    "pipeline_runs": """
create table if not exists pipeline_runs (
    run_id varchar not null,
    month varchar not null,
    step varchar not null,
    started_at timestamp not null,
    ended_at timestamp,
    status varchar not null,
    error varchar,
    detail varchar
)""",
}


def init_warehouse(connection: duckdb.DuckDBPyConnection) -> None:
    """Create the tables Python code writes, if they are missing."""
    connection.execute(_raw_applications_ddl())
    for ddl in _TABLES.values():
        connection.execute(ddl)
