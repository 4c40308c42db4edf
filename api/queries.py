"""Read-only queries the API runs on the warehouse: months, prediction summaries, models.

Each function takes an open warehouse (flows.warehouse.Warehouse, DuckDB or PostgreSQL) or a
DuckDB connection and returns plain values, so the server decides how to open the warehouse and
what to do when it is locked. The SQL is portable across both engines.
"""

from __future__ import annotations

import json

import duckdb

from flows.months import month_sort_key
from flows.warehouse import Warehouse, table_exists

HISTOGRAM_BINS = 20
DECISIONS = ("approve", "review", "decline")


def list_months(connection: Warehouse | duckdb.DuckDBPyConnection) -> list[dict]:
    """Return one entry per month seen in the load log or the warehouse, oldest first."""
    months: dict[str, dict] = {}

    def entry(month: str) -> dict:
        return months.setdefault(month, {
            "month": month, "rows": 0, "load_status": None, "loaded_at": None,
            "file_name": None, "loaded_by": None, "load_attempts": 0, "scored": False,
            "predictions": 0, "scored_at": None,
        })

    if table_exists(connection, "load_log"):
        rows = connection.execute(
            """
            select month, outcome, loaded_at, file_name, user_name, attempts
            from (
                select month, outcome, loaded_at, file_name, user_name,
                       count(*) over (partition by month) as attempts,
                       row_number() over (
                           partition by month order by loaded_at desc, load_id desc
                       ) as newest_first
                from load_log
                where month is not null
            ) as attempts_by_month
            where newest_first = 1
            """
        ).fetchall()
        for month, outcome, loaded_at, file_name, user_name, attempts in rows:
            item = entry(month)
            item.update(load_status=outcome, loaded_at=loaded_at, file_name=file_name,
                        loaded_by=user_name, load_attempts=int(attempts))
    if table_exists(connection, "raw_applications"):
        for month, count in connection.execute(
            "select month, count(*) from raw_applications group by month"
        ).fetchall():
            entry(month)["rows"] = int(count)
    if table_exists(connection, "predictions"):
        for month, count, scored_at in connection.execute(
            "select score_month, count(*), max(scored_at) from predictions group by score_month"
        ).fetchall():
            item = entry(month)
            item.update(scored=count > 0, predictions=int(count), scored_at=scored_at)
    return [months[m] for m in sorted(months, key=month_sort_key)]


def prediction_summary(connection: Warehouse | duckdb.DuckDBPyConnection, source: str,
                       month: str) -> dict | None:
    """Summarize a month's predictions read from ``source`` (a table or ``read_parquet(...)``).

    Returns None when the month has no predictions.
    """
    row = connection.execute(
        f"""
        select count(*), avg(default_probability), min(scored_at), max(scored_at),
               string_agg(distinct model_id, ',' order by model_id)
        from {source} where score_month = ?
        """,
        [month],
    ).fetchone()
    if not row or not row[0]:
        return None
    rows, mean_probability, first_scored, last_scored, model_ids = row
    counts = dict(connection.execute(
        f"select decision, count(*) from {source} where score_month = ? group by decision",
        [month],
    ).fetchall())
    decision_counts = {decision: int(counts.pop(decision, 0)) for decision in DECISIONS}
    decision_counts.update({str(k): int(v) for k, v in counts.items()})
    bins = dict(connection.execute(
        f"""
        select least(cast(floor(default_probability * {HISTOGRAM_BINS}) as integer),
                     {HISTOGRAM_BINS - 1}) as bin, count(*)
        from {source} where score_month = ? group by bin
        """,
        [month],
    ).fetchall())
    histogram = [
        {"lower": round(i / HISTOGRAM_BINS, 4), "upper": round((i + 1) / HISTOGRAM_BINS, 4),
         "count": int(bins.get(i, 0))}
        for i in range(HISTOGRAM_BINS)
    ]
    return {
        "month": month, "rows": int(rows), "mean_default_probability": float(mean_probability),
        "decision_counts": decision_counts, "score_histogram": histogram,
        "model_ids": model_ids.split(",") if model_ids else [],
        "scored_at": last_scored or first_scored,
    }


def _json_or_text(text: str | None):
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def list_models(connection: Warehouse | duckdb.DuckDBPyConnection) -> list[dict]:
    """Return the model registry, newest first, with the champion marked."""
    if not table_exists(connection, "model_registry"):
        return []
    rows = connection.execute(
        """
        select model_id, trained_at, score_month, training_months, validation_month, metrics,
               status, artifact_sha256, note
        from model_registry
        order by trained_at desc, model_id desc
        """
    ).fetchall()
    models = []
    for (model_id, trained_at, score_month, training_months, validation_month, metrics, status,
         artifact_sha256, note) in rows:
        months = _json_or_text(training_months)
        if isinstance(months, str):
            months = [m.strip() for m in months.split(",") if m.strip()]
        metrics_value = _json_or_text(metrics)
        models.append({
            "model_id": model_id, "trained_at": trained_at, "score_month": score_month,
            "training_months": months or [], "validation_month": validation_month,
            "metrics": metrics_value if isinstance(metrics_value, dict) else {},
            "status": status, "champion": status == "champion",
            "artifact_sha256": artifact_sha256, "note": note,
        })
    return models
