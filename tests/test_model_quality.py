"""The real-sample split, pooled validation months and the backtest's selection rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks import model_backtest, model_quality
from benchmarks.model_backtest import (
    BASELINE,
    CANDIDATES,
    NEW_FEATURES,
    candidate_params,
    choose,
    is_kept,
    kept_candidates,
    merge_overrides,
)
from flows.errors import CreditflowError
from flows.sample_split import REAL_MONTHS, REAL_SPLIT, split_sample
from ml.params import load_params
from ml.split import plan_split

LABELED = ["history", *REAL_MONTHS]


def _row(name: str, family: str, first: float, second: float) -> dict:
    return {"name": name, "family": family, "auc": {"2020-11": first, "2020-12": second},
            "mean_auc": (first + second) / 2}


def _count_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def test_split_sample_counts(real_files: list[Path]) -> None:
    assert [path.name for path in real_files] == [name for name, _ in REAL_SPLIT]
    for path, (_, count) in zip(real_files, REAL_SPLIT, strict=True):
        assert _count_rows(path) == count, path.name


def test_split_sample_keeps_file_order(real_files: list[Path]) -> None:
    with real_files[1].open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        first_month_id = next(reader)["SK_ID_CURR"]
    with real_files[0].open(newline="", encoding="utf-8") as handle:
        history_ids = [row["SK_ID_CURR"] for row in csv.DictReader(handle)]
    assert first_month_id not in history_ids


def test_split_sample_short_file_names_it(tmp_path: Path) -> None:
    short = tmp_path / "short.csv"
    short.write_text("SK_ID_CURR,TARGET\n" + "".join(f"{i},0\n" for i in range(3000)),
                     encoding="utf-8")
    with pytest.raises(ValueError, match="ended after 1 rows of 20201001.csv") as error:
        split_sample(short, tmp_path / "files")
    assert str(short) in str(error.value)


def test_plan_pools_two_months() -> None:
    plan = plan_split(LABELED, LABELED, "2021-01", months=2)
    assert plan.validation_months == ("2020-11", "2020-12")
    assert plan.validation_month == "2020-11+2020-12"
    assert plan.tuning_months == ("history", "2020-10")
    assert plan.training_months == ("history", "2020-10", "2020-11", "2020-12")
    assert plan.out_of_time


def test_plan_pools_fewer_when_tuning_needs_month() -> None:
    plan = plan_split(LABELED, LABELED, "2020-12", months=3)
    assert plan.validation_months == ("2020-10", "2020-11")
    assert plan.tuning_months == ("history",)
    without_history = plan_split(REAL_MONTHS, REAL_MONTHS, "2020-12", months=2)
    assert without_history.validation_months == ("2020-11",)
    assert without_history.tuning_months == ("2020-10",)


def test_plan_pools_with_offset() -> None:
    plan = plan_split(LABELED, LABELED, "2021-01", offset=2, months=2)
    assert plan.validation_months == ("2020-10", "2020-11")
    assert plan.tuning_months == ("history",)


def test_plan_single_month_default() -> None:
    plan = plan_split(LABELED, LABELED, "2021-01")
    assert plan.validation_months == ("2020-12",)
    assert plan.validation_month == "2020-12"


def test_params_reject_bad_pooled_months() -> None:
    with pytest.raises(CreditflowError, match="validation.months = 0"):
        load_params().with_overrides(validation={"months": 0})


def test_kept_needs_margin_and_no_loss() -> None:
    baseline = _row("baseline", "baseline", 0.760, 0.760)
    assert is_kept(_row("a", "f", 0.770, 0.765), baseline)
    assert not is_kept(_row("b", "f", 0.762, 0.760), baseline)
    assert not is_kept(_row("c", "f", 0.800, 0.759), baseline)


def test_kept_takes_best_per_family() -> None:
    baseline = _row("baseline", "baseline", 0.760, 0.760)
    rows = [_row("small", "selection", 0.770, 0.770), _row("large", "selection", 0.780, 0.770),
            _row("space", "search_space", 0.765, 0.770), _row("worse", "features", 0.75, 0.80)]
    kept = kept_candidates(rows, baseline)
    assert [row["name"] for row in kept] == ["large", "space"]


def test_choose_combination_or_best_single() -> None:
    baseline = _row("baseline", "baseline", 0.760, 0.760)
    kept = [_row("large", "selection", 0.780, 0.770), _row("space", "search_space", 0.765, 0.770)]
    good = _row("large+space", "combination", 0.770, 0.770)
    assert choose(baseline, kept, good)["name"] == "large+space"
    weak = _row("large+space", "combination", 0.761, 0.761)
    assert choose(baseline, kept, weak)["name"] == "large"
    assert choose(baseline, [], None)["name"] == "baseline"


def test_baseline_params_leave_new_features_out() -> None:
    params = candidate_params(load_params(), None)
    excluded = params.feature_selection["excluded"]
    assert set(NEW_FEATURES) <= set(excluded)
    assert "code_gender" in excluded
    assert params.feature_selection["top_k"] == 40
    assert params.validation["months"] == 1
    assert params.tuning["search_space"] == model_backtest.BASELINE_SPACE


def test_candidates_change_one_section() -> None:
    params = candidate_params(load_params(), next(c for c in CANDIDATES
                                                  if c.name == "new_features"))
    excluded = params.feature_selection["excluded"]
    assert not set(NEW_FEATURES) & set(excluded)
    assert "code_gender" in excluded
    assert params.feature_selection["top_k"] == 40


def test_merge_overrides_keeps_both_keys() -> None:
    merged = merge_overrides(BASELINE, {"feature_selection": {"top_k": 60}})
    assert merged["feature_selection"]["top_k"] == 60
    assert merged["feature_selection"]["method"] == "top_k"
    assert BASELINE["feature_selection"]["top_k"] == 40


def test_params_file_matches_backtest_choice() -> None:
    """ml/params.yml contains the configuration the recorded backtest chose."""
    results = json.loads(model_quality.RESULTS.read_text(encoding="utf-8"))
    if "backtest" not in results:
        pytest.skip("no backtest recorded in benchmarks/results/model_quality.json")
    params = load_params()
    for section, values in results["backtest"]["chosen_overrides"].items():
        for key, value in values.items():
            assert params.raw[section][key] == value, f"{section}.{key}"


def test_notebook_recipe_given_columns(real_files: list[Path]) -> None:
    import pandas as pd

    frames = [pd.read_csv(path) for path in real_files[:3]]
    training = pd.concat(frames[:2], ignore_index=True)
    columns = [name for name in model_quality.NOTEBOOK_COLUMNS if name != "CODE_GENDER"]
    matrix = model_quality._notebook_matrix(training, columns)
    assert not [name for name in matrix.columns if name.startswith("CODE_GENDER")]
    assert [name for name in model_quality._notebook_matrix(
        training, model_quality.NOTEBOOK_COLUMNS).columns if name.startswith("CODE_GENDER")]

    result = model_quality.notebook_recipe(training, frames[2], trials=1, columns=columns)
    assert result["columns"] == len(model_quality.NOTEBOOK_COLUMNS) - 1
    assert 0.5 < result["auc"] < 1.0
