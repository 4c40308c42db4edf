"""Tuning LightGBM with Optuna on the validation month, then refitting on every training month.

Every trial trains on the tuning rows and is scored by AUC on the validation rows only: early
stopping, pruning and the choice of the best trial all look at validation AUC, never at the
rows the trial trained on. The refit uses the best trial's parameters and its number of rounds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna

from flows.errors import CreditflowError
from ml.features import FeatureSpec
from ml.params import ModelParams

logger = logging.getLogger(__name__)

# Parameters a trial samples on a log scale.
_LOG_SCALE = {"learning_rate", "lambda_l1", "lambda_l2", "cat_smooth"}
_INTEGER = {"num_leaves", "min_child_samples", "min_data_per_group", "max_depth"}


@dataclass(frozen=True)
class TuningResult:
    """Outcome of the search: the chosen parameters and how they did on validation."""

    params: dict[str, Any]
    best_iteration: int
    validation_auc: float
    best_trial: int
    trials_completed: int
    trials_pruned: int


def dataset_params(params: ModelParams) -> dict[str, Any]:
    # A Dataset reused by trials that vary min_child_samples needs feature_pre_filter off.
    return {"max_bin": int(params.lightgbm["max_bin"]), "feature_pre_filter": False,
            "verbosity": -1, "seed": params.seed}


def fixed_params(params: ModelParams) -> dict[str, Any]:
    """LightGBM parameters shared by every trial and the refit; these make runs repeatable."""
    return {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        "seed": params.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": int(params.lightgbm["num_threads"]),
        "bagging_freq": 1,
        "max_cat_to_onehot": int(params.lightgbm["max_cat_to_onehot"]),
        **dataset_params(params),
    }


def check_monotone_constraints(spec: FeatureSpec, params: ModelParams) -> None:
    """Raise if ``lightgbm.monotone_constraints`` names a column the model cannot constrain.

    A column must be one of the model's numeric features or an excluded column. LightGBM
    4.7 aborts the whole process when a categorical feature has a monotone constraint.
    """
    excluded = set(params.feature_selection["excluded"])
    for name, direction in params.monotone_constraints.items():
        if name in spec.categorical and direction != 0:
            raise CreditflowError(
                f"invalid lightgbm.monotone_constraints.{name} = {direction} in ml/params.yml: "
                f"{name} is categorical, and LightGBM rejects monotone constraints on "
                "categorical features. Remove it from the mapping")
        if name not in spec.features and name not in excluded:
            raise CreditflowError(
                f"invalid lightgbm.monotone_constraints.{name} in ml/params.yml: no feature "
                f"{name} in application_features. Correct the column name or remove it")


def monotone_params(features: list[str], params: ModelParams) -> dict[str, Any]:
    """Return LightGBM's ``monotone_constraints`` list aligned with ``features``.

    Configured columns that are not among ``features`` (left out by feature selection or
    excluded) are skipped. The result is an empty dict when no kept feature is constrained, so
    the trained model file is the same as without the option.
    """
    configured = params.monotone_constraints
    directions = [int(configured.get(name, 0)) for name in features]
    if not any(directions):
        return {}
    constrained = [f"{name} {direction:+d}" for name, direction in zip(features, directions,
                                                                          strict=True)
                   if direction]
    logger.info("monotone constraints on %d of %d features: %s", len(constrained),
                len(features), ", ".join(constrained))
    return {"monotone_constraints": directions}


def make_dataset(matrix: np.ndarray, target: np.ndarray, spec: FeatureSpec, params: ModelParams,
                 reference: lgb.Dataset | None = None) -> lgb.Dataset:
    """Wrap ``matrix`` in a LightGBM Dataset that lets go of it once binned.

    LightGBM bins the rows when the Dataset is first trained on. After that the Dataset keeps
    only the bins, so a row subset passed in here is freed then.
    """
    return lgb.Dataset(matrix, label=target, feature_name=list(spec.features),
                       categorical_feature=spec.categorical or "auto", reference=reference,
                       params=dataset_params(params), free_raw_data=True)


def _suggest(trial: optuna.Trial, space: dict[str, list[float]]) -> dict[str, Any]:
    chosen = {}
    for name, (low, high) in space.items():
        if name in _INTEGER:
            chosen[name] = trial.suggest_int(name, int(low), int(high))
        else:
            chosen[name] = trial.suggest_float(name, float(low), float(high),
                                               log=name in _LOG_SCALE)
    return chosen


class _ReportValidationAuc:
    """LightGBM callback: report each round's validation AUC to Optuna and prune weak trials."""

    order = 40  # after LightGBM's own evaluation

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        for _, metric, value, _ in env.evaluation_result_list:
            if metric == "auc":
                self.trial.report(value, step=env.iteration)
                if self.trial.should_prune():
                    raise optuna.TrialPruned(f"validation AUC {value:.4f} at round {env.iteration}")


def tune(tuning: lgb.Dataset, validation: lgb.Dataset, params: ModelParams) -> TuningResult:
    """Search the parameter space with seeded TPE and median pruning on validation AUC."""
    settings = params.tuning
    # The constraints go into every trial and, through the chosen parameters, into the refit
    # and the model's metadata.
    base = {**fixed_params(params), **monotone_params(list(tuning.feature_name), params)}
    trials = int(settings["trials"])

    def objective(trial: optuna.Trial) -> float:
        trial_params = {**base, **_suggest(trial, settings.get("search_space") or {})}
        booster = lgb.train(
            trial_params, tuning, num_boost_round=int(settings["max_boost_rounds"]),
            valid_sets=[validation], valid_names=["validation"],
            callbacks=[lgb.early_stopping(int(settings["early_stopping_rounds"]), verbose=False),
                       _ReportValidationAuc(trial)],
        )
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        return float(booster.best_score["validation"]["auc"])

    def log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.PRUNED:
            logger.info("trial %d/%d pruned at round %s", trial.number + 1, trials,
                        trial.last_step)
        elif trial.state == optuna.trial.TrialState.COMPLETE:
            logger.info("trial %d/%d: validation AUC %.4f after %d rounds (best so far %.4f)",
                        trial.number + 1, trials, trial.value, trial.user_attrs["best_iteration"],
                        study.best_value)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=params.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=int(settings["pruner_startup_trials"]),
            n_warmup_steps=int(settings["pruner_warmup_rounds"]),
        ),
    )
    study.optimize(objective, n_trials=trials, timeout=settings.get("timeout_seconds"),
                   callbacks=[log_trial], n_jobs=1)
    states = [t.state for t in study.trials]
    completed = states.count(optuna.trial.TrialState.COMPLETE)
    if completed < trials and len(states) < trials:
        logger.warning("tuning stopped by its %s s time budget after %d of %d trials; the "
                       "result depends on machine speed", settings.get("timeout_seconds"),
                       len(states), trials)
    best = study.best_trial
    chosen = {**base, **best.params}
    return TuningResult(
        params=chosen,
        best_iteration=max(1, int(best.user_attrs["best_iteration"])),
        validation_auc=float(best.value),
        best_trial=best.number,
        trials_completed=completed,
        trials_pruned=states.count(optuna.trial.TrialState.PRUNED),
    )


def refit(training: lgb.Dataset, chosen: dict[str, Any], rounds: int) -> lgb.Booster:
    """Train the final model on every training month with the tuned parameters and rounds."""
    return lgb.train(chosen, training, num_boost_round=rounds)


def gain_importance(booster: lgb.Booster) -> dict[str, float]:
    gains = booster.feature_importance(importance_type="gain")
    return {name: float(gain) for name, gain in zip(booster.feature_name(), gains, strict=True)}


def select_features(tuning: lgb.Dataset, validation: lgb.Dataset, spec: FeatureSpec,
                    params: ModelParams) -> tuple[list[str], dict[str, float]]:
    """Rank features by gain of a quick model trained like a trial; keep the configured part.

    Returns the kept features (model order) and every feature's gain. With method ``off`` all
    features are kept and no model is trained.
    """
    check_monotone_constraints(spec, params)
    selection = params.feature_selection
    method = selection["method"]
    if method == "off":
        return list(spec.features), {}
    probe = lgb.train(
        {**fixed_params(params), "learning_rate": 0.05, "num_leaves": 31},
        tuning, num_boost_round=int(params.tuning["max_boost_rounds"]),
        valid_sets=[validation], valid_names=["validation"],
        callbacks=[lgb.early_stopping(int(params.tuning["early_stopping_rounds"]), verbose=False)],
    )
    gains = gain_importance(probe)
    # Largest gain first; equal gains keep model order, so the choice is repeatable.
    ranked = sorted(spec.features, key=lambda name: -gains[name])
    if method == "top_k":
        kept = ranked[: int(selection["top_k"])]
    else:
        total = sum(gains.values())
        kept, running = [], 0.0
        for name in ranked:
            if total > 0 and running >= float(selection["gain_share"]) * total:
                break
            kept.append(name)
            running += gains[name]
    kept_set = set(kept)
    kept = [name for name in spec.features if name in kept_set]
    logger.info("feature selection (%s) kept %d of %d features", method, len(kept),
                len(spec.features))
    return kept, gains
