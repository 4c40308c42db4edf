"""Monotone constraints and the max_depth search range: parsing, checks, effect on training."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import yaml

from benchmarks import model_backtest
from flows.config import ML_PARAMS_FILE
from flows.errors import CreditflowError
from ml import service, store
from ml.features import FeatureSpec, to_matrix
from ml.params import ModelParams, load_params
from ml.training import (
    check_monotone_constraints,
    make_dataset,
    monotone_params,
    refit,
    select_features,
    tune,
)
from tests.ml_data import sample_features, write_feature_table

FEATURES = ("score", "noise")


def _write_params(tmp_path: Path, lightgbm: dict) -> Path:
    raw = yaml.safe_load(ML_PARAMS_FILE.read_text(encoding="utf-8"))
    raw["lightgbm"].update(lightgbm)
    path = tmp_path / "params.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _wavy_rows(seed: int = 5, rows: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Return rows whose default rate falls with ``score`` overall but rises in places."""
    generator = np.random.default_rng(seed)
    matrix = generator.uniform(0, 1, size=(rows, 2))
    logit = -3 * matrix[:, 0] + 1.5 * np.sin(12 * matrix[:, 0])
    target = (generator.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return matrix, target


def _train(params: ModelParams) -> lgb.Booster:
    matrix, target = _wavy_rows()
    spec = FeatureSpec(FEATURES, {})
    tuning = make_dataset(matrix[:2000], target[:2000], spec, params)
    validation = make_dataset(matrix[2000:], target[2000:], spec, params, reference=tuning)
    result = tune(tuning, validation, params)
    return refit(make_dataset(matrix, target, spec, params), result.params, result.best_iteration)


def _quick_params(**lightgbm) -> ModelParams:
    # Three trials over learning rate and leaves, enough to fit the wave when unconstrained.
    space = {"learning_rate": [0.1, 0.2], "num_leaves": [15, 31]}
    return load_params().with_overrides(
        tuning={"trials": 3, "search_space": space, "max_boost_rounds": 200},
        lightgbm=lightgbm)


def _score_grid(booster: lgb.Booster) -> np.ndarray:
    grid = np.column_stack([np.linspace(0, 1, 201), np.full(201, 0.5)])
    return booster.predict(grid)


def test_params_file_monotone_is_mapping() -> None:
    assert isinstance(load_params().monotone_constraints, dict)


def test_params_parse_monotone_mapping(tmp_path: Path) -> None:
    path = _write_params(tmp_path, {"monotone_constraints": {"ext_source_1": -1,
                                                             "amt_credit": 1}})
    assert load_params(path).monotone_constraints == {"ext_source_1": -1, "amt_credit": 1}


def test_params_null_monotone_is_empty(tmp_path: Path) -> None:
    path = _write_params(tmp_path, {"monotone_constraints": None})
    assert load_params(path).monotone_constraints == {}


@pytest.mark.parametrize(("value", "key", "shown"), [
    ({"ext_source_1": 2}, r"lightgbm\.monotone_constraints\.ext_source_1", "= 2"),
    ({"ext_source_1": "down"}, r"lightgbm\.monotone_constraints\.ext_source_1", "'down'"),
    ({"ext_source_1": True}, r"lightgbm\.monotone_constraints\.ext_source_1", "True"),
    ({"ext_source_1": -1.0}, r"lightgbm\.monotone_constraints\.ext_source_1", "-1.0"),
    (["ext_source_1"], r"lightgbm\.monotone_constraints ", "'ext_source_1'"),
])
def test_params_reject_bad_monotone(value, key: str, shown: str) -> None:
    with pytest.raises(CreditflowError, match=key) as raised:
        load_params().with_overrides(lightgbm={"monotone_constraints": value})
    assert shown in str(raised.value)


@pytest.mark.parametrize("bounds", [[0, 8], [3.5, 8], [-1, 4]])
def test_params_reject_bad_max_depth(bounds: list) -> None:
    space = {**model_backtest.BASELINE_SPACE, "max_depth": bounds}
    with pytest.raises(CreditflowError, match=r"tuning\.search_space\.max_depth") as raised:
        load_params().with_overrides(tuning={"search_space": space})
    assert repr(bounds) in str(raised.value)


def test_params_accept_max_depth_range() -> None:
    params = load_params().with_overrides(
        tuning={"search_space": model_backtest.DEPTH_CAP_SPACE})
    assert params.tuning["search_space"]["max_depth"] == [3, 8]


def test_monotone_list_follows_feature_order() -> None:
    params = load_params().with_overrides(
        lightgbm={"monotone_constraints": {"c": 1, "a": -1, "dropped": -1}})
    assert monotone_params(["a", "b", "c"], params) == {"monotone_constraints": [-1, 0, 1]}


def test_monotone_empty_when_nothing_kept() -> None:
    params = load_params().with_overrides(lightgbm={"monotone_constraints": {"dropped": -1}})
    assert monotone_params(["a", "b"], params) == {}


def test_monotone_unknown_column_named() -> None:
    params = load_params().with_overrides(lightgbm={"monotone_constraints": {"ext_sorce_1": -1}})
    with pytest.raises(CreditflowError, match="ext_sorce_1"):
        check_monotone_constraints(FeatureSpec(("ext_source_1",), {}), params)


def test_monotone_excluded_column_allowed() -> None:
    params = load_params().with_overrides(lightgbm={"monotone_constraints": {"code_gender": 1}})
    assert "code_gender" in params.feature_selection["excluded"]
    check_monotone_constraints(FeatureSpec(("ext_source_1",), {}), params)


def test_monotone_categorical_rejected() -> None:
    params = load_params().with_overrides(lightgbm={"monotone_constraints": {"kind": 1}})
    spec = FeatureSpec(("kind", "score"), {"kind": ["a", "b"]})
    with pytest.raises(CreditflowError, match="kind is categorical"):
        check_monotone_constraints(spec, params)


def test_selection_checks_monotone_columns() -> None:
    matrix, target = _wavy_rows()
    spec = FeatureSpec(FEATURES, {})
    params = _quick_params(monotone_constraints={"missing_column": -1})
    with pytest.raises(CreditflowError, match="missing_column"):
        select_features(make_dataset(matrix[:2000], target[:2000], spec, params),
                        make_dataset(matrix[2000:], target[2000:], spec, params), spec, params)


def test_unconstrained_model_not_monotone() -> None:
    """The wave in the data makes a free model rise in places, so the next test can fail."""
    scores = _score_grid(_train(_quick_params()))
    assert (np.diff(scores) > 1e-9).any()


def test_monotone_constraint_binds_booster() -> None:
    booster = _train(_quick_params(monotone_constraints={"score": -1}))
    scores = _score_grid(booster)
    assert (np.diff(scores) <= 1e-12).all()
    assert scores[0] > scores[-1]
    assert "[monotone_constraints: -1,0]" in booster.model_to_string()


def test_monotone_recorded_in_chosen_params() -> None:
    matrix, target = _wavy_rows()
    spec = FeatureSpec(FEATURES, {})
    params = _quick_params(monotone_constraints={"noise": 1})
    tuning = make_dataset(matrix[:2000], target[:2000], spec, params)
    validation = make_dataset(matrix[2000:], target[2000:], spec, params, reference=tuning)
    assert tune(tuning, validation, params).params["monotone_constraints"] == [0, 1]


def _tree_depth(node: dict) -> int:
    if "split_index" not in node:
        return 0
    return 1 + max(_tree_depth(node["left_child"]), _tree_depth(node["right_child"]))


def test_max_depth_range_limits_trees() -> None:
    params = _quick_params().with_overrides(
        tuning={"search_space": {"learning_rate": [0.1, 0.2], "num_leaves": [15, 31],
                                 "max_depth": [2, 2]}})
    booster = _train(params)
    trees = booster.dump_model()["tree_info"]
    assert booster.params["max_depth"] == 2
    assert max(_tree_depth(tree["tree_structure"]) for tree in trees) == 2


def test_backtest_candidates_change_one_thing() -> None:
    by_name = {candidate.name: candidate for candidate in model_backtest.CANDIDATES}
    monotone = model_backtest.candidate_params(load_params(), by_name["monotone_ext_source"])
    depth = model_backtest.candidate_params(load_params(), by_name["depth_cap"])
    baseline = model_backtest.candidate_params(load_params(), None)
    assert baseline.monotone_constraints == {}
    assert monotone.monotone_constraints["ext_source_3"] == -1
    assert monotone.tuning["search_space"] == baseline.tuning["search_space"]
    assert depth.tuning["search_space"]["max_depth"] == [3, 8]
    assert depth.monotone_constraints == {}


def test_train_month_applies_monotone(settings) -> None:
    """train_month constrains the kept features and records the list in the metadata."""
    write_feature_table(settings, sample_features())
    params = load_params().with_overrides(
        tuning={"trials": 3},
        feature_selection={"method": "top_k", "top_k": 8},
        lightgbm={"monotone_constraints": {"ext_source_3": -1, "ext_source_mean": -1,
                                           "flag_document_3": 1}})
    outcome = service.train_month(settings, "2021-01", params=params)
    model = service.load_model(settings, store.model_record(settings, outcome.model_id))
    features = list(model.spec.features)
    recorded = model.metadata["params"]["monotone_constraints"]
    expected = [params.monotone_constraints.get(name, 0) for name in features]
    assert "ext_source_3" in features
    assert recorded == expected

    # One real application, its ext_source_3 swept from 0 to 1 and everything else fixed.
    row = sample_features(["2021-01"]).iloc[[0]]
    grid = row.loc[row.index.repeat(101)].reset_index(drop=True)
    grid["ext_source_3"] = np.linspace(0, 1, 101)
    matrix, _ = to_matrix(grid, model.spec)
    probability = model.booster.predict(matrix)
    assert (np.diff(probability) <= 1e-12).all()
    assert probability[0] > probability[-1]
