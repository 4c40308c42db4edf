"""Classic models side by side on one out-of-time split, as the data scientists' first look.

Each model gets the same training rows and is judged on the same later month: ROC AUC, recall
at the policy's approval cut-off (the share of defaults not approved automatically) and fit
time. The scikit-learn models read the features through simple imputation and one-hot encoding;
LightGBM reads them natively with fixed settings. Nothing here is tuned.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from ml.features import FeatureSpec, to_matrix
from ml.params import ModelParams
from ml.policy import auc, recall_at
from ml.training import fixed_params, make_dataset

logger = logging.getLogger(__name__)


def _preprocess(numeric: list[str], categorical: list[str], scale: bool) -> ColumnTransformer:
    numeric_steps = [SimpleImputer(strategy="median", keep_empty_features=True)]
    if scale:
        numeric_steps.append(StandardScaler())
    categorical_steps = [
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore", min_frequency=20),
    ]
    return ColumnTransformer([
        ("numeric", make_pipeline(*numeric_steps), numeric),
        ("categorical", make_pipeline(*categorical_steps), categorical),
    ])


def classic_models(numeric: list[str], categorical: list[str], seed: int
                   ) -> dict[str, Pipeline]:
    """Return the scikit-learn pipelines compared with LightGBM, keyed by display name."""
    def pipeline(model: Any, scale: bool) -> Pipeline:
        return Pipeline([("features", _preprocess(numeric, categorical, scale)), ("model", model)])

    return {
        "logistic regression": pipeline(LogisticRegression(max_iter=2000, C=0.1), scale=True),
        "decision tree": pipeline(DecisionTreeClassifier(max_depth=6, min_samples_leaf=50,
                                                         random_state=seed), scale=False),
        "random forest": pipeline(RandomForestClassifier(n_estimators=300, min_samples_leaf=10,
                                                         random_state=seed, n_jobs=1),
                                  scale=False),
        # LinearSVC has no probabilities; calibration maps its margins to them so the policy
        # cut-off applies.
        "linear SVM": pipeline(CalibratedClassifierCV(LinearSVC(C=0.05, random_state=seed),
                                                      cv=3), scale=True),
    }


def _as_object(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    result = frame.copy()
    for name in categorical:
        result[name] = result[name].astype(object).where(result[name].notna(), np.nan)
    return result


def compare_models(training: pd.DataFrame, test: pd.DataFrame, spec: FeatureSpec,
                   params: ModelParams) -> list[dict[str, Any]]:
    """Fit every model on ``training`` and evaluate it on ``test``; one result row per model."""
    categorical = spec.categorical
    numeric = [name for name in spec.features if name not in spec.categories]
    y_train = training["target"].to_numpy(dtype=np.int64)
    y_test = test["target"].to_numpy(dtype=np.int64)
    cutoff = float(params.decision["approve_below"])
    x_train = _as_object(training[list(spec.features)], categorical)
    x_test = _as_object(test[list(spec.features)], categorical)
    results = []
    for name, model in classic_models(numeric, categorical, params.seed).items():
        started = time.perf_counter()
        model.fit(x_train, y_train)
        seconds = time.perf_counter() - started
        probability = model.predict_proba(x_test)[:, 1]
        results.append(_row(name, y_test, probability, cutoff, seconds))
        logger.info("compared %s: AUC %s", name, results[-1]["auc"])

    settings = params.compare
    lightgbm_params = {**fixed_params(params),
                       "learning_rate": float(settings["lightgbm_learning_rate"]),
                       "num_leaves": int(settings["lightgbm_num_leaves"]),
                       "feature_fraction": 0.7, "bagging_fraction": 0.8}
    matrix_train, _ = to_matrix(training, spec)
    matrix_test, _ = to_matrix(test, spec)
    started = time.perf_counter()
    booster = lgb.train(lightgbm_params, make_dataset(matrix_train, y_train, spec, params),
                        num_boost_round=int(settings["lightgbm_rounds"]))
    seconds = time.perf_counter() - started
    results.append(_row("LightGBM", y_test, booster.predict(matrix_test), cutoff, seconds))
    return results


def _row(name: str, target: np.ndarray, probability: np.ndarray, cutoff: float,
         seconds: float) -> dict[str, Any]:
    return {"model": name, "auc": auc(target, probability),
            "recall_at_cutoff": recall_at(target, probability, cutoff),
            "fit_seconds": round(seconds, 3)}


def format_table(rows: list[dict[str, Any]], cutoff: float) -> str:
    """Return the comparison as a fixed-width text table, best AUC first."""
    ordered = sorted(rows, key=lambda r: -(r["auc"] if r["auc"] is not None else -1))
    header = f"{'model':<22}{'AUC':>8}{f'recall@{cutoff:g}':>14}{'fit s':>9}"
    lines = [header, "-" * len(header)]
    for row in ordered:
        value = "n/a" if row["auc"] is None else f"{row['auc']:.4f}"
        recall = ("n/a" if row["recall_at_cutoff"] is None
                  else f"{row['recall_at_cutoff']:.3f}")
        lines.append(f"{row['model']:<22}{value:>8}{recall:>14}{row['fit_seconds']:>9.2f}")
    return "\n".join(lines)
