"""Time one month of the real sample on the DuckDB file and on a PostgreSQL warehouse.

Each repetition starts from an empty data directory (and, for PostgreSQL, an empty database of
the same name). It loads history, 2020-10 and 2020-11 through the gate without timing them. Then
it times each step of month 2020-12 as the monthly flow runs them: gate (ingest_file), build
(dbt features), train, score, monitor (dbt monitoring marts), report and export. The steps are
called directly, without Prefect, so the numbers contain no orchestration overhead.

It records wall-clock seconds and the CPU seconds of its own process, which leave out the
PostgreSQL server's processes. The median of the repetitions is reported per step. The first
repetition of each engine also parses the dbt project, and with three or more repetitions the
median leaves that out.

Without ``--url`` the script starts a throwaway PostgreSQL server from Debian's package (the
test helper tests/postgres_server.py) on 127.0.0.1 and stops it at the end.

Run from the repository root:

    .venv/bin/python benchmarks/warehouses.py [--repeats 3] [--trials 3] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure import machine_facts, write_json  # noqa: E402
from benchmarks.model_quality import SAMPLE, split_sample  # noqa: E402
from flows.config import Settings  # noqa: E402
from flows.dbt_runner import build_features, build_monitoring  # noqa: E402
from flows.ingest import ingest_file  # noqa: E402
from flows.report import write_report  # noqa: E402
from ml import service  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "warehouses.json"
MONTH = "2020-12"
SETUP_FILES = 3  # initial.csv, 20201001.csv, 20201101.csv: loaded before the timed month
MONTH_FILE = 3  # 20201201.csv
DATABASE = "creditflow_benchmark"
STEPS = ("gate", "build", "train", "score", "monitor", "report", "export")


def time_month(settings: Settings, files: list[Path], trials: int
               ) -> tuple[dict[str, float], dict[str, float]]:
    """Load the setup months, then time each step of the timed month.

    Returns the wall-clock seconds and the CPU seconds of this process per step. The CPU
    seconds leave out the PostgreSQL server's own processes.
    """
    settings.ensure_dirs()
    for path in files[:SETUP_FILES]:
        ingest_file(settings, path)
    actions: dict[str, Callable[[], Any]] = {
        "gate": lambda: ingest_file(settings, files[MONTH_FILE]),
        "build": lambda: build_features(settings),
        "train": lambda: service.train_month(settings, MONTH, trials=trials),
        "score": lambda: service.score_month(settings, MONTH),
        "monitor": lambda: build_monitoring(settings),
        "report": lambda: write_report(settings, MONTH),
        "export": lambda: service.export_predictions(settings, MONTH),
    }
    seconds, cpu_seconds = {}, {}
    for step in STEPS:
        started, cpu_started = time.perf_counter(), time.process_time()
        actions[step]()
        seconds[step] = time.perf_counter() - started
        cpu_seconds[step] = time.process_time() - cpu_started
    seconds["month"] = sum(seconds[step] for step in STEPS)
    cpu_seconds["month"] = sum(cpu_seconds[step] for step in STEPS)
    return seconds, cpu_seconds


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[tuple[Any, str]]:
    """Yield the started server (None with ``url``) and the URL of the benchmark database."""
    if url:
        yield None, url
        return
    from tests.postgres_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found: install Debian's postgresql "
                         "package or pass --url postgresql://user@host:port/database")
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server, server.info.dsn.rsplit("/", 1)[0] + f"/{DATABASE}"
    finally:
        server.stop()


def recreate_database(url: str) -> None:
    """Drop and create the benchmark database, connected to the server's ``postgres`` database."""
    import psycopg2

    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            # with (force) ends sessions a previous repetition left open (PostgreSQL 13+).
            cursor.execute(f"drop database if exists {DATABASE} with (force)")
            cursor.execute(f"create database {DATABASE}")
    finally:
        connection.close()


def _medians(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {engine: {step: round(statistics.median(r[step] for r in repetitions), 2)
                     for step in (*STEPS, "month")}
            for engine, repetitions in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per engine")
    parser.add_argument("--trials", type=int, default=3, help="Optuna trials of the training")
    parser.add_argument("--url", help="PostgreSQL URL of a database the script may drop and "
                                      "create again (default: a throwaway local server)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    machine = machine_facts(REPO_ROOT)
    runs: dict[str, list[dict[str, float]]] = {"duckdb": [], "postgres": []}
    cpu_runs: dict[str, list[dict[str, float]]] = {"duckdb": [], "postgres": []}
    with tempfile.TemporaryDirectory(prefix="creditflow-warehouses-") as folder, \
            postgres_server(args.url) as (_server, url):
        files = split_sample(SAMPLE, Path(folder) / "files")
        for repeat in range(args.repeats):
            for engine in ("duckdb", "postgres"):
                home = Path(folder) / f"{engine}-{repeat}"
                if engine == "postgres":
                    recreate_database(url)
                    settings = Settings(home=home, warehouse_url=url)
                else:
                    settings = Settings(home=home)
                seconds, cpu_seconds = time_month(settings, files, args.trials)
                runs[engine].append(seconds)
                cpu_runs[engine].append(cpu_seconds)
                print(f"{engine} repetition {repeat + 1}: month {seconds['month']:.1f} s "
                      f"({', '.join(f'{s} {seconds[s]:.1f}' for s in STEPS)})")

    medians = _medians(runs)
    cpu_medians = _medians(cpu_runs)
    result = {
        "what": f"seconds of each step of month {MONTH} of the real sample (history, 2020-10 "
                "and 2020-11 loaded before), DuckDB file versus PostgreSQL on the same machine",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "trials": args.trials,
        "postgres": "throwaway local server (tests/postgres_server.py), 127.0.0.1, fsync off"
                    if not args.url else "server given by --url",
        "median_seconds": medians,
        "median_client_cpu_seconds": cpu_medians,
        "runs": runs,
        "client_cpu_runs": cpu_runs,
        "machine": machine,
    }
    write_json(args.out, result)
    for engine, steps in medians.items():
        print(f"median {engine}: month {steps['month']} s "
              f"(client CPU {cpu_medians[engine]['month']} s), "
              + ", ".join(f"{s} {steps[s]}" for s in STEPS))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
