"""The ``audit_log`` table: who did what, when, to which target, with which outcome.

Every upload, run request, download and token change is recorded, including refused ones
(outcome ``denied``). Entries never contain a token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from api.store import StateStore, utc_now

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditEntry:
    """One row of ``audit_log``."""

    audit_id: int
    at: str
    who: str
    role: str | None
    action: str
    target: str | None
    outcome: str
    detail: str | None


def record_event(store: StateStore, who: str, role: str | None, action: str, target: str | None,
                 outcome: str, detail: str | None = None) -> None:
    """Append one entry to ``audit_log`` and log it."""
    with store.connect() as connection:
        connection.execute(
            "insert into audit_log (at, who, role, action, target, outcome, detail)"
            " values (?, ?, ?, ?, ?, ?, ?)",
            [utc_now(), who, role, action, target, outcome, (detail or None) and detail[:2000]],
        )
    logger.info("audit: %s (%s) %s %s -> %s%s", who, role or "-", action, target or "-", outcome,
                f": {_one_line(detail)}" if detail else "")


def _one_line(text: str, limit: int = 300) -> str:
    """Return ``text`` on one line and at most ``limit`` characters long, for the log."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def recent_events(store: StateStore, limit: int = 100, action: str | None = None
                  ) -> list[AuditEntry]:
    """Return the newest entries first, optionally only those of one action."""
    query = "select * from audit_log"
    params: list[object] = []
    if action:
        query += " where action = ?"
        params.append(action)
    query += " order by audit_id desc limit ?"
    params.append(limit)
    with store.connect() as connection:
        rows = connection.execute(query, params).fetchall()
    return [AuditEntry(**dict(row)) for row in rows]
