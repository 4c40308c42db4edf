"""The creditflow side of the benchmark: load a history, run one month, measure scoring.

The steps call the same functions as the monthly flow's Prefect tasks (``flows.monthly``): the
ingestion gate, the dbt feature build, training, scoring and the dbt monitoring build. Prefect's
own bookkeeping (task runs, the temporary API server) is left out, so the numbers are the work
of each step.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.measure import StackSampler, StepTimer
from flows.config import Settings, load_settings
from flows.dbt_runner import build_features, build_monitoring, target_dir
from flows.errors import CreditflowError
from flows.ingest import ingest_file
from ml import service, store
from ml.explain import reason_codes
from ml.features import to_matrix
from ml.params import ModelParams, load_params
from ml.policy import DECLINE, REVIEW, decide

logger = logging.getLogger(__name__)

# Steps of one monthly run, in order; the first two are the data steps.
RUN_STEPS = ("ingest_gate", "dbt_build", "train", "score", "monitoring")
DATA_STEPS = ("ingest_gate", "dbt_build")
USER = "benchmark"
# Decisions that get reason codes in the adverse-action variant of the score step.
ADVERSE_ACTION = [REVIEW, DECLINE]


def benchmark_params(trials: int, max_rounds: int) -> ModelParams:
    """Return ``ml/params.yml`` with a fixed number of trials and boosting rounds.

    The tuning time budget is switched off, so every run trains exactly ``trials`` trials
    whatever the machine's speed.
    """
    return load_params().with_overrides(tuning={
        "trials": trials, "max_boost_rounds": max_rounds, "timeout_seconds": None})


def _ingest(settings: Any, path: Path, month: str, record: dict[str, Any]) -> None:
    result = ingest_file(settings, path, month=month, user=USER)
    record.update(file=path.name, month=month, outcome=result.outcome, rows=result.rows)
    if result.outcome not in ("loaded", "replaced"):
        raise CreditflowError(f"benchmark file {path} was {result.outcome}, not loaded: "
                              f"{result.message}")


def load_history(home: Path, files: list[dict[str, str]]) -> dict[str, Any]:
    """Ingest ``files`` (``{"path", "month"}``) into the deployment at ``home``, then build.

    Each file's ingestion is timed: at full size these are extra samples of the gate on one
    month's file.
    """
    settings = load_settings(home)
    settings.ensure_dirs()
    timer = StepTimer()
    for number, item in enumerate(files):
        with timer.step(f"ingest_gate_{number}") as record:
            _ingest(settings, Path(item["path"]), item["month"], record)
    with timer.step("dbt_build") as record:
        build_features(settings)
        record["dbt"] = dbt_node_times(settings)
    return timer.result()


def dbt_node_times(settings: Settings, top: int = 10) -> dict[str, Any]:
    """Return the slowest nodes of the last dbt command, from dbt's ``run_results.json``."""
    path = target_dir(settings) / "run_results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        logger.warning("dbt node times not available from %s: %s", path, error)
        return {}
    nodes = sorted(((item["unique_id"], item["execution_time"]) for item in results["results"]),
                   key=lambda node: -node[1])
    return {"elapsed_seconds": results.get("elapsed_time"), "nodes": len(nodes),
            "node_seconds_total": sum(seconds for _, seconds in nodes),
            # Test names repeat every accepted value; their start names the test well enough.
            "slowest": [[name[:100], round(seconds, 2)] for name, seconds in nodes[:top]]}


def run_month(home: Path, path: Path, month: str, params: ModelParams,
              data_only: bool = False) -> dict[str, Any]:
    """Run the five steps of one month on the deployment at ``home`` and time each.

    With ``data_only``, stop after the data steps (ingest + gate, dbt build): a cheap extra
    sample of them. A stack sampler records where each step spends its time, and dbt's own
    node times are kept for the dbt steps.
    """
    settings = load_settings(home)
    sampler = StackSampler().start()
    timer = StepTimer(sampler)
    started = time.perf_counter()
    with timer.step("ingest_gate") as record:
        _ingest(settings, path, month, record)
    with timer.step("dbt_build") as record:
        build_features(settings)
        record["dbt"] = dbt_node_times(settings)
    if data_only:
        sampler.stop()
        return timer.result() | {"data_only": True, "whole_seconds": None}
    with timer.step("train") as record:
        trained = service.train_month(settings, month, params=params)
        record.update(model_id=trained.model_id, validation_auc=trained.validation_auc,
                      validation_month=trained.validation_month,
                      training_months=trained.training_months)
    with timer.step("score") as record:
        scored = service.score_month(settings, month, params=params)
        record.update(rows=scored.rows, auc=scored.auc, decisions=scored.decision_counts)
    with timer.step("monitoring") as record:
        build_monitoring(settings)
        record["dbt"] = dbt_node_times(settings)
    whole = time.perf_counter() - started
    sampler.stop()
    result = timer.result()
    result["whole_seconds"] = whole
    return result


def _predictions(frame: pd.DataFrame, month: str, model_id: str, probability: np.ndarray,
                 decisions: np.ndarray, reasons: list[str] | None) -> pd.DataFrame:
    return pd.DataFrame({
        "sk_id_curr": frame["sk_id_curr"].to_numpy(dtype=np.int64),
        "score_month": month,
        "model_id": model_id,
        "default_probability": probability,
        "decision": decisions.astype(str),
        "reason_codes": reasons if reasons is not None else None,
        "scored_at": store.now(),
    })


def measure_scoring(home: Path, month: str, params: ModelParams, repetitions: int = 3,
                    reason_rows: int = 50_000) -> dict[str, Any]:
    """Time the parts of scoring ``month`` with the champion.

    ``ml.service.score_month`` computes reason codes, so the path without them is assembled
    here from the same functions it calls: ``to_matrix``, ``Booster.predict``,
    ``ml.policy.decide`` and ``ml.store.write_predictions``. Those parts run ``repetitions``
    times. Reason codes run once, on the first ``reason_rows`` rows, because on a full month
    they take minutes. The whole path with reason codes for every application is the monthly
    run's score step; the whole path with reason codes for the applications not approved
    (``reason_codes.decisions: [review, decline]``) runs once here, last.
    """
    settings = load_settings(home)
    record = store.champion_record(settings)
    if record is None:
        raise CreditflowError(f"no champion model in {home}: run the month first")
    model = service.load_model(settings, record)
    decision = params.decision
    samples: dict[str, list[float]] = {}

    def timed(name: str, action: Any) -> Any:
        started = time.perf_counter()
        value = action()
        samples.setdefault(name, []).append(time.perf_counter() - started)
        return value

    # The columns score_month reads: the keys and the model's features.
    columns = ["sk_id_curr", "month", "target", *model.spec.features]
    rows = 0
    for repetition in range(repetitions):
        frame = timed("read_features", lambda: store.read_features(
            settings, [month], columns=columns, text_as_category=True, numbers_as_float32=True))
        rows = len(frame)
        matrix, _ = timed("encode", lambda frame=frame: to_matrix(frame, model.spec,
                                                                  dtype=np.float32))
        probability = timed("predict", lambda matrix=matrix: model.booster.predict(matrix))
        decisions = timed("decide", lambda p=probability: decide(
            p, decision["approve_below"], decision["decline_from"]))
        plain = _predictions(frame, month, model.model_id, probability, decisions, None)
        timed("write_without_reasons", lambda plain=plain: store.write_predictions(
            settings, month, plain))
        if repetition == 0:
            timed("reason_codes", lambda matrix=matrix: reason_codes(
                model.booster, matrix[:reason_rows], params.reason_names, params.reason_top_n))
    # The whole score step again, with reason codes only for the applications that are not
    # approved (the reasons an adverse-action notice needs): reason_codes.decisions.
    adverse_action = params.with_overrides(reason_codes={"decisions": ADVERSE_ACTION})
    timed("score_month_not_approved_reasons",
          lambda: service.score_month(settings, month, adverse_action))
    return {"rows": rows, "reason_rows": min(rows, reason_rows), "model_id": model.model_id,
            "features": len(model.spec.features), "trees": model.booster.num_trees(),
            "seconds": samples}
