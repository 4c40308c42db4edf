"""Settings of one creditflow deployment, read from the environment.

Everything the system stores sits under one data directory, ``CREDITFLOW_HOME`` (default
``.creditflow`` in the working directory), so moving or backing up a deployment means that folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
PROFILES_DIR = REPO_ROOT
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
ML_PARAMS_FILE = REPO_ROOT / "ml" / "params.yml"


@dataclass(frozen=True)
class Settings:
    """Paths and options of one deployment; build it with :func:`load_settings`."""

    home: Path
    webhook_url: str | None = None
    schedule_timezone: str = "UTC"
    # Where the watcher lists incoming files and publishes outputs, and where ingest keeps
    # accepted originals and quarantines rejected files: a local path or an s3://bucket/prefix
    # URL. None means the local inbox, exports, landed and quarantine folders (flows.storage).
    inbox_url: str | None = None
    output_url: str | None = None
    landed_url: str | None = None
    quarantine_url: str | None = None
    # The Prefect deployment (flow/deployment) the watcher triggers for a month; None runs the
    # month in the watcher's own process.
    deployment: str | None = None
    # PostgreSQL warehouse as postgresql://user[:password]@host:port/database; None means the
    # DuckDB file below (flows.warehouse.connect picks the engine).
    warehouse_url: str | None = None

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def landed(self) -> Path:
        return self.home / "landed"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.inbox, self.landed, self.quarantine, self.models,
                     self.exports, self.reports):
            path.mkdir(parents=True, exist_ok=True)


def load_settings(home: str | os.PathLike | None = None) -> Settings:
    """Build the settings from ``CREDITFLOW_HOME`` and the other ``CREDITFLOW_*`` variables."""
    root = Path(home or os.environ.get("CREDITFLOW_HOME") or ".creditflow").resolve()
    return Settings(
        home=root,
        webhook_url=os.environ.get("CREDITFLOW_WEBHOOK_URL") or None,
        schedule_timezone=os.environ.get("CREDITFLOW_TIMEZONE", "UTC"),
        inbox_url=os.environ.get("CREDITFLOW_INBOX_URL") or None,
        output_url=os.environ.get("CREDITFLOW_OUTPUT_URL") or None,
        landed_url=os.environ.get("CREDITFLOW_LANDED_URL") or None,
        quarantine_url=os.environ.get("CREDITFLOW_QUARANTINE_URL") or None,
        deployment=os.environ.get("CREDITFLOW_DEPLOYMENT") or None,
        warehouse_url=os.environ.get("CREDITFLOW_WAREHOUSE_URL") or None,
    )
