"""The ``creditflow`` command line: one subcommand per operation of the monthly process.

Each subcommand's work lives in the module that owns it (``command_<name>(args, settings)``),
imported only when that subcommand runs, so ``creditflow --help`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from flows.config import load_settings
from flows.errors import CreditflowError

# subcommand -> (module, function, help)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("flows.generator", "command_generate",
                 "write Home-Credit-shaped application files (initial.csv, YYYYMMDD.csv)"),
    "ingest": ("flows.ingest", "command_ingest",
               "validate a file and land it in the warehouse, or quarantine it"),
    "build": ("flows.dbt_runner", "command_build", "run `dbt build` on the warehouse"),
    "train": ("ml.commands", "command_train", "train a model for a score month"),
    "score": ("ml.commands", "command_score", "score a month with the champion model"),
    "models": ("ml.commands", "command_models", "list the model registry"),
    "compare": ("ml.commands", "command_compare",
                "compare classic models on the out-of-time split of a month"),
    "export": ("ml.commands", "command_export", "write a month's predictions to CSV and Parquet"),
    "run": ("flows.run_command", "command_run", "run the monthly flow for one month"),
    "backfill": ("flows.run_command", "command_backfill",
                 "run the monthly flow for a range of months"),
    "status": ("flows.monthly", "command_status", "show recent runs and their steps"),
    "deploy": ("flows.deployment", "command_deploy",
               "create the Prefect deployment with its monthly schedule"),
    "serve": ("flows.deployment", "command_serve", "serve the monthly deployment locally"),
    "demo": ("flows.demo", "command_demo",
             "generate data and backfill four months end to end, then print where results are"),
    "api": ("api.server", "command_api", "start the operations API and page"),
    "token": ("api.tokens", "command_token", "create, list or revoke API tokens"),
    "ingest-labels": ("flows.labels", "command_ingest_labels",
                      "load late-arriving default labels for a past month"),
    "report": ("flows.report", "command_report", "write the monthly monitoring report (HTML)"),
    "profile": ("flows.profile", "command_profile",
                "write a data profile of a file or month (HTML)"),
    "watch": ("flows.watch", "command_watch",
              "run each month when its file arrives in the inbox (folder or S3 prefix)"),
}


def _add_month(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--month", required=required, help="month as YYYY-MM, e.g. 2021-01")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="creditflow",
        description="Monthly credit-default scoring: gate, dbt features, LightGBM, Prefect.",
    )
    parser.add_argument("--home", help="data directory (default: $CREDITFLOW_HOME or .creditflow)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {name: sub.add_parser(name, help=text, description=text)
               for name, (_, _, text) in _COMMANDS.items()}

    p = parsers["generate"]
    p.add_argument("--out", required=True, help="folder to write the files to")
    p.add_argument("--months", default="2020-10:2021-01",
                   help="first:last calendar month of the monthly files (default 2020-10:2021-01)")
    p.add_argument("--history-rows", type=int, default=20000,
                   help="rows in initial.csv (default 20000; 0 writes no history file)")
    p.add_argument("--rows-per-month", type=int, default=5000, help="rows per monthly file")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--shift", action="append", default=[], metavar="COLUMN:MONTH:FACTOR",
                   help="multiply COLUMN by FACTOR in MONTH, or with COLUMN=VALUE the share of a "
                        "category value (drift injection); repeatable")
    p.add_argument("--unlabeled", action="store_true", help="leave TARGET out of monthly files")
    p.add_argument("--first-id", type=int, default=100002,
                   help="first SK_ID_CURR (default 100002); IDs count up through all files, so "
                        "give a higher one when adding months to files already loaded")

    p = parsers["ingest"]
    p.add_argument("file", help="CSV or Parquet file: initial.csv or YYYYMMDD.csv")
    _add_month(p, required=False)

    p = parsers["build"]
    p.add_argument("--select", help="dbt node selection (default: all models and tests)")
    p.add_argument("--full-refresh", action="store_true",
                   help="rebuild the incremental tables from every stored month (needed after "
                        "a model's columns changed)")

    for name in ("train", "score", "compare", "export"):
        _add_month(parsers[name])
    parsers["train"].add_argument("--trials", type=int,
                                  help="Optuna trials (default from ml/params.yml)")

    steps = "land, gate, build, train, score, monitor, export, report, notify"
    p = parsers["run"]
    _add_month(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--from", dest="from_step", help=f"start at this step ({steps})")
    group.add_argument("--only", dest="only_step", help="run this step alone")
    p.add_argument("--reuse-model", action="store_true",
                   help="score with the current champion instead of retraining")

    p = parsers["backfill"]
    p.add_argument("--from", dest="first", required=True, help="first month, YYYY-MM")
    p.add_argument("--to", dest="last", required=True, help="last month, YYYY-MM")
    p.add_argument("--reuse-model", action="store_true",
                   help="score with the current champion instead of retraining")

    parsers["status"].add_argument("--limit", type=int, default=10,
                                   help="runs to show (default 10)")

    for name in ("deploy", "serve"):
        parsers[name].add_argument("--cron", default="0 6 1 * *",
                                   help="schedule (default '0 6 1 * *': 06:00 on the 1st)")
        parsers[name].add_argument(
            "--timezone", help="schedule time zone (default $CREDITFLOW_TIMEZONE or UTC)")

    p = parsers["demo"]
    p.add_argument("--rows-per-month", type=int, default=5000, help="rows per generated month")
    p.add_argument("--history-rows", type=int, default=20000, help="rows of generated history")

    p = parsers["api"]
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")

    p = parsers["token"]
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("--role", choices=["viewer", "operator", "admin"], help="role of a new token")
    p.add_argument("--name", help="name of the token (who uses it)")

    p = parsers["ingest-labels"]
    p.add_argument("file", help="CSV with SK_ID_CURR and TARGET")
    _add_month(p)

    p = parsers["report"]
    _add_month(p)
    p.add_argument("--out", help="HTML file to write (default under $CREDITFLOW_HOME/reports/)")

    p = parsers["profile"]
    p.add_argument("file", nargs="?", help="CSV or Parquet file to profile")
    _add_month(p, required=False)
    p.add_argument("--out", help="HTML file to write (default under $CREDITFLOW_HOME/reports/)")

    p = parsers["watch"]
    p.add_argument("--interval", type=float, default=30.0,
                   help="seconds between two listings of the inbox (default 30)")
    p.add_argument("--once", action="store_true", help="list the inbox once, act, then exit")
    p.add_argument("--reuse-model", action="store_true",
                   help="score with the current champion instead of retraining")
    p.add_argument("--deployment",
                   help="Prefect deployment (flow/deployment) to trigger for each month instead "
                        "of running it in this process (default $CREDITFLOW_DEPLOYMENT)")
    return parser


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt in the main thread while the block runs.

    Without it, SIGTERM skips the exit handlers that stop Prefect's temporary API server (a
    uvicorn child process), which is left running. Outside the main thread, where Python
    cannot install signal handlers, the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # httpx logs every request to the Prefect API at INFO, and matplotlib's category axis logs a
    # line per chart of the report: both would bury the steps' progress.
    for noisy in ("httpx", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = load_settings(args.home)
    module_name, function_name, _ = _COMMANDS[args.command]
    handler = getattr(importlib.import_module(module_name), function_name)
    try:
        with sigterm_as_interrupt():
            return int(handler(args, settings) or 0)
    except CreditflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
