"""Feature drift end to end: generated files with injected shifts, a trained champion, dbt marts."""

from __future__ import annotations

import duckdb
import pytest

from flows.dbt_runner import build_features, build_monitoring
from flows.generator import generate_files
from flows.ingest import ingest_file
from flows.monitoring import alerts, load_config
from tests.monitoring_data import reference_psi

DRIFT_MONTH = "2020-12"
SHIFTS = {
    ("AMT_INCOME_TOTAL", DRIFT_MONTH): 2.0,
    ("EXT_SOURCE_2", DRIFT_MONTH): 0.5,
    ("NAME_INCOME_TYPE=Pensioner", DRIFT_MONTH): 3.0,
}
DRIFTED = {"amt_income_total", "ext_source_2", "name_income_type"}
# Engineered features computed from a shifted column drift with it; they are not checked.
DERIVED = {
    "credit_income_ratio", "annuity_income_ratio", "ext_source_min", "ext_source_max",
    "ext_source_mean", "ext_source_std", "ext_source_product", "income_per_family_member",
    "ext_source_2_3_product",
}


@pytest.fixture(scope="module")
def drifted_warehouse(tmp_path_factory):
    """Generated history and three months, a champion trained for 2020-12, and its marts."""
    from flows.config import load_settings
    from ml.params import load_params
    from ml.service import train_month

    settings = load_settings(tmp_path_factory.mktemp("drift") / "home")
    settings.ensure_dirs()
    months = ["2020-10", "2020-11", DRIFT_MONTH]
    files = generate_files(tmp_path_factory.mktemp("generated"), months, history_rows=4000,
                           rows_per_month=3000, seed=5, shifts=SHIFTS)
    for path in files:
        assert ingest_file(settings, path).accepted
    build_features(settings)
    # Feature selection off keeps every feature in the model, so drift covers all of them.
    all_features = load_params().with_overrides(feature_selection={"method": "off"})
    outcome = train_month(settings, DRIFT_MONTH, trials=1, params=all_features)
    assert DRIFT_MONTH not in outcome.training_months
    build_monitoring(settings)
    return settings, outcome


def _drift(settings, month: str) -> dict[str, float]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        rows = connection.execute(
            "select feature, psi from monitoring_feature_drift where month = ?", [month]).fetchall()
    return dict(rows)


def test_shifted_features_pass_alert(drifted_warehouse):
    settings, _ = drifted_warehouse
    config = load_config()
    drift = _drift(settings, DRIFT_MONTH)
    for feature in DRIFTED:
        assert drift[feature] >= config.feature_psi_alert, (feature, drift[feature])


def test_unshifted_features_stay_below_warn(drifted_warehouse):
    settings, _ = drifted_warehouse
    config = load_config()
    drift = _drift(settings, DRIFT_MONTH)
    checked = {f: psi for f, psi in drift.items() if f not in DRIFTED | DERIVED}
    assert len(checked) > 100
    for feature, psi in checked.items():
        assert psi < config.feature_psi_warn, (feature, psi)


def test_months_without_shift_stay_below_warn(drifted_warehouse):
    settings, _ = drifted_warehouse
    config = load_config()
    for month in ("2020-10", "2020-11"):
        for feature, psi in _drift(settings, month).items():
            assert psi < config.feature_psi_warn, (month, feature, psi)


def test_generated_psi_equals_python_reference(drifted_warehouse):
    settings, outcome = drifted_warehouse
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        features = connection.execute("select * from application_features").df()
        categorical = dict(connection.execute(
            "select feature, is_categorical from model_features where model_id = ?",
            [outcome.model_id]).fetchall())
    reference = features[features["month"].isin(outcome.training_months)]
    current = features[features["month"] == DRIFT_MONTH]
    drift = _drift(settings, DRIFT_MONTH)
    assert set(drift) == set(categorical)
    for feature, psi in drift.items():
        expected = reference_psi(reference[feature], current[feature], categorical[feature])
        assert psi == pytest.approx(expected, abs=1e-9), feature


def test_alerts_list_shifted_features(drifted_warehouse):
    settings, _ = drifted_warehouse
    found = alerts(settings, DRIFT_MONTH)
    drift_alerts = {a["subject"] for a in found
                    if a["check"] == "feature_drift" and a["level"] == "alert"}
    assert DRIFTED <= drift_alerts
    assert drift_alerts <= DRIFTED | DERIVED
