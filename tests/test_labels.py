"""Late labels: validation messages, the stored labels, and the rebuilt applications table."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from flows.cli import main
from flows.config import load_settings
from flows.dbt_runner import build_features
from flows.ingest import ingest_file
from flows.labels import LabelsError, ingest_labels
from tests.conftest import REAL_UNLABELED


@pytest.fixture(scope="module")
def loaded_home(real_files, tmp_path_factory) -> Path:
    """A data directory with history, 2020-10, 2020-11 and the unlabeled rows as 2021-02."""
    settings = load_settings(tmp_path_factory.mktemp("labels") / "home")
    settings.ensure_dirs()
    for path in real_files[:3]:
        assert ingest_file(settings, path).accepted
    unlabeled = tmp_path_factory.mktemp("unlabeled") / "20210201.csv"
    shutil.copy(REAL_UNLABELED, unlabeled)
    assert ingest_file(settings, unlabeled).accepted
    return settings.home


@pytest.fixture
def home(loaded_home, tmp_path):
    """A private copy of the loaded data directory, so a test may change it."""
    target = tmp_path / "home"
    shutil.copytree(loaded_home, target)
    settings = load_settings(target)
    return settings


def _month_ids(settings, month: str) -> list[int]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        rows = connection.execute(
            "select sk_id_curr from raw_applications where month = ? order by sk_id_curr", [month]
        ).fetchall()
    return [row[0] for row in rows]


def _snapshot(settings):
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        applications = connection.execute(
            "select sk_id_curr, month, target, load_id from raw_applications order by sk_id_curr"
        ).fetchall()
        log = connection.execute("select * from load_log order by load_id").fetchall()
    kept = sorted(p.name for p in (settings.landed / "labels").glob("*")) if (
        settings.landed / "labels").exists() else []
    return applications, log, kept


def _write(path: Path, rows: list[tuple], header: str = "SK_ID_CURR,TARGET") -> Path:
    lines = [header, *(",".join(str(v) for v in row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rejected(settings, path: Path, month: str) -> str:
    before = _snapshot(settings)
    with pytest.raises(LabelsError) as caught:
        ingest_labels(settings, path, month)
    assert _snapshot(settings) == before
    message = str(caught.value)
    assert str(path) in message
    assert "nothing was changed" in message
    return message


def test_labels_fill_unlabeled_month(home, tmp_path):
    ids = _month_ids(home, "2021-02")
    rows = [(sk_id, i % 2) for i, sk_id in enumerate(ids)]
    result = ingest_labels(home, _write(tmp_path / "labels.csv", rows), "2021-02")
    assert result.rows == len(ids)
    assert result.newly_labeled == len(ids)
    assert result.changed == 0
    assert result.defaults == sum(t for _, t in rows)
    with duckdb.connect(str(home.warehouse), read_only=True) as connection:
        stored = dict(connection.execute(
            "select sk_id_curr, target from raw_applications where month = '2021-02'").fetchall())
        load_ids = connection.execute(
            "select distinct load_id from raw_applications where month = '2021-02'").fetchall()
        log = connection.execute(
            "select outcome, rows, month, file_name from load_log where load_id = ?",
            [result.load_id]).fetchall()
    assert stored == dict(rows)
    assert len(load_ids) == 1
    assert load_ids[0][0] != result.load_id
    assert log == [("labeled", len(ids), "2021-02", "labels.csv")]
    assert result.stored_path.exists()


def test_labels_correct_some_targets(home, tmp_path):
    ids = _month_ids(home, "2020-10")[:20]
    with duckdb.connect(str(home.warehouse), read_only=True) as connection:
        before = dict(connection.execute(
            "select sk_id_curr, target from raw_applications where month = '2020-10'").fetchall())
    rows = [(sk_id, 1 - before[sk_id]) if i < 3 else (sk_id, before[sk_id])
            for i, sk_id in enumerate(ids)]
    result = ingest_labels(home, _write(tmp_path / "fix.csv", rows), "2020-10")
    assert result.changed == 3
    assert result.unchanged == 17
    assert result.newly_labeled == 0
    with duckdb.connect(str(home.warehouse), read_only=True) as connection:
        after = dict(connection.execute(
            "select sk_id_curr, target from raw_applications where month = '2020-10'").fetchall())
    assert after == {**before, **dict(rows)}


def test_labels_unknown_ids_rejected(home, tmp_path):
    ids = _month_ids(home, "2020-10")
    path = _write(tmp_path / "unknown.csv", [(ids[0], 0), (999999999, 1), (ids[1], 1)])
    message = _rejected(home, path, "2020-10")
    assert "1 SK_ID_CURR value(s) are not in the warehouse" in message
    assert "line 3: 999999999" in message


def test_labels_duplicate_ids_rejected(home, tmp_path):
    ids = _month_ids(home, "2020-10")
    path = _write(tmp_path / "dup.csv", [(ids[0], 0), (ids[1], 1), (ids[0], 1)])
    message = _rejected(home, path, "2020-10")
    assert "appear more than once" in message
    assert f"{ids[0]} on lines 2, 4" in message


@pytest.mark.parametrize("bad_value", ["2", "yes", "", "-1", "0.5"])
def test_labels_target_not_binary_rejected(home, tmp_path, bad_value):
    ids = _month_ids(home, "2020-10")
    path = _write(tmp_path / "target.csv", [(ids[0], 0), (ids[1], bad_value)])
    message = _rejected(home, path, "2020-10")
    assert "TARGET value(s) are not 0 or 1" in message
    assert f"line 3 (ID {ids[1]}): {bad_value!r}" in message


def test_labels_wrong_month_rejected(home, tmp_path):
    november = _month_ids(home, "2020-11")[:4]
    path = _write(tmp_path / "november.csv", [(sk_id, 0) for sk_id in november])
    message = _rejected(home, path, "2020-10")
    assert "4 SK_ID_CURR value(s) belong to other months, not 2020-10 [2020-11 (4)]" in message
    assert f"line 2: {november[0]} is in 2020-11" in message
    assert "every ID belongs to 2020-11" in message
    assert "run with --month 2020-11" in message
    mixed = _write(tmp_path / "mixed.csv", [(november[0], 0), (_month_ids(home, "2020-10")[0], 1)])
    assert "labels file of another month" in _rejected(home, mixed, "2020-10")


def test_labels_id_not_integer_rejected(home, tmp_path):
    path = _write(tmp_path / "text.csv", [("abc", 0)])
    message = _rejected(home, path, "2020-10")
    assert "SK_ID_CURR value(s) are not integers: line 2: 'abc'" in message


def test_labels_missing_column_rejected(home, tmp_path):
    path = _write(tmp_path / "columns.csv", [(100002, 1)], header="SK_ID_CURR,DEFAULT")
    with pytest.raises(LabelsError, match="missing column\\(s\\) TARGET"):
        ingest_labels(home, path, "2020-10")


def test_labels_empty_file_rejected(home, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(LabelsError, match="the file is empty"):
        ingest_labels(home, path, "2020-10")
    header_only = _write(tmp_path / "header.csv", [])
    with pytest.raises(LabelsError, match="no label rows"):
        ingest_labels(home, header_only, "2020-10")


def test_labels_month_without_applications(home, tmp_path):
    path = _write(tmp_path / "labels.csv", [(100002, 1)])
    message = _rejected(home, path, "2019-05")
    assert "month 2019-05 has no applications" in message


def test_labels_rebuild_applications(home, tmp_path):
    ids = _month_ids(home, "2021-02")
    ingest_labels(home, _write(tmp_path / "first.csv", [(ids[0], 1), (ids[1], 0)]), "2021-02")
    build_features(home)
    # The corrected labels swap the default between two applications: equal counts, new targets.
    ingest_labels(home, _write(tmp_path / "second.csv", [(ids[0], 0), (ids[1], 1)]), "2021-02")
    build_features(home)
    with duckdb.connect(str(home.warehouse), read_only=True) as connection:
        applications = dict(connection.execute(
            "select sk_id_curr, target from applications where sk_id_curr in (?, ?)",
            ids[:2]).fetchall())
        features = dict(connection.execute(
            "select sk_id_curr, target from application_features where sk_id_curr in (?, ?)",
            ids[:2]).fetchall())
    assert applications == {ids[0]: 0, ids[1]: 1}
    assert features == {ids[0]: 0, ids[1]: 1}


def test_cli_rejected_labels_exit_1(settings, tmp_path, capsys):
    # Like `creditflow ingest` for a rejected file: 1, while 2 stays for invalid arguments.
    path = _write(tmp_path / "labels.csv", [(100002, 1)])
    code = main(["--home", str(settings.home), "ingest-labels", str(path), "--month", "2019-05"])
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: labels file {path} rejected")
    assert "month 2019-05 has no applications" in error


def test_cli_labels_invalid_month_exit_2(settings, tmp_path, capsys):
    path = _write(tmp_path / "labels.csv", [(100002, 1)])
    code = main(["--home", str(settings.home), "ingest-labels", str(path), "--month", "2019-5"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: invalid month '2019-5'")
