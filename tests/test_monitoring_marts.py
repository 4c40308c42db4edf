"""The dbt monitoring marts on a small synthetic warehouse, against plain Python computations."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from flows.config import load_settings
from flows.monitoring import alerts, load_config
from tests.monitoring_data import (
    DRIFTED,
    MODEL_FEATURES,
    MODEL_ID,
    SCORED_MONTHS,
    TRAINING_MONTHS,
    make_features,
    make_predictions,
    reference_ks,
    reference_psi,
    synthetic_home,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A warehouse with synthetic features, scores and a champion, and its monitoring marts."""
    home = synthetic_home(tmp_path_factory)
    features = make_features()
    return load_settings(home), features, make_predictions(features)


def _table(settings, sql: str, params=None) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        return connection.execute(sql, params or []).df()


def test_feature_drift_grain(synthetic):
    settings, features, _ = synthetic
    drift = _table(settings, "select * from monitoring_feature_drift")
    assert len(drift) == len(drift[["month", "feature"]].drop_duplicates())
    assert set(drift["feature"]) == set(MODEL_FEATURES)
    assert set(drift["month"]) == set(features["month"])
    assert set(drift["model_id"]) == {MODEL_ID}
    reference = drift[drift["is_reference_month"]]
    assert set(reference["month"]) == set(TRAINING_MONTHS)


def test_feature_psi_equals_python_reference(synthetic):
    settings, features, _ = synthetic
    drift = _table(settings, "select month, feature, psi from monitoring_feature_drift")
    reference_rows = features[features["month"].isin(TRAINING_MONTHS)]
    compared = 0
    for row in drift.itertuples():
        month_rows = features[features["month"] == row.month]
        expected = reference_psi(
            reference_rows[row.feature], month_rows[row.feature], MODEL_FEATURES[row.feature]
        )
        assert row.psi == pytest.approx(expected, abs=1e-9), (row.month, row.feature)
        compared += 1
    assert compared == len(MODEL_FEATURES) * features["month"].nunique()


def test_drifted_features_alert_others_stay_stable(synthetic):
    settings, _, _ = synthetic
    config = load_config()
    drift = _table(
        settings,
        "select month, feature, psi from monitoring_feature_drift where month <> 'history'",
    )
    for row in drift.itertuples():
        if row.feature in DRIFTED.get(row.month, []):
            assert row.psi >= config.feature_psi_alert, (row.month, row.feature, row.psi)
        else:
            assert row.psi < config.feature_psi_warn, (row.month, row.feature, row.psi)


def test_feature_bins_shares_sum_to_one(synthetic):
    settings, _, _ = synthetic
    sums = _table(
        settings,
        "select month, feature, sum(month_share) as month_total, "
        "sum(reference_share) as reference_total "
        "from monitoring_feature_bins group by month, feature",
    )
    assert np.allclose(sums["month_total"], 1.0)
    assert np.allclose(sums["reference_total"], 1.0)


def test_numeric_feature_decile_bins(synthetic):
    settings, _, _ = synthetic
    bins = _table(
        settings,
        "select bin_label, reference_share from monitoring_feature_bins "
        "where month = '2020-10' and feature = 'ext_source_2' order by bin_label",
    )
    assert "missing" in set(bins["bin_label"])
    ranges = bins[bins["bin_label"] != "missing"]
    assert len(ranges) == 10
    assert np.allclose(ranges["reference_share"], ranges["reference_share"].sum() / 10, atol=0.002)


def test_score_psi_against_previous_month(synthetic):
    settings, _, predictions = synthetic
    drift = _table(settings, "select * from monitoring_score_drift order by month")
    assert list(drift["month"]) == SCORED_MONTHS
    assert pd.isna(drift.loc[0, "psi"])
    for row in drift.iloc[1:].itertuples():
        current = predictions.loc[predictions["score_month"] == row.month, "default_probability"]
        previous = predictions.loc[
            predictions["score_month"] == row.reference_month, "default_probability"
        ]
        assert row.psi == pytest.approx(reference_psi(previous, current, False), abs=1e-9)


def test_decisions_count_and_approval_rate(synthetic):
    settings, _, predictions = synthetic
    decisions = _table(settings, "select * from monitoring_decisions order by month")
    for row in decisions.itertuples():
        month = predictions[predictions["score_month"] == row.month]
        counts = month["decision"].value_counts()
        assert row.scored_rows == len(month)
        assert row.approved == counts.get("approve", 0)
        assert row.reviewed == counts.get("review", 0)
        assert row.declined == counts.get("decline", 0)
        assert row.approval_rate == pytest.approx(counts.get("approve", 0) / len(month))


def test_fairness_by_gender_matches_pandas(synthetic):
    settings, features, predictions = synthetic
    fairness = _table(settings, "select * from monitoring_fairness order by month, group_value")
    joined = predictions.merge(
        features, left_on=["sk_id_curr", "score_month"], right_on=["sk_id_curr", "month"]
    )
    joined["group_value"] = joined["code_gender"].fillna("missing")
    assert set(fairness["sensitive_column"]) == {"code_gender"}
    for row in fairness.itertuples():
        group = joined[
            (joined["score_month"] == row.month) & (joined["group_value"] == row.group_value)
        ]
        assert row.scored_rows == len(group)
        assert row.approval_rate == pytest.approx((group["decision"] == "approve").mean())
        assert row.mean_default_probability == pytest.approx(group["default_probability"].mean())
        assert row.default_rate == pytest.approx(group["target"].mean())
        assert row.auc == pytest.approx(
            roc_auc_score(group["target"], group["default_probability"]), abs=1e-9
        )
    for month, rows in fairness.groupby("month"):
        large = rows[rows["scored_rows"] >= 30]
        assert large["approval_rate_ratio"].max() == pytest.approx(1.0), month
        small = rows[rows["scored_rows"] < 30]
        assert small["approval_rate_ratio"].isna().all(), month


def test_realized_performance_matches_sklearn(synthetic):
    settings, features, predictions = synthetic
    performance = _table(settings, "select * from monitoring_performance order by month")
    assert list(performance["month"]) == SCORED_MONTHS
    joined = predictions.merge(
        features, left_on=["sk_id_curr", "score_month"], right_on=["sk_id_curr", "month"]
    )
    for row in performance.itertuples():
        month = joined[joined["score_month"] == row.month]
        auc = roc_auc_score(month["target"], month["default_probability"])
        assert row.auc == pytest.approx(auc, abs=1e-9)
        assert row.gini == pytest.approx(2 * auc - 1, abs=1e-9)
        assert row.ks == pytest.approx(
            reference_ks(month["target"], month["default_probability"]), abs=1e-9
        )
        assert row.default_rate == pytest.approx(month["target"].mean())


def test_calibration_deciles_cover_month(synthetic):
    settings, _, predictions = synthetic
    calibration = _table(
        settings, "select * from monitoring_calibration order by month, score_decile"
    )
    for month, rows in calibration.groupby("month"):
        scored = predictions[predictions["score_month"] == month]
        assert list(rows["score_decile"]) == list(range(1, 11))
        assert rows["labeled_rows"].sum() == len(scored)
        assert rows["expected_defaults"].sum() == pytest.approx(scored["default_probability"].sum())
        assert rows["expected_default_rate"].is_monotonic_increasing


def test_alerts_name_drifted_features(synthetic):
    settings, _, _ = synthetic
    found = alerts(settings, "2021-01")
    drift_alerts = {
        a["subject"] for a in found if a["check"] == "feature_drift" and a["level"] == "alert"
    }
    assert drift_alerts == set(DRIFTED["2021-01"])
    assert all(a["month"] == "2021-01" for a in found if a["check"] == "feature_drift")
    assert not [a for a in alerts(settings, "2020-11") if a["check"] == "feature_drift"]


def _set_validation_auc(settings, value: float) -> None:
    with duckdb.connect(str(settings.warehouse)) as connection:
        connection.execute(
            "update model_registry set metrics = ? where model_id = ?",
            [f'{{"validation_auc": {value}}}', MODEL_ID],
        )


@pytest.mark.parametrize(("margin", "alerted"), [(0.06, True), (0.04, False)])
def test_alerts_compare_auc_with_validation(synthetic, margin, alerted):
    settings, _, _ = synthetic
    realized = float(
        _table(settings, "select auc from monitoring_performance where month = '2021-01'")[
            "auc"
        ].iloc[0]
    )
    try:
        _set_validation_auc(settings, realized + margin)
        found = [a for a in alerts(settings, "2021-01") if a["check"] == "performance"]
    finally:
        _set_validation_auc(settings, 0.8)
    assert ("2021-01" in {a["month"] for a in found}) is alerted


def test_alerts_flag_low_approval_ratio(synthetic):
    settings, _, _ = synthetic
    fairness = _table(
        settings,
        "select group_value, approval_rate_ratio from monitoring_fairness "
        "where month = '2021-01' and approval_rate_ratio < 0.8",
    )
    found = [a for a in alerts(settings, "2021-01") if a["check"] == "fairness"]
    assert {a["subject"] for a in found} == {f"code_gender={g}" for g in fairness["group_value"]}
    assert "code_gender=M" in {a["subject"] for a in found}


def test_fairness_covers_configured_columns(tmp_path_factory, tmp_path):
    import json
    import shutil

    from flows.dbt_runner import run_dbt
    from flows.monitoring import MonitoringConfig

    home = tmp_path / "home"
    shutil.copytree(synthetic_home(tmp_path_factory), home)
    settings = load_settings(home)
    config = MonitoringConfig(sensitive_columns=("code_gender", "name_income_type"))
    run_dbt(settings, ["build", "--select", "monitoring_fairness",
                       "--vars", json.dumps(config.dbt_vars())])
    fairness = _table(settings, "select * from monitoring_fairness where month = '2021-01'")
    assert set(fairness["sensitive_column"]) == {"code_gender", "name_income_type"}
    income = fairness[fairness["sensitive_column"] == "name_income_type"]
    assert set(income["group_value"]) == {"Working", "Pensioner", "State servant",
                                          "Commercial associate"}
    assert income["scored_rows"].sum() == 3000


def test_config_file_defaults():
    config = load_config()
    assert config.feature_psi_warn == 0.1
    assert config.feature_psi_alert == 0.25
    assert config.approval_rate_ratio_alert == 0.8
    assert config.auc_drop_alert == 0.05
    assert config.sensitive_columns == ("code_gender",)


@pytest.mark.parametrize(("text", "message"), [
    ("feature_drift: {psi_warn: high}", "invalid feature_drift.psi_warn"),
    ("fairness: {sensitive_columns: code_gender}", "invalid fairness.sensitive_columns"),
    ("psi: {bins: 1}", "invalid psi.bins"),
    ("feature_drift: [", "cannot read monitoring configuration"),
])
def test_config_errors_name_entry(tmp_path, text, message):
    from flows.errors import CreditflowError

    path = tmp_path / "monitoring.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CreditflowError, match=message):
        load_config(path)
