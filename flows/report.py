"""The monthly monitoring report: one self-contained HTML file per month, charts embedded.

It reads the warehouse only: the model registry, the predictions, the applications and the dbt
monitoring marts (build them first, ``dbt build --select tag:monitoring``), and the alerts of
:mod:`flows.monitoring`. Sections: alerts, model card, score distribution, decisions and approval
trend, feature drift, fairness, realized performance (ROC curve and calibration) when the month
has labels.
"""

from __future__ import annotations

import html
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows import charts
from flows.config import Settings
from flows.errors import CreditflowError
from flows.monitoring import ALERT, WARN, MonitoringConfig, alerts_from_connection, load_config
from flows.monitoring import validation_auc as registry_validation_auc
from flows.months import parse_month
from flows.warehouse import Warehouse, connect, describe, table_exists, warehouse_exists

logger = logging.getLogger(__name__)

TOP_FEATURES = 15


def default_report_path(settings: Settings, month: str) -> Path:
    return settings.reports / f"report_{month}.html"


def _frame(connection: Warehouse, table: str, sql: str,
           params: list | None = None) -> pd.DataFrame | None:
    """Run ``sql`` when ``table`` exists; return None when it does not."""
    if not table_exists(connection, table):
        return None
    return connection.fetch_frame(sql, params or [])


def _missing(table: str) -> str:
    return (f'<p class="note">Table {table} is missing: build the monitoring marts '
            "(<code>creditflow build --select tag:monitoring</code>) and write the report "
            "again.</p>")


# --- data -----------------------------------------------------------------------------------

def _model_record(connection, month: str) -> dict[str, Any] | None:
    """Return the registry row of the model that scored ``month``, else the champion's."""
    if not table_exists(connection, "model_registry"):
        return None
    rows = connection.fetch_frame(
        "select registry.* from model_registry as registry where registry.model_id = "
        "(select min(model_id) from predictions where score_month = ?) "
        "union all select * from model_registry where status = 'champion'",
        [month],
    )
    if rows.empty:
        return None
    return rows.iloc[0].to_dict()


def _load(connection, month: str) -> dict[str, Any]:
    """Read everything the report shows for ``month``."""
    data: dict[str, Any] = {"month": month}
    data["model"] = _model_record(connection, month)
    model_id = data["model"]["model_id"] if data["model"] else None
    data["features"] = _frame(
        connection, "model_features",
        "select feature, is_categorical, gain_importance from model_features "
        "where model_id = ? order by gain_importance desc nulls last, feature", [model_id])
    data["training_months"] = _frame(
        connection, "model_training_months",
        "select month from model_training_months where model_id = ? order by month", [model_id])

    data["scores"] = _frame(
        connection, "predictions",
        "select score_month, default_probability, decision from predictions "
        "where score_month = ?", [month])
    data["score_drift"] = _frame(
        connection, "monitoring_score_drift",
        "select * from monitoring_score_drift where month = ?", [month])
    reference_month = None
    if data["score_drift"] is not None and not data["score_drift"].empty:
        reference_month = data["score_drift"]["reference_month"].iloc[0]
    data["reference_month"] = reference_month if isinstance(reference_month, str) else None
    data["reference_scores"] = None
    if data["reference_month"]:
        data["reference_scores"] = connection.fetch_frame(
            "select default_probability from predictions where score_month = ?",
            [data["reference_month"]])

    data["decisions"] = _frame(
        connection, "monitoring_decisions",
        "select * from monitoring_decisions where month <= ? order by month", [month])
    data["feature_drift"] = _frame(
        connection, "monitoring_feature_drift",
        "select * from monitoring_feature_drift where month = ? order by psi desc, feature",
        [month])
    data["fairness"] = _frame(
        connection, "monitoring_fairness",
        "select * from monitoring_fairness where month = ? order by sensitive_column, "
        "group_value", [month])
    data["performance"] = _frame(
        connection, "monitoring_performance",
        "select * from monitoring_performance where month = ?", [month])
    data["calibration"] = _frame(
        connection, "monitoring_calibration",
        "select * from monitoring_calibration where month = ? order by score_decile", [month])

    data["labeled_scores"] = None
    if table_exists(connection, "applications") and table_exists(connection, "predictions"):
        data["labeled_scores"] = connection.fetch_frame(
            "select predictions.default_probability, applications.target "
            "from predictions inner join applications "
            "on predictions.sk_id_curr = applications.sk_id_curr "
            "and predictions.score_month = applications.month "
            "where predictions.score_month = ? and applications.target is not null",
            [month])
    return data


# --- sections -------------------------------------------------------------------------------

def _alerts_section(found: list[dict]) -> str:
    if not found:
        return '<h2>Alerts</h2><p class="ok">No threshold was crossed this month.</p>'
    rows = [(a["level"], a["check"], a["month"], a["subject"], a["value"], a["threshold"],
             a["message"]) for a in found]
    classes = [a["level"] for a in found]
    counts = (f"{sum(a['level'] == ALERT for a in found)} alert(s), "
              f"{sum(a['level'] == WARN for a in found)} warning(s)")
    return (f"<h2>Alerts</h2><p>{counts}</p>"
            + charts.table(["level", "check", "month", "subject", "value", "threshold",
                            "message"], rows, classes))


def _model_section(data: dict[str, Any]) -> str:
    model = data["model"]
    if model is None:
        return ('<h2>Model</h2><p class="note">No model in the registry scored this month and '
                "there is no champion: train one (creditflow train --month YYYY-MM).</p>")
    params = json.loads(model["params"]) if model.get("params") else {}
    months = (list(data["training_months"]["month"]) if data["training_months"] is not None
              else json.loads(model["training_months"]))
    card = [
        ("model id", model["model_id"]),
        ("status", model["status"]),
        ("trained at", str(model["trained_at"])),
        ("training months", ", ".join(months)),
        ("validation month", model.get("validation_month") or ""),
        ("validation AUC", registry_validation_auc(model.get("metrics"))),
        ("artifact", model["artifact_path"]),
    ]
    parts = ["<h2>Model card</h2>", charts.table(["field", "value"], card)]
    if params:
        parts.append("<h3>Parameters</h3>")
        parts.append(charts.table(["parameter", "value"],
                                  [(k, v if isinstance(v, int | float) else json.dumps(v))
                                   for k, v in sorted(params.items())]))
    features = data["features"]
    if features is not None and not features.empty:
        parts.append(f"<h3>Features ({len(features)})</h3>")
        top = features.head(20).iloc[::-1]
        fig, axes = charts.figure(7.0, max(2.5, 0.28 * len(top) + 0.8))
        axes.barh(top["feature"], top["gain_importance"].fillna(0.0), color="#4a78b5")
        axes.set_xlabel("gain importance")
        axes.set_title(f"Top {len(top)} features by gain importance")
        parts.append(charts.image_tag(fig, "gain importance of the model features"))
        names = ", ".join(
            f"{f}{' (categorical)' if c else ''}"
            for f, c in zip(features["feature"], features["is_categorical"], strict=True))
        parts.append(f'<p class="note">{html.escape(names)}</p>')
    return "".join(parts)


def _score_section(data: dict[str, Any]) -> str:
    scores = data["scores"]
    month = data["month"]
    if scores is None or scores.empty:
        return (f'<h2>Score distribution</h2><p class="note">No predictions for {month}: score '
                f"it first (creditflow score --month {month}).</p>")
    parts = ["<h2>Score distribution</h2>"]

    fig, axes = charts.figure()
    bins = np.linspace(0.0, max(0.05, float(scores["default_probability"].max())), 41)
    axes.hist(scores["default_probability"], bins=bins, density=True, alpha=0.6,
              label=f"{month} ({len(scores)} applications)", color="#4a78b5")
    reference = data["reference_scores"]
    if reference is not None and not reference.empty:
        axes.hist(reference["default_probability"], bins=bins, density=True, alpha=0.5,
                  label=f"reference {data['reference_month']} ({len(reference)})", color="#d08a2c")
    axes.set_xlabel("default probability")
    axes.set_ylabel("density")
    axes.legend()
    parts.append(charts.image_tag(fig, f"default probability distribution of {month} "
                                       "against the reference month"))

    drift = data["score_drift"]
    if drift is not None and not drift.empty and pd.notna(drift["psi"].iloc[0]):
        parts.append(f"<p>Score PSI against {drift['reference_month'].iloc[0]}: "
                     f"<b>{drift['psi'].iloc[0]:.4f}</b> (mean default probability "
                     f"{drift['mean_default_probability'].iloc[0]:.4f}).</p>")
        if not drift["is_same_model"].iloc[0]:
            parts.append(f'<p class="note">Model {drift["reference_model_id"].iloc[0]} scored '
                         f"{drift['reference_month'].iloc[0]} and model "
                         f"{drift['model_id'].iloc[0]} scored {month}, so the PSI also measures "
                         "the change of model and raises no alert.</p>")
    else:
        parts.append('<p class="note">No earlier scored month to compare the scores with.</p>')
    return "".join(parts)


def _decisions_section(data: dict[str, Any]) -> str:
    decisions = data["decisions"]
    if decisions is None:
        return "<h2>Decisions</h2>" + _missing("monitoring_decisions")
    if decisions.empty:
        return '<h2>Decisions</h2><p class="note">No scored month yet.</p>'
    parts = ["<h2>Decisions and approval rate</h2>"]
    fig, axes = charts.figure()
    axes.plot(decisions["month"], decisions["approval_rate"], marker="o", label="approve")
    axes.plot(decisions["month"], decisions["review_rate"], marker="s", label="review")
    axes.plot(decisions["month"], decisions["decline_rate"], marker="^", label="decline")
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of applications")
    axes.set_title("Decision rates by score month")
    axes.legend()
    parts.append(charts.image_tag(fig, "approval rate trend by month"))
    rows = decisions[["month", "model_id", "scored_rows", "approved", "reviewed", "declined",
                      "approval_rate"]].itertuples(index=False)
    parts.append(charts.table(["month", "model", "scored", "approved", "review", "declined",
                               "approval rate"], [tuple(r) for r in rows]))
    return "".join(parts)


def _drift_section(data: dict[str, Any], config: MonitoringConfig) -> str:
    drift = data["feature_drift"]
    if drift is None:
        return "<h2>Feature drift</h2>" + _missing("monitoring_feature_drift")
    if drift.empty:
        return ('<h2>Feature drift</h2><p class="note">No drift rows for this month: it needs '
                "a champion and its feature rows.</p>")
    top = drift.head(TOP_FEATURES).iloc[::-1]
    fig, axes = charts.figure(7.0, max(2.5, 0.3 * len(top) + 1.0))
    colors = ["#b22222" if p >= config.feature_psi_alert else
              "#e0a030" if p >= config.feature_psi_warn else "#4a78b5" for p in top["psi"]]
    axes.barh(top["feature"], top["psi"], color=colors)
    axes.axvline(config.feature_psi_warn, color="#e0a030", linestyle="--",
                 label=f"warn {config.feature_psi_warn}")
    axes.axvline(config.feature_psi_alert, color="#b22222", linestyle="--",
                 label=f"alert {config.feature_psi_alert}")
    axes.set_xlabel("PSI against the training months")
    axes.set_title(f"Top {len(top)} drifting features")
    axes.legend(loc="lower right")
    rows = [(r.feature, r.psi, r.gain_importance, r.month_missing_share,
             r.reference_missing_share, r.bins) for r in drift.head(30).itertuples()]
    classes = ["alert" if r[1] >= config.feature_psi_alert else
               "warn" if r[1] >= config.feature_psi_warn else "" for r in rows]
    return ("<h2>Feature drift</h2>" + charts.image_tag(fig, "top drifting features by PSI")
            + charts.table(["feature", "PSI", "gain importance", "missing (month)",
                            "missing (reference)", "bins"], rows, classes))


def _fairness_section(data: dict[str, Any], config: MonitoringConfig) -> str:
    fairness = data["fairness"]
    if fairness is None:
        return "<h2>Fairness</h2>" + _missing("monitoring_fairness")
    if fairness.empty:
        return '<h2>Fairness</h2><p class="note">No scored applications this month.</p>'
    rows = [(r.sensitive_column, r.group_value, r.scored_rows, r.approval_rate,
             r.approval_rate_ratio, r.mean_default_probability, r.labeled_rows, r.default_rate,
             r.auc) for r in fairness.itertuples()]
    classes = ["alert" if pd.notna(r[4]) and r[4] < config.approval_rate_ratio_alert else ""
               for r in rows]
    return ("<h2>Fairness</h2>"
            f'<p class="note">Approval-rate ratio: a group\'s approval rate over the highest '
            f"among groups of at least {config.min_group_rows} applications; alert below "
            f"{config.approval_rate_ratio_alert}.</p>"
            + charts.table(["column", "group", "scored", "approval rate", "ratio",
                            "mean probability", "labeled", "default rate", "AUC"], rows, classes))


def _performance_section(data: dict[str, Any]) -> str:
    performance = data["performance"]
    labeled = data["labeled_scores"]
    if performance is None:
        return "<h2>Realized performance</h2>" + _missing("monitoring_performance")
    if performance.empty or labeled is None or labeled.empty:
        return ('<h2>Realized performance</h2><p class="note">No labels for this month yet: '
                "load them with creditflow ingest-labels FILE --month "
                f"{data['month']}.</p>")
    from sklearn.metrics import roc_curve

    row = performance.iloc[0]
    summary = charts.table(
        ["labeled", "defaults", "default rate", "AUC", "Gini", "KS"],
        [(int(row["labeled_rows"]), int(row["defaulted"]), row["default_rate"], row["auc"],
          row["gini"], row["ks"])])
    parts = ["<h2>Realized performance</h2>", summary]
    if labeled["target"].nunique() == 2:
        false_positive_rate, true_positive_rate, _ = roc_curve(labeled["target"],
                                                               labeled["default_probability"])
        fig, axes = charts.figure(5.0, 4.2)
        axes.plot(false_positive_rate, true_positive_rate, color="#4a78b5",
                  label=f"AUC {row['auc']:.3f}")
        axes.plot([0, 1], [0, 1], color="#999", linestyle=":")
        axes.set_xlabel("false positive rate")
        axes.set_ylabel("true positive rate")
        axes.set_title(f"ROC curve, {data['month']}")
        axes.legend(loc="lower right")
        parts.append(charts.image_tag(fig, "realized ROC curve"))
    calibration = data["calibration"]
    if calibration is not None and not calibration.empty:
        fig, axes = charts.figure(5.0, 4.2)
        top = float(max(calibration["expected_default_rate"].max(),
                        calibration["observed_default_rate"].max(), 0.01))
        axes.plot([0, top], [0, top], color="#999", linestyle=":")
        axes.plot(calibration["expected_default_rate"], calibration["observed_default_rate"],
                  marker="o", color="#4a78b5")
        axes.set_xlabel("expected default rate (mean probability)")
        axes.set_ylabel("observed default rate")
        axes.set_title("Calibration by score decile")
        parts.append(charts.image_tag(fig, "calibration by score decile"))
        parts.append(charts.table(
            ["decile", "labeled", "expected rate", "observed rate", "expected defaults",
             "observed defaults"],
            [(int(r.score_decile), int(r.labeled_rows), r.expected_default_rate,
              r.observed_default_rate, r.expected_defaults, int(r.observed_defaults))
             for r in calibration.itertuples()]))
    return "".join(parts)


# --- entry points ---------------------------------------------------------------------------

def render_report(data: dict[str, Any], found: list[dict], config: MonitoringConfig,
                  generated_at: datetime) -> str:
    """Return the report's HTML from the data of :func:`_load` and the month's alerts."""
    month = data["month"]
    intro = (f'<p class="note">Generated {generated_at:%Y-%m-%d %H:%M} UTC from the creditflow '
             "warehouse. Drift compares the month with the training months of the model; the "
             "score reference is the previous scored month.</p>")
    sections = [
        intro,
        _alerts_section(found),
        _model_section(data),
        _score_section(data),
        _decisions_section(data),
        _drift_section(data, config),
        _fairness_section(data, config),
        _performance_section(data),
    ]
    return charts.page(f"creditflow monitoring report {month}", sections)


def write_report(settings: Settings, month: str, out: str | Path | None = None) -> Path:
    """Write the monitoring report of ``month`` as one HTML file and return its path.

    The default path is ``$CREDITFLOW_HOME/reports/report_<month>.html``. Raises
    CreditflowError when the warehouse does not exist or has no data of the month.
    """
    try:
        month = parse_month(month)
    except ValueError as error:
        raise CreditflowError(str(error)) from error
    if not warehouse_exists(settings):
        raise CreditflowError(f"warehouse {describe(settings)} does not exist: ingest and score "
                              "a month first, or check CREDITFLOW_HOME")
    config = load_config()
    with connect(settings, read_only=True) as connection:
        data = _load(connection, month)
        has_rows = table_exists(connection, "raw_applications") and connection.execute(
            "select count(*) from raw_applications where month = ?", [month]).fetchall()[0][0]
        if (data["scores"] is None or data["scores"].empty) and not has_rows:
            raise CreditflowError(f"nothing to report for {month}: the warehouse has neither "
                                  "applications nor predictions of that month")
        found = alerts_from_connection(connection, month, config)
    _warn_if_stale(data, month)
    document = render_report(data, found, config, datetime.now(UTC))
    path = Path(out) if out else default_report_path(settings, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(document, encoding="utf-8")
    temporary.replace(path)
    logger.info("monitoring report of %s written to %s (%d alerts and warnings)", month, path,
                len(found))
    return path


def _warn_if_stale(data: dict[str, Any], month: str) -> None:
    """Log a warning when the month's predictions and its monitoring tables disagree.

    The report reads the monitoring tables as they are. After a standalone ``score`` they still
    describe the earlier predictions of the month, or none.
    """
    # NOTE: only the row counts are compared, so a rescore of the same applications with another
    # model is not detected.
    scored = 0 if data["scores"] is None else len(data["scores"])
    decisions = data["decisions"]
    monitored = 0
    if decisions is not None and not decisions.empty:
        rows = decisions.loc[decisions["month"] == month, "scored_rows"]
        monitored = int(rows.iloc[0]) if len(rows) else 0
    if scored != monitored:
        logger.warning(
            "the monitoring tables of %s are out of date: predictions has %d application(s) "
            "of the month, monitoring_decisions %d. Rebuild them with creditflow build "
            "--select tag:monitoring, then write the report again", month, scored, monitored)


def command_report(args, settings: Settings) -> int:
    """Run ``creditflow report --month M [--out PATH]``."""
    path = write_report(settings, args.month, args.out)
    print(f"report written to {path}")
    return 0
