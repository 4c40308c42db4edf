"""Shared fixtures: a fresh data directory per test and the real sample split by month."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from flows.config import Settings, load_settings
from flows.sample_split import REAL_MONTHS, REAL_SPLIT, split_sample

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "home_credit"
REAL_SAMPLE = SHARED_DATA / "application_sample.csv"
REAL_UNLABELED = SHARED_DATA / "application_unlabeled_sample.csv"

# REAL_SPLIT and REAL_MONTHS (imported above) stay importable from here for the tests.
__all__ = ["REAL_MONTHS", "REAL_SAMPLE", "REAL_SPLIT", "REAL_UNLABELED", "SHARED_DATA"]

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect reads its settings when first imported, possibly before flows.monthly sets this. Its
# temporary server took 22 s to start on a busy 2-core machine, past Prefect's 20 s default.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Prefect keeps its database under PREFECT_HOME (default ~/.prefect). A database migrated by
# another Prefect version makes the temporary server fail to start, so tests use their own.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="creditflow-tests-prefect-")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of an empty deployment whose data directory lives in the test's tmp_path."""
    home = tmp_path / "home"
    monkeypatch.setenv("CREDITFLOW_HOME", str(home))
    monkeypatch.delenv("CREDITFLOW_WEBHOOK_URL", raising=False)
    result = load_settings(home)
    result.ensure_dirs()
    return result


def split_real_sample(out_dir: Path) -> list[Path]:
    """Write the real sample as the business's files (initial.csv, then YYYYMMDD.csv)."""
    if not REAL_SAMPLE.exists():
        pytest.skip(f"real sample not found at {REAL_SAMPLE}")
    return split_sample(REAL_SAMPLE, out_dir)


@pytest.fixture(scope="session")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The real sample split into initial.csv and four monthly files (read-only for tests)."""
    return split_real_sample(tmp_path_factory.mktemp("real_sample"))


# Optuna trials per training in the flow tests: enough to exercise tuning, small enough for CI.
FLOW_TEST_TRIALS = 3


@pytest.fixture(scope="session")
def backfilled_home(tmp_path_factory: pytest.TempPathFactory, real_files: list[Path]) -> Path:
    """A data directory after the monthly flow ran history + 2020-10 to 2021-01 of the real sample.

    Read-only for tests: copy it (shutil.copytree) before changing anything.
    """
    import shutil

    from flows.monthly import backfill

    home = tmp_path_factory.mktemp("backfilled") / "home"
    settings = Settings(home=home.resolve())
    settings.ensure_dirs()
    for path in real_files:
        shutil.copy(path, settings.inbox / path.name)
    backfill(settings, REAL_MONTHS[0], REAL_MONTHS[-1], trials=FLOW_TEST_TRIALS)
    return settings.home


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """A Prefect server process on 127.0.0.1 with its own database, for the whole session."""
    from tests.prefect_server import PrefectServer

    server = PrefectServer(tmp_path_factory.mktemp("prefect_server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 for the whole session (tests.postgres_server).

    Yields the running `PostgresServer`: `.info.dsn` is postgresql://creditflow@127.0.0.1:PORT/
    creditflow, `.info.dbt_env()` selects and configures profiles.yml's postgres target, and
    `.create_database(name)` makes another empty database. Skips when PostgreSQL is not
    installed, unless CI or CREDITFLOW_REQUIRE_POSTGRES is set: then the test fails instead.
    """
    from tests.postgres_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        searched = os.environ.get("CREDITFLOW_PG_BINDIR") or "/usr/lib/postgresql/*/bin or PATH"
        message = (f"PostgreSQL server binaries (initdb, postgres) not found in {searched}. "
                   "Install them with `apt-get install postgresql`, or set "
                   "CREDITFLOW_PG_BINDIR to the folder that contains them.")
        if os.environ.get("CI") or os.environ.get("CREDITFLOW_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Prefect stops its temporary server at interpreter exit and logs that to a console stream
    # pytest has already closed, which prints a "Logging error" traceback after the summary.
    logging.getLogger("prefect").setLevel(logging.WARNING)
