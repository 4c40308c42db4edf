"""Reason codes: the features that raised an application's default probability most.

Contributions come from LightGBM itself (``pred_contrib``, SHAP values in log-odds). A reason is
a feature with a positive contribution, named by the business term in ``ml/params.yml``.
"""

from __future__ import annotations

import json
import os

import lightgbm as lgb
import numpy as np


def business_name(feature: str, names: dict[str, str]) -> str:
    """Return the business term of a feature, or its column name as words when none is set."""
    if feature in names:
        return names[feature]
    words = feature.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def prediction_threads() -> int:
    """Return the number of CPU cores this process may run on, the thread count of prediction.

    LightGBM predicts and explains each row on its own, so the result does not depend on the
    thread count. Training keeps its own fixed count (``lightgbm.num_threads``).
    """
    return max(1, len(os.sched_getaffinity(0)))


def reason_codes(booster: lgb.Booster, matrix: np.ndarray, names: dict[str, str],
                 top_n: int = 3, chunk_rows: int = 50_000,
                 num_threads: int | None = None) -> list[str]:
    """Return, per row, a JSON array of up to ``top_n`` business-term reasons.

    Rows are explained ``chunk_rows`` at a time, which bounds the memory of the contribution
    matrix (rows x features doubles) on a full month. ``num_threads`` defaults to
    :func:`prediction_threads`.
    """
    features = booster.feature_name()
    labels = [business_name(name, names) for name in features]
    threads = num_threads or prediction_threads()
    result: list[str] = []
    for start in range(0, len(matrix), chunk_rows):
        result.extend(_explain_rows(booster, matrix[start:start + chunk_rows], labels, top_n,
                                    threads))
    return result


def _explain_rows(booster: lgb.Booster, matrix: np.ndarray, labels: list[str], top_n: int,
                  num_threads: int) -> list[str]:
    if len(matrix) == 0:
        return []
    # The last column of pred_contrib is the expected value (bias), not a feature.
    contributions = np.asarray(
        booster.predict(matrix, pred_contrib=True, num_threads=num_threads))[:, :-1]
    candidates = min(len(labels), max(top_n * 2, top_n + 2))
    # Largest contribution first; ties keep feature order so the result is repeatable.
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :candidates]
    ranked = np.take_along_axis(contributions, order, axis=1)

    # Two features may share a business term (age in days and in years); name it once.
    terms = sorted(set(labels))
    term_of_feature = np.array([terms.index(label) for label in labels], dtype=np.int64)
    ranked_terms = term_of_feature[order]
    repeated = np.zeros(ranked_terms.shape, dtype=bool)
    for position in range(1, candidates):
        repeated[:, position] = (ranked_terms[:, :position]
                                 == ranked_terms[:, position:position + 1]).any(axis=1)
    # Contributions are in descending order, so the positive ones come first in each row.
    usable = (ranked > 0) & ~repeated
    chosen = usable & (np.cumsum(usable, axis=1) <= top_n)

    # Each row's chosen term ids in rank order, -1 after the last; equal rows share one text.
    chosen_terms = np.full((len(matrix), top_n), -1, dtype=np.int64)
    rows, positions = np.nonzero(chosen)
    slots = np.cumsum(chosen, axis=1)[rows, positions] - 1
    chosen_terms[rows, slots] = ranked_terms[rows, positions]
    unique_rows, inverse = np.unique(chosen_terms, axis=0, return_inverse=True)
    texts = [json.dumps([terms[term] for term in row if term >= 0], ensure_ascii=False)
             for row in unique_rows]
    return [texts[index] for index in inverse.reshape(-1)]
