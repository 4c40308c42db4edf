"""The monthly flow on a PostgreSQL warehouse gives the same predictions as on DuckDB.

One module fixture runs the real sample on both engines: history, 2020-10 and 2020-11 through
the gate (``ingest_file``), then the whole monthly flow for 2020-12 (land, gate, build, train,
score, monitor, export, report). Only the settings' ``warehouse_url`` (CREDITFLOW_WAREHOUSE_URL)
differs between the two runs. The PostgreSQL server is the throwaway one of
tests/postgres_server.py.
"""

from __future__ import annotations

import json
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.config import Settings
from flows.errors import CreditflowError
from flows.ingest import ingest_file
from flows.labels import ingest_labels
from flows.monthly import STEPS, run_month
from flows.warehouse import (
    WarehouseUnavailableError,
    WarehouseUrlError,
    connect,
    describe,
    redact_url,
)
from tests.conftest import FLOW_TEST_TRIALS

pytestmark = pytest.mark.slow

SCORED_MONTH = "2020-12"
INGESTED_FILES = 3  # initial.csv, 20201001.csv and 20201101.csv go through the gate first
MONTH_FILE = 3  # 20201201.csv lands through the flow's inbox
TOLERANCE = 1e-9


@dataclass(frozen=True)
class EngineRun:
    settings: Settings
    summary: dict


def _run_sample(settings: Settings, real_files: list[Path]) -> EngineRun:
    settings.ensure_dirs()
    for path in real_files[:INGESTED_FILES]:
        result = ingest_file(settings, path)
        assert result.outcome == "loaded", result.message
    shutil.copy(real_files[MONTH_FILE], settings.inbox / real_files[MONTH_FILE].name)
    summary = run_month(settings, SCORED_MONTH, trials=FLOW_TEST_TRIALS)
    return EngineRun(settings, summary)


@pytest.fixture(scope="module")
def engines(postgres_server, real_files: list[Path], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, EngineRun]:
    """The same sample run on DuckDB and on a fresh PostgreSQL database."""
    database = postgres_server.create_database("flow_sample")
    root = tmp_path_factory.mktemp("engines")
    duckdb_settings = Settings(home=(root / "duckdb").resolve())
    postgres_settings = Settings(home=(root / "postgres").resolve(), warehouse_url=database.dsn)
    return {
        "duckdb": _run_sample(duckdb_settings, real_files),
        "postgres": _run_sample(postgres_settings, real_files),
    }


def _frame(settings: Settings, sql: str, params: list | None = None) -> pd.DataFrame:
    with connect(settings, read_only=True) as connection:
        return connection.fetch_frame(sql, params or [])


def _rows(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    with connect(settings, read_only=True) as connection:
        return connection.execute(sql, params or []).fetchall()


# --- the run on PostgreSQL ------------------------------------------------------------------

def test_postgres_run_succeeds_every_step(engines):
    settings = engines["postgres"].settings
    steps = _rows(settings, "select step, status from pipeline_runs where month = ? "
                            "and step <> 'run' order by started_at", [SCORED_MONTH])
    assert steps == [(step, "succeeded") for step in STEPS]
    runs = _rows(settings, "select status from pipeline_runs where step = 'run'")
    assert runs == [("succeeded",)]


def test_postgres_holds_every_month(engines):
    settings = engines["postgres"].settings
    months = dict(_rows(settings, "select month, count(*) from raw_applications group by month"))
    assert months == {"history": 2999, "2020-10": 1000, "2020-11": 1000, "2020-12": 1000}
    outcomes = _rows(settings, "select outcome, count(*) from load_log group by outcome")
    assert outcomes == [("loaded", 4)]


def test_postgres_writes_report_and_exports(engines):
    run = engines["postgres"]
    report = run.settings.reports / f"report_{SCORED_MONTH}.html"
    assert report.is_file()
    assert "2020-12" in report.read_text(encoding="utf-8")
    exported = list(run.settings.exports.rglob("*.parquet"))
    assert len(exported) == 1
    assert len(pd.read_parquet(exported[0])) == 1000


def test_postgres_builds_monitoring_marts(engines):
    settings = engines["postgres"].settings
    for table in ("monitoring_feature_drift", "monitoring_score_drift", "monitoring_fairness"):
        count = _rows(settings, f"select count(*) from {table} where month = ?",
                      [SCORED_MONTH])[0][0]
        assert count > 0, table


# --- the same results on both engines -------------------------------------------------------

def test_engines_same_model_inputs(engines):
    query = "select * from application_features order by month, sk_id_curr"
    on_duckdb = _frame(engines["duckdb"].settings, query)
    on_postgres = _frame(engines["postgres"].settings, query)
    assert list(on_postgres.columns) == list(on_duckdb.columns)
    assert len(on_postgres) == len(on_duckdb)
    for column in on_duckdb.columns:
        left, right = on_duckdb[column], on_postgres[column]
        if pd.api.types.is_numeric_dtype(left):
            assert np.allclose(left.to_numpy(dtype=float, na_value=np.nan),
                               right.to_numpy(dtype=float, na_value=np.nan),
                               rtol=0, atol=TOLERANCE, equal_nan=True), column
        else:
            assert left.fillna("<null>").tolist() == right.fillna("<null>").tolist(), column


def test_engines_same_model_features(engines):
    query = ("select feature, is_categorical from model_features order by feature")
    assert _rows(engines["postgres"].settings, query) == _rows(engines["duckdb"].settings, query)
    months = "select month from model_training_months order by month"
    assert _rows(engines["postgres"].settings, months) == _rows(engines["duckdb"].settings, months)


def test_engines_same_predictions(engines):
    query = ("select sk_id_curr, default_probability, decision, reason_codes from predictions "
             "where score_month = ? order by sk_id_curr")
    on_duckdb = _frame(engines["duckdb"].settings, query, [SCORED_MONTH])
    on_postgres = _frame(engines["postgres"].settings, query, [SCORED_MONTH])
    assert len(on_duckdb) == 1000
    assert on_postgres["sk_id_curr"].tolist() == on_duckdb["sk_id_curr"].tolist()
    difference = np.abs(on_postgres["default_probability"].to_numpy()
                        - on_duckdb["default_probability"].to_numpy())
    assert difference.max() <= TOLERANCE
    assert on_postgres["decision"].tolist() == on_duckdb["decision"].tolist()
    assert ([json.loads(codes) for codes in on_postgres["reason_codes"]]
            == [json.loads(codes) for codes in on_duckdb["reason_codes"]])


def test_engines_same_run_summary(engines):
    on_duckdb, on_postgres = engines["duckdb"].summary, engines["postgres"].summary
    assert on_duckdb["rows_scored"] == 1000
    assert on_postgres["rows_scored"] == on_duckdb["rows_scored"]
    assert on_postgres["steps"] == on_duckdb["steps"]
    if on_duckdb["auc"] is None:
        assert on_postgres["auc"] is None
    else:
        assert abs(on_postgres["auc"] - on_duckdb["auc"]) <= TOLERANCE
    alerts = [(a["level"], a["check"], a["subject"]) for a in on_duckdb["alerts"]]
    assert [(a["level"], a["check"], a["subject"]) for a in on_postgres["alerts"]] == alerts


# --- later writes on PostgreSQL -------------------------------------------------------------

def test_postgres_labels_update_month(engines, tmp_path: Path):
    """Labels of the scored month reach raw_applications on PostgreSQL."""
    settings = engines["postgres"].settings
    ids = [row[0] for row in _rows(settings, "select sk_id_curr from raw_applications "
                                             "where month = ? order by sk_id_curr limit 3",
                                   [SCORED_MONTH])]
    labels = tmp_path / "labels_2020-12.csv"
    labels.write_text("SK_ID_CURR,TARGET\n" + "".join(f"{i},1\n" for i in ids),
                      encoding="utf-8")
    result = ingest_labels(settings, labels, SCORED_MONTH, user="test")
    assert result.rows == 3
    stored = _rows(settings, "select sk_id_curr, target from raw_applications "
                             "where sk_id_curr in (?, ?, ?) order by sk_id_curr", ids)
    assert stored == [(i, 1) for i in ids]


def test_postgres_rejects_id_of_other_month(engines, real_files: list[Path], tmp_path: Path):
    """The cross-month ID check runs in PostgreSQL against the stored months."""
    settings = engines["postgres"].settings
    lines = real_files[1].read_text(encoding="utf-8").splitlines(keepends=True)
    moved = tmp_path / "20210101.csv"
    moved.write_text(lines[0] + lines[1], encoding="utf-8")  # one row of 2020-10
    result = ingest_file(settings, moved, user="test")
    assert result.outcome == "rejected"
    assert "already loaded for another month" in result.message
    assert _rows(settings, "select count(*) from raw_applications where month = '2021-01'") \
        == [(0,)]


# --- the Warehouse interface on both engines --------------------------------------------------

@pytest.fixture
def both_warehouses(postgres_server, tmp_path: Path, request: pytest.FixtureRequest
                    ) -> dict[str, Settings]:
    name = "unit_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    database = postgres_server.create_database(name)
    return {"duckdb": Settings(home=tmp_path / "duckdb"),
            "postgres": Settings(home=tmp_path / "postgres", warehouse_url=database.dsn)}


ROUND_TRIP_TABLE = """
create table round_trip (
    id bigint, share double precision, label varchar, flag boolean, seen_at timestamp
)"""


def test_frame_round_trip_same_on_engines(both_warehouses):
    frame = pd.DataFrame({
        "id": [1, 2, 3, 4],
        "share": [0.1, 1e-300, 2.0 / 3.0, None],
        "label": ["a", "", None, "d'quote,comma"],
        "flag": [True, False, None, True],
        "seen_at": pd.to_datetime(["2020-12-01 10:00:00.123456", None, "2021-01-31 00:00:00", None],
                                  format="mixed"),
    })
    fetched = {}
    for engine, settings in both_warehouses.items():
        with connect(settings) as connection:
            connection.execute(ROUND_TRIP_TABLE)
            connection.insert_frame("round_trip", frame)
            fetched[engine] = connection.fetch_frame("select * from round_trip order by id")
    on_duckdb, on_postgres = fetched["duckdb"], fetched["postgres"]
    assert on_postgres.dtypes.to_dict() == on_duckdb.dtypes.to_dict()
    assert on_postgres["share"].tolist()[:3] == [0.1, 1e-300, 2.0 / 3.0]
    assert pd.isna(on_postgres["share"].iloc[3])
    assert on_postgres["label"].iloc[1] == ""
    assert pd.isna(on_postgres["label"].iloc[2])
    assert on_postgres["label"].iloc[3] == "d'quote,comma"
    assert on_postgres.astype(object).where(on_postgres.notna(), None).values.tolist() \
        == on_duckdb.astype(object).where(on_duckdb.notna(), None).values.tolist()


def test_placeholders_keep_percent_signs(both_warehouses):
    for engine, settings in both_warehouses.items():
        with connect(settings) as connection:
            row = connection.execute("select ? || '%', ?", ["100", 7]).fetchone()
        assert row == ("100%", 7), engine


def test_transaction_rolls_back_on_error(both_warehouses):
    for engine, settings in both_warehouses.items():
        with connect(settings) as connection:
            connection.execute(ROUND_TRIP_TABLE)
            with pytest.raises(ValueError), connection.transaction():
                connection.execute("insert into round_trip (id) values (?)", [1])
                raise ValueError("stop")
            assert connection.execute("select count(*) from round_trip").fetchone() == (0,), \
                engine


def test_postgres_read_only_rejects_writes(both_warehouses):
    settings = both_warehouses["postgres"]
    with connect(settings) as connection:
        connection.execute(ROUND_TRIP_TABLE)
    with connect(settings, read_only=True) as connection:
        with pytest.raises(Exception, match="read-only"):
            connection.execute("insert into round_trip (id) values (1)")


def test_column_types_use_duckdb_names(both_warehouses):
    types = {}
    for engine, settings in both_warehouses.items():
        with connect(settings) as connection:
            connection.execute(ROUND_TRIP_TABLE)
            types[engine] = connection.column_types("round_trip")
    assert types["postgres"] == types["duckdb"]


# --- configuration errors -------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_postgres_names_server(tmp_path: Path):
    port = _closed_port()
    url = f"postgresql://creditflow:hunter2secret@127.0.0.1:{port}/creditflow"
    settings = Settings(home=tmp_path / "home", warehouse_url=url)
    with pytest.raises(WarehouseUnavailableError) as raised, connect(settings):
        pass
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "CREDITFLOW_WAREHOUSE_URL" in message
    assert "hunter2secret" not in message
    assert "hunter2secret" not in describe(settings)


def test_unreachable_postgres_fails_ingest(tmp_path: Path, real_files: list[Path]):
    port = _closed_port()
    settings = Settings(home=tmp_path / "home",
                        warehouse_url=f"postgresql://creditflow:pw-9@127.0.0.1:{port}/db")
    with pytest.raises(CreditflowError) as raised:
        ingest_file(settings, real_files[1])
    assert f"127.0.0.1:{port}" in str(raised.value)
    assert "pw-9" not in str(raised.value)


SECRET = "TOPSECRET"
# Malformed CREDITFLOW_WAREHOUSE_URL values, each with the start of the expected message.
INVALID_URLS = {
    "other scheme": (f"mysql://creditflow:{SECRET}@127.0.0.1:5432/db", "has the scheme 'mysql'"),
    "duckdb scheme": (f"duckdb://creditflow:{SECRET}@127.0.0.1/db", "has the scheme 'duckdb'"),
    "no scheme": ("notaurl", "is not a URL"),
    "key=value": (f"host=127.0.0.1 user=creditflow password={SECRET} dbname=db",
                  "is not a URL"),
    "unescaped at": (f"postgresql://creditflow:TOP@{SECRET}@127.0.0.1:{{port}}/db",
                     "Percent-encode '@' in the user name or password as %40"),
    "unescaped slash": (f"postgresql://creditflow:TOP/{SECRET}@127.0.0.1:{{port}}/db",
                        "Percent-encode them as %2F"),
    "unescaped question mark": (f"postgresql://creditflow:TOP?{SECRET}@127.0.0.1/db",
                                "Percent-encode them as %2F, %3F and %23"),
    "unescaped hash": (f"postgresql://creditflow:TOP#{SECRET}@127.0.0.1/db",
                       "Percent-encode them as %2F, %3F and %23"),
    "port not a number": (f"postgresql://creditflow:{SECRET}@127.0.0.1:notaport/db",
                          "has the invalid port 'notaport'"),
    "unclosed ipv6": (f"postgresql://creditflow:{SECRET}@[::1/db", "is not a valid URL"),
}


@pytest.mark.parametrize("case", list(INVALID_URLS))
def test_invalid_url_hides_password(tmp_path: Path, case: str):
    url, expected = INVALID_URLS[case]
    url = url.replace("{port}", str(_closed_port()))
    settings = Settings(home=tmp_path / "home", warehouse_url=url)
    with pytest.raises(WarehouseUrlError) as raised, connect(settings):
        pass
    message = str(raised.value)
    assert expected in message
    assert "CREDITFLOW_WAREHOUSE_URL=" in message
    assert SECRET not in message
    # A chained exception would print the raw URL in the traceback.
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__
    assert SECRET not in describe(settings)


def test_invalid_url_fails_ingest(tmp_path: Path, real_files: list[Path]):
    settings = Settings(home=tmp_path / "home",
                        warehouse_url=f"mysql://creditflow:{SECRET}@127.0.0.1/db")
    with pytest.raises(CreditflowError) as raised:
        ingest_file(settings, real_files[1])
    assert "only postgresql:// and postgres://" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_redact_url_keeps_valid_url_parts():
    assert (redact_url(f"postgresql://creditflow:{SECRET}@127.0.0.1:5432/db?sslmode=require")
            == "postgresql://creditflow:***@127.0.0.1:5432/db?sslmode=require")
    assert redact_url("postgresql://creditflow@127.0.0.1/db") \
        == "postgresql://creditflow@127.0.0.1/db"
    assert redact_url(f"postgresql:///db?password={SECRET}&sslmode=require") \
        == "postgresql:///db?password=***&sslmode=require"
