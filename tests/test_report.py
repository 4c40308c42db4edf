"""The monthly HTML report: sections, embedded charts, and figures checked independently."""

from __future__ import annotations

import base64
import csv
import io
import re
import shutil

import duckdb
import matplotlib.image
import pytest
from sklearn.metrics import roc_auc_score

from flows.cli import main
from flows.config import load_settings
from flows.errors import CreditflowError
from flows.report import write_report
from tests.monitoring_data import DRIFTED, synthetic_home

IMAGE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _images(document: str) -> dict[str, bytes]:
    """Return the report's embedded images by alt text, decoded from base64."""
    return {alt: base64.b64decode(data, validate=True) for alt, data in IMAGE.findall(document)}


def _assert_png(data: bytes) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.shape[0] > 100
    assert pixels.shape[1] > 100


def test_report_synthetic_sections(tmp_path_factory, tmp_path):
    settings = load_settings(synthetic_home(tmp_path_factory))
    path = write_report(settings, "2021-01", out=tmp_path / "report.html")
    document = path.read_text(encoding="utf-8")
    images = _images(document)
    expected_images = (
        "gain importance of the model features", "approval rate trend by month",
        "top drifting features by PSI", "realized ROC curve", "calibration by score decile",
    )
    for alt in expected_images:
        assert alt in images, alt
        _assert_png(images[alt])
    assert any(alt.startswith("default probability distribution") for alt in images)
    for heading in ("Alerts", "Model card", "Score distribution", "Decisions and approval rate",
                    "Feature drift", "Fairness", "Realized performance"):
        assert f"<h2>{heading}</h2>" in document, heading
    for feature in DRIFTED["2021-01"]:
        assert f"feature {feature} drifted in 2021-01" in document


def test_report_default_path_and_cli(tmp_path_factory, capsys):
    settings = load_settings(synthetic_home(tmp_path_factory))
    assert main(["--home", str(settings.home), "report", "--month", "2020-11"]) == 0
    expected = settings.reports / "report_2020-11.html"
    assert expected.exists()
    assert str(expected) in capsys.readouterr().out


def test_report_unknown_month_fails(tmp_path_factory):
    settings = load_settings(synthetic_home(tmp_path_factory))
    with pytest.raises(CreditflowError, match="nothing to report for 2019-01"):
        write_report(settings, "2019-01")


def test_report_missing_warehouse_fails(settings):
    with pytest.raises(CreditflowError, match="does not exist"):
        write_report(settings, "2021-01")


@pytest.mark.slow
def test_report_real_month_auc(backfilled_home, real_files, tmp_path):
    """The report of 2021-01 that the monthly flow wrote after running the real sample months."""
    flow_report = backfilled_home / "reports" / "report_2021-01.html"
    assert flow_report.exists()
    settings = load_settings(backfilled_home)
    path = write_report(settings, "2021-01", out=tmp_path / "report.html")

    for document in (flow_report.read_text(encoding="utf-8"),
                     path.read_text(encoding="utf-8")):
        images = _images(document)
        assert len(images) >= 6
        for data in images.values():
            _assert_png(data)
        assert "realized ROC curve" in images
        assert "calibration by score decile" in images
        assert "top drifting features by PSI" in images

    # Labels straight from the file, scores from the predictions table.
    with real_files[-1].open(newline="", encoding="utf-8") as handle:
        labels = {int(row["SK_ID_CURR"]): int(row["TARGET"]) for row in csv.DictReader(handle)}
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        scores = dict(connection.execute(
            "select sk_id_curr, default_probability from predictions "
            "where score_month = '2021-01'").fetchall())
        realized = connection.execute(
            "select auc, labeled_rows from monitoring_performance where month = '2021-01'"
        ).fetchall()
    assert set(scores) == set(labels)
    ids = sorted(labels)
    expected = roc_auc_score([labels[i] for i in ids], [scores[i] for i in ids])
    assert realized[0][1] == 1000
    assert realized[0][0] == pytest.approx(expected, abs=1e-9)
    assert f"<td class=\"num\">{realized[0][0]:.4g}</td>" in document


def test_report_warns_on_stale_monitoring(tmp_path_factory, tmp_path, caplog):
    home = tmp_path / "home"
    shutil.copytree(synthetic_home(tmp_path_factory), home)
    settings = load_settings(home)
    with caplog.at_level("WARNING", logger="flows.report"):
        write_report(settings, "2021-01", out=tmp_path / "current.html")
    assert "out of date" not in caplog.text

    # A standalone score that changed the month's predictions without rebuilding monitoring.
    with duckdb.connect(str(settings.warehouse)) as connection:
        connection.execute("delete from predictions where score_month = '2021-01' "
                           "and sk_id_curr % 2 = 0")
        remaining = connection.execute("select count(*) from predictions "
                                  "where score_month = '2021-01'").fetchone()[0]
    with caplog.at_level("WARNING", logger="flows.report"):
        write_report(settings, "2021-01", out=tmp_path / "stale.html")
    assert f"the monitoring tables of 2021-01 are out of date: predictions has {remaining}" in \
        caplog.text
    assert "creditflow build --select tag:monitoring" in caplog.text
