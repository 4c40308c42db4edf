"""Training, registry, scoring and exports against a real DuckDB file with real sample rows.

The feature table here is a small stand-in for the dbt mart, built from the real sample by
tests/ml_data.py. tests/test_ml_real.py runs the same steps on the dbt-built table.
"""

from __future__ import annotations

import json
import logging
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from flows.config import load_settings
from flows.errors import CreditflowError
from ml import service
from ml.params import load_params
from tests.ml_data import sample_features, write_feature_table

TRIALS = 5


# These tests use code_gender as their example category, so they give it back to the model;
# test_sensitive_columns_left_out checks the default that leaves it out.
KEEP_ALL = {"excluded": []}


@pytest.fixture
def params():
    return load_params().with_overrides(tuning={"trials": TRIALS}, feature_selection=KEEP_ALL)


@pytest.fixture
def warehouse(settings):
    """Settings whose warehouse contains the sample feature table of every month."""
    write_feature_table(settings, sample_features())
    return settings


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory):
    """A deployment whose champion was trained for 2021-01 on the sample table, made once."""
    home = tmp_path_factory.mktemp("trained") / "home"
    settings = load_settings(home)
    settings.ensure_dirs()
    write_feature_table(settings, sample_features())
    params = load_params().with_overrides(tuning={"trials": TRIALS}, feature_selection=KEEP_ALL)
    return home, service.train_month(settings, "2021-01", params=params)


@pytest.fixture
def trained(settings, trained_home):
    """Settings of a copy of the trained deployment, and the outcome of that training."""
    home, outcome = trained_home
    shutil.rmtree(settings.home)
    shutil.copytree(home, settings.home)
    return settings, outcome


def _query(settings, sql, args=None):
    connection = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return connection.execute(sql, args or []).df()
    finally:
        connection.close()


def _model_bytes(settings, model_id):
    return (settings.models / model_id / "model.txt").read_bytes()


def test_train_score_for_month(trained, params):
    warehouse, outcome = trained
    assert outcome.promoted
    assert outcome.validation_month == "2020-12"
    assert outcome.training_months == ["history", "2020-10", "2020-11", "2020-12"]
    assert outcome.out_of_time
    assert 0.6 < outcome.validation_auc < 1.0

    metadata = json.loads((warehouse.models / outcome.model_id / "metadata.json").read_text())
    assert metadata["validation_month"] == "2020-12"
    assert "code_gender" in metadata["categories"]
    assert metadata["params_file"] == params.source_text
    assert metadata["best_iteration"] >= 1
    assert metadata["metrics"]["trials_completed"] + metadata["metrics"]["trials_pruned"] == TRIALS

    registry = _query(warehouse, "select * from model_registry")
    assert registry["model_id"].tolist() == [outcome.model_id]
    assert registry["status"].tolist() == ["champion"]
    months = _query(warehouse, "select month from model_training_months order by month")
    assert sorted(months["month"]) == sorted(outcome.training_months)
    features = _query(warehouse, "select * from model_features")
    assert len(features) == len(metadata["features"])
    assert features.loc[features["feature"] == "code_gender", "is_categorical"].item()

    scored = service.score_month(warehouse, "2021-01", params=params)
    assert scored.rows == 1000
    assert scored.model_id == outcome.model_id
    assert sum(scored.decision_counts.values()) == 1000
    assert scored.auc is not None and scored.auc > 0.65
    predictions = _query(warehouse, "select * from predictions where score_month = '2021-01'")
    assert len(predictions) == 1000
    assert set(predictions["decision"]) <= {"approve", "review", "decline"}
    assert predictions["default_probability"].between(0, 1).all()
    reasons = predictions["reason_codes"].map(json.loads)
    assert reasons.map(len).between(0, 3).all()
    assert reasons.map(len).max() == 3


def test_score_month_labels_never_reach_training(settings, tmp_path, params):
    """Changing the labels of the score month changes nothing of its model."""
    write_feature_table(settings, sample_features())
    first = service.train_month(settings, "2021-01", params=params)

    flipped = sample_features()
    in_month = flipped["month"] == "2021-01"
    flipped.loc[in_month, "target"] = 1 - flipped.loc[in_month, "target"]
    other = load_settings(tmp_path / "flipped")
    other.ensure_dirs()
    write_feature_table(other, flipped)
    second = service.train_month(other, "2021-01", params=params)

    assert second.model_id == first.model_id
    assert _model_bytes(other, second.model_id) == _model_bytes(settings, first.model_id)
    assert "2021-01" not in first.training_months


def test_same_data_same_model_and_scores(settings, tmp_path, params):
    write_feature_table(settings, sample_features())
    other = load_settings(tmp_path / "again")
    other.ensure_dirs()
    write_feature_table(other, sample_features())

    first = service.train_month(settings, "2021-01", params=params)
    second = service.train_month(other, "2021-01", params=params)
    assert first.model_id == second.model_id
    assert _model_bytes(settings, first.model_id) == _model_bytes(other, second.model_id)

    service.score_month(settings, "2021-01", params=params)
    service.score_month(other, "2021-01", params=params)
    columns = "sk_id_curr, model_id, default_probability, decision, reason_codes"
    sql = f"select {columns} from predictions order by sk_id_curr"
    pd.testing.assert_frame_equal(_query(settings, sql), _query(other, sql))


def test_retraining_same_model_keeps_champion(trained, params):
    warehouse, first = trained
    again = service.train_month(warehouse, "2021-01", params=params)
    assert again.model_id == first.model_id
    assert again.promoted
    assert "already the champion" in again.reason
    assert len(_query(warehouse, "select * from model_registry")) == 1


def test_worse_challenger_is_rejected(trained, params, caplog):
    warehouse, champion = trained
    # Three rounds of two-leaf trees on the first few features: a clearly weaker model.
    weak = params.with_overrides(
        tuning={"trials": 1, "max_boost_rounds": 3,
                "search_space": {"num_leaves": [2, 2], "learning_rate": [0.001, 0.001],
                                 "feature_fraction": [0.1, 0.1]}},
        seed=7)
    with caplog.at_level(logging.WARNING, logger="ml.service"):
        challenger = service.train_month(warehouse, "2021-01", params=weak)
    assert not challenger.promoted
    assert challenger.validation_auc < champion.validation_auc - weak.auc_tolerance
    assert "champion kept" in challenger.reason
    assert champion.model_id in challenger.reason
    assert any(challenger.model_id in message for message in caplog.messages)

    registry = _query(warehouse, "select model_id, status, note from model_registry")
    statuses = dict(zip(registry["model_id"], registry["status"], strict=True))
    assert statuses == {champion.model_id: "champion", challenger.model_id: "challenger"}
    notes = dict(zip(registry["model_id"], registry["note"], strict=True))
    assert notes[challenger.model_id] == challenger.reason
    assert service.champion(warehouse)["model_id"] == champion.model_id
    assert service.score_month(warehouse, "2021-01", params=params).model_id == champion.model_id


def test_better_or_equal_challenger_is_promoted(trained, params):
    warehouse, first = trained
    lenient = params.with_overrides(promotion={"auc_tolerance": 1.0}, seed=11)
    second = service.train_month(warehouse, "2021-01", params=lenient)
    assert second.model_id != first.model_id
    assert second.promoted
    assert "promoted" in second.reason
    registry = _query(warehouse, "select model_id, status from model_registry")
    statuses = dict(zip(registry["model_id"], registry["status"], strict=True))
    assert statuses == {first.model_id: "retired", second.model_id: "champion"}


def test_champion_scored_on_new_validation_month(warehouse, params):
    """A champion trained before the challenger's validation month is scored on it."""
    older = service.train_month(warehouse, "2020-12", params=params)
    assert older.validation_month == "2020-11"
    newer = service.train_month(warehouse, "2021-01", params=params)
    assert newer.validation_month == "2020-12"

    model = service.load_model(warehouse, service.store.model_record(warehouse, older.model_id))
    rows = sample_features(["2020-12"])
    probability = model.booster.predict(service.to_matrix(rows, model.spec)[0])
    expected = service.auc(rows["target"].to_numpy(dtype=int), probability)
    assert f"champion {older.model_id} {expected:.4f}" in newer.reason


def test_history_only_falls_back_to_holdout(settings, params, caplog):
    write_feature_table(settings, sample_features(["history", "2020-10"]))
    with caplog.at_level(logging.WARNING, logger="ml.service"):
        outcome = service.train_month(settings, "2020-10", params=params)
    assert not outcome.out_of_time
    assert outcome.validation_month == "history"
    assert outcome.training_months == ["history"]
    assert any("not" in m and "out of time" in m or "holdout" in m for m in caplog.messages)
    metrics = json.loads(_query(settings, "select metrics from model_registry")["metrics"][0])
    assert metrics["out_of_time"] is False
    assert metrics["validation_rows"] == 600


def test_unseen_categories_counted_and_missing(trained, params):
    warehouse, _ = trained
    frame = sample_features()
    month_rows = frame.index[frame["month"] == "2021-01"]
    frame.loc[month_rows[:5], "code_gender"] = "Z"
    frame.loc[month_rows[5:8], "organization_type"] = "Space agency"
    write_feature_table(warehouse, frame)

    outcome = service.score_month(warehouse, "2021-01", params=params)
    assert outcome.unseen_categories == {"code_gender": 5, "organization_type": 3}

    as_missing = frame.loc[month_rows].reset_index(drop=True)
    as_missing.loc[:4, "code_gender"] = None
    as_missing.loc[5:7, "organization_type"] = None
    model = service.load_model(warehouse, service.store.champion_record(warehouse))
    expected, unseen = service.score_frame(model, as_missing, params)
    assert unseen == {}
    stored = _query(warehouse, "select sk_id_curr, default_probability from predictions "
                               "order by sk_id_curr")
    np.testing.assert_array_equal(stored["default_probability"].to_numpy(),
                                  expected["default_probability"].to_numpy())


def test_scores_ignore_column_order_and_batch(trained, params):
    warehouse, _ = trained
    model = service.load_model(warehouse, service.store.champion_record(warehouse))
    rows = sample_features(["2021-01"])
    whole, _ = service.score_frame(model, rows, params)

    shuffled_columns = rows[list(reversed(rows.columns))]
    by_columns, _ = service.score_frame(model, shuffled_columns, params)
    pd.testing.assert_frame_equal(by_columns, whole)

    reversed_rows = rows.iloc[::-1].reset_index(drop=True)
    by_rows, _ = service.score_frame(model, reversed_rows, params)
    pd.testing.assert_frame_equal(by_rows.iloc[::-1].reset_index(drop=True), whole)

    for position in range(0, len(rows), 97):
        alone, _ = service.score_frame(model, rows.iloc[[position]], params)
        assert alone["default_probability"].item() == whole["default_probability"][position]
        assert alone["reason_codes"].item() == whole["reason_codes"][position]


def test_reason_codes_for_listed_decisions(trained, params):
    warehouse, _ = trained
    query = "select sk_id_curr, decision, reason_codes from predictions order by sk_id_curr"
    service.score_month(warehouse, "2021-01", params=params)
    every = _query(warehouse, query)
    narrowed = params.with_overrides(reason_codes={"decisions": ["review", "decline"]})
    service.score_month(warehouse, "2021-01", params=narrowed)
    some = _query(warehouse, query)

    approved = (some["decision"] == "approve").to_numpy()
    assert approved.any()
    assert not approved.all()
    assert every["reason_codes"].notna().all()
    assert some.loc[approved, "reason_codes"].isna().all()
    assert some.loc[~approved, "reason_codes"].tolist() == \
        every.loc[~approved, "reason_codes"].tolist()


def test_reason_decisions_must_be_known():
    with pytest.raises(CreditflowError, match=r"reason_codes\.decisions = \['approved'\]"):
        load_params().with_overrides(reason_codes={"decisions": ["approved"]})


def test_rescoring_replaces_month(trained, params):
    warehouse, _ = trained
    frame = sample_features()
    extra = frame[frame["month"] == "2021-01"].head(49).copy()
    extra["sk_id_curr"] += 1_000_000
    extra["month"] = "2021-02"
    extra["target"] = pd.NA
    write_feature_table(warehouse, pd.concat([frame, extra], ignore_index=True))
    service.score_month(warehouse, "2021-02", params=params)
    before = _query(warehouse, "select * from predictions where score_month = '2021-02'")

    service.score_month(warehouse, "2021-01", params=params)
    service.score_month(warehouse, "2021-01", params=params)
    counts = _query(warehouse, "select score_month, count(*) as n from predictions "
                               "group by score_month order by score_month")
    assert counts.to_dict(orient="list") == {"score_month": ["2021-01", "2021-02"],
                                             "n": [1000, 49]}

    fewer = pd.concat([frame[frame["sk_id_curr"] % 10 != 0], extra], ignore_index=True)
    write_feature_table(warehouse, fewer)
    outcome = service.score_month(warehouse, "2021-01", params=params)
    expected = int(((frame["month"] == "2021-01") & (frame["sk_id_curr"] % 10 != 0)).sum())
    assert outcome.rows == expected
    stored = _query(warehouse, "select count(*) as n from predictions "
                               "where score_month = '2021-01'")
    assert stored["n"].item() == expected
    after = _query(warehouse, "select * from predictions where score_month = '2021-02'")
    pd.testing.assert_frame_equal(after, before)
    assert outcome.auc is not None
    assert service.score_month(warehouse, "2021-02", params=params).auc is None


def test_export_files_equal_table(trained, params):
    warehouse, _ = trained
    service.score_month(warehouse, "2021-01", params=params)
    outcome = service.export_predictions(warehouse, "2021-01")
    assert outcome.rows == 1000
    assert outcome.csv_path.parent == warehouse.exports
    table = _query(warehouse, "select * from predictions where score_month = '2021-01' "
                              "order by sk_id_curr")

    parquet = pd.read_parquet(outcome.parquet_path)
    pd.testing.assert_frame_equal(parquet, table, check_dtype=False)

    csv = pd.read_csv(outcome.csv_path, dtype={"score_month": str, "model_id": str},
                      parse_dates=["scored_at"])
    pd.testing.assert_frame_equal(csv, table, check_dtype=False)
    assert not list(warehouse.exports.glob(".*tmp"))


def test_models_command_marks_champion(trained, params, capsys):
    warehouse, champion = trained
    assert main(["--home", str(warehouse.home), "models"]) == 0
    output = capsys.readouterr().out
    assert f"* {champion.model_id}" in output
    assert "champion" in output
    listed = service.list_models(warehouse)
    assert listed[0]["training_months"] == champion.training_months
    assert listed[0]["metrics"]["validation_auc"] == pytest.approx(champion.validation_auc)


def test_train_and_score_commands(warehouse, capsys):
    assert main(["--home", str(warehouse.home), "train", "--month", "2021-01",
                 "--trials", "3"]) == 0
    output = capsys.readouterr().out
    assert "validation AUC" in output
    assert "champion" in output
    assert main(["--home", str(warehouse.home), "score", "--month", "2021-01"]) == 0
    assert "realized AUC" in capsys.readouterr().out
    assert main(["--home", str(warehouse.home), "export", "--month", "2021-01"]) == 0
    assert "predictions_2021-01.parquet" in capsys.readouterr().out


# --- clear errors -----------------------------------------------------------------------------

def test_error_training_months_without_labels(settings, params):
    frame = sample_features(["history", "2020-10", "2020-11"])
    frame["target"] = pd.NA
    write_feature_table(settings, frame)
    with pytest.raises(CreditflowError) as error:
        service.train_month(settings, "2020-11", params=params)
    message = str(error.value)
    assert "no labeled applications before score month 2020-11" in message
    assert "history, 2020-10" in message
    assert "initial.csv" in message


@pytest.mark.parametrize("month", ["1999-01", "2030-06"])
def test_error_score_month_without_applications(trained, params, month):
    warehouse, champion = trained
    with pytest.raises(CreditflowError) as error:
        service.train_month(warehouse, month, params=params)
    message = str(error.value)
    assert f"no applications of score month {month} in application_features" in message
    assert "months there: history to 2021-01" in message
    assert service.champion(warehouse)["model_id"] == champion.model_id
    assert [model["model_id"] for model in service.list_models(warehouse)] == \
        [champion.model_id]


def test_error_single_class_training_set(settings, params):
    frame = sample_features(["history", "2020-10", "2020-11", "2020-12"])
    frame["target"] = 0
    write_feature_table(settings, frame)
    with pytest.raises(CreditflowError) as error:
        service.train_month(settings, "2020-12", params=params)
    message = str(error.value)
    assert "single class" in message
    assert "history, 2020-10, 2020-11" in message
    assert "2020-12" in message


def test_error_score_month_without_rows(trained, params):
    warehouse, _ = trained
    with pytest.raises(CreditflowError, match="score month 2021-03 has no rows") as error:
        service.score_month(warehouse, "2021-03", params=params)
    assert "creditflow ingest" in str(error.value)


def test_error_missing_model_file(trained, params):
    warehouse, outcome = trained
    (warehouse.models / outcome.model_id / "model.txt").unlink()
    with pytest.raises(CreditflowError) as error:
        service.score_month(warehouse, "2021-01", params=params)
    message = str(error.value)
    assert outcome.model_id in message
    assert "not found" in message
    assert "creditflow train" in message


def test_error_corrupted_model_file(trained, params):
    warehouse, outcome = trained
    path = warehouse.models / outcome.model_id / "model.txt"
    path.write_bytes(path.read_bytes()[:-200] + b"garbage")
    with pytest.raises(CreditflowError) as error:
        service.score_month(warehouse, "2021-01", params=params)
    assert outcome.model_id in str(error.value)
    assert "corrupted" in str(error.value)


def test_error_unreadable_model_file(trained, params):
    """A file that matches its hash but that LightGBM cannot read is reported, not crashed on."""
    warehouse, outcome = trained
    path = warehouse.models / outcome.model_id / "model.txt"
    path.write_bytes(b"not a model\n")
    connection = duckdb.connect(str(warehouse.warehouse))
    import hashlib
    connection.execute("update model_registry set artifact_sha256 = ?",
                       [hashlib.sha256(b"not a model\n").hexdigest()])
    connection.close()
    with pytest.raises(CreditflowError, match=f"model {outcome.model_id}.*cannot be read"):
        service.score_month(warehouse, "2021-01", params=params)


def test_error_feature_column_missing(trained, params):
    warehouse, outcome = trained
    write_feature_table(warehouse, sample_features().drop(columns=["ext_source_2"]))
    with pytest.raises(CreditflowError) as error:
        service.score_month(warehouse, "2021-01", params=params)
    message = str(error.value)
    assert "ext_source_2" in message
    assert outcome.model_id in message
    assert "creditflow build" in message


def test_error_scoring_a_training_month(trained, params):
    warehouse, _ = trained
    with pytest.raises(CreditflowError, match="trained on the labeled rows of 2020-12"):
        service.score_month(warehouse, "2020-12", params=params)


def test_error_no_champion_and_no_features(settings, params):
    with pytest.raises(CreditflowError, match="does not exist"):
        service.train_month(settings, "2021-01", params=params)
    write_feature_table(settings, sample_features(["history"]))
    with pytest.raises(CreditflowError, match="no champion model to score 2021-01"):
        service.score_month(settings, "2021-01", params=params)
    with pytest.raises(CreditflowError, match="no predictions for 2021-01"):
        service.export_predictions(settings, "2021-01")


def test_cli_error_exit_code(warehouse, capsys):
    assert main(["--home", str(warehouse.home), "score", "--month", "2021-01"]) == 2
    assert "no champion model" in capsys.readouterr().err
    assert main(["--home", str(warehouse.home), "train", "--month", "2021-13"]) == 2
    assert "invalid month" in capsys.readouterr().err


def test_compare_models_on_split(settings):
    # Three months keep the comparison quick: train on history and 2020-10, test on 2020-11.
    write_feature_table(settings, sample_features(["history", "2020-10", "2020-11"]))
    outcome = service.compare_month(settings, "2020-11")
    assert outcome.training_months == ["history", "2020-10"]
    assert outcome.test_month == "2020-11"
    names = [row["model"] for row in outcome.rows]
    assert names == ["logistic regression", "decision tree", "random forest", "linear SVM",
                     "LightGBM"]
    for row in outcome.rows:
        assert 0.55 < row["auc"] < 1.0, row
        assert 0.0 <= row["recall_at_cutoff"] <= 1.0
        assert row["fit_seconds"] >= 0


def test_models_folder_is_relocatable(trained, params, tmp_path):
    """Moving CREDITFLOW_HOME keeps the registry's model paths valid."""
    warehouse, outcome = trained
    moved = load_settings(tmp_path / "moved")
    shutil.copytree(warehouse.home, moved.home)
    shutil.rmtree(warehouse.home)
    assert service.score_month(moved, "2021-01", params=params).model_id == outcome.model_id


def test_sensitive_columns_left_out(warehouse):
    params = load_params().with_overrides(tuning={"trials": 2})
    assert "code_gender" in params.feature_selection["excluded"]
    outcome = service.train_month(warehouse, "2021-01", params=params)

    metadata = json.loads((warehouse.models / outcome.model_id / "metadata.json").read_text())
    assert "code_gender" not in metadata["features"]
    assert "code_gender" not in metadata["categories"]
    stored = _query(warehouse, "select feature from model_features where model_id = ?",
                    [outcome.model_id])
    assert "code_gender" not in set(stored["feature"])


def test_excluded_features_must_be_a_list():
    with pytest.raises(CreditflowError, match="feature_selection.excluded"):
        load_params().with_overrides(feature_selection={"excluded": "code_gender"})
