"""The model on the dbt-built feature table of the real sample: gate, dbt, train, score.

The real sample is split as the business sends it: history, then 2020-10 to 2021-01. The model
for 2021-01 trains on the months before it, so the labels of 2021-01 give its true out-of-time
AUC.
"""

from __future__ import annotations

import json
import logging
import shutil

import duckdb
import pytest

from benchmarks import model_backtest, model_quality
from flows.config import load_settings
from ml import service

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def built_home(real_files, tmp_path_factory):
    """A deployment with the real split ingested and the features built by dbt, made once."""
    home = tmp_path_factory.mktemp("real_ml") / "home"
    model_quality.prepare_warehouse(load_settings(home), real_files)
    return home


@pytest.fixture
def real_settings(built_home, settings):
    shutil.rmtree(settings.home)
    shutil.copytree(built_home, settings.home)
    return settings


def test_real_month_out_of_time(real_settings):
    outcome = service.train_month(real_settings, "2021-01", trials=5)
    assert outcome.training_months == ["history", "2020-10", "2020-11", "2020-12"]
    assert outcome.validation_month == "2020-12"
    assert outcome.out_of_time

    connection = duckdb.connect(str(real_settings.warehouse), read_only=True)
    try:
        months = connection.execute("select month from model_training_months where model_id = ?",
                                    [outcome.model_id]).fetchall()
        columns = {row[0] for row in connection.execute(
            "select column_name from information_schema.columns "
            "where table_name = 'application_features'").fetchall()}
    finally:
        connection.close()
    assert ("2021-01",) not in months
    metadata = json.loads((real_settings.models / outcome.model_id / "metadata.json").read_text())
    assert metadata["metrics"]["training_rows"] == 2999 + 3 * 1000
    selection = service.load_params().feature_selection
    assert not set(selection["excluded"]) & set(metadata["features"])
    available = len(columns - {"sk_id_curr", "month", "target"} - set(selection["excluded"]))
    expected = available
    if selection["method"] == "top_k":
        expected = min(expected, selection["top_k"])
    if selection["method"] == "gain_share":
        assert len(metadata["features"]) <= expected
    else:
        assert len(metadata["features"]) == expected
    assert len(metadata["feature_selection"]["gain"]) in (0, available)

    scored = service.score_month(real_settings, "2021-01")
    logger.info("real sample 2021-01: validation AUC %.4f on 2020-12, realized AUC %.4f",
                outcome.validation_auc, scored.auc)
    assert scored.rows == 1000
    assert scored.unseen_categories == {}
    assert scored.auc is not None and scored.auc > 0.68


def test_model_quality_benchmark_quick(real_settings, real_files, tmp_path):
    """The benchmark script runs end to end; few trials, so its figures are not the report's."""
    result = model_quality.measure(real_settings, real_files, trials=3, notebook_trials=3)
    assert result["test_rows"] == 1000
    assert result["test_defaults"] == 76
    assert 0.6 < result["notebook"]["auc"] < 0.9
    assert 0.6 < result["creditflow"]["auc"] < 0.9
    assert result["difference"] == pytest.approx(
        result["creditflow"]["auc"] - result["notebook"]["auc"])
    low, high = result["difference_bootstrap_95"]
    assert low < result["difference"] < high
    low, high = result["creditflow_auc_bootstrap_95"]
    assert low < result["creditflow"]["auc"] < high
    assert result["creditflow"]["validation_month"] == "2020-12"
    assert result["creditflow"]["features"] <= result["creditflow"]["features_available"]
    assert 0.6 < result["creditflow_with_code_gender"]["auc"] < 0.9
    out = tmp_path / "model_quality.json"
    out.write_text(json.dumps(result, default=str))
    assert json.loads(out.read_text())["notebook"]["columns"] == 20


def test_model_backtest_quick(real_settings, real_files):
    """The backtest runs end to end on months before 2021-01; one trial, so no figure counts."""
    candidate = next(c for c in model_backtest.CANDIDATES if c.name == "new_features")
    result = model_backtest.run_backtest(real_settings, trials=1, candidates=[candidate],
                                         months=["2020-12"], files=real_files)
    baseline, row = result["rows"]
    assert [baseline["name"], row["name"]] == ["baseline", "new_features"]
    assert baseline["validation_month"] == {"2020-12": "2020-11"}
    assert 0.6 < baseline["auc"]["2020-12"] < 0.9
    assert 0.6 < result["notebook_auc"]["2020-12"] < 0.9
    assert result["chosen"] in ("baseline", "new_features")
    assert "2021-01" not in json.dumps(result["rows"])
