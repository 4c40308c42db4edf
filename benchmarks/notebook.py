"""The notebook pipeline creditflow replaces, written plainly as it ran each month.

Each month the notebook read every monthly CSV again with pandas and concatenated them. It
filled missing values with -999 and one-hot encoded the text columns. It then tuned LightGBM with
Optuna on a random 20 % holdout, refit on all labeled rows and scored the new month to a CSV
file. The benchmark keeps that code path. It gives the search the same trial count,
boosting-round cap, seed and LightGBM thread count as creditflow's training (``ml/params.yml``
with the benchmark's overrides). The two differ in data handling, model inputs (one-hot columns
against native categorical features) and validation rows (a random holdout against a later month).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from benchmarks.measure import StackSampler, StepTimer
from ml.params import ModelParams

logger = logging.getLogger(__name__)

DATA_STEPS = ("read_csv", "concat", "prepare")
RUN_STEPS = (*DATA_STEPS, "train", "score")
# Search space of the notebook: the numeric LightGBM parameters creditflow also tunes.
_SPACE = ("learning_rate", "num_leaves", "min_child_samples", "feature_fraction",
          "bagging_fraction", "lambda_l1", "lambda_l2")
_LOG_SCALE = {"learning_rate", "lambda_l1", "lambda_l2"}
_INTEGER = {"num_leaves", "min_child_samples"}


def _suggest(trial: optuna.Trial, space: dict[str, list[float]]) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    for name in _SPACE:
        low, high = space[name]
        if name in _INTEGER:
            chosen[name] = trial.suggest_int(name, int(low), int(high))
        else:
            chosen[name] = trial.suggest_float(name, low, high, log=name in _LOG_SCALE)
    return chosen


def run_notebook(files: list[Path], out_csv: Path, params: ModelParams) -> dict[str, Any]:
    """Run the notebook on ``files`` (history first, the month to score last); time each step."""
    tuning = params.tuning
    fixed = {
        "objective": "binary", "metric": "auc", "verbosity": -1, "seed": params.seed,
        "num_threads": int(params.lightgbm["num_threads"]), "bagging_freq": 1,
        "max_bin": int(params.lightgbm["max_bin"]),
    }
    sampler = StackSampler().start()
    timer = StepTimer(sampler)
    started = time.perf_counter()

    with timer.step("read_csv"):
        frames = [pd.read_csv(path) for path in files]
    with timer.step("concat") as record:
        for number, frame in enumerate(frames):
            frame["file_number"] = number
        data = pd.concat(frames, ignore_index=True)
        del frames
        record["rows"] = len(data)
    with timer.step("prepare") as record:
        text_columns = list(data.select_dtypes(include=["object", "str"]).columns)
        # pandas 3 keeps text columns as text: the notebook's -999 goes in as the text "-999".
        data[text_columns] = data[text_columns].fillna("-999")
        data = data.fillna(-999)
        data = pd.get_dummies(data, columns=text_columns, dtype=np.uint8)
        # LightGBM rejects feature names with JSON characters such as ',' and ':'.
        data.columns = [re.sub(r"[^0-9A-Za-z_]+", "_", str(name)) for name in data.columns]
        record["columns"] = data.shape[1]

    with timer.step("train") as record:
        new_month = data["file_number"] == len(files) - 1
        features = [name for name in data.columns
                    if name not in ("SK_ID_CURR", "TARGET", "file_number")]
        labeled = data.loc[~new_month]
        x, y = labeled[features], labeled["TARGET"].astype(int)
        x_train, x_valid, y_train, y_valid = train_test_split(
            x, y, test_size=0.2, stratify=y, random_state=params.seed)

        def objective(trial: optuna.Trial) -> float:
            model = lgb.train(
                {**fixed, **_suggest(trial, tuning["search_space"])},
                lgb.Dataset(x_train, y_train), num_boost_round=int(tuning["max_boost_rounds"]),
                valid_sets=[lgb.Dataset(x_valid, y_valid)],
                callbacks=[lgb.early_stopping(int(tuning["early_stopping_rounds"]),
                                              verbose=False)])
            trial.set_user_attr("best_iteration", max(1, int(model.best_iteration)))
            return roc_auc_score(y_valid, model.predict(x_valid,
                                                        num_iteration=model.best_iteration))

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=params.seed))
        study.optimize(objective, n_trials=int(tuning["trials"]))
        best = study.best_trial
        model = lgb.train({**fixed, **best.params}, lgb.Dataset(x, y),
                          num_boost_round=best.user_attrs["best_iteration"])
        record.update(validation_auc=float(best.value), training_rows=len(labeled),
                      features=len(features))

    with timer.step("score") as record:
        scored = data.loc[new_month]
        probability = model.predict(scored[features])
        decision = np.select(
            [probability < params.decision["approve_below"],
             probability >= params.decision["decline_from"]],
            ["approve", "decline"], default="review")
        pd.DataFrame({"SK_ID_CURR": scored["SK_ID_CURR"], "default_probability": probability,
                      "decision": decision}).to_csv(out_csv, index=False)
        record["rows"] = len(scored)
        if scored["TARGET"].isin([0, 1]).all() and scored["TARGET"].nunique() == 2:
            record["auc"] = float(roc_auc_score(scored["TARGET"], probability))

    whole = time.perf_counter() - started
    sampler.stop()
    result = timer.result()
    result["whole_seconds"] = whole
    return result
