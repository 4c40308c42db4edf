"""Small warehouses for the monitoring tests, and plain Python versions of their measures.

``write_synthetic_warehouse`` writes the tables the monitoring marts read (application_features,
applications, predictions and the model registry tables) with known drift, so the marts can be
built with ``dbt build --select tag:monitoring`` without the data layer or the model.
The ``reference_*`` functions compute the same measures with numpy, independently of the SQL.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from flows.warehouse import init_warehouse

MODEL_ID = "model-synthetic"
TRAINING_MONTHS = ["history", "2020-10", "2020-11"]
SCORED_MONTHS = ["2020-10", "2020-11", "2020-12", "2021-01"]
# feature -> is_categorical; `unused_feature` is in the feature table but not in the model.
MODEL_FEATURES = {
    "amt_income_total": False,
    "ext_source_2": False,
    "cnt_children": False,
    "days_birth": False,
    "code_gender": True,
    "name_income_type": True,
}
DRIFTED = {"2021-01": ["amt_income_total", "name_income_type"]}


def make_features(seed: int = 7, rows_per_month: int = 3000) -> pd.DataFrame:
    """Return features of history and four months, with the DRIFTED features shifted in 2021-01."""
    rng = np.random.default_rng(seed)
    frames = []
    next_id = 100_000
    for month in ["history", *SCORED_MONTHS]:
        drifted = DRIFTED.get(month, [])
        n = rows_per_month
        income_shift = 0.6 if "amt_income_total" in drifted else 0.0
        income_types = ["Working", "Pensioner", "State servant", "Commercial associate"]
        income_type_p = (
            [0.2, 0.5, 0.2, 0.1] if "name_income_type" in drifted else [0.5, 0.2, 0.2, 0.1]
        )
        frame = pd.DataFrame(
            {
                "sk_id_curr": np.arange(next_id, next_id + n, dtype="int64"),
                "month": month,
                "target": rng.integers(0, 2, n),
                "amt_income_total": rng.lognormal(11.5 + income_shift, 0.5, n).round(-2),
                "ext_source_2": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
                "cnt_children": rng.choice([0, 0, 0, 1, 1, 2, 3], n).astype("int64"),
                "days_birth": -rng.integers(7000, 25000, n).astype("float64"),
                "code_gender": rng.choice(
                    np.array(["F", "M", None], dtype=object), n, p=[0.6, 0.39, 0.01]
                ),
                "name_income_type": rng.choice(income_types, n, p=income_type_p),
                "unused_feature": rng.random(n),
            }
        )
        frames.append(frame)
        next_id += n
    return pd.concat(frames, ignore_index=True)


def make_predictions(features: pd.DataFrame, seed: int = 11) -> pd.DataFrame:
    """Return scores that follow the target, with decisions from fixed cut-offs.

    Women get slightly lower scores and men slightly higher ones, so approval rates differ by group.
    """
    rng = np.random.default_rng(seed)
    scored = features[features["month"].isin(SCORED_MONTHS)]
    gender_shift = scored["code_gender"].map({"F": -0.3, "M": 0.3}).fillna(0.0).to_numpy()
    logit = (
        scored["target"].to_numpy() * 1.2 + rng.normal(0.0, 1.0, len(scored)) - 1.0 + gender_shift
    )
    # Rounded to 3 decimals, so tied scores occur, as they do with a tree model.
    probability = np.round(1.0 / (1.0 + np.exp(-logit)), 3)
    decision = np.where(
        probability < 0.35, "approve", np.where(probability < 0.6, "review", "decline")
    )
    return pd.DataFrame(
        {
            "sk_id_curr": scored["sk_id_curr"].to_numpy(),
            "score_month": scored["month"].to_numpy(),
            "model_id": MODEL_ID,
            "default_probability": probability,
            "decision": decision,
            "reason_codes": "[]",
            "scored_at": pd.Timestamp("2021-02-01 06:00:00"),
        }
    )


def write_synthetic_warehouse(
    path, features: pd.DataFrame, predictions: pd.DataFrame, validation_auc: float = 0.8
) -> None:
    """Write the tables the monitoring marts read into the DuckDB file at ``path``."""
    connection = duckdb.connect(str(path))
    try:
        init_warehouse(connection)
        connection.register("features_frame", features)
        connection.execute(
            "create or replace table application_features as select * from features_frame"
        )
        connection.execute(
            "create or replace table applications as select sk_id_curr, month, "
            "cast(target as integer) as target, code_gender, name_income_type from features_frame"
        )
        connection.register("predictions_frame", predictions)
        connection.execute("insert into predictions select * from predictions_frame")
        connection.execute(
            "insert into model_registry (model_id, trained_at, score_month, training_months, "
            "validation_month, params, features, metrics, status, artifact_path, artifact_sha256) "
            "values (?, now(), '2020-12', ?, '2020-11', '{}', ?, ?, 'champion', 'model.txt', 'x')",
            [
                MODEL_ID,
                str(TRAINING_MONTHS),
                str(list(MODEL_FEATURES)),
                f'{{"validation_auc": {validation_auc}}}',
            ],
        )
        for feature, is_categorical in MODEL_FEATURES.items():
            connection.execute(
                "insert into model_features values (?, ?, ?, ?)",
                [MODEL_ID, feature, is_categorical, 1.0],
            )
        for month in TRAINING_MONTHS:
            connection.execute("insert into model_training_months values (?, ?)", [MODEL_ID, month])
    finally:
        connection.close()


def _bin_labels(values: pd.Series, categorical: bool, cut_points: list[float]) -> list[str]:
    labels = []
    for value in values:
        if pd.isna(value):
            labels.append("missing")
        elif categorical:
            labels.append(f"level {value}")
        else:
            labels.append(f"range {bisect.bisect_left(cut_points, float(value)) + 1:02d}")
    return labels


def reference_cut_points(values: np.ndarray, bins: int = 10) -> list[float]:
    """Return the distinct quantiles at 1/bins .. (bins-1)/bins (inverted empirical CDF)."""
    ordered = np.sort(values[~np.isnan(values)])
    n = len(ordered)
    if n == 0:
        return []
    return sorted({float(ordered[-(-level * n // bins) - 1]) for level in range(1, bins)})


def reference_psi(
    reference: pd.Series,
    current: pd.Series,
    categorical: bool,
    bins: int = 10,
    epsilon: float = 0.0001,
) -> float:
    """Return the PSI of ``current`` against ``reference``, binned as the dbt marts bin."""
    cut_points = (
        []
        if categorical
        else reference_cut_points(reference.to_numpy(dtype="float64", na_value=np.nan), bins)
    )
    expected = pd.Series(_bin_labels(reference, categorical, cut_points)).value_counts(
        normalize=True
    )
    actual = pd.Series(_bin_labels(current, categorical, cut_points)).value_counts(normalize=True)
    total = 0.0
    for label in set(expected.index) | set(actual.index):
        a = max(float(actual.get(label, 0.0)), epsilon)
        e = max(float(expected.get(label, 0.0)), epsilon)
        total += (a - e) * math.log(a / e)
    return total


def reference_ks(target: np.ndarray, score: np.ndarray) -> float:
    """Return the Kolmogorov-Smirnov statistic: max |TPR - FPR| over score thresholds."""
    from sklearn.metrics import roc_curve

    false_positive_rate, true_positive_rate, _ = roc_curve(target, score)
    return float(np.max(np.abs(true_positive_rate - false_positive_rate)))


_BUILT: dict[str, Path] = {}


def synthetic_home(tmp_path_factory) -> Path:
    """Return a data directory with the synthetic warehouse and its monitoring marts built.

    Built once per test session; tests that change the warehouse copy the directory first.
    """
    if "home" not in _BUILT:
        from flows.config import load_settings
        from flows.dbt_runner import build_monitoring

        settings = load_settings(tmp_path_factory.mktemp("synthetic") / "home")
        settings.ensure_dirs()
        features = make_features()
        write_synthetic_warehouse(settings.warehouse, features, make_predictions(features))
        build_monitoring(settings)
        _BUILT["home"] = settings.home
    return _BUILT["home"]
