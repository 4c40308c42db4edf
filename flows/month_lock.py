"""One run per month at a time: a lock file per month under ``$CREDITFLOW_HOME/runs/``.

The lock file contains the owner's process id, host name, run id and start time. A lock left by a
process on this host that no longer runs (killed, machine crash) is stale, so the next run replaces
it. While the owner process runs, a second run is rejected with a message that names that process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from flows.config import Settings
from flows.errors import CreditflowError

logger = logging.getLogger(__name__)


class MonthLockedError(CreditflowError):
    """Another live run has the lock of the month."""


def lock_path(settings: Settings, month: str) -> Path:
    return settings.home / "runs" / f"{month}.lock"


def process_is_running(pid: int) -> bool:
    """Return True when ``pid`` is a live process on this host (zombies count as ended)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # The state letter follows the parenthesised command name; "Z" is a zombie.
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def read_holder(path: Path) -> dict | None:
    """Return the lock file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _is_stale(holder: dict) -> bool:
    if not holder:
        # Unreadable content: the link below publishes the file only with its content written,
        # so this is a damaged file rather than a lock being created right now.
        return True
    if holder.get("host") != socket.gethostname():
        return False
    return not process_is_running(int(holder.get("pid", 0)))


def _try_create(path: Path, content: str) -> bool:
    """Create ``path`` with ``content`` atomically; return False when it already exists."""
    draft = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    draft.write_text(content, encoding="utf-8")
    try:
        os.link(draft, path)
    except FileExistsError:
        return False
    finally:
        draft.unlink()
    return True


@contextlib.contextmanager
def month_lock(settings: Settings, month: str, run_id: str) -> Iterator[Path]:
    """Hold the lock of ``month`` for the duration of the block.

    Raises :class:`MonthLockedError` when a live process already runs the month.
    """
    path = lock_path(settings, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = json.dumps({
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "run_id": run_id,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    while not _try_create(path, content):
        holder = read_holder(path)
        if holder is None:
            continue
        if not _is_stale(holder):
            raise MonthLockedError(
                f"month {month} is already being run by process {holder.get('pid')} on "
                f"{holder.get('host')} (run {holder.get('run_id')}, started "
                f"{holder.get('started_at')}). Wait for it to finish (creditflow status); if "
                f"that process is gone, delete {path}"
            )
        # NOTE: two processes that find the same stale lock at the same moment can both remove
        # it, and the slower one may then remove the lock the faster one just created.
        if holder:
            logger.warning("replacing stale lock %s of month %s left by process %s (no longer "
                           "running)", path, month, holder.get("pid"))
        else:
            logger.warning("replacing damaged lock %s of month %s (its content is unreadable)",
                           path, month)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    try:
        yield path
    finally:
        if read_holder(path) == json.loads(content):
            path.unlink()
