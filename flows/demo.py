"""``creditflow demo``: generate history plus four months, backfill them, show where results are.

The demo needs an empty data directory (``--home`` or ``CREDITFLOW_HOME``). It writes the
generated files to the inbox and runs the monthly flow for 2020-10 to 2021-01, where each month is
scored by a model trained on the months before it. Then it prints what ran, the scores and their
AUC, and the commands to query the warehouse and to open the dbt documentation.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.config import DBT_PROJECT_DIR, PROFILES_DIR, Settings
from flows.errors import CreditflowError
from flows.warehouse import connect, table_exists, warehouse_exists

DEMO_MONTHS = ["2020-10", "2020-11", "2020-12", "2021-01"]
DEMO_SEED = 42
# Optuna trials per monthly training in the demo, fewer than ml/params.yml's production default
# so that the whole demo stays within a few minutes on a 2-core machine.
DEMO_TRIALS = 5
PREDICTIONS_QUERY = (
    "select score_month, decision, count(*) as applications, "
    "round(avg(default_probability), 4) as mean_default_probability "
    "from predictions group by score_month, decision order by score_month, decision"
)


@dataclass
class MonthResult:
    month: str
    status: str
    rows_scored: int
    auc: float | None
    model_id: str | None


@dataclass
class DemoSummary:
    home: Path
    months: list[MonthResult] = field(default_factory=list)
    seconds: float | None = None

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"


def has_data(settings: Settings) -> list[Path]:
    """Return the paths in the data directory that hold data: warehouse, inbox, landed files."""
    found = [settings.warehouse] if settings.warehouse.exists() else []
    for folder in (settings.inbox, settings.landed):
        if folder.is_dir() and any(folder.iterdir()):
            found.append(folder)
    return found


def read_summary(settings: Settings) -> DemoSummary:
    """Read the outcome of the demo months from ``pipeline_runs`` and ``predictions``."""
    summary = DemoSummary(home=settings.home)
    with connect(settings, read_only=True, wait_seconds=30) as connection:
        if not table_exists(connection, "pipeline_runs"):
            return summary
        for month in DEMO_MONTHS:
            run = connection.execute(
                "select status from pipeline_runs where month = ? and step = 'run' "
                "order by started_at desc limit 1", [month]).fetchone()
            if run is None:
                continue
            score = connection.execute(
                "select detail from pipeline_runs where month = ? and step = 'score' "
                "and status = 'succeeded' order by started_at desc limit 1", [month]).fetchone()
            detail: dict[str, Any] = json.loads(score[0]) if score and score[0] else {}
            rows = connection.execute(
                "select count(*) from predictions where score_month = ?", [month]).fetchone()
            summary.months.append(MonthResult(month, run[0], int(rows[0]), detail.get("auc"),
                                              detail.get("model_id")))
    return summary


def run_demo(settings: Settings, history_rows: int, rows_per_month: int,
             trials: int = DEMO_TRIALS) -> DemoSummary:
    """Generate the demo files into the inbox and backfill the demo months."""
    from flows.generator import generate_files
    from flows.monthly import backfill

    existing = has_data(settings)
    if existing:
        raise CreditflowError(
            f"the data directory {settings.home} already contains data "
            f"({', '.join(str(p) for p in existing)}); the demo starts from an empty one. "
            f"Run it with another directory (creditflow --home .creditflow-demo demo) or remove "
            f"{settings.home}"
        )
    started = time.monotonic()
    settings.ensure_dirs()
    generate_files(settings.inbox, DEMO_MONTHS, history_rows, rows_per_month, DEMO_SEED)
    backfill(settings, DEMO_MONTHS[0], DEMO_MONTHS[-1], trials=trials)
    summary = read_summary(settings)
    summary.seconds = time.monotonic() - started
    return summary


def format_summary(summary: DemoSummary) -> str:
    """Lay out the demo's results and the commands to explore them."""
    warehouse = summary.warehouse.resolve()
    tools = Path(sys.executable).parent
    lines = ["", "creditflow demo: done" + (f" in {summary.seconds:.0f} s" if summary.seconds
                                             else ""), ""]
    lines.append("month     status      scored  out-of-time AUC  model")
    for result in summary.months:
        auc = f"{result.auc:.4f}" if result.auc is not None else "n/a"
        lines.append(f"{result.month}   {result.status:<10} {result.rows_scored:>7}  {auc:>15}  "
                     f"{result.model_id or ''}")
    lines += [
        "",
        "Each month was scored by a model trained only on the months before it, so its AUC is",
        "measured on applications the model never saw.",
        "",
        f"warehouse (DuckDB): {warehouse}",
        "query the predictions with the duckdb command-line tool:",
        f"  duckdb -readonly {shlex.quote(str(warehouse))} {shlex.quote(PREDICTIONS_QUERY)}",
        "or with Python, without the duckdb tool:",
        f"  {shlex.quote(str(tools / 'python'))} -c "
        + shlex.quote(f"import duckdb; duckdb.connect({json.dumps(str(warehouse))}, "
                      f"read_only=True).sql({json.dumps(PREDICTIONS_QUERY)}).show()"),
    ]
    # dbt's files go to the data directory, as flows.dbt_runner puts them, not into the project.
    dbt = shlex.quote(str(tools / "dbt"))
    dbt_options = (f"--profiles-dir {shlex.quote(str(PROFILES_DIR))} "
                   '--target-path "$CREDITFLOW_HOME/dbt_target" '
                   '--log-path "$CREDITFLOW_HOME/dbt_logs"')
    last = summary.months[-1].month if summary.months else DEMO_MONTHS[-1]
    exports = summary.home / "exports"
    lines += ["", f"predictions file of {last}: {exports / f'predictions_{last}.csv'}",
              f"  (also {exports / f'predictions_{last}.parquet'})"]
    report = summary.home / "reports" / f"report_{last}.html"
    if report.exists():
        lines.append(f"monitoring report of {last}: {report}")
    lines += [
        "",
        "dbt documentation (lineage from the landed file to the predictions), at "
        "http://127.0.0.1:8080:",
        f"  export CREDITFLOW_HOME={shlex.quote(str(summary.home.resolve()))}",
        f"  cd {shlex.quote(str(DBT_PROJECT_DIR))} && {dbt} docs generate {dbt_options} && "
        f"{dbt} docs serve {dbt_options} --port 8080 --no-browser",
        "",
        f"runs and their steps: {shlex.quote(str(tools / 'creditflow'))} --home "
        f"{shlex.quote(str(summary.home))} status",
    ]
    return "\n".join(lines)


def command_demo(args: argparse.Namespace, settings: Settings) -> int:
    if has_data(settings) and warehouse_exists(settings):
        summary = read_summary(settings)
        done = [r for r in summary.months if r.status == "succeeded"]
        if len(done) == len(DEMO_MONTHS):
            print(f"the demo already ran in {settings.home}; its results are below. To run it "
                  f"again, remove {settings.home} or pass another --home.")
            print(format_summary(summary))
            return 0
    print(f"creditflow demo: generating {args.history_rows} history rows and "
          f"{args.rows_per_month} rows for each of {', '.join(DEMO_MONTHS)} into {settings.inbox}, "
          "then running the monthly flow for each month")
    summary = run_demo(settings, args.history_rows, args.rows_per_month)
    print(format_summary(summary))
    return 0
