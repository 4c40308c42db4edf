"""Decisions from default probabilities, and the metrics used to judge a model."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

APPROVE, REVIEW, DECLINE = "approve", "review", "decline"
DECISIONS = (APPROVE, REVIEW, DECLINE)


def decide(probability: np.ndarray, approve_below: float, decline_from: float) -> np.ndarray:
    """Approve below ``approve_below``, decline at or above ``decline_from``, review between."""
    probability = np.asarray(probability, dtype=np.float64)
    decisions = np.full(probability.shape, REVIEW, dtype=object)
    decisions[probability < approve_below] = APPROVE
    decisions[probability >= decline_from] = DECLINE
    return decisions


def decision_counts(decisions: np.ndarray) -> dict[str, int]:
    return {name: int(np.count_nonzero(decisions == name)) for name in DECISIONS}


def auc(target: np.ndarray, probability: np.ndarray) -> float | None:
    """Return the ROC AUC, or None when the rows hold a single class."""
    target = np.asarray(target)
    if len(np.unique(target)) < 2:
        return None
    return float(roc_auc_score(target, probability))


def recall_at(target: np.ndarray, probability: np.ndarray, cutoff: float) -> float | None:
    """Return the share of defaulted applications whose probability is at or above ``cutoff``.

    With ``cutoff`` = the policy's ``approve_below``, this is the share of defaults the policy
    does not approve automatically. None when there is no default among the rows.
    """
    target = np.asarray(target)
    positives = target == 1
    if not positives.any():
        return None
    return float(np.mean(np.asarray(probability)[positives] >= cutoff))
