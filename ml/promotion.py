"""Champion/challenger: does a newly trained model replace the champion?"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str


def decide_promotion(challenger_auc: float, validation_month: str, champion_id: str | None,
                     champion_auc: float | None, tolerance: float) -> Promotion:
    """Promote unless the challenger's validation AUC is below the champion's by more than
    ``tolerance`` on the same validation month.

    ``champion_auc`` is the champion's AUC on ``validation_month``, or None when it has no
    out-of-sample figure there (it was trained on that month's labels).
    """
    if champion_id is None:
        return Promotion(True, "first model: no champion yet")
    if champion_auc is None:
        return Promotion(True, f"champion {champion_id} was trained on the labels of validation "
                               f"month {validation_month}, so it has no out-of-sample AUC there; "
                               "the new model replaces it")
    difference = challenger_auc - champion_auc
    figures = (f"validation AUC on {validation_month}: new {challenger_auc:.4f}, champion "
               f"{champion_id} {champion_auc:.4f} (difference {difference:+.4f}, tolerance "
               f"{tolerance:.4f})")
    if difference < -tolerance:
        return Promotion(False, f"champion kept: {figures}")
    return Promotion(True, f"promoted: {figures}")
