"""dbt models on real DuckDB warehouses: the real sample landed by the ingest gate, then built."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from flows import dbt_runner
from flows.cli import main as cli_main
from flows.config import DBT_PROJECT_DIR, Settings, load_settings
from flows.dbt_runner import DbtError, build_features, generate_docs, run_dbt
from flows.ingest import ingest_file
from flows.schema import (
    APPLICANT_COLUMNS,
    CATEGORIES,
    COLUMNS_BY_NAME,
    DAYS_EMPLOYED_NOT_EMPLOYED,
    DOCUMENT_FLAGS,
    EXT_SOURCE_COLUMNS,
    MISSING_CATEGORY,
)
from tests.conftest import REAL_MONTHS, REAL_SAMPLE, REAL_UNLABELED

MONTH_ROWS = {"history": 2999, **{month: 1000 for month in REAL_MONTHS}}
UNLABELED_MONTH = "2021-02"
FLAG_COLUMNS = ["is_days_employed_sentinel", "is_code_gender_xna", "is_organization_type_xna"]


def _ingest_all(settings: Settings, paths: list[Path]) -> None:
    for path in paths:
        result = ingest_file(settings, path)
        assert result.outcome in ("loaded", "replaced"), result.message


def _query(settings: Settings, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def _can_open_from_other_process(path: Path) -> subprocess.CompletedProcess:
    """Open the warehouse read-write in a new process, which fails while this one has it open."""
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=120)


def _unlabeled_file(folder: Path) -> Path:
    """The 49 real rows without TARGET, named as the file of the month after the sample."""
    if not REAL_UNLABELED.exists():
        pytest.skip(f"real unlabeled sample not found at {REAL_UNLABELED}")
    path = folder / (UNLABELED_MONTH.replace("-", "") + "01.csv")
    shutil.copyfile(REAL_UNLABELED, path)
    return path


@pytest.fixture(scope="module")
def built(real_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A warehouse with the real sample and the unlabeled month ingested and built once."""
    settings = load_settings(tmp_path_factory.mktemp("dbt_built") / "home")
    settings.ensure_dirs()
    _ingest_all(settings, [*real_files, _unlabeled_file(tmp_path_factory.mktemp("unlabeled"))])
    build_features(settings)
    return settings


def _real_rows() -> dict[int, dict[str, str]]:
    """Return the rows of the real sample and the unlabeled sample (no TARGET) by id."""
    rows = {}
    for path in (REAL_SAMPLE, REAL_UNLABELED):
        with path.open(newline="", encoding="utf-8") as handle:
            rows.update({int(row["SK_ID_CURR"]): row for row in csv.DictReader(handle)})
    return rows


def _number(text: str) -> float | None:
    return float(text) if text != "" else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _difference(minuend: float | None, subtrahend: float | None) -> float | None:
    if minuend is None or subtrahend is None:
        return None
    return minuend - subtrahend


def _expected_features(row: dict[str, str]) -> dict[str, float | int | None]:
    """Compute the engineered features of one file row in plain Python."""
    days_employed = _number(row["DAYS_EMPLOYED"])
    if days_employed == DAYS_EMPLOYED_NOT_EMPLOYED:
        days_employed = None
    days_birth = _number(row["DAYS_BIRTH"])
    scores = [_number(row[name]) for name in EXT_SOURCE_COLUMNS]
    present = [score for score in scores if score is not None]

    missing = sum(1 for name in APPLICANT_COLUMNS if row[name] == "")
    missing += row["DAYS_EMPLOYED"] == str(DAYS_EMPLOYED_NOT_EMPLOYED)
    missing += row["CODE_GENDER"] == MISSING_CATEGORY
    missing += row["ORGANIZATION_TYPE"] == MISSING_CATEGORY

    return {
        "credit_income_ratio": _ratio(_number(row["AMT_CREDIT"]), _number(row["AMT_INCOME_TOTAL"])),
        "annuity_income_ratio": _ratio(_number(row["AMT_ANNUITY"]),
                                       _number(row["AMT_INCOME_TOTAL"])),
        "annuity_credit_ratio": _ratio(_number(row["AMT_ANNUITY"]), _number(row["AMT_CREDIT"])),
        "goods_credit_ratio": _ratio(_number(row["AMT_GOODS_PRICE"]), _number(row["AMT_CREDIT"])),
        "income_per_family_member": _ratio(_number(row["AMT_INCOME_TOTAL"]),
                                           _number(row["CNT_FAM_MEMBERS"])),
        "credit_goods_difference": _difference(_number(row["AMT_CREDIT"]),
                                               _number(row["AMT_GOODS_PRICE"])),
        "age_years": -days_birth / 365.25,
        "employment_years": None if days_employed is None else -days_employed / 365.25,
        "employment_age_ratio": _ratio(days_employed, days_birth),
        "id_publish_age_ratio": _ratio(_number(row["DAYS_ID_PUBLISH"]), days_birth),
        "phone_change_age_ratio": _ratio(_number(row["DAYS_LAST_PHONE_CHANGE"]), days_birth),
        "ext_source_count": len(present),
        "ext_source_min": min(present) if present else None,
        "ext_source_max": max(present) if present else None,
        "ext_source_mean": statistics.fmean(present) if present else None,
        "ext_source_std": statistics.pstdev(present) if present else None,
        "ext_source_product": (scores[0] * scores[1] * scores[2]
                               if len(present) == len(scores) else None),
        "ext_source_2_3_product": (scores[1] * scores[2]
                                   if scores[1] is not None and scores[2] is not None else None),
        "missing_field_count": missing,
        "document_flag_count": sum(int(row[name] or 0) for name in DOCUMENT_FLAGS),
        "is_days_employed_sentinel": int(row["DAYS_EMPLOYED"] == str(DAYS_EMPLOYED_NOT_EMPLOYED)),
        "is_organization_type_xna": int(row["ORGANIZATION_TYPE"] == MISSING_CATEGORY),
    }


def _pick_rows(rows: dict[int, dict[str, str]]) -> list[int]:
    """Pick real applications that cover the cases of the feature SQL."""
    cases = [
        lambda r: True,
        lambda r: r["DAYS_EMPLOYED"] == str(DAYS_EMPLOYED_NOT_EMPLOYED),
        lambda r: r["EXT_SOURCE_1"] == "" and r["EXT_SOURCE_3"] != "",
        lambda r: r["EXT_SOURCE_1"] != "" and r["EXT_SOURCE_2"] != "" and r["EXT_SOURCE_3"] != "",
        lambda r: r["AMT_GOODS_PRICE"] == "",
        lambda r: r.get("TARGET") == "1",
        lambda r: "TARGET" not in r,
    ]
    picked = []
    for case in cases:
        picked.append(next(key for key, row in rows.items() if case(row) and key not in picked))
    return picked


def test_real_sample_month_counts(built: Settings) -> None:
    for table in ("applications", "application_features"):
        counts = dict(_query(built, f"select month, count(*) from {table} group by month"))
        assert counts == {**MONTH_ROWS, UNLABELED_MONTH: 49}, table


def test_unlabeled_month_has_null_target(built: Settings) -> None:
    for table in ("applications", "application_features"):
        rows, labelled = _query(
            built, f"select count(*), count(target) from {table} where month = ?",
            [UNLABELED_MONTH],
        )[0]
        assert rows == 49, table
        assert labelled == 0, table


def test_labelled_months_keep_targets(built: Settings) -> None:
    unlabelled = _query(
        built, "select count(*) from application_features where month <> ? and target is null",
        [UNLABELED_MONTH],
    )[0][0]
    assert unlabelled == 0


def test_applications_columns_follow_contract(built: Settings) -> None:
    columns = [row[0] for row in _query(built, "describe applications")]
    applicant = [name.lower() for name in APPLICANT_COLUMNS]
    assert columns == ["sk_id_curr", "month", "target", *applicant, *FLAG_COLUMNS, "load_id"]


def test_feature_columns_types(built: Settings) -> None:
    types = dict(row[:2] for row in _query(built, "describe application_features"))
    assert list(types)[:3] == ["sk_id_curr", "month", "target"]
    assert "load_id" not in types
    for name in APPLICANT_COLUMNS:
        kind = COLUMNS_BY_NAME[name].dtype
        expected = {"str": "VARCHAR", "int": "INTEGER", "float": "DOUBLE"}[kind]
        assert types[name.lower()] == expected, name
    for name in FLAG_COLUMNS:
        assert types[name] == "INTEGER", name
    assert types["credit_income_ratio"] == "DOUBLE"
    assert types["missing_field_count"] == "INTEGER"


def test_sentinels_become_null_with_flags(built: Settings) -> None:
    rows = _real_rows()
    pensioners = [key for key, row in rows.items()
                  if row["DAYS_EMPLOYED"] == str(DAYS_EMPLOYED_NOT_EMPLOYED)]
    assert pensioners, "the real sample has applicants without employment"
    stored = _query(
        built,
        "select count(*), count(days_employed), count(*) filter (where is_days_employed_sentinel)"
        " from applications where days_employed is null and is_days_employed_sentinel",
    )[0]
    assert stored[0] == len(pensioners)
    assert stored[1] == 0
    xna = _query(built, "select count(*) from applications where organization_type = 'XNA'"
                        " or code_gender = 'XNA'")[0][0]
    assert xna == 0
    flagged = _query(built, "select count(*) from applications where is_organization_type_xna")
    expected = sum(1 for row in rows.values() if row["ORGANIZATION_TYPE"] == MISSING_CATEGORY)
    assert flagged[0][0] == expected


def test_engineered_features_match_python(built: Settings) -> None:
    rows = _real_rows()
    for key in _pick_rows(rows):
        expected = _expected_features(rows[key])
        names = list(expected)
        stored = _query(
            built, f"select {', '.join(names)} from application_features where sk_id_curr = ?",
            [key],
        )
        assert len(stored) == 1, key
        for name, value in zip(names, stored[0], strict=True):
            if expected[name] is None:
                assert value is None, (key, name)
            else:
                assert value == pytest.approx(expected[name], rel=1e-12, abs=1e-15), (key, name)


def test_raw_values_pass_through(built: Settings) -> None:
    rows = _real_rows()
    key = _pick_rows(rows)[0]
    row = rows[key]
    stored = _query(
        built,
        "select amt_credit, name_contract_type, cnt_children, target, month"
        " from application_features where sk_id_curr = ?",
        [key],
    )[0]
    assert stored[0] == float(row["AMT_CREDIT"])
    assert stored[1] == row["NAME_CONTRACT_TYPE"]
    assert stored[2] == int(row["CNT_CHILDREN"])
    assert stored[3] == int(row["TARGET"])
    assert stored[4] == "history"


def test_lock_released_after_build(built: Settings) -> None:
    build_features(built)
    opened = _can_open_from_other_process(built.warehouse)
    assert opened.returncode == 0, opened.stderr


def test_docs_generate_shows_lineage(built: Settings) -> None:
    index = generate_docs(built)
    assert index.exists()
    catalog = json.loads((index.parent / "catalog.json").read_text())
    assert "model.creditflow.application_features" in catalog["nodes"]
    manifest = json.loads((index.parent / "manifest.json").read_text())
    predictions_users = manifest["child_map"]["source.creditflow.creditflow.predictions"]
    assert "exposure.creditflow.predictions_export" in predictions_users
    feature_users = manifest["child_map"]["model.creditflow.application_features"]
    assert "exposure.creditflow.default_model" in feature_users
    opened = _can_open_from_other_process(built.warehouse)
    assert opened.returncode == 0, opened.stderr


def test_applicant_column_macro_matches_schema() -> None:
    text = (DBT_PROJECT_DIR / "macros" / "applicant_columns.sql").read_text()
    listed = [line.split('"')[1] for line in text.splitlines() if line.strip().startswith('"')]
    kinds = [line.split('"')[3] for line in text.splitlines() if line.strip().startswith('"')]
    assert listed == [name.lower() for name in APPLICANT_COLUMNS]
    assert kinds == [COLUMNS_BY_NAME[name].dtype for name in APPLICANT_COLUMNS]


def test_categories_cover_schema_values() -> None:
    # Every accepted_values test lists the contract's values, without 'XNA' where it became null.
    text = (DBT_PROJECT_DIR / "models" / "intermediate" / "int_applications_accumulated.yml"
            ).read_text()
    for name, values in CATEGORIES.items():
        for value in values:
            if value == MISSING_CATEGORY and name in ("CODE_GENDER", "ORGANIZATION_TYPE"):
                continue
            assert json.dumps(value) in text, (name, value)


def test_reingested_month_replaces_rows(settings: Settings, real_files: list[Path],
                                        tmp_path: Path) -> None:
    history, october = real_files[0], real_files[1]
    _ingest_all(settings, [history, october])
    build_features(settings)
    first_load = _query(settings, "select distinct load_id from applications where month = ?",
                        ["2020-10"])

    # Different bytes for October: the first application's credit amount is corrected.
    lines = october.read_text(encoding="utf-8").splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    first = next(csv.reader([lines[1]]))
    first[header.index("AMT_CREDIT")] = "123456.5"
    corrected = tmp_path / october.name
    with corrected.open("w", newline="", encoding="utf-8") as handle:
        handle.write(lines[0])
        csv.writer(handle).writerow(first)
        handle.writelines(lines[2:])
    assert ingest_file(settings, corrected).outcome == "replaced"
    build_features(settings)
    build_features(settings)

    for table in ("applications", "application_features"):
        counts = dict(_query(settings, f"select month, count(*) from {table} group by month"))
        assert counts == {"history": 2999, "2020-10": 1000}, table
    loads = _query(settings, "select distinct load_id from applications where month = ?",
                   ["2020-10"])
    assert len(loads) == 1
    assert loads != first_load
    credit = _query(settings, "select amt_credit, credit_income_ratio from application_features"
                              " where sk_id_curr = ?", [int(first[0])])[0]
    assert credit[0] == 123456.5
    income = float(first[header.index("AMT_INCOME_TOTAL")])
    assert credit[1] == pytest.approx(123456.5 / income, rel=1e-12)


def test_changed_labels_rebuild_month(settings: Settings, real_files: list[Path]) -> None:
    _ingest_all(settings, real_files[:2])
    build_features(settings)
    # Labels corrected in place (same load), as late labels arrive: swap two applications' targets.
    with duckdb.connect(str(settings.warehouse)) as connection:
        defaulted, repaid = (
            connection.execute(
                "select min(sk_id_curr) from raw_applications where month = '2020-10'"
                " and target = ?", [value]).fetchone()[0]
            for value in (1, 0)
        )
        connection.execute("update raw_applications set target = 1 - target"
                           " where sk_id_curr in (?, ?)", [defaulted, repaid])
    build_features(settings)
    stored = dict(_query(settings, "select sk_id_curr, target from application_features"
                                   " where sk_id_curr in (?, ?)", [defaulted, repaid]))
    assert stored == {defaulted: 0, repaid: 1}


def test_broken_model_names_model(settings: Settings, tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (project / "models" / "marts" / "broken_month_summary.sql").write_text(
        "select month, count(*) as applications\nfrom {{ ref('int_applications_accumulated') }}\n"
        "group by month having\n"
    )
    with pytest.raises(DbtError) as raised:
        run_dbt(settings, ["build", "--select", "+broken_month_summary"], project_dir=project)
    message = str(raised.value)
    assert "model broken_month_summary" in message
    assert "syntax error" in message.lower()
    assert str(settings.warehouse) in message
    log_file = dbt_runner.log_dir(settings) / "dbt.log"
    assert str(log_file) in message
    assert "broken_month_summary" in log_file.read_text()
    opened = _can_open_from_other_process(settings.warehouse)
    assert opened.returncode == 0, opened.stderr


def test_failing_data_test_names_test(settings: Settings, real_files: list[Path]) -> None:
    _ingest_all(settings, real_files[:1])
    with duckdb.connect(str(settings.warehouse)) as connection:
        connection.execute("update load_log set rows = rows + 1")
    with pytest.raises(DbtError) as raised:
        build_features(settings)
    assert "assert_month_rows_match_load_log" in str(raised.value)


def test_locked_warehouse_fails_fast(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbt_runner, "LOCK_WAIT_SECONDS", 0.5)
    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
            " time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(settings.warehouse)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DbtError) as raised:
            build_features(settings)
    finally:
        holder.kill()
        holder.wait()
    assert str(settings.warehouse) in str(raised.value)
    assert "locked" in str(raised.value)


def test_cli_build_selection(settings: Settings, capsys: pytest.CaptureFixture) -> None:
    code = cli_main(["--home", str(settings.home), "build", "--select", "stg_applications"])
    assert code == 0
    assert str(settings.warehouse) in capsys.readouterr().out
    views = _query(settings, "select count(*) from information_schema.tables"
                             " where table_name = 'stg_applications'")
    assert views[0][0] == 1


def test_changed_columns_need_full_refresh(settings: Settings, tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    selection = ["--select", "stg_applications", "int_applications_accumulated"]
    run_dbt(settings, ["build", *selection], project_dir=project)

    staging = project / "models" / "staging" / "stg_applications.sql"
    text = staging.read_text()
    assert "        load_id\n    from typed" in text
    staging.write_text(text.replace("        load_id\n    from typed",
                                    "        load_id,\n        1 as review_flag\n    from typed"))
    with pytest.raises(DbtError) as raised:
        run_dbt(settings, ["build", *selection], project_dir=project)
    assert "model int_applications_accumulated" in str(raised.value)
    assert "creditflow build --full-refresh" in str(raised.value)

    run_dbt(settings, ["build", *selection, "--full-refresh"], project_dir=project)
    columns = [row[0] for row in _query(settings, "describe applications")]
    assert columns[-1] == "review_flag"


def test_feature_contract_rejects_type_change(settings: Settings, tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    contract = project / "models" / "marts" / "application_features.yml"
    declared = "      - name: credit_income_ratio\n        data_type: double precision"
    text = contract.read_text()
    assert declared in text
    contract.write_text(text.replace(declared, declared.replace("double precision", "integer")))

    with pytest.raises(DbtError) as raised:
        run_dbt(settings, ["build", "--select", "+application_features"], project_dir=project)
    message = str(raised.value)
    assert "model application_features" in message
    assert "credit_income_ratio" in message
