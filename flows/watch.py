"""``creditflow watch``: run a month as soon as its file arrives in the inbox (folder or S3 prefix).

Every scan lists the inbox and decides, for each file (``initial.csv`` first, then monthly files
in month order):

- a temporary name (``.*``, ``~*``, ``*.tmp``, ``*.part``, ``*_COPYING_*``) is ignored;
- a name that is not ``initial.csv`` or ``YYYYMMDD.csv`` is skipped, with a warning once;
- a file whose size or version (mtime, or the S3 ETag) changed since the previous scan is still
  being written, so it waits for a scan that lists it unchanged;
- a complete file is copied into the local inbox and identified by name and SHA-256. The same
  name with the same bytes is taken once: a later upload of those bytes is skipped with a log line.
  A monthly file then starts the monthly flow for its month, in the watcher's own process, or,
  with ``--deployment`` or ``CREDITFLOW_DEPLOYMENT``, as a flow run of that Prefect deployment
  which the watcher follows to its final state. ``initial.csv`` (history) stays in the local
  inbox for the next month's run to load.

The decisions survive restarts in a SQLite file, ``$CREDITFLOW_HOME/watch.sqlite3``: the previous
listing (for the completeness check) and one row per file taken. A row is marked ``running``
before its run starts. A ``running`` row whose month no live process runs means that the watcher
that ran it stopped mid-run. That row becomes ``interrupted`` and the watcher never reruns it,
because the run may have passed steps that must not repeat unseen. The warning names the command
that finishes the month. A ``running`` row of a deployment instead names its flow run, whose
state the restarted watcher reads from the Prefect API and follows (see flows.watch_trigger).
After a successful run, the predictions (CSV and Parquet) and the report are published to the
output location (``CREDITFLOW_OUTPUT_URL``) atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.config import Settings
from flows.errors import CreditflowError
from flows.month_lock import lock_path, process_is_running, read_holder
from flows.months import HISTORY, month_from_filename, month_sort_key
from flows.sqlite_state import sqlite_connection
from flows.storage import Location, StoredFile, inbox_url, output_url
from flows.watch_trigger import DEFAULT_POLL_SECONDS

logger = logging.getLogger(__name__)

STATE_FILE = "watch.sqlite3"
DEFAULT_INTERVAL_SECONDS = 30.0

# Statuses of a taken file in the state store.
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"
STAGED = "staged"

_TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")

_SCHEMA = """
create table if not exists watch_listing (
    name text primary key,
    size integer not null,
    version text not null,
    first_seen_at text not null,
    checksum text,
    note text
);
create table if not exists watch_files (
    name text not null,
    checksum text not null,
    size integer not null,
    month text not null,
    status text not null,
    run_id text,
    taken_at text not null,
    ended_at text,
    outputs text,
    message text,
    deployment text,
    primary key (name, checksum)
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_temporary_name(name: str) -> bool:
    """Return True for names that upload tools give a file while it is being written."""
    return (name.startswith((".", "~")) or name.endswith(_TEMPORARY_SUFFIXES)
            or "_COPYING_" in name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scan_order(item: StoredFile) -> tuple[int, str, str]:
    """Sort key of a listed file: ``initial.csv`` first, then monthly files in month order.

    A month's run trains on the labeled months before it, so the history must reach the local
    inbox before a monthly file of the same scan starts its run. Other names come last.
    """
    try:
        month = month_from_filename(item.name)
    except ValueError:
        return (1, "", item.name)
    return (0, month_sort_key(month), item.name)


def month_is_running(settings: Settings, month: str) -> bool:
    """Return True when a live process holds the lock of ``month`` (see flows.month_lock)."""
    holder = read_holder(lock_path(settings, month))
    if not holder:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    return process_is_running(int(holder.get("pid", 0)))


class WatchState:
    """The watcher's SQLite store: the previous listing and the files taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as connection:
            connection.executescript(_SCHEMA)
            columns = {row["name"] for row in connection.execute(
                "pragma table_info(watch_files)").fetchall()}
            if "deployment" not in columns:  # a state file of a watcher without deployments
                connection.execute("alter table watch_files add column deployment text")

    def connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return sqlite_connection(self.path, timeout=30)

    def previous_listing(self) -> dict[str, sqlite3.Row]:
        with self.connect() as connection:
            rows = connection.execute("select * from watch_listing").fetchall()
        return {row["name"]: row for row in rows}

    def save_listing(self, files: list[StoredFile]) -> None:
        """Replace the stored listing; an unchanged file keeps its first-seen time and note."""
        previous = self.previous_listing()
        with self.connect() as connection:
            connection.execute("delete from watch_listing")
            for item in files:
                old = previous.get(item.name)
                same = old is not None and (old["size"], old["version"]) == (item.size,
                                                                               item.version)
                connection.execute(
                    "insert into watch_listing values (?, ?, ?, ?, ?, ?)",
                    [item.name, item.size, item.version,
                     old["first_seen_at"] if same else _now(),
                     old["checksum"] if same else None,
                     old["note"] if same else None],
                )

    def set_listing(self, name: str, column: str, value: str) -> None:
        if column not in ("checksum", "note"):
            raise ValueError(f"unknown listing column {column!r}")
        with self.connect() as connection:
            connection.execute(f"update watch_listing set {column} = ? where name = ?",
                               [value, name])

    def taken(self, name: str, checksum: str) -> sqlite3.Row | None:
        with self.connect() as connection:
            return connection.execute(
                "select * from watch_files where name = ? and checksum = ?", [name, checksum]
            ).fetchone()

    def files(self, status: str | None = None) -> list[dict[str, Any]]:
        """Return the files taken, oldest first, optionally only those with ``status``."""
        sql = "select * from watch_files"
        arguments: list[Any] = []
        if status:
            sql += " where status = ?"
            arguments.append(status)
        with self.connect() as connection:
            rows = connection.execute(sql + " order by taken_at, name", arguments).fetchall()
        return [dict(row) for row in rows]

    def record(self, name: str, checksum: str, size: int, month: str, status: str,
               deployment: str | None = None) -> None:
        with self.connect() as connection:
            connection.execute(
                "insert into watch_files (name, checksum, size, month, status, taken_at, "
                "deployment) values (?, ?, ?, ?, ?, ?, ?)",
                [name, checksum, size, month, status, _now(), deployment])

    def set_run_id(self, name: str, checksum: str, run_id: str) -> None:
        with self.connect() as connection:
            connection.execute("update watch_files set run_id = ? where name = ? and checksum = ?",
                               [run_id, name, checksum])

    def finish(self, name: str, checksum: str, status: str, run_id: str | None = None,
               outputs: dict[str, str] | None = None, message: str | None = None) -> None:
        with self.connect() as connection:
            connection.execute(
                "update watch_files set status = ?, run_id = coalesce(?, run_id), ended_at = ?, "
                "outputs = ?, message = ? where name = ? and checksum = ?",
                [status, run_id, _now(), json.dumps(outputs) if outputs else None, message,
                 name, checksum])

    def forget(self, name: str, checksum: str) -> None:
        with self.connect() as connection:
            connection.execute("delete from watch_files where name = ? and checksum = ?",
                               [name, checksum])


@dataclass(frozen=True)
class Decision:
    """The outcome of one scan for one file of the inbox."""

    name: str
    # ignored, wrong_name, waiting, known, duplicate, month_busy, staged, ran or failed. With a
    # deployment also following (its flow run has not ended yet) and deferred (the file is left
    # for a later scan while a flow run is followed).
    action: str
    month: str | None = None
    detail: str = ""


class Watcher:
    """Scan an inbox location and run each new complete monthly file once."""

    def __init__(self, settings: Settings, reuse_model: bool = False,
                 trials: int | None = None, deployment: str | None = None,
                 poll_seconds: float = DEFAULT_POLL_SECONDS,
                 follow_seconds: float | None = None) -> None:
        """Open the inbox, output and state of ``settings``.

        ``deployment`` (default ``settings.deployment``) names the Prefect deployment to trigger
        instead of running months in this process. A flow run's state is read every
        ``poll_seconds``. A scan follows a flow run for at most ``follow_seconds`` (default:
        until it ends), and the next scans keep following it before they take new files.
        """
        self.settings = settings
        self.reuse_model = reuse_model
        self.trials = trials
        self.deployment = deployment or settings.deployment
        self.poll_seconds = poll_seconds
        self.follow_seconds = follow_seconds
        self.inbox = Location(inbox_url(settings))
        self.output = Location(output_url(settings))
        self.state = WatchState(settings.home / STATE_FILE)
        self.staging = settings.home / "watch"

    # --- restarts ---------------------------------------------------------------------------

    def recover(self) -> list[dict[str, Any]]:
        """Mark ``running`` files whose month no live process runs as ``interrupted``.

        Files run by a deployment are left to :meth:`follow_deployment_runs`.
        """
        interrupted = []
        for row in self.state.files(RUNNING):
            if row["deployment"] or month_is_running(self.settings, row["month"]):
                continue
            message = (
                f"the watcher stopped while running month {row['month']} for {row['name']}; the "
                "file is not run again automatically. Check the month with creditflow status, "
                f"then finish it with creditflow run --month {row['month']} --from <first step "
                "not succeeded>"
            )
            self.state.finish(row["name"], row["checksum"], INTERRUPTED, message=message)
            logger.warning("%s (taken %s, sha256 %s): %s", row["name"], row["taken_at"],
                           row["checksum"][:12], message)
            interrupted.append(row)
        return interrupted

    # --- one scan ---------------------------------------------------------------------------

    def scan(self) -> list[Decision]:
        """List the inbox once and act on every file; return what was decided for each.

        While a flow run of the deployment has not ended, the scan only follows it and returns
        its ``following`` decision, so months run one after the other.
        """
        self.recover()
        followed = self.follow_deployment_runs()
        if any(decision.action == "following" for decision in followed):
            return followed
        previous = self.state.previous_listing()
        listing = self.inbox.list_files()
        self.state.save_listing(listing)
        logger.debug("scan of %s: %d file(s)", self.inbox, len(listing))
        decisions = list(followed)
        for item in sorted(listing, key=scan_order):
            following = [decision for decision in decisions if decision.action == "following"]
            if following:
                # Left undecided in the listing, so a later scan considers the file again.
                logger.info("%s: left for a later scan while flow run %s is followed", item.name,
                            following[0].detail)
                decisions.append(Decision(item.name, "deferred"))
                continue
            decisions.append(self._consider(item, previous.get(item.name)))
        return decisions

    def _consider(self, item: StoredFile, previous: sqlite3.Row | None) -> Decision:
        if is_temporary_name(item.name):
            logger.debug("%s: temporary name, ignored", item.name)
            return Decision(item.name, "ignored")
        try:
            month = month_from_filename(item.name)
        except ValueError as error:
            if previous is None or previous["note"] != "wrong_name" or \
                    (previous["size"], previous["version"]) != (item.size, item.version):
                logger.warning("%s in %s skipped: wrongly named. %s", item.name, self.inbox,
                               error)
            self.state.set_listing(item.name, "note", "wrong_name")
            return Decision(item.name, "wrong_name", detail=str(error))

        if previous is None or (previous["size"], previous["version"]) != (item.size,
                                                                          item.version):
            logger.info("%s: %d bytes, waiting for the next scan to list it unchanged "
                        "(it may still be uploading)", item.name, item.size)
            return Decision(item.name, "waiting", month)
        if previous["checksum"]:
            logger.debug("%s: already decided (sha256 %s)", item.name, previous["checksum"][:12])
            return Decision(item.name, "known", month)
        if month != HISTORY and month_is_running(self.settings, month):
            logger.info("%s: month %s is being run by another process, taking the file on a "
                        "later scan", item.name, month)
            return Decision(item.name, "month_busy", month)
        return self._take(item, month)

    def _local_inbox_path(self, name: str) -> Path:
        return self.settings.inbox / name

    def _stage(self, item: StoredFile) -> Path:
        """Copy the file to the local staging folder, or return it when it already is local."""
        if self.inbox.is_local:
            source = Path(self.inbox.root) / item.name
            if source.resolve() == self._local_inbox_path(item.name).resolve():
                return source
        staged = self.staging / item.name
        self.inbox.download(item.name, staged)
        return staged

    def _take(self, item: StoredFile, month: str) -> Decision:
        staged = self._stage(item)
        checksum = sha256_of(staged)
        self.state.set_listing(item.name, "checksum", checksum)
        earlier = self.state.taken(item.name, checksum)
        if earlier is not None:
            # NOTE: with the default inbox (the local inbox folder itself) the duplicate stays
            # there, so the next run of its month started by hand or by the schedule lands it.
            if staged.parent == self.staging:
                staged.unlink(missing_ok=True)
            logger.info("%s skipped: the same bytes (sha256 %s) were taken at %s, status %s",
                        item.name, checksum[:12], earlier["taken_at"], earlier["status"])
            return Decision(item.name, "duplicate", month, earlier["status"])

        status = STAGED if month == HISTORY else RUNNING
        self.state.record(item.name, checksum, item.size, month, status,
                          deployment=None if month == HISTORY else self.deployment)
        target = self._local_inbox_path(item.name)
        if staged.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        if month == HISTORY:
            logger.info("%s (sha256 %s) placed in %s: the next month's run loads the history",
                        item.name, checksum[:12], self.settings.inbox)
            return Decision(item.name, "staged", month)
        if self.deployment:
            return self._trigger(self.state.taken(item.name, checksum))
        logger.info("%s (sha256 %s): starting the monthly run of %s", item.name, checksum[:12],
                    month)
        return self._run(item, month, checksum)

    def _run(self, item: StoredFile, month: str, checksum: str) -> Decision:
        from flows.month_lock import MonthLockedError
        from flows.monthly import run_month

        trigger = self.inbox.path_of(item.name)
        try:
            summary = run_month(self.settings, month, reuse_model=self.reuse_model,
                                trials=self.trials, trigger_file=trigger)
        except MonthLockedError as error:
            # Another process started the month between the check and the run: retry later.
            self.state.forget(item.name, checksum)
            self.state.set_listing(item.name, "checksum", "")
            logger.warning("%s: not run now, retried on a later scan: %s", item.name, error)
            return Decision(item.name, "month_busy", month, str(error))
        except Exception as error:  # noqa: BLE001 - one failed month must not stop the watcher
            message = str(error) if isinstance(error, CreditflowError) else \
                f"{type(error).__name__}: {error}"
            self.state.finish(item.name, checksum, FAILED, message=message)
            logger.error("%s: the run of %s failed: %s", item.name, month, message)
            return Decision(item.name, "failed", month, message)

        return self._finish_success(item.name, checksum, month, summary)

    # --- runs of a Prefect deployment ----------------------------------------------------------

    def follow_deployment_runs(self) -> list[Decision]:
        """Follow every ``running`` file of a deployment: trigger it again when no flow run id
        was recorded (Prefect returns the same flow run for the same key), else follow it."""
        decisions = []
        for row in self.state.files(RUNNING):
            if not row["deployment"]:
                continue
            if row["run_id"]:
                logger.info("%s: following flow run %s of %s for month %s, started before a "
                            "restart", row["name"], row["run_id"], row["deployment"], row["month"])
                decisions.append(self._follow(row))
            else:
                decisions.append(self._trigger(row))
        return decisions

    def _trigger(self, row: sqlite3.Row | dict[str, Any]) -> Decision:
        """Start the flow run of the deployment for a taken file, record its id, follow it."""
        from flows.watch_trigger import trigger_deployment

        parameters: dict[str, Any] = {"month": row["month"],
                                      "trigger_file": self.inbox.path_of(row["name"])}
        if self.reuse_model:
            parameters["reuse_model"] = True
        if self.trials is not None:
            parameters["trials"] = self.trials
        key = f"creditflow-watch:{row['name']}:{row['checksum']}:{row['taken_at']}"
        flow_run_id = trigger_deployment(row["deployment"], parameters, key)
        self.state.set_run_id(row["name"], row["checksum"], flow_run_id)
        logger.info("%s (sha256 %s): triggered deployment %s for month %s, flow run %s",
                    row["name"], row["checksum"][:12], row["deployment"], row["month"],
                    flow_run_id)
        return self._follow({**dict(row), "run_id": flow_run_id})

    def _follow(self, row: sqlite3.Row | dict[str, Any]) -> Decision:
        """Wait for the flow run of ``row`` to end, then record its outcome and publish."""
        from flows.watch_trigger import follow, run_summary

        name, checksum, month, flow_run_id = (row["name"], row["checksum"], row["month"],
                                              row["run_id"])
        state = follow(flow_run_id, self.poll_seconds, self.follow_seconds)
        if state is None:
            message = (f"flow run {flow_run_id} of {row['deployment']} is unknown to the Prefect "
                       f"server, so its outcome is unknown. Check month {month} with creditflow "
                       f"status, then finish it with creditflow run --month {month}")
            self.state.finish(name, checksum, INTERRUPTED, message=message)
            logger.warning("%s: %s", name, message)
            return Decision(name, "failed", month, message)
        if not state.final:
            logger.info("%s: flow run %s of month %s is %s; following it on the next scan",
                        name, flow_run_id, month, state.name)
            return Decision(name, "following", month, flow_run_id)
        if not state.completed:
            message = (f"flow run {state.flow_run_name} ({flow_run_id}) ended {state.name}"
                       + (f": {state.message}" if state.message else ""))
            self.state.finish(name, checksum, FAILED, message=message)
            logger.error("%s: the run of %s failed: %s", name, month, message)
            return Decision(name, "failed", month, message)

        summary = run_summary(self.settings, flow_run_id) or {"run_id": flow_run_id}
        return self._finish_success(name, checksum, month, summary)

    def _finish_success(self, name: str, checksum: str, month: str,
                        summary: dict[str, Any]) -> Decision:
        """Publish a succeeded run's outputs and record the file as succeeded."""
        try:
            outputs = self.publish(summary)
        except CreditflowError as error:
            self.state.finish(name, checksum, FAILED, run_id=summary.get("run_id"),
                              message=f"run succeeded, publishing the outputs failed: {error}")
            logger.error("%s: run %s of %s succeeded, but publishing its outputs failed: %s",
                         name, summary.get("run_id"), month, error)
            return Decision(name, "failed", month, str(error))
        self.state.finish(name, checksum, SUCCEEDED, run_id=summary.get("run_id"),
                          outputs=outputs)
        logger.info("%s: run %s of %s succeeded; outputs in %s", name, summary.get("run_id"),
                    month, self.output)
        return Decision(name, "ran", month, summary.get("run_id") or "")

    def publish(self, summary: dict[str, Any]) -> dict[str, str]:
        """Copy the run's predictions and report to the output location; return their URLs."""
        published = {}
        for key in ("predictions_csv", "predictions_parquet", "report_path"):
            if summary.get(key):
                source = Path(summary[key])
                published[key] = self.output.upload(source, source.name)
        return published


def wait_for_change(folder: Path | None, seconds: float) -> bool:
    """Wait ``seconds``, or less when a file in the local ``folder`` changes (watchfiles events).

    Returns True when a change ended the wait. Without a folder (an S3 inbox), only sleeps. The
    next listing decides what changed: events can be missed (on some network file systems, set
    ``WATCHFILES_FORCE_POLLING=1``) and only shorten the wait.
    """
    if folder is None or not folder.is_dir():
        time.sleep(seconds)
        return False
    from watchfiles import watch as watch_folder

    for changes in watch_folder(folder, watch_filter=None, recursive=False,
                                rust_timeout=max(1, int(seconds * 1000)),
                                yield_on_timeout=True):
        if changes:
            logger.debug("%s changed: %s", folder, sorted(name for _, name in changes))
        return bool(changes)
    return False


def watch(settings: Settings, interval: float = DEFAULT_INTERVAL_SECONDS, once: bool = False,
          reuse_model: bool = False, trials: int | None = None,
          deployment: str | None = None) -> None:
    """Scan the inbox every ``interval`` seconds until interrupted, or once with ``once``.

    With ``deployment`` (default ``settings.deployment``), each month runs as a flow run of that
    Prefect deployment, which must exist on the server of ``PREFECT_API_URL``.
    """
    if interval <= 0:
        raise CreditflowError(f"invalid watch interval {interval}: give a number of seconds > 0")
    settings.ensure_dirs()
    watcher = Watcher(settings, reuse_model=reuse_model, trials=trials, deployment=deployment)
    if watcher.deployment:
        from flows.watch_trigger import check_deployment

        check_deployment(watcher.deployment)
    # A local inbox wakes the watcher when it changes, so the interval is only the longest wait.
    folder = Path(watcher.inbox.root) if watcher.inbox.is_local else None
    logger.info("watching %s every %s s%s; months run %s; outputs go to %s; state in %s",
                watcher.inbox, interval, " and on folder events" if folder else "",
                f"as flow runs of {watcher.deployment}" if watcher.deployment
                else "in this process", watcher.output, watcher.state.path)
    while True:
        try:
            watcher.scan()
        except Exception as error:  # noqa: BLE001 - the service keeps watching after an error
            if once:
                raise
            logger.error("scan of %s failed, next try in %s s: %s: %s", watcher.inbox, interval,
                         type(error).__name__, error)
        if once:
            return
        wait_for_change(folder, interval)


def command_watch(args: Any, settings: Settings) -> int:
    watch(settings, interval=args.interval, once=args.once, reuse_model=args.reuse_model,
          deployment=args.deployment)
    return 0
