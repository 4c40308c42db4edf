"""The model's monthly operations: train for a month, score a month, export, read the registry.

These functions are what the CLI, the monthly flow and the API call. They read and write through
:mod:`ml.store` and leave the modelling itself to the pure modules (features, split, training,
explain, policy, promotion).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from flows.config import Settings
from flows.errors import CreditflowError
from flows.months import month_sort_key, parse_month
from ml import store
from ml.explain import reason_codes
from ml.features import (
    ID_COLUMN,
    MONTH_COLUMN,
    TARGET_COLUMN,
    FeatureSpec,
    build_spec,
    missing_columns,
    split_columns,
    to_matrix,
)
from ml.params import ModelParams, load_params
from ml.policy import auc, decide, decision_counts
from ml.promotion import decide_promotion
from ml.split import SplitPlan, holdout_indices, plan_split
from ml.training import gain_importance, make_dataset, refit, select_features, tune

logger = logging.getLogger(__name__)

CHAMPION, CHALLENGER, RETIRED = "champion", "challenger", "retired"
# Characters of the model file's SHA-256 that form the model id.
MODEL_ID_LENGTH = 16


@dataclass(frozen=True)
class TrainOutcome:
    model_id: str
    promoted: bool
    reason: str
    validation_month: str
    validation_auc: float
    training_months: list[str]
    out_of_time: bool = True
    artifact_path: str = ""


@dataclass(frozen=True)
class ScoreOutcome:
    month: str
    rows: int
    model_id: str
    decision_counts: dict[str, int]
    auc: float | None
    unseen_categories: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportOutcome:
    csv_path: Path
    parquet_path: Path
    rows: int


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    booster: lgb.Booster
    spec: FeatureSpec
    metadata: dict[str, Any]


def _month(text: str) -> str:
    try:
        return parse_month(text)
    except ValueError as error:
        raise CreditflowError(str(error)) from error


def _params(params: ModelParams | None, trials: int | None = None) -> ModelParams:
    params = params or load_params()
    if trials is not None:
        if trials < 1:
            raise CreditflowError(f"invalid number of trials {trials}: pass 1 or more")
        params = params.with_overrides(tuning={"trials": trials})
    return params


def _model_columns(settings: Settings, params: ModelParams) -> tuple[list[str], list[str]]:
    """Return the feature table's features and categorical features, less the excluded ones."""
    features, categorical = split_columns(store.feature_columns(settings))
    excluded = set(params.feature_selection["excluded"])
    return ([name for name in features if name not in excluded],
            [name for name in categorical if name not in excluded])


# --- training -------------------------------------------------------------------------------

def train_month(settings: Settings, month: str, trials: int | None = None,
                params: ModelParams | None = None) -> TrainOutcome:
    """Tune, refit and register a model to score ``month``; promote it if it is not worse."""
    params = _params(params, trials)
    month = _month(month)
    features, categorical = _model_columns(settings, params)
    if not features:
        raise CreditflowError(f"table {store.FEATURE_TABLE} has no feature columns besides "
                              "sk_id_curr, month and target: check the dbt feature mart")

    inventory = store.month_inventory(settings)
    _require_month_rows(inventory, month)
    labeled = inventory.loc[inventory["labeled"] > 0, "month"].tolist()
    plan = plan_split(labeled, inventory["month"].tolist(), month, params.validation["offset"],
                      params.validation["months"])
    unlabeled = [m for m in inventory["month"]
                 if m not in labeled and month_sort_key(m) < month_sort_key(month)]
    if unlabeled:
        logger.info("months before %s without labels, left out of training: %s", month,
                    ", ".join(unlabeled))

    # Memory: at 10 months of history the training rows are 3 million x 140 columns, so they
    # are read as float32 and category codes, and a LightGBM Dataset frees its row subset once
    # binned (see make_dataset). Scoring encodes float32 too, so a value near a tree
    # threshold falls on the side the model was fit with.
    frame = store.read_features(settings, list(plan.training_months), labeled_only=True,
                                text_as_category=True, numbers_as_float32=True)
    target = frame[TARGET_COLUMN].to_numpy(dtype=np.int64)
    _require_two_classes(target, f"training months {', '.join(plan.training_months)}", month)
    spec = build_spec(frame, features, categorical)
    tuning_rows, validation_rows = _split_rows(frame, target, plan, params)
    training_rows = len(frame)
    fingerprint = _fingerprint(frame)
    validation_frame = frame.iloc[validation_rows].reset_index(drop=True)
    matrix, _ = to_matrix(frame, spec, dtype=np.float32)
    del frame
    logger.info("training for %s on %s (%d rows, %d defaults); validation %s%s (%d rows)",
                month, ", ".join(plan.training_months), training_rows, int(target.sum()),
                plan.validation_month, "" if plan.out_of_time else " holdout, not out of time",
                len(validation_rows))

    kept, selection_gains = select_features(
        make_dataset(matrix[tuning_rows], target[tuning_rows], spec, params),
        make_dataset(matrix[validation_rows], target[validation_rows], spec, params),
        spec, params)
    if len(kept) < len(spec.features):
        positions = [spec.features.index(name) for name in kept]
        spec, matrix = spec.subset(kept), matrix[:, positions]

    tuning_set = make_dataset(matrix[tuning_rows], target[tuning_rows], spec, params)
    validation_set = make_dataset(matrix[validation_rows], target[validation_rows], spec, params,
                                  reference=tuning_set)
    result = tune(tuning_set, validation_set, params)
    del tuning_set, validation_set
    booster = refit(make_dataset(matrix, target, spec, params), result.params,
                    result.best_iteration)
    del matrix
    model_text = booster.model_to_string()
    digest = hashlib.sha256(model_text.encode("utf-8")).hexdigest()
    model_id = digest[:MODEL_ID_LENGTH]

    metrics = {
        "validation_auc": result.validation_auc,
        "validation_rows": int(len(validation_rows)),
        "validation_defaults": int(target[validation_rows].sum()),
        "out_of_time": plan.out_of_time,
        "training_rows": int(training_rows),
        "training_defaults": int(target.sum()),
        "best_iteration": result.best_iteration,
        "best_trial": result.best_trial,
        "trials_completed": result.trials_completed,
        "trials_pruned": result.trials_pruned,
    }
    gains = gain_importance(booster)
    metadata = {
        "model_id": model_id,
        "model_sha256": digest,
        "score_month": month,
        "training_months": list(plan.training_months),
        "tuning_months": list(plan.tuning_months),
        "validation_month": plan.validation_month,
        "out_of_time": plan.out_of_time,
        **spec.to_dict(),
        "params": result.params,
        "best_iteration": result.best_iteration,
        "metrics": metrics,
        "feature_selection": {"method": params.feature_selection["method"],
                              "kept": list(spec.features), "gain": selection_gains},
        "data_fingerprint": fingerprint,
        "params_file": params.source_text,
        "lightgbm_version": lgb.__version__,
    }
    model_path = store.save_artifacts(settings, model_id, model_text, metadata)
    logger.info("model %s saved to %s (validation AUC %.4f on %s)", model_id, model_path,
                result.validation_auc, plan.validation_month)

    champion_row = store.champion_record(settings)
    if champion_row is not None and champion_row["model_id"] == model_id:
        reason = (f"model {model_id} is already the champion: same data and parameters gave "
                  "the same model file")
        logger.info(reason)
        return _outcome(model_id, True, reason, plan, result.validation_auc, model_path)
    champion_auc = None
    if champion_row is not None:
        champion_auc = _champion_auc(settings, champion_row, plan, validation_frame,
                                     target[validation_rows])
    promotion = decide_promotion(result.validation_auc, plan.validation_month,
                                 champion_row["model_id"] if champion_row else None,
                                 champion_auc, params.auc_tolerance)
    status = CHAMPION if promotion.promoted else CHALLENGER
    if store.model_record(settings, model_id) is not None:
        store.set_status(settings, model_id, status, promotion.reason,
                         retire_champion=promotion.promoted)
    else:
        record = {
            "model_id": model_id,
            "trained_at": store.now(),
            "score_month": month,
            "training_months": json.dumps(list(plan.training_months)),
            "validation_month": plan.validation_month,
            "params": json.dumps(result.params, sort_keys=True),
            "features": json.dumps(list(spec.features)),
            "metrics": json.dumps(metrics, sort_keys=True),
            "data_fingerprint": fingerprint,
            "status": status,
            "artifact_path": str(model_path.relative_to(settings.home)),
            "artifact_sha256": digest,
            "note": promotion.reason,
        }
        store.register_model(settings, record, gains, spec.categorical, promotion.promoted)
    if promotion.promoted:
        logger.info("model %s is the champion: %s", model_id, promotion.reason)
    else:
        logger.warning("model %s stays a challenger: %s", model_id, promotion.reason)
    return _outcome(model_id, promotion.promoted, promotion.reason, plan, result.validation_auc,
                    model_path)


def _outcome(model_id: str, promoted: bool, reason: str, plan: SplitPlan, validation_auc: float,
             path: Path) -> TrainOutcome:
    return TrainOutcome(model_id=model_id, promoted=promoted, reason=reason,
                        validation_month=plan.validation_month, validation_auc=validation_auc,
                        training_months=list(plan.training_months), out_of_time=plan.out_of_time,
                        artifact_path=str(path))


def _require_month_rows(inventory: pd.DataFrame, month: str) -> None:
    """Raise when the feature table has no applications of ``month``.

    A mistyped month would otherwise train on whatever months precede it, and a model trained
    that way could replace the champion.
    """
    if month in set(inventory["month"]):
        return
    present = sorted(inventory["month"], key=month_sort_key)
    found = f"{present[0]} to {present[-1]}" if present else "none"
    raise CreditflowError(
        f"no applications of score month {month} in {store.FEATURE_TABLE} (months there: "
        f"{found}): check the month, or ingest its file and build the features first "
        "(creditflow ingest YYYYMMDD.csv, creditflow build)")


def _require_two_classes(target: np.ndarray, what: str, month: str) -> None:
    classes = np.unique(target)
    if len(classes) < 2:
        only = int(classes[0]) if len(classes) else "none"
        raise CreditflowError(
            f"{what} (used to train for {month}) contain a single class: every labeled "
            f"application has target = {only} ({len(target)} rows). A model needs defaults and "
            "non-defaults: check the TARGET column of those files, or ingest more labeled months"
        )


def _split_rows(frame: pd.DataFrame, target: np.ndarray, plan: SplitPlan,
                params: ModelParams) -> tuple[np.ndarray, np.ndarray]:
    if plan.out_of_time:
        months = frame["month"].to_numpy()
        tuning = np.flatnonzero(np.isin(months, list(plan.tuning_months)))
        validation = np.flatnonzero(np.isin(months, list(plan.validation_months)))
        _require_two_classes(target[tuning], f"tuning months {', '.join(plan.tuning_months)}",
                             plan.score_month)
        _require_two_classes(target[validation], f"validation month {plan.validation_month}",
                             plan.score_month)
        return tuning, validation
    logger.warning("no labeled calendar month before %s can validate out of time; validating "
                   "on a seeded stratified %.0f%% holdout of %s instead", plan.score_month,
                   100 * params.validation["history_holdout_fraction"],
                   ", ".join(plan.training_months))
    if np.bincount(target).min() < 2:
        raise CreditflowError(
            f"too few defaults or non-defaults in {', '.join(plan.training_months)} to hold "
            f"out a validation part for {plan.score_month}: ingest more labeled data"
        )
    return holdout_indices(target, params.validation["history_holdout_fraction"], params.seed)


def _fingerprint(frame: pd.DataFrame) -> str:
    """Return a SHA-256 of the training rows and column names, independent of memory layout."""
    digest = hashlib.sha256("\x1f".join(frame.columns).encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _champion_auc(settings: Settings, champion_row: dict[str, Any], plan: SplitPlan,
                  rows: pd.DataFrame, target: np.ndarray) -> float | None:
    """Return the champion's out-of-sample AUC on the validation ``rows``, if it has one."""
    # NOTE: the challenger's figure is its best round on the validation month (early stopping
    # chose it there), while a champion scored here uses its fixed rounds, which favors the
    # challenger slightly. The tolerance should cover that gap.
    champion_id = champion_row["model_id"]
    recorded = json.loads(champion_row["metrics"] or "{}")
    if champion_row["validation_month"] == plan.validation_month:
        return recorded.get("validation_auc")
    champion_months = set(json.loads(champion_row["training_months"]))
    if not plan.out_of_time or champion_months & set(plan.validation_months):
        return None
    model = load_model(settings, champion_row)
    absent = missing_columns(rows, model.spec)
    if absent:
        logger.warning("champion %s needs columns the feature table no longer has (%s); it "
                       "cannot be compared", champion_id, ", ".join(absent))
        return None
    matrix, _ = to_matrix(rows, model.spec, dtype=np.float32)
    value = auc(target, model.booster.predict(matrix))
    logger.info("champion %s: AUC %.4f on validation month %s", champion_id, value,
                plan.validation_month)
    return value


# --- loading a model ------------------------------------------------------------------------

def load_model(settings: Settings, record: dict[str, Any]) -> LoadedModel:
    """Load a registered model's file and metadata, checking the file against its SHA-256."""
    model_id = record["model_id"]
    path = Path(record["artifact_path"])
    if not path.is_absolute():
        path = settings.home / path
    retrain = (f"restore the folder {path.parent} from a backup, or train a new model "
               "(creditflow train --month YYYY-MM)")
    try:
        model_bytes, metadata = store.read_artifacts(path)
    except FileNotFoundError as error:
        raise CreditflowError(f"model {model_id}: file {error.filename} not found: "
                              f"{retrain}") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise CreditflowError(f"model {model_id}: metadata.json next to {path} is corrupted "
                              f"({error}): {retrain}") from error
    if hashlib.sha256(model_bytes).hexdigest() != record["artifact_sha256"]:
        raise CreditflowError(f"model {model_id}: file {path} is corrupted (its SHA-256 differs "
                              f"from the registry's): {retrain}")
    try:
        booster = lgb.Booster(model_str=model_bytes.decode("utf-8"))
        spec = FeatureSpec.from_dict(metadata)
    except (lgb.basic.LightGBMError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise CreditflowError(f"model {model_id}: file {path} cannot be read ({error}): "
                              f"{retrain}") from error
    if list(booster.feature_name()) != list(spec.features):
        raise CreditflowError(f"model {model_id}: the features in metadata.json do not match "
                              f"{path}: {retrain}")
    return LoadedModel(model_id, booster, spec, metadata)


# --- scoring --------------------------------------------------------------------------------

def score_frame(model: LoadedModel, frame: pd.DataFrame, params: ModelParams
                ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Score feature rows with ``model``: probability, decision and reason codes per row.

    Returns the scored rows (``sk_id_curr``, ``default_probability``, ``decision``,
    ``reason_codes``) in the input order, and the unseen-category counts per column.
    """
    absent = missing_columns(frame, model.spec)
    if absent:
        raise CreditflowError(
            f"model {model.model_id} needs column(s) {', '.join(absent)}, missing from "
            f"{store.FEATURE_TABLE}: restore them in the dbt feature mart and rebuild "
            "(creditflow build), or train a new model on the current features "
            "(creditflow train --month YYYY-MM)"
        )
    # float32, as in training (train_month).
    matrix, unseen = to_matrix(frame, model.spec, dtype=np.float32)
    probability = model.booster.predict(matrix)
    decisions = decide(probability, params.decision["approve_below"],
                       params.decision["decline_from"])
    scored = pd.DataFrame({
        "sk_id_curr": frame["sk_id_curr"].to_numpy(dtype=np.int64),
        "default_probability": probability.astype(np.float64),
        "decision": decisions.astype(str),
        "reason_codes": explain_decisions(model.booster, matrix, decisions, params),
    })
    return scored, unseen


def explain_decisions(booster: lgb.Booster, matrix: np.ndarray, decisions: np.ndarray,
                      params: ModelParams) -> np.ndarray:
    """Return the reason codes of the rows whose decision ``reason_codes.decisions`` lists.

    The other rows get None (NULL in ``predictions``): not explained, which differs from an
    empty list, the reasons of a row whose features all lowered its probability.
    """
    texts = np.full(len(matrix), None, dtype=object)
    explained = np.isin(decisions, params.reason_decisions)
    if explained.all():
        texts[:] = reason_codes(booster, matrix, params.reason_names, params.reason_top_n)
    elif explained.any():
        texts[explained] = reason_codes(booster, matrix[explained], params.reason_names,
                                        params.reason_top_n)
    return texts


def score_month(settings: Settings, month: str, params: ModelParams | None = None
                ) -> ScoreOutcome:
    """Score every application of ``month`` with the champion; replace the month's predictions."""
    params = _params(params)
    month = _month(month)
    record = store.champion_record(settings)
    if record is None:
        raise CreditflowError(f"no champion model to score {month}: train one first "
                              f"(creditflow train --month {month})")
    model = load_model(settings, record)
    if month in json.loads(record["training_months"]):
        raise CreditflowError(
            f"champion {model.model_id} was trained on the labeled rows of {month}, so its "
            f"scores of {month} would be in-sample: train a model for {month} "
            f"(creditflow train --month {month}) and score again"
        )
    # Only the model's features: the feature table has many more columns than a model uses.
    # A feature the table lost is left out here and named by score_frame's error.
    available = store.feature_columns(settings)
    needed = [ID_COLUMN, MONTH_COLUMN, TARGET_COLUMN, *model.spec.features]
    # Read as training reads: text as category codes and numbers as float32, the model's input
    # type, so the read and the encoding handle no Python string per row.
    frame = store.read_features(settings, [month],
                                columns=[name for name in needed if name in available],
                                text_as_category=True, numbers_as_float32=True)
    if frame.empty:
        raise CreditflowError(
            f"score month {month} has no rows in {store.FEATURE_TABLE}: ingest its file "
            "(creditflow ingest YYYYMMDD.csv) and build the features (creditflow build)"
        )
    scored, unseen = score_frame(model, frame, params)
    for column, count in sorted(unseen.items()):
        logger.warning("month %s: %d value(s) of %s unseen in the training of model %s, "
                       "scored as missing", month, count, column, model.model_id)
    scored.insert(1, "score_month", month)
    scored.insert(2, "model_id", model.model_id)
    scored["scored_at"] = store.now()
    store.write_predictions(settings, month, scored)

    labeled = frame[TARGET_COLUMN].notna().to_numpy()
    realized = None
    if labeled.any():
        realized = auc(frame.loc[labeled, TARGET_COLUMN].to_numpy(dtype=np.int64),
                       scored.loc[labeled, "default_probability"].to_numpy())
    counts = decision_counts(scored["decision"].to_numpy())
    logger.info("scored %s: %d applications with model %s, decisions %s%s", month, len(scored),
                model.model_id, counts, "" if realized is None else f", AUC {realized:.4f}")
    return ScoreOutcome(month=month, rows=len(scored), model_id=model.model_id,
                        decision_counts=counts, auc=realized, unseen_categories=unseen)


# --- exports and registry -------------------------------------------------------------------

def export_predictions(settings: Settings, month: str) -> ExportOutcome:
    """Write the predictions of ``month`` to CSV and Parquet under the exports folder."""
    month = _month(month)
    frame = store.read_predictions(settings, month)
    if frame.empty:
        raise CreditflowError(f"no predictions for {month}: score it first "
                              f"(creditflow score --month {month})")
    csv_path = settings.exports / f"predictions_{month}.csv"
    parquet_path = settings.exports / f"predictions_{month}.parquet"
    store.write_exports(frame, csv_path, parquet_path)
    logger.info("exported %d predictions of %s to %s and %s", len(frame), month, csv_path,
                parquet_path)
    return ExportOutcome(csv_path=csv_path, parquet_path=parquet_path, rows=len(frame))


_JSON_COLUMNS = ("training_months", "params", "features", "metrics")


def _readable(record: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for key, value in record.items():
        if key in _JSON_COLUMNS and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, pd.Timestamp):
            value = value.isoformat()
        elif value is not None and not isinstance(value, str | list | dict) and pd.isna(value):
            value = None
        result[key] = value
    return result


def list_models(settings: Settings) -> list[dict[str, Any]]:
    """Return the registry, oldest first, with JSON columns parsed."""
    return [_readable(record) for record in store.registry(settings)]


def champion(settings: Settings) -> dict[str, Any] | None:
    """Return the champion's registry entry (JSON columns parsed), or None."""
    record = store.champion_record(settings)
    return None if record is None else _readable(record)


# --- model comparison -----------------------------------------------------------------------

@dataclass(frozen=True)
class CompareOutcome:
    training_months: list[str]
    test_month: str
    rows: list[dict[str, Any]]
    cutoff: float


def compare_month(settings: Settings, month: str, params: ModelParams | None = None
                  ) -> CompareOutcome:
    """Compare classic models on the out-of-time split of ``month``.

    When ``month`` has labels of both classes, the models train on the labeled months before it
    and are tested on it. Otherwise they train on the months before its validation month and
    are tested on that month.
    """
    from ml.compare import compare_models

    params = _params(params)
    month = _month(month)
    features, categorical = _model_columns(settings, params)
    inventory = store.month_inventory(settings)
    _require_month_rows(inventory, month)
    labeled = inventory.loc[inventory["labeled"] > 0, "month"].tolist()
    plan = plan_split(labeled, inventory["month"].tolist(), month, params.validation["offset"])
    own = store.read_features(settings, [month], labeled_only=True)
    if len(np.unique(own[TARGET_COLUMN].to_numpy())) == 2:
        training_months, test_month, test = list(plan.training_months), month, own
    elif plan.out_of_time:
        training_months, test_month = list(plan.tuning_months), plan.validation_month
        test = store.read_features(settings, [test_month], labeled_only=True)
    else:
        raise CreditflowError(
            f"no out-of-time split for {month}: it has no labels of both classes and no "
            "labeled calendar month before it can serve as test month; ingest a labeled month "
            "after history first"
        )
    training = store.read_features(settings, training_months, labeled_only=True)
    _require_two_classes(training[TARGET_COLUMN].to_numpy(dtype=np.int64),
                         f"training months {', '.join(training_months)}", month)
    spec = build_spec(training, features, categorical)
    logger.info("comparing models: trained on %s, tested on %s", ", ".join(training_months),
                test_month)
    rows = compare_models(training, test, spec, params)
    return CompareOutcome(training_months, test_month, rows,
                          float(params.decision["approve_below"]))
