"""The dbt project on PostgreSQL gives the same tables as on DuckDB, from the same raw rows.

The real sample lands in a DuckDB warehouse through the ingest gate, and its stored tables
(raw_applications, load_log) are copied into a throwaway PostgreSQL server with COPY. Both
warehouses get the same model registry and predictions, written here as test data, so the
monitoring marts have a champion and scored months. dbt then builds each warehouse in two
rounds: history to 2020-12 first, then 2021-01, the unlabeled 2021-02 and a changed 2020-12,
which the incremental models must add and replace. A third round stores labels of one class
only (every TARGET 0) for 2021-02, where the monitoring marts divide by a zero count of
defaults. Every model is compared row by row after the last round.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import yaml

from flows.config import DBT_PROJECT_DIR, PROFILES_DIR, Settings
from flows.ingest import ingest_file
from flows.labels import ingest_labels
from tests.conftest import REAL_UNLABELED

pytestmark = pytest.mark.slow

psycopg2 = pytest.importorskip("psycopg2")

FEATURE_CONTRACT = DBT_PROJECT_DIR / "models" / "marts" / "application_features.yml"
# Tables that Python code writes and dbt reads as sources.
SOURCE_TABLES = ["raw_applications", "load_log", "model_registry", "model_features",
                 "model_training_months", "predictions"]
CHAMPION_ID = "model-postgres-test"
TRAINING_MONTHS = ["history", "2020-10"]
SCORED_MONTHS = ["2020-11", "2020-12", "2021-01", "2021-02"]
CHANGED_MONTH = "2020-12"
# Rows dropped from the changed month's file, so its re-ingest replaces 1,000 rows by 990.
CHANGED_MONTH_DROPPED_ROWS = 10
# The unlabeled month that the third round labels with TARGET 0 only.
ONE_CLASS_MONTH = "2021-02"

# Each dbt model and the columns that identify its rows.
MODEL_KEYS = {
    "applications": ["sk_id_curr"],
    "int_application_features_derived": ["sk_id_curr"],
    "application_features": ["sk_id_curr"],
    "monitoring_labeled_predictions": ["sk_id_curr", "month"],
    "monitoring_feature_bins": ["month", "feature", "bin_label"],
    "monitoring_feature_drift": ["month", "feature"],
    "monitoring_score_drift": ["month"],
    "monitoring_decisions": ["month"],
    "monitoring_fairness": ["month", "sensitive_column", "group_value"],
    "monitoring_performance": ["month"],
    "monitoring_calibration": ["month", "score_decile"],
}
# Floating-point results may differ in the last bits, because the engines sum in other orders.
FLOAT_TOLERANCE = 1e-9
# PostgreSQL's names of the contract types of application_features, by DuckDB's names.
POSTGRES_TYPE_NAMES = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
}


@dataclass
class EngineBuilds:
    duckdb_path: Path
    postgres_dsn: str
    # dbt's run_results.json of every build, by engine.
    duckdb_results: list[dict]
    postgres_results: list[dict]


# --- loading ------------------------------------------------------------------------------

def _changed_month_file(original: Path, folder: Path) -> Path:
    """Write the month's file without its first rows, so its re-ingest replaces the month."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = original.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = folder / original.name
    changed.write_text(lines[0] + "".join(lines[1 + CHANGED_MONTH_DROPPED_ROWS:]),
                       encoding="utf-8")
    return changed


def _ingest(settings: Settings, paths: list[Path]) -> None:
    for path in paths:
        result = ingest_file(settings, path)
        assert result.outcome in ("loaded", "replaced"), result.message


def _ingest_one_class_labels(settings: Settings, folder: Path) -> None:
    """Store TARGET 0 for every application of ONE_CLASS_MONTH, so the month has no defaults."""
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        ids = [row[0] for row in connection.execute(
            "select sk_id_curr from raw_applications where month = ? order by sk_id_curr",
            [ONE_CLASS_MONTH]).fetchall()]
    assert ids, f"no applications of {ONE_CLASS_MONTH} to label"
    folder.mkdir(parents=True, exist_ok=True)
    labels = folder / f"labels_{ONE_CLASS_MONTH}.csv"
    labels.write_text("SK_ID_CURR,TARGET\n" + "".join(f"{i},0\n" for i in ids), encoding="utf-8")
    result = ingest_labels(settings, labels, ONE_CLASS_MONTH, user="test")
    assert result.rows == len(ids)
    assert result.defaults == 0


def _postgres_ddl(duckdb_sql: str) -> str:
    """Turn DuckDB's CREATE TABLE of a source table into PostgreSQL's.

    The tables keep the column types and keys that flows.warehouse gave them. Only DOUBLE is
    named otherwise in PostgreSQL (DOUBLE PRECISION). VARCHAR, BIGINT, BOOLEAN and TIMESTAMP
    are the same.
    """
    return re.sub(r"\bDOUBLE\b", "DOUBLE PRECISION", duckdb_sql.rstrip().rstrip(";"))


def _copy_sources(duckdb_path: Path, dsn: str, folder: Path) -> None:
    """Replace the source tables in PostgreSQL by the DuckDB warehouse's, through CSV and COPY."""
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(duckdb_path), read_only=True) as source, \
            contextlib.closing(psycopg2.connect(dsn)) as target, target, \
            target.cursor() as cursor:
        for table in SOURCE_TABLES:
            ddl = source.execute("select sql from duckdb_tables() where table_name = ?",
                                 [table]).fetchone()
            assert ddl is not None, f"{table} missing from the DuckDB warehouse"
            # Emptied, not dropped, because dbt's staging view depends on raw_applications.
            cursor.execute("select to_regclass(%s)", [table])
            if cursor.fetchone()[0] is None:
                cursor.execute(_postgres_ddl(ddl[0]))
            else:
                cursor.execute(f"truncate table {table}")
            csv_path = folder / f"{table}.csv"
            source.execute(f"copy (select * from {table}) to '{csv_path}' "
                           "(format csv, header false, nullstr '\\N')")
            with csv_path.open(encoding="utf-8") as rows:
                cursor.copy_expert(f"copy {table} from stdin with (format csv, null '\\N')",
                                   rows)


def _write_model_tables(duckdb_path: Path) -> None:
    """Store a champion model over every feature and synthetic predictions of the scored months.

    The default probability is a rounded logistic function of ext_source_2 and the id, so
    scores repeat (the rank and quantile SQL must handle ties), and decisions follow it.
    """
    # The feature table's contract lists its columns before the first build creates it.
    contract = yaml.safe_load(FEATURE_CONTRACT.read_text())["models"][0]["columns"]
    model_features = [
        (CHAMPION_ID, column["name"], column["data_type"] == "text", float(position))
        for position, column in enumerate(contract)
        if column["name"] not in ("sk_id_curr", "month", "target")
    ]
    with duckdb.connect(str(duckdb_path)) as connection:
        connection.execute("delete from model_features")
        connection.execute("delete from model_training_months")
        connection.execute("delete from model_registry")
        connection.execute("delete from predictions")
        connection.execute(
            "insert into model_registry (model_id, trained_at, training_months, "
            "validation_month, status, artifact_path, artifact_sha256) values "
            "(?, timestamp '2021-01-01 00:00:00', ?, ?, 'champion', 'models/test.txt', 'none')",
            [CHAMPION_ID, json.dumps(TRAINING_MONTHS), TRAINING_MONTHS[-1]])
        connection.executemany("insert into model_features values (?, ?, ?, ?)", model_features)
        connection.executemany("insert into model_training_months values (?, ?)",
                               [(CHAMPION_ID, month) for month in TRAINING_MONTHS])
        rows = connection.execute(
            "select sk_id_curr, month, ext_source_2 from raw_applications "
            f"where month in ({', '.join('?' for _ in SCORED_MONTHS)})", SCORED_MONTHS
        ).fetchall()
        predictions = []
        for sk_id_curr, month, ext_source_2 in rows:
            score = 2.0 - 5.0 * (0.5 if ext_source_2 is None else ext_source_2)
            probability = round(1 / (1 + math.exp(-(score + (sk_id_curr % 7) / 10))), 2)
            if probability < 0.08:
                decision = "approve"
            elif probability < 0.2:
                decision = "review"
            else:
                decision = "decline"
            predictions.append((sk_id_curr, month, CHAMPION_ID, probability, decision, "[]"))
        connection.executemany(
            "insert into predictions values (?, ?, ?, ?, ?, ?, timestamp '2021-03-01 00:00:00')",
            predictions)


# --- dbt ----------------------------------------------------------------------------------

def _dbt_build(environment: dict[str, str], target_path: Path) -> dict:
    """Run `dbt build` of the whole project in a new process and return its run_results.json."""
    command = [
        sys.executable, "-m", "dbt.cli.main", "build",
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(PROFILES_DIR),
        "--target-path", str(target_path),
        "--log-path", str(target_path / "logs"),
        "--no-use-colors",
    ]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True,
                               timeout=900, check=False)
    results_path = target_path / "run_results.json"
    assert completed.returncode == 0, (
        f"dbt build failed on target {environment.get('CREDITFLOW_DBT_TARGET', 'dev')}:\n"
        f"{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}")
    return json.loads(results_path.read_text())


def _base_environment() -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("CREDITFLOW_", "DBT_"))}
    environment["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return environment


@pytest.fixture(scope="module")
def engine_builds(tmp_path_factory: pytest.TempPathFactory, real_files: list[Path],
                  postgres_server) -> EngineBuilds:
    """Both warehouses after the two rounds of loads and dbt builds of the module docstring."""
    if not REAL_UNLABELED.exists():
        pytest.skip(f"real unlabeled sample not found at {REAL_UNLABELED}")
    root = tmp_path_factory.mktemp("postgres_dbt")
    settings = Settings(home=(root / "home").resolve())
    settings.ensure_dirs()
    postgres = postgres_server.create_database("dbt_compare")

    duckdb_environment = _base_environment() | {"CREDITFLOW_HOME": str(settings.home),
                                                "CREDITFLOW_DBT_TARGET": "dev"}
    postgres_environment = _base_environment() | postgres.dbt_env()

    unlabeled = root / "files" / "20210201.csv"
    unlabeled.parent.mkdir(parents=True)
    unlabeled.write_bytes(REAL_UNLABELED.read_bytes())
    changed_month = next(path for path in real_files if path.name == "20201201.csv")
    rounds = [
        real_files[:4],
        [real_files[4], unlabeled, _changed_month_file(changed_month, root / "changed")],
    ]

    rounds.append([])  # the third round only stores labels

    duckdb_results, postgres_results = [], []
    for number, paths in enumerate(rounds, start=1):
        _ingest(settings, paths)
        if number == len(rounds):
            _ingest_one_class_labels(settings, root / "labels")
        _write_model_tables(settings.warehouse)
        _copy_sources(settings.warehouse, postgres.dsn, root / f"copy_{number}")
        # One target folder per engine, so the second round reuses dbt's partial parse.
        duckdb_results.append(_dbt_build(duckdb_environment, root / "duckdb_target"))
        postgres_results.append(_dbt_build(postgres_environment, root / "postgres_target"))
    return EngineBuilds(settings.warehouse, postgres.dsn, duckdb_results, postgres_results)


# --- comparing ----------------------------------------------------------------------------

def _duckdb_rows(path: Path, sql: str) -> tuple[list[str], list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as connection:
        cursor = connection.execute(sql)
        return [column[0] for column in cursor.description], cursor.fetchall()


def _postgres_rows(dsn: str, sql: str) -> tuple[list[str], list[tuple]]:
    # psycopg2's connection context ends the transaction only, so closing() closes it.
    with contextlib.closing(psycopg2.connect(dsn)) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return [column[0] for column in cursor.description], cursor.fetchall()


def _is_integer(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, Decimal) and value == value.to_integral())


def _same_value(duckdb_value: object, postgres_value: object) -> bool:
    if duckdb_value is None or postgres_value is None:
        return duckdb_value is None and postgres_value is None
    if isinstance(duckdb_value, bool) or isinstance(postgres_value, bool):
        return duckdb_value is postgres_value
    if _is_integer(duckdb_value) and _is_integer(postgres_value):
        return int(duckdb_value) == int(postgres_value)
    numbers = (int, float, Decimal)
    if isinstance(duckdb_value, numbers) and isinstance(postgres_value, numbers):
        return math.isclose(float(duckdb_value), float(postgres_value),
                            rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    return duckdb_value == postgres_value


def _model_differences(builds: EngineBuilds, model: str) -> list[str]:
    """Return the differences between the two engines' rows of `model`, described for a reader."""
    keys = MODEL_KEYS[model]
    sql = f"select * from {model} order by {', '.join(keys)}"
    duckdb_columns, duckdb_rows = _duckdb_rows(builds.duckdb_path, sql)
    postgres_columns, postgres_rows = _postgres_rows(builds.postgres_dsn, sql)
    if duckdb_columns != postgres_columns:
        return [f"columns differ: DuckDB {duckdb_columns}, PostgreSQL {postgres_columns}"]

    positions = [duckdb_columns.index(key) for key in keys]
    duckdb_by_key = {tuple(row[i] for i in positions): row for row in duckdb_rows}
    postgres_by_key = {tuple(row[i] for i in positions): row for row in postgres_rows}
    differences = [f"{key} only in DuckDB" for key in duckdb_by_key.keys() - postgres_by_key]
    differences += [f"{key} only in PostgreSQL" for key in postgres_by_key.keys() - duckdb_by_key]
    for key in sorted(duckdb_by_key.keys() & postgres_by_key.keys(), key=str):
        for column, duckdb_value, postgres_value in zip(
                duckdb_columns, duckdb_by_key[key], postgres_by_key[key], strict=True):
            if not _same_value(duckdb_value, postgres_value):
                differences.append(f"{key} {column}: DuckDB {duckdb_value!r}, "
                                   f"PostgreSQL {postgres_value!r}")
    return differences


def _node_statuses(results: dict) -> dict[str, str]:
    return {result["unique_id"]: result["status"] for result in results["results"]}


# --- tests --------------------------------------------------------------------------------

def test_postgres_build_runs_same_nodes(engine_builds: EngineBuilds) -> None:
    for duckdb_results, postgres_results in zip(engine_builds.duckdb_results,
                                                engine_builds.postgres_results, strict=True):
        duckdb_statuses = _node_statuses(duckdb_results)
        postgres_statuses = _node_statuses(postgres_results)
        assert postgres_statuses.keys() == duckdb_statuses.keys()
        assert postgres_statuses == duckdb_statuses


def test_postgres_build_passes_data_tests(engine_builds: EngineBuilds) -> None:
    statuses = _node_statuses(engine_builds.postgres_results[-1])
    tests = {node: status for node, status in statuses.items() if node.startswith("test.")}
    # Every not_null, unique, accepted_values, month_label, monitoring and singular test.
    assert len(tests) >= 60
    assert {node for node, status in tests.items() if status != "pass"} == set()
    models = {node: status for node, status in statuses.items() if node.startswith("model.")}
    assert set(models.values()) == {"success"}
    assert len(models) == len(MODEL_KEYS) + 1  # and the staging view stg_applications


@pytest.mark.parametrize("model", list(MODEL_KEYS))
def test_postgres_model_equals_duckdb(engine_builds: EngineBuilds, model: str) -> None:
    differences = _model_differences(engine_builds, model)
    assert differences == [], f"{len(differences)} differences, first ones: {differences[:10]}"


def test_postgres_incremental_replaces_month(engine_builds: EngineBuilds) -> None:
    _, rows = _postgres_rows(engine_builds.postgres_dsn,
                             "select month, count(*) from applications group by month")
    counts = dict(rows)
    assert counts[CHANGED_MONTH] == 1000 - CHANGED_MONTH_DROPPED_ROWS
    assert counts["2021-01"] == 1000
    assert counts["2021-02"] == 49
    assert counts["history"] == 2999


def test_postgres_monitoring_marts_not_empty(engine_builds: EngineBuilds) -> None:
    for model in ("monitoring_feature_drift", "monitoring_score_drift", "monitoring_fairness",
                  "monitoring_performance", "monitoring_calibration"):
        _, rows = _postgres_rows(engine_builds.postgres_dsn, f"select count(*) from {model}")
        assert rows[0][0] > 0, f"{model} is empty on PostgreSQL"


def test_postgres_one_class_month_has_no_auc(engine_builds: EngineBuilds) -> None:
    sql = ("select labeled_rows, defaulted, default_rate, auc, gini, ks "
           f"from monitoring_performance where month = '{ONE_CLASS_MONTH}'")
    _, rows = _postgres_rows(engine_builds.postgres_dsn, sql)
    assert len(rows) == 1, f"no monitoring_performance row for {ONE_CLASS_MONTH}"
    labeled_rows, defaulted, default_rate, auc, gini, ks = rows[0]
    assert labeled_rows == 49
    assert defaulted == 0
    assert default_rate == 0
    assert auc is None
    assert gini is None
    assert ks is None


def test_postgres_feature_types_match_duckdb(engine_builds: EngineBuilds) -> None:
    sql = ("select column_name, data_type from information_schema.columns "
           "where table_name = 'application_features' order by ordinal_position")
    _, duckdb_types = _duckdb_rows(engine_builds.duckdb_path, sql)
    _, postgres_types = _postgres_rows(engine_builds.postgres_dsn, sql)
    expected = [(name, POSTGRES_TYPE_NAMES[data_type]) for name, data_type in duckdb_types]
    assert postgres_types == expected
