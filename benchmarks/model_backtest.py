"""Choose the model's configuration on backtests that end before the test month.

The model-quality benchmark reports the realized AUC on 2021-01 (``model_quality.TEST_MONTH``).
Choosing features or tuning settings by that figure would tune on the test month, so every
design choice is judged here instead, on backtests whose score month comes before it:

- score months 2020-11 and 2020-12; for each, ``train_month`` trains on the labeled months
  before it and validates on the latest labeled month before it (or the pooled months of the
  ``validation.months`` setting), exactly as in production;
- the realized AUC of that model on the score month's labels is the figure that counts;
- the baseline is the configuration before this comparison. It is written out in ``BASELINE``,
  so the protocol stays the same after ``ml/params.yml`` changes. Each candidate changes one
  thing;
- a candidate is kept when its mean realized AUC over the backtest months beats the baseline's
  by at least ``KEEP_MARGIN`` and it is lower on no backtest month; of the alternatives within
  one family (for example the feature-selection sizes), the best kept one is taken;
- the kept candidates of all families are then combined and backtested once more. The
  combination is chosen when it also beats the baseline by ``KEEP_MARGIN``; otherwise the best
  single kept candidate is, and the baseline when nothing was kept.

Families are tried one at a time against the baseline, so interactions between them are only
seen in the final combination.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from flows.config import Settings
from flows.sample_split import REAL_MONTHS
from ml.params import ModelParams, load_params

logger = logging.getLogger(__name__)

BACKTEST_MONTHS = ["2020-11", "2020-12"]
KEEP_MARGIN = 0.003

# Engineered features added to the feature mart as candidates; the baseline leaves them out.
# Two common Home Credit features are not candidates. The credit term amt_credit / amt_annuity
# is the reciprocal of annuity_credit_ratio, which gives a tree the same splits. The usual
# weights of the weighted external score were fitted on the full Home Credit training file,
# which contains this sample's rows and labels.
NEW_FEATURES = ["income_per_family_member", "credit_goods_difference", "id_publish_age_ratio",
                "phone_change_age_ratio", "ext_source_2_3_product"]
SENSITIVE = ["code_gender", "is_code_gender_xna"]

# The search space of the baseline configuration.
BASELINE_SPACE = {
    "learning_rate": [0.01, 0.15],
    "num_leaves": [4, 64],
    "min_child_samples": [10, 200],
    "feature_fraction": [0.4, 1.0],
    "bagging_fraction": [0.5, 1.0],
    "lambda_l1": [0.001, 10.0],
    "lambda_l2": [0.001, 10.0],
    "min_data_per_group": [20, 200],
    "cat_smooth": [1.0, 50.0],
}
# Smaller trees, more rows per leaf, slower learning and stronger L2: less room to fit the noise
# of a validation month of 1,000 rows and about 80 defaults.
CONSERVATIVE_SPACE = {
    "learning_rate": [0.005, 0.05],
    "num_leaves": [4, 16],
    "min_child_samples": [50, 300],
    "feature_fraction": [0.3, 0.8],
    "bagging_fraction": [0.5, 0.9],
    "lambda_l1": [0.01, 10.0],
    "lambda_l2": [0.1, 30.0],
    "min_data_per_group": [50, 300],
    "cat_smooth": [5.0, 100.0],
}

# A higher external credit score means a lower default rate: on the labeled rows before the
# first backtest month (history and 2020-10), each of these features has a negative Spearman
# correlation with the target. So the default probability may only fall as they grow.
EXT_SOURCE_MONOTONE = {name: -1 for name in (
    "ext_source_1", "ext_source_2", "ext_source_3", "ext_source_mean", "ext_source_min",
    "ext_source_max", "ext_source_product")}
# LightGBM's default max_depth is -1, which means no limit. Here every trial samples a depth.
DEPTH_CAP_SPACE = {**BASELINE_SPACE, "max_depth": [3, 8]}

BASELINE: dict[str, dict[str, Any]] = {
    "validation": {"offset": 1, "months": 1},
    "tuning": {"search_space": BASELINE_SPACE},
    "lightgbm": {"monotone_constraints": {}},
    "feature_selection": {"method": "top_k", "top_k": 40, "gain_share": 0.95,
                          "excluded": [*SENSITIVE, *NEW_FEATURES]},
}


@dataclass(frozen=True)
class Candidate:
    """One change to the baseline; candidates of the same family are alternatives."""

    name: str
    family: str
    description: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


CANDIDATES = [
    Candidate("new_features", "features",
              "add income per family member, credit minus goods price, document and phone "
              "change age ratios, ext_source_2 x ext_source_3",
              {"feature_selection": {"excluded": SENSITIVE}}),
    Candidate("conservative_space", "search_space",
              "search space of smaller trees, larger leaves, lower learning rates",
              {"tuning": {"search_space": CONSERVATIVE_SPACE}}),
    Candidate("smoothed_space", "search_space",
              "baseline search space plus path_smooth, which shrinks leaf values of small "
              "leaves toward their parent",
              {"tuning": {"search_space": {**BASELINE_SPACE, "path_smooth": [0.0, 50.0]}}}),
    Candidate("fewer_trials", "tuning_budget",
              "10 Optuna trials instead of 30, so the search overfits the validation month less",
              {"tuning": {"trials": 10}}),
    Candidate("pooled_validation", "validation",
              "validate on the two latest labeled months pooled",
              {"validation": {"months": 2}}),
    Candidate("selection_off", "selection", "keep every feature",
              {"feature_selection": {"method": "off"}}),
    Candidate("top_k_20", "selection", "keep the 20 features of largest gain",
              {"feature_selection": {"top_k": 20}}),
    Candidate("top_k_60", "selection", "keep the 60 features of largest gain",
              {"feature_selection": {"top_k": 60}}),
    Candidate("gain_share_90", "selection",
              "keep the fewest features that carry 90 % of the gain",
              {"feature_selection": {"method": "gain_share", "gain_share": 0.9}}),
    Candidate("monotone_ext_source", "monotone",
              "default probability non-increasing in ext_source_1/2/3 and their mean, min, "
              "max and product",
              {"lightgbm": {"monotone_constraints": EXT_SOURCE_MONOTONE}}),
    # Its own family, not search_space, so that it is combined with the monotone candidate
    # when both are kept.
    Candidate("depth_cap", "depth", "baseline search space plus max_depth sampled in [3, 8]",
              {"tuning": {"search_space": DEPTH_CAP_SPACE}}),
]


def merge_overrides(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge override layers section by section; a later layer wins key by key."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(copy.deepcopy(values))
    return merged


def candidate_params(base: ModelParams, candidate: Candidate | None) -> ModelParams:
    """Return the baseline configuration on top of ``base``, changed by ``candidate``."""
    layers = [BASELINE] + ([candidate.overrides] if candidate else [])
    return base.with_overrides(**merge_overrides(*layers))


def summarize(name: str, family: str, description: str, runs: dict[str, dict[str, Any]]
              ) -> dict[str, Any]:
    """Return one backtest table row from the per-month runs of one configuration."""
    target = np.concatenate([runs[month]["target"] for month in runs])
    probability = np.concatenate([runs[month]["probability"] for month in runs])
    auc = {month: runs[month]["auc"] for month in runs}
    return {
        "name": name,
        "family": family,
        "description": description,
        "auc": auc,
        "mean_auc": float(np.mean(list(auc.values()))),
        # Both months' rows in one AUC; it mixes two models, so it is a cross-check only.
        "pooled_auc": float(roc_auc_score(target, probability)),
        "validation_month": {month: runs[month]["validation_month"] for month in runs},
        "validation_auc": {month: runs[month]["validation_auc"] for month in runs},
        "features": {month: runs[month]["features"] for month in runs},
    }


def is_kept(row: dict[str, Any], baseline: dict[str, Any], margin: float = KEEP_MARGIN) -> bool:
    """Return whether ``row`` beats the baseline by ``margin`` on average and on no month loses."""
    if row["mean_auc"] - baseline["mean_auc"] < margin:
        return False
    return all(row["auc"][month] >= baseline["auc"][month] for month in baseline["auc"])


def kept_candidates(rows: list[dict[str, Any]], baseline: dict[str, Any],
                    margin: float = KEEP_MARGIN) -> list[dict[str, Any]]:
    """Return the best kept row of each family, in the order the families first appear."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not is_kept(row, baseline, margin):
            continue
        current = best.get(row["family"])
        if current is None or row["mean_auc"] > current["mean_auc"]:
            best[row["family"]] = row
    return list(best.values())


def choose(baseline: dict[str, Any], kept: list[dict[str, Any]],
           combined: dict[str, Any] | None, margin: float = KEEP_MARGIN) -> dict[str, Any]:
    """Return the chosen row: the combination, else the best single kept row, else baseline."""
    if combined is not None and combined["mean_auc"] - baseline["mean_auc"] >= margin:
        return combined
    if kept:
        return max(kept, key=lambda row: row["mean_auc"])
    return baseline


def notebook_backtest(files: list[Path], months: list[str], trials: int = 10
                      ) -> dict[str, float]:
    """Return the notebook recipe's realized AUC per backtest month, for reference only.

    ``files`` are the real sample's files in the order of ``REAL_SPLIT``; the recipe trains on
    the files before the score month's file.
    """
    from benchmarks.model_quality import notebook_recipe

    frames = [pd.read_csv(path) for path in files]
    realized = {}
    for month in months:
        position = REAL_MONTHS.index(month) + 1
        training = pd.concat(frames[:position], ignore_index=True)
        realized[month] = notebook_recipe(training, frames[position], trials=trials)["auc"]
        logger.info("backtest notebook recipe, score month %s: realized AUC %.4f", month,
                    realized[month])
    return realized


def run_backtest(settings: Settings, trials: int | None = None,
                 candidates: list[Candidate] | None = None,
                 months: list[str] | None = None,
                 files: list[Path] | None = None) -> dict[str, Any]:
    """Backtest the baseline, each candidate and the combination of the kept ones.

    ``settings`` must point at a warehouse whose features are built for the real sample. With
    ``files`` (the sample's files), the notebook recipe is backtested too, as a reference that
    takes no part in the choice.
    """
    from benchmarks.model_quality import creditflow_model

    base = load_params()
    if trials is not None:
        base = base.with_overrides(tuning={"trials": trials})
    candidates = CANDIDATES if candidates is None else candidates
    months = months or BACKTEST_MONTHS

    def backtest(candidate: Candidate | None) -> dict[str, dict[str, Any]]:
        params = candidate_params(base, candidate)
        runs = {}
        for month in months:
            runs[month] = creditflow_model(settings, month, params=params)
            logger.info("backtest %s, score month %s: realized AUC %.4f (validation %s AUC "
                        "%.4f)", candidate.name if candidate else "baseline", month,
                        runs[month]["auc"], runs[month]["validation_month"],
                        runs[month]["validation_auc"])
        return runs

    baseline = summarize("baseline", "baseline", "configuration before this comparison",
                         backtest(None))
    rows = [summarize(c.name, c.family, c.description, backtest(c)) for c in candidates]
    kept = kept_candidates(rows, baseline)
    by_name = {c.name: c for c in candidates}
    kept_overrides = merge_overrides(*(by_name[row["name"]].overrides for row in kept))
    combined = None
    if len(kept) > 1:
        combination = Candidate("+".join(row["name"] for row in kept), "combination",
                                "the kept candidates together", kept_overrides)
        combined = summarize(combination.name, combination.family, combination.description,
                             backtest(combination))
        rows.append(combined)
    chosen = choose(baseline, kept, combined)
    if combined is not None and chosen is combined:
        chosen_overrides = kept_overrides
    elif chosen is baseline:
        chosen_overrides = {}
    else:
        chosen_overrides = by_name[chosen["name"]].overrides
    notebook = notebook_backtest(files, months) if files else None
    return {
        "protocol": __doc__.strip(),
        "notebook_auc": notebook,
        "score_months": months,
        "keep_margin": KEEP_MARGIN,
        "trials": int(base.tuning["trials"]),
        "baseline": BASELINE,
        "rows": [baseline, *rows],
        "kept": [row["name"] for row in kept],
        "chosen": chosen["name"],
        "chosen_overrides": merge_overrides(BASELINE, chosen_overrides),
    }


def format_table(backtest: dict[str, Any]) -> str:
    """Return the backtest rows as a Markdown table of realized AUC per score month."""
    months = backtest["score_months"]
    lines = ["| configuration | " + " | ".join(f"AUC {m}" for m in months)
             + " | mean | validation AUC |",
             "|---" * (len(months) + 3) + "|"]
    for row in backtest["rows"]:
        validation = ", ".join(f"{row['validation_auc'][m]:.3f}" for m in months)
        lines.append(f"| {row['name']} | "
                     + " | ".join(f"{row['auc'][m]:.3f}" for m in months)
                     + f" | {row['mean_auc']:.3f} | {validation} |")
    notebook = backtest.get("notebook_auc")
    if notebook:
        mean = float(np.mean([notebook[m] for m in months]))
        lines.append("| notebook recipe (reference) | "
                     + " | ".join(f"{notebook[m]:.3f}" for m in months)
                     + f" | {mean:.3f} | |")
    return "\n".join(lines)
