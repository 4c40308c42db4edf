"""Pure parts of the model: encoding, split planning, decisions, promotion, parameters, reasons."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from flows.errors import CreditflowError
from ml.explain import business_name, reason_codes
from ml.features import FeatureSpec, build_spec, split_columns, to_matrix
from ml.params import load_params
from ml.policy import auc, decide, decision_counts, recall_at
from ml.promotion import decide_promotion
from ml.split import holdout_indices, plan_split
from ml.training import make_dataset, select_features


def test_split_columns_types():
    features, categorical = split_columns({
        "sk_id_curr": "BIGINT", "month": "VARCHAR", "target": "INTEGER",
        "amt_credit": "DOUBLE", "code_gender": "VARCHAR", "cnt_children": "INTEGER",
    })
    assert features == ["amt_credit", "code_gender", "cnt_children"]
    assert categorical == ["code_gender"]


def test_encoding_uses_saved_categories():
    training = pd.DataFrame({"gender": ["M", "F", None, "F"], "amount": [1.0, 2.0, None, 4.0]})
    spec = build_spec(training, ["amount", "gender"], ["gender"])
    assert spec.categories == {"gender": ("F", "M")}

    batch = pd.DataFrame({"gender": ["X", "M", None, "F"], "amount": [5, 6, 7, None]})
    matrix, unseen = to_matrix(batch, spec)
    assert unseen == {"gender": 1}
    assert np.isnan(matrix[0, 1])  # unseen "X" is scored as missing
    assert matrix[1, 1] == 1.0  # "M" keeps its training code whatever else the batch contains
    assert np.isnan(matrix[2, 1])
    assert matrix[3, 1] == 0.0
    assert np.isnan(matrix[3, 0])


def test_encoding_ignores_column_order_and_batch():
    training = pd.DataFrame({"a": ["x", "y", "z"], "b": [1.0, 2.0, 3.0], "c": [0, 1, 0]})
    spec = build_spec(training, ["a", "b", "c"], ["a"])
    rows = pd.DataFrame({"c": [1, 0, 1], "a": ["z", "y", "w"], "b": [9.0, None, 7.0]})
    whole, _ = to_matrix(rows, spec)
    for position in range(len(rows)):
        alone, _ = to_matrix(rows.iloc[[position]], spec)
        np.testing.assert_array_equal(alone[0], whole[position])


def test_encoding_rejects_text_in_numeric_feature():
    spec = FeatureSpec(("amount",), {})
    with pytest.raises(CreditflowError, match="amount"):
        to_matrix(pd.DataFrame({"amount": ["12", "twelve"]}), spec)


def test_spec_round_trip_and_subset():
    spec = FeatureSpec(("a", "b", "c"), {"b": ("p", "q")})
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    subset = spec.subset(["c", "b"])
    assert subset.features == ("b", "c")
    assert subset.categorical == ["b"]


def test_plan_uses_latest_labeled_month():
    labeled = ["history", "2020-10", "2020-11", "2020-12", "2021-01"]
    plan = plan_split(labeled, labeled, "2021-01")
    assert plan.training_months == ("history", "2020-10", "2020-11", "2020-12")
    assert plan.validation_month == "2020-12"
    assert plan.tuning_months == ("history", "2020-10", "2020-11")
    assert plan.out_of_time


def test_plan_offset_and_unlabeled_gap():
    labeled = ["history", "2020-10", "2020-11"]
    every = labeled + ["2020-12"]
    plan = plan_split(labeled, every, "2021-01", offset=2)
    assert plan.validation_month == "2020-10"
    assert plan.tuning_months == ("history",)
    assert plan.training_months == ("history", "2020-10", "2020-11")


def test_plan_history_only_is_holdout():
    plan = plan_split(["history"], ["history", "2020-10"], "2020-10")
    assert not plan.out_of_time
    assert plan.validation_month == "history"
    assert plan.training_months == ("history",)


def test_plan_without_labels_names_month():
    with pytest.raises(CreditflowError, match="before score month 2020-11") as error:
        plan_split([], ["history", "2020-10"], "2020-11")
    assert "history, 2020-10" in str(error.value)
    assert "initial.csv" in str(error.value)


def test_holdout_is_seeded_and_stratified():
    target = np.array([0] * 90 + [1] * 10)
    first = holdout_indices(target, 0.2, seed=7)
    second = holdout_indices(target, 0.2, seed=7)
    np.testing.assert_array_equal(first[1], second[1])
    assert target[first[1]].sum() == 2
    assert len(np.intersect1d(first[0], first[1])) == 0


def test_decisions_follow_cutoffs():
    decisions = decide(np.array([0.01, 0.1, 0.2, 0.3, 0.9]), approve_below=0.1, decline_from=0.3)
    assert list(decisions) == ["approve", "review", "review", "decline", "decline"]
    assert decision_counts(decisions) == {"approve": 1, "review": 2, "decline": 2}


def test_metrics_edge_cases():
    assert auc(np.array([0, 0]), np.array([0.1, 0.2])) is None
    assert auc(np.array([0, 1]), np.array([0.1, 0.2])) == 1.0
    assert recall_at(np.array([0, 1, 1]), np.array([0.5, 0.05, 0.2]), 0.1) == 0.5
    assert recall_at(np.array([0, 0]), np.array([0.5, 0.05]), 0.1) is None


def test_promotion_within_tolerance():
    result = decide_promotion(0.745, "2020-12", "abc", 0.748, tolerance=0.005)
    assert result.promoted
    assert "2020-12" in result.reason


def test_promotion_rejected_beyond_tolerance():
    result = decide_promotion(0.70, "2020-12", "abc", 0.75, tolerance=0.005)
    assert not result.promoted
    assert "champion kept" in result.reason
    assert "abc" in result.reason


def test_promotion_first_and_incomparable():
    assert decide_promotion(0.6, "2020-12", None, None, 0.0).promoted
    result = decide_promotion(0.6, "2020-12", "abc", None, 0.0)
    assert result.promoted
    assert "trained on the labels" in result.reason


def test_params_file_is_valid():
    params = load_params()
    assert params.feature_selection["method"] in ("off", "top_k", "gain_share")
    assert params.decision["approve_below"] <= params.decision["decline_from"]
    assert "days_birth" in params.reason_names


@pytest.mark.parametrize(("section", "values", "key"), [
    ("decision", {"approve_below": 0.5, "decline_from": 0.2}, "decision"),
    ("tuning", {"trials": 0}, "tuning.trials"),
    ("feature_selection", {"method": "best"}, "feature_selection.method"),
    ("promotion", {"auc_tolerance": -1}, "promotion.auc_tolerance"),
    ("validation", {"offset": 0}, "validation.offset"),
])
def test_params_reject_invalid_values(section, values, key):
    with pytest.raises(CreditflowError, match=key.replace(".", r"\.")):
        load_params().with_overrides(**{section: values})


@pytest.mark.parametrize(("section", "values", "message"), [
    ("reason_codes", {"decision": ["review"]}, "unknown key reason_codes.decision"),
    ("lightgbm", {"monotone_constraint": {}}, "unknown key lightgbm.monotone_constraint"),
    ("sed", 42, "unknown section 'sed'"),
])
def test_params_reject_unknown_keys(section, values, message):
    with pytest.raises(CreditflowError, match=message):
        load_params().with_overrides(**{section: values})


def test_params_file_unknown_key_named(tmp_path):
    text = load_params().source_text.replace("  top_n: 3", "  top_n: 3\n  decision: [review]")
    path = tmp_path / "params.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CreditflowError) as caught:
        load_params(path)
    assert f"unknown key reason_codes.decision in {path}" in str(caught.value)
    assert "decisions, names, top_n" in str(caught.value)


def test_params_missing_file(tmp_path):
    with pytest.raises(CreditflowError, match="not found"):
        load_params(tmp_path / "absent.yml")


def _toy_booster() -> tuple[lgb.Booster, np.ndarray]:
    generator = np.random.default_rng(0)
    matrix = generator.normal(size=(400, 3))
    target = (matrix[:, 0] + 0.3 * generator.normal(size=400) > 0.5).astype(int)
    params = {"objective": "binary", "verbosity": -1, "seed": 1, "num_threads": 1,
              "deterministic": True, "force_col_wise": True}
    dataset = lgb.Dataset(matrix, target, feature_name=["risk", "noise", "days_birth"])
    return lgb.train(params, dataset, 20), matrix


def test_reason_codes_name_top_contributions():
    booster, matrix = _toy_booster()
    names = {"risk": "Risk indicator", "days_birth": "Applicant age"}
    codes = [json.loads(text) for text in reason_codes(booster, matrix, names, top_n=3)]
    assert len(codes) == len(matrix)
    assert all(len(reasons) <= 3 for reasons in codes)
    allowed = {"Risk indicator", "Noise", "Applicant age"}
    assert all(set(reasons) <= allowed for reasons in codes)
    riskiest = int(np.argmax(matrix[:, 0]))
    assert codes[riskiest][0] == "Risk indicator"


def test_reason_codes_only_positive():
    booster, matrix = _toy_booster()
    contributions = booster.predict(matrix, pred_contrib=True)[:, :-1]
    codes = [json.loads(text) for text in reason_codes(booster, matrix, {}, top_n=3)]
    for row, reasons in enumerate(codes):
        assert len(reasons) == int((contributions[row] > 0).sum().clip(max=3))


def test_business_name_fallback():
    assert business_name("amt_credit", {}) == "Amt credit"
    assert business_name("amt_credit", {"amt_credit": "Loan amount"}) == "Loan amount"


@pytest.mark.parametrize(("method", "extra", "expected"), [
    ("off", {}, 4),
    ("top_k", {"top_k": 2}, 2),
])
def test_feature_selection_methods(method, extra, expected):
    generator = np.random.default_rng(3)
    matrix = generator.normal(size=(600, 4))
    target = (matrix[:, 0] + matrix[:, 1] > 0.3).astype(int)
    spec = FeatureSpec(("a", "b", "c", "d"), {})
    params = load_params().with_overrides(feature_selection={"method": method, **extra})
    kept, gains = select_features(make_dataset(matrix[:400], target[:400], spec, params),
                                  make_dataset(matrix[400:], target[400:], spec, params),
                                  spec, params)
    assert len(kept) == expected
    if method == "top_k":
        assert kept == ["a", "b"]
        assert set(gains) == {"a", "b", "c", "d"}


def test_feature_selection_gain_share():
    generator = np.random.default_rng(4)
    matrix = generator.normal(size=(600, 4))
    target = (matrix[:, 0] > 0.2).astype(int)
    spec = FeatureSpec(("a", "b", "c", "d"), {})
    params = load_params().with_overrides(
        feature_selection={"method": "gain_share", "gain_share": 0.5})
    kept, gains = select_features(make_dataset(matrix[:400], target[:400], spec, params),
                                  make_dataset(matrix[400:], target[400:], spec, params),
                                  spec, params)
    assert kept == ["a"]
    assert gains["a"] > 0.5 * sum(gains.values())


def test_reason_codes_same_in_chunks():
    booster, matrix = _toy_booster()
    whole = reason_codes(booster, matrix, {}, top_n=3)
    assert reason_codes(booster, matrix, {}, top_n=3, chunk_rows=7) == whole
    assert reason_codes(booster, matrix[:0], {}, top_n=3) == []
