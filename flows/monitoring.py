"""Monitoring thresholds and the alerts of a month, read from the dbt monitoring marts.

The marts (``dbt_project/models/marts/monitoring``) measure: feature and score drift (PSI),
decisions, fairness per group, realized performance. This module reads the thresholds
(``flows/monitoring.yml``) and turns the measurements of a month into alerts for the run's
notification and the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flows.config import Settings
from flows.errors import CreditflowError
from flows.months import parse_month
from flows.warehouse import Warehouse, connect, describe, table_exists, warehouse_exists

logger = logging.getLogger(__name__)

CONFIG_FILE = Path(__file__).with_name("monitoring.yml")

WARN = "warn"
ALERT = "alert"


@dataclass(frozen=True)
class MonitoringConfig:
    """Thresholds of the alerts and parameters of the monitoring marts."""

    feature_psi_warn: float = 0.1
    feature_psi_alert: float = 0.25
    score_psi_warn: float = 0.1
    score_psi_alert: float = 0.25
    psi_bins: int = 10
    psi_epsilon: float = 0.0001
    sensitive_columns: tuple[str, ...] = ("code_gender",)
    approval_rate_ratio_alert: float = 0.8
    min_group_rows: int = 30
    auc_drop_alert: float = 0.05

    def dbt_vars(self) -> dict[str, Any]:
        """Return the vars the dbt monitoring marts read (``dbt build --vars``)."""
        return {
            "monitoring_psi_bins": self.psi_bins,
            "monitoring_psi_epsilon": self.psi_epsilon,
            "monitoring_sensitive_columns": list(self.sensitive_columns),
            "monitoring_fairness_min_group_rows": self.min_group_rows,
        }


def load_config(path: Path | None = None) -> MonitoringConfig:
    """Read the monitoring configuration; raise CreditflowError naming a bad entry."""
    path = Path(path or CONFIG_FILE)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise CreditflowError(f"cannot read monitoring configuration {path}: {error}") from error

    def number(section: str, key: str, default: float) -> float:
        value = (raw.get(section) or {}).get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise CreditflowError(
                f"invalid {section}.{key} = {value!r} in {path}: expected a number >= 0"
            )
        return float(value)

    defaults = MonitoringConfig()
    columns = (raw.get("fairness") or {}).get("sensitive_columns", list(defaults.sensitive_columns))
    if not isinstance(columns, list) or not all(
        isinstance(c, str) and c.isidentifier() for c in columns
    ):
        raise CreditflowError(
            f"invalid fairness.sensitive_columns = {columns!r} in {path}: expected a list of "
            "column names of the applications table, e.g. [code_gender]"
        )
    config = MonitoringConfig(
        feature_psi_warn=number("feature_drift", "psi_warn", defaults.feature_psi_warn),
        feature_psi_alert=number("feature_drift", "psi_alert", defaults.feature_psi_alert),
        score_psi_warn=number("score_drift", "psi_warn", defaults.score_psi_warn),
        score_psi_alert=number("score_drift", "psi_alert", defaults.score_psi_alert),
        psi_bins=int(number("psi", "bins", defaults.psi_bins)),
        psi_epsilon=number("psi", "epsilon", defaults.psi_epsilon),
        sensitive_columns=tuple(c.lower() for c in columns),
        approval_rate_ratio_alert=number(
            "fairness", "approval_rate_ratio_alert", defaults.approval_rate_ratio_alert
        ),
        min_group_rows=int(number("fairness", "min_group_rows", defaults.min_group_rows)),
        auc_drop_alert=number("performance", "auc_drop_alert", defaults.auc_drop_alert),
    )
    if config.psi_bins < 2:
        raise CreditflowError(f"invalid psi.bins = {config.psi_bins} in {path}: expected >= 2")
    return config


def psi_level(psi: float | None, warn: float, alert: float) -> str | None:
    """Return 'alert', 'warn' or None for a PSI value and its thresholds."""
    if psi is None:
        return None
    if psi >= alert:
        return ALERT
    if psi >= warn:
        return WARN
    return None


def validation_auc(metrics_json: str | None) -> float | None:
    """Return the validation AUC stored in a model's registry metrics (JSON text), if any."""
    if not metrics_json:
        return None
    try:
        metrics = json.loads(metrics_json)
    except json.JSONDecodeError:
        logger.warning("model registry metrics are not JSON: %.80s", metrics_json)
        return None
    if not isinstance(metrics, dict):
        return None
    for key in ("validation_auc", "auc_validation", "valid_auc", "val_auc"):
        if isinstance(metrics.get(key), int | float):
            return float(metrics[key])
    nested = metrics.get("validation")
    if isinstance(nested, dict) and isinstance(nested.get("auc"), int | float):
        return float(nested["auc"])
    return None


def _rows(connection: Warehouse, sql: str, params: list) -> list[dict]:
    cursor = connection.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _feature_drift_alerts(connection, month: str, config: MonitoringConfig) -> list[dict]:
    found = []
    rows = _rows(
        connection,
        "select feature, psi, model_id from monitoring_feature_drift "
        "where month = ? order by psi desc, feature",
        [month],
    )
    for row in rows:
        level = psi_level(row["psi"], config.feature_psi_warn, config.feature_psi_alert)
        if level is None:
            continue
        threshold = config.feature_psi_alert if level == ALERT else config.feature_psi_warn
        found.append(
            {
                "level": level,
                "check": "feature_drift",
                "month": month,
                "subject": row["feature"],
                "value": row["psi"],
                "threshold": threshold,
                "model_id": row["model_id"],
                "message": f"feature {row['feature']} drifted in {month}: PSI {row['psi']:.3f} "
                f">= {threshold} against the champion's training months",
            }
        )
    return found


def _score_drift_alerts(connection, month: str, config: MonitoringConfig) -> list[dict]:
    found = []
    for row in _rows(
        connection,
        "select psi, reference_month, model_id, is_same_model from monitoring_score_drift "
        "where month = ?",
        [month],
    ):
        level = psi_level(row["psi"], config.score_psi_warn, config.score_psi_alert)
        if level is None:
            continue
        if not row["is_same_model"]:
            # A new model moves the scores by itself; the report still shows the PSI.
            logger.info("score PSI %.3f of %s not alerted: another model scored %s",
                        row["psi"], month, row["reference_month"])
            continue
        threshold = config.score_psi_alert if level == ALERT else config.score_psi_warn
        found.append(
            {
                "level": level,
                "check": "score_drift",
                "month": month,
                "subject": "default_probability",
                "value": row["psi"],
                "threshold": threshold,
                "model_id": row["model_id"],
                "message": f"default probability drifted in {month}: PSI {row['psi']:.3f} >= "
                f"{threshold} against {row['reference_month']}",
            }
        )
    return found


def _fairness_alerts(connection, month: str, config: MonitoringConfig) -> list[dict]:
    found = []
    rows = _rows(
        connection,
        "select sensitive_column, group_value, approval_rate, approval_rate_ratio, scored_rows, "
        "model_id from monitoring_fairness where month = ? and approval_rate_ratio is not null "
        "and scored_rows >= ? order by sensitive_column, group_value",
        [month, config.min_group_rows],
    )
    for row in rows:
        if row["approval_rate_ratio"] >= config.approval_rate_ratio_alert:
            continue
        subject = f"{row['sensitive_column']}={row['group_value']}"
        found.append(
            {
                "level": ALERT,
                "check": "fairness",
                "month": month,
                "subject": subject,
                "value": row["approval_rate_ratio"],
                "threshold": config.approval_rate_ratio_alert,
                "model_id": row["model_id"],
                "message": f"approval rate of {subject} in {month} is {row['approval_rate']:.1%}, "
                f"{row['approval_rate_ratio']:.2f} of the most-approved group's "
                f"(below {config.approval_rate_ratio_alert})",
            }
        )
    return found


def _performance_alerts(connection, month: str, config: MonitoringConfig) -> list[dict]:
    """Compare realized AUCs with the validation AUC of the model that scored ``month``.

    Every labeled month up to ``month`` scored by that model is checked, because labels of a
    past month can arrive after that month's run.
    """
    found = []
    rows = _rows(
        connection,
        "select performance.month, performance.model_id, performance.auc, registry.metrics "
        "from monitoring_performance as performance "
        "inner join model_registry as registry on performance.model_id = registry.model_id "
        "where performance.month <= ? and performance.auc is not null and performance.model_id = "
        "(select min(model_id) from predictions where score_month = ?) "
        "order by performance.month",
        [month, month],
    )
    for row in rows:
        reference = validation_auc(row["metrics"])
        if reference is None:
            logger.warning(
                "model %s has no validation AUC in its registry metrics; "
                "realized AUC of %s not compared",
                row["model_id"],
                row["month"],
            )
            continue
        drop = reference - row["auc"]
        if drop < config.auc_drop_alert:
            continue
        found.append(
            {
                "level": ALERT,
                "check": "performance",
                "month": row["month"],
                "subject": "auc",
                "value": row["auc"],
                "threshold": reference - config.auc_drop_alert,
                "model_id": row["model_id"],
                "message": f"realized AUC of {row['month']} is {row['auc']:.3f}, {drop:.3f} below "
                f"the validation AUC {reference:.3f} of model {row['model_id']} "
                f"(alert from a drop of {config.auc_drop_alert})",
            }
        )
    return found


_CHECKS = (
    ("monitoring_feature_drift", _feature_drift_alerts),
    ("monitoring_score_drift", _score_drift_alerts),
    ("monitoring_fairness", _fairness_alerts),
    ("monitoring_performance", _performance_alerts),
)


def alerts_from_connection(
    connection: Warehouse, month: str, config: MonitoringConfig | None = None
) -> list[dict]:
    """Return the warnings and alerts of ``month`` from the monitoring marts of ``connection``."""
    config = config or load_config()
    found: list[dict] = []
    for table, check in _CHECKS:
        if not table_exists(connection, table):
            logger.warning(
                "monitoring table %s is missing: build the monitoring marts "
                "(creditflow build --select tag:monitoring); its checks are skipped",
                table,
            )
            continue
        found.extend(check(connection, month, config))
    return found


def alerts(settings: Settings, month: str) -> list[dict]:
    """Return the threshold breaches of ``month``: one dict per warning or alert.

    Each dict has ``level`` ('warn' or 'alert'), ``check`` (feature_drift, score_drift,
    fairness, performance), ``month``, ``subject`` (feature, group or metric), ``value``,
    ``threshold``, ``model_id`` and a readable ``message``.
    """
    try:
        month = parse_month(month)
    except ValueError as error:
        raise CreditflowError(str(error)) from error
    if not warehouse_exists(settings):
        raise CreditflowError(f"warehouse {describe(settings)} does not exist: ingest, score and "
                              "monitor a month first, or check CREDITFLOW_HOME")
    config = load_config()
    with connect(settings, read_only=True) as connection:
        found = alerts_from_connection(connection, month, config)
    logger.info(
        "monitoring of %s: %d alerts, %d warnings",
        month,
        sum(a["level"] == ALERT for a in found),
        sum(a["level"] == WARN for a in found),
    )
    return found
