"""Reason codes: the features that raised an application's default probability most.

Contributions come from LightGBM itself (``pred_contrib``, SHAP values in log-odds). A reason is
a feature with a positive contribution, named by the business term in ``ml/params.yml``.
"""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np


def business_name(feature: str, names: dict[str, str]) -> str:
    """Return the business term of a feature, or its column name as words when none is set."""
    if feature in names:
        return names[feature]
    words = feature.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def reason_codes(booster: lgb.Booster, matrix: np.ndarray, names: dict[str, str],
                 top_n: int = 3, chunk_rows: int = 50_000) -> list[str]:
    """Return, per row, a JSON array of up to ``top_n`` business-term reasons.

    Rows are explained ``chunk_rows`` at a time, which bounds the memory of the contribution
    matrix (rows x features doubles) on a full month.
    """
    features = booster.feature_name()
    labels = [business_name(name, names) for name in features]
    result: list[str] = []
    for start in range(0, len(matrix), chunk_rows):
        result.extend(_explain_rows(booster, matrix[start:start + chunk_rows], labels, top_n))
    return result


def _explain_rows(booster: lgb.Booster, matrix: np.ndarray, labels: list[str],
                  top_n: int) -> list[str]:
    # The last column of pred_contrib is the expected value (bias), not a feature.
    contributions = np.asarray(booster.predict(matrix, pred_contrib=True))[:, :-1]
    candidates = min(len(labels), max(top_n * 2, top_n + 2))
    # Largest contribution first; ties keep feature order so the result is repeatable.
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :candidates]
    result = []
    for row, ranked in enumerate(order):
        reasons: list[str] = []
        for index in ranked:
            if len(reasons) == top_n or contributions[row, index] <= 0:
                break
            # Two features may share a business term (age in days and in years); name it once.
            if labels[index] not in reasons:
                reasons.append(labels[index])
        result.append(json.dumps(reasons, ensure_ascii=False))
    return result
