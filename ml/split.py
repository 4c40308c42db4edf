"""Which months train and which month validates a model for score month M.

Training uses every labeled month before M. Validation is out of time: the latest labeled
calendar month before M, or an earlier one by ``validation.offset``; with ``validation.months``
above 1, that many consecutive labeled calendar months are pooled (fewer when fewer exist), so
tuning reads its AUC off more rows. Tuning trains on the labeled months before the earliest
validation month and early-stops on the validation rows. When no calendar month can
validate (history alone precedes M), a seeded stratified holdout of the training rows validates
instead, and the plan records that it is not out of time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from flows.errors import CreditflowError
from flows.months import HISTORY, month_sort_key


@dataclass(frozen=True)
class SplitPlan:
    """Months of one training run."""

    score_month: str
    training_months: tuple[str, ...]
    validation_month: str
    tuning_months: tuple[str, ...]
    out_of_time: bool
    # The calendar months whose rows validate; empty for a holdout of the training rows.
    # validation_month names them joined by "+".
    validation_months: tuple[str, ...] = ()


def plan_split(labeled_months: list[str], all_months: list[str], score_month: str,
               offset: int = 1, months: int = 1) -> SplitPlan:
    """Plan the split for ``score_month`` from the months that hold labeled rows.

    ``months`` is the number of labeled calendar months pooled for validation, ending with the
    ``offset``-th latest; fewer are pooled when fewer exist or when pooling them all would leave
    no older labeled month to tune on. Raises CreditflowError naming the score month when no
    labeled month precedes it.
    """
    if score_month == HISTORY:
        raise CreditflowError(
            "cannot train a model to score 'history': it is the first data there is; "
            "pass a calendar month (YYYY-MM) after it"
        )
    key = month_sort_key(score_month)
    before = sorted((m for m in labeled_months if month_sort_key(m) < key), key=month_sort_key)
    if not before:
        earlier = sorted((m for m in all_months if month_sort_key(m) < key), key=month_sort_key)
        found = ", ".join(earlier) if earlier else "none"
        raise CreditflowError(
            f"no labeled applications before score month {score_month} (months before it in "
            f"application_features: {found}): ingest labeled history (initial.csv) or earlier "
            "monthly files with TARGET, run creditflow build, then train again"
        )
    calendar = [m for m in before if m != HISTORY]
    if len(calendar) >= offset:
        last = len(calendar) - offset
        # Pool fewer months when pooling all of them would leave nothing older to tune on.
        for count in range(min(months, last + 1), 0, -1):
            validation = tuple(calendar[last - count + 1: last + 1])
            tuning = tuple(m for m in before if month_sort_key(m) < month_sort_key(validation[0]))
            if tuning:
                return SplitPlan(score_month, tuple(before), "+".join(validation), tuning,
                                 out_of_time=True, validation_months=validation)
    # Nothing older than a usable validation month: hold out part of what there is.
    return SplitPlan(score_month, tuple(before), "+".join(before), tuple(before), out_of_time=False)


def holdout_indices(target: np.ndarray, fraction: float, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Return (tuning rows, validation rows) of a seeded split that keeps the default rate."""
    positions = np.arange(len(target))
    tuning, validation = train_test_split(positions, test_size=fraction, random_state=seed,
                                          stratify=target)
    return np.sort(tuning), np.sort(validation)
