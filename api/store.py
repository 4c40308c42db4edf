"""The API's own state: tokens, the audit log and the runs it started.

This state lives in a small SQLite file beside the warehouse (``$CREDITFLOW_HOME/api.sqlite3``),
not in the DuckDB warehouse. A monthly run keeps the warehouse's write lock for minutes, and the
API must still check tokens, record audit entries and report on runs meanwhile. SQLite in WAL mode
lets the server and the ``creditflow token`` command write it at the same time.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from flows.config import Settings
from flows.sqlite_state import sqlite_connection

STATE_FILE_NAME = "api.sqlite3"

_SCHEMA = [
    """
    create table if not exists api_tokens (
        token_id text primary key,
        name text not null,
        role text not null,
        salt text not null,
        token_hash text not null,
        created_at text not null,
        created_by text not null,
        last_used_at text,
        revoked_at text
    )""",
    """
    create table if not exists audit_log (
        audit_id integer primary key autoincrement,
        at text not null,
        who text not null,
        role text,
        action text not null,
        target text,
        outcome text not null,
        detail text
    )""",
    "create index if not exists audit_log_at on audit_log (at)",
    """
    create table if not exists api_runs (
        run_id text primary key,
        month text not null,
        from_step text,
        reuse_model integer not null default 0,
        status text not null,
        requested_by text not null,
        requested_at text not null,
        ended_at text,
        exit_code integer,
        pid integer,
        log_path text,
        message text,
        steps_json text,
        steps_checked_at text
    )""",
    "create index if not exists api_runs_month on api_runs (month, status)",
]


def utc_now() -> str:
    """Return the current time as ISO 8601 text in UTC, the format of every stored timestamp."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class StateStore:
    """Open connections to the API state file; each operation opens and closes its own."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_settings(cls, settings: Settings) -> StateStore:
        return cls(settings.home / STATE_FILE_NAME)

    def init(self) -> None:
        """Create the file and its tables if they are missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as connection:
            connection.execute("pragma journal_mode=wal")
            for statement in _SCHEMA:
                connection.execute(statement)

    def connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Return a connection context that commits on success and rolls back on error."""
        return sqlite_connection(self.path, timeout=10.0)
