"""All reads and writes of the model code: the warehouse tables, model artifacts and exports.

Each function opens the warehouse, does its work and closes it, so the DuckDB file lock is held
only for one step. Writes that belong together run in one transaction.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.config import Settings
from flows.errors import CreditflowError
from flows.months import month_sort_key
from flows.warehouse import (
    DUCKDB,
    connect,
    describe,
    init_warehouse,
    table_exists,
    warehouse_exists,
)

logger = logging.getLogger(__name__)

FEATURE_TABLE = "application_features"
MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
# Seconds a step waits for another process (API, flow) to release the warehouse.
LOCK_WAIT_SECONDS = 30.0


def _require_warehouse(settings: Settings) -> None:
    if not warehouse_exists(settings):
        raise CreditflowError(
            f"warehouse {describe(settings)} does not exist: ingest files (creditflow ingest "
            "FILE) and build features (creditflow build) first, or check CREDITFLOW_HOME"
        )


def _require_feature_table(connection: Any, settings: Settings) -> None:
    if not table_exists(connection, FEATURE_TABLE):
        raise CreditflowError(
            f"table {FEATURE_TABLE} not found in {describe(settings)}: build the features "
            "first (creditflow build)"
        )


# --- feature table -------------------------------------------------------------------------

def feature_columns(settings: Settings) -> dict[str, str]:
    """Return the feature table's column -> SQL type, in table order."""
    _require_warehouse(settings)
    with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
        _require_feature_table(connection, settings)
        return connection.column_types(FEATURE_TABLE)


def month_inventory(settings: Settings) -> pd.DataFrame:
    """Return one row per month of the feature table: rows, labeled rows, defaults."""
    _require_warehouse(settings)
    with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
        _require_feature_table(connection, settings)
        frame = connection.fetch_frame(
            f"""
            select month, count(*) as rows, count(target) as labeled,
                   coalesce(sum(target), 0) as defaults
            from {FEATURE_TABLE}
            group by month
            """
        )
    frame["order"] = frame["month"].map(month_sort_key)
    return frame.sort_values("order").drop(columns="order").reset_index(drop=True)


def read_features(settings: Settings, months: list[str], labeled_only: bool = False,
                  columns: list[str] | None = None, text_as_category: bool = False,
                  numbers_as_float32: bool = False) -> pd.DataFrame:
    """Return the feature rows of ``months``, ordered by ``sk_id_curr``.

    ``columns`` limits the read to these columns of the feature table (default: all of them),
    which keeps a read of many months small when a model uses a part of the features. With
    ``text_as_category``, text columns come as pandas ``category`` columns, which store a small
    code per row instead of a Python string per row. ``numbers_as_float32`` reads DOUBLE
    columns as FLOAT, half their memory, rounded to about 7 significant digits.
    """
    _require_warehouse(settings)
    placeholders = ", ".join("?" for _ in months) or "null"
    condition = " and target is not null" if labeled_only else ""
    with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
        _require_feature_table(connection, settings)
        types = connection.column_types(FEATURE_TABLE)
        selected = "*"
        if numbers_as_float32 and columns is None:
            columns = list(types)
        if columns is not None:
            absent = [name for name in columns if name not in types]
            if absent:
                raise CreditflowError(
                    f"column(s) {', '.join(absent)} not found in {FEATURE_TABLE}: rebuild the "
                    "features (creditflow build) or train a new model on the current features")
            # real is a 4-byte float on both engines (float alone is 8 bytes on PostgreSQL).
            selected = ", ".join(
                f'cast("{name}" as real) as "{name}"'
                if numbers_as_float32 and types[name] == "DOUBLE" else f'"{name}"'
                for name in columns)
        query = (f"select {selected} from {FEATURE_TABLE} where month in ({placeholders})"
                 f"{condition} order by sk_id_curr")
        if not text_as_category:
            return connection.fetch_frame(query, list(months))
        if connection.dialect != DUCKDB:
            frame = connection.fetch_frame(query, list(months))
            text = [name for name in frame.columns if types.get(name) == "VARCHAR"]
            return frame.astype({name: "category" for name in text})
        # A cursor of its own: the checks above leave a result open on the connection.
        cursor = connection.connection.cursor()
        try:
            table = cursor.sql(query, params=list(months)).to_arrow_table()
        finally:
            cursor.close()
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            table = table.set_column(index, field.name,
                                     pc.dictionary_encode(table.column(index)))
    # Converts column by column, releasing each Arrow column once it is in pandas.
    return table.to_pandas(split_blocks=True, self_destruct=True)


# --- model artifacts ------------------------------------------------------------------------

def model_dir(settings: Settings, model_id: str) -> Path:
    return settings.models / model_id


def save_artifacts(settings: Settings, model_id: str, model_text: str,
                   metadata: dict[str, Any]) -> Path:
    """Write ``model.txt`` and ``metadata.json`` into the model's folder; return the model file.

    Files go to a temporary folder first, renamed into place, so a crash never leaves half a
    model behind.
    """
    target = model_dir(settings, model_id)
    settings.models.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=settings.models))
    try:
        (staging / MODEL_FILE).write_bytes(model_text.encode("utf-8"))
        (staging / METADATA_FILE).write_text(
            json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target / MODEL_FILE


def read_artifacts(path: Path) -> tuple[bytes, dict[str, Any]]:
    """Return the model file's bytes and the parsed metadata next to it.

    Raises FileNotFoundError or ValueError; the caller turns them into messages naming the model.
    """
    model_bytes = Path(path).read_bytes()
    metadata = json.loads((Path(path).parent / METADATA_FILE).read_text(encoding="utf-8"))
    return model_bytes, metadata


# --- model registry -------------------------------------------------------------------------

def _registry_frame(connection: Any, where: str = "", args: list | None = None) -> list[dict]:
    rows = connection.fetch_frame(
        f"select * from model_registry {where} order by trained_at, model_id", args or []
    )
    return rows.to_dict(orient="records")


def registry(settings: Settings) -> list[dict[str, Any]]:
    """Return every registered model, oldest first; empty when nothing is registered."""
    if not warehouse_exists(settings):
        return []
    with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
        if not table_exists(connection, "model_registry"):
            return []
        return _registry_frame(connection)


def model_record(settings: Settings, model_id: str) -> dict[str, Any] | None:
    for record in registry(settings):
        if record["model_id"] == model_id:
            return record
    return None


def champion_record(settings: Settings) -> dict[str, Any] | None:
    champions = [r for r in registry(settings) if r["status"] == "champion"]
    return champions[-1] if champions else None


def register_model(settings: Settings, record: dict[str, Any], gains: dict[str, float],
                   categorical: list[str], promote: bool) -> None:
    """Insert a model with its features and training months; promote it if asked.

    Promotion retires the previous champion in the same transaction, so there is always at
    most one champion.
    """
    with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
        init_warehouse(connection)
        connection.execute("begin transaction")
        try:
            if promote:
                connection.execute(
                    "update model_registry set status = 'retired' where status = 'champion'")
            columns = list(record)
            connection.execute(
                f"insert into model_registry ({', '.join(columns)}) "
                f"values ({', '.join('?' for _ in columns)})", [record[c] for c in columns])
            connection.executemany(
                "insert into model_features (model_id, feature, is_categorical, gain_importance) "
                "values (?, ?, ?, ?)",
                [[record["model_id"], name, name in categorical, gain]
                 for name, gain in gains.items()])
            connection.executemany(
                "insert into model_training_months (model_id, month) values (?, ?)",
                [[record["model_id"], month] for month in json.loads(record["training_months"])])
            connection.execute("commit")
        except Exception:
            connection.execute("rollback")
            raise


def set_status(settings: Settings, model_id: str, status: str, note: str,
               retire_champion: bool = False) -> None:
    """Change a registered model's status and note (used when the same model is trained again)."""
    with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
        connection.execute("begin transaction")
        try:
            if retire_champion:
                connection.execute("update model_registry set status = 'retired' "
                                   "where status = 'champion' and model_id <> ?", [model_id])
            connection.execute("update model_registry set status = ?, note = ? where model_id = ?",
                               [status, note, model_id])
            connection.execute("commit")
        except Exception:
            connection.execute("rollback")
            raise


# --- predictions and exports ----------------------------------------------------------------

def write_predictions(settings: Settings, month: str, frame: pd.DataFrame) -> None:
    """Replace the predictions of ``month`` with ``frame`` in one transaction."""
    with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
        init_warehouse(connection)
        columns = ["sk_id_curr", "score_month", "model_id", "default_probability", "decision",
                   "reason_codes", "scored_at"]
        with connection.transaction():
            connection.execute("delete from predictions where score_month = ?", [month])
            connection.insert_frame("predictions", frame[columns])


def read_predictions(settings: Settings, month: str) -> pd.DataFrame:
    _require_warehouse(settings)
    with connect(settings, wait_seconds=LOCK_WAIT_SECONDS) as connection:
        init_warehouse(connection)
        return connection.fetch_frame(
            "select * from predictions where score_month = ? order by sk_id_curr", [month]
        )


def write_exports(frame: pd.DataFrame, csv_path: Path, parquet_path: Path) -> None:
    """Write ``frame`` as CSV and Parquet; each file appears complete or not at all."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    for path, write in ((csv_path, lambda p: frame.to_csv(p, index=False)),
                        (parquet_path, lambda p: pq.write_table(
                            pa.Table.from_pandas(frame, preserve_index=False), p))):
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            write(temporary)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


def now() -> datetime:
    """Return the current UTC time without time zone, as the warehouse's timestamps are stored."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
