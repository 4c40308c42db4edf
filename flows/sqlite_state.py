"""SQLite connections for small state stores kept beside the warehouse (API, watcher).

They live outside the DuckDB file so that they stay writable while a run holds its lock.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def sqlite_connection(path: Path, timeout: float) -> Iterator[sqlite3.Connection]:
    """Yield a connection to ``path`` that commits on success and rolls back on error.

    ``timeout`` is how many seconds a write waits for another writer's lock.
    """
    connection = sqlite3.connect(path, timeout=timeout)
    connection.row_factory = sqlite3.Row
    try:
        with connection:
            yield connection
    finally:
        connection.close()
