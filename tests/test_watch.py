"""The inbox watcher on a local folder and on a real S3-compatible server (moto) on 127.0.0.1.

The quick tests use the history file, which the watcher only places in the local inbox, so they
check the decisions without a monthly run. The slow tests run 2021-01 on a copy of the
backfilled data directory (``backfilled_home`` in tests/conftest.py) with the champion model,
which did not train on that month's labels.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import shutil
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.cli import main
from flows.config import Settings
from flows.month_lock import lock_path
from flows.pipeline_runs import RUN
from flows.storage import Location, StorageError
from flows.warehouse import connect
from flows.watch import (
    INTERRUPTED,
    RUNNING,
    STAGED,
    SUCCEEDED,
    Watcher,
    is_temporary_name,
    sha256_of,
    wait_for_change,
)

WATCH_LOGGER = "flows.watch"


def _watcher(settings: Settings, drop: Path, out: Path) -> Watcher:
    drop.mkdir(parents=True, exist_ok=True)
    configured = dataclasses.replace(settings, inbox_url=str(drop), output_url=str(out))
    return Watcher(configured, reuse_model=True)


def _actions(decisions) -> dict[str, str]:
    return {decision.name: decision.action for decision in decisions}


def _ids_of_csv(text: str, column: str) -> list[int]:
    return sorted(int(row[column]) for row in csv.DictReader(io.StringIO(text)))


def _run_detail(home: Path, run_id: str) -> dict:
    with connect(home / "warehouse.duckdb", read_only=True) as connection:
        row = connection.execute("select detail from pipeline_runs where run_id = ? and step = ?",
                                 [run_id, RUN]).fetchone()
    return json.loads(row[0])


def _run_count(home: Path) -> int:
    with connect(home / "warehouse.duckdb", read_only=True) as connection:
        return connection.execute("select count(*) from pipeline_runs where step = ?",
                                  [RUN]).fetchone()[0]


# --- decisions without a monthly run ---------------------------------------------------------

@pytest.mark.parametrize("name, temporary", [
    (".20210101.csv.swp", True), ("20210101.csv.tmp", True), ("20210101.csv.part", True),
    ("20210101.csv._COPYING_", True), ("~20210101.csv", True), ("20210101.csv", False),
    ("initial.csv", False),
])
def test_temporary_names(name, temporary):
    assert is_temporary_name(name) is temporary


def test_growing_file_waits_until_stable(settings, real_files, tmp_path):
    watcher = _watcher(settings, tmp_path / "drop", tmp_path / "out")
    history = real_files[0].read_bytes()
    upload = tmp_path / "drop" / "initial.csv"
    upload.write_bytes(history[: len(history) // 2])

    assert _actions(watcher.scan()) == {"initial.csv": "waiting"}
    upload.write_bytes(history)
    assert _actions(watcher.scan()) == {"initial.csv": "waiting"}
    assert not (settings.inbox / "initial.csv").exists()

    assert _actions(watcher.scan()) == {"initial.csv": "staged"}
    assert (settings.inbox / "initial.csv").read_bytes() == history
    assert [row["status"] for row in watcher.state.files()] == [STAGED]
    assert _actions(watcher.scan()) == {"initial.csv": "known"}


def test_duplicate_upload_is_skipped(settings, real_files, tmp_path, caplog):
    watcher = _watcher(settings, tmp_path / "drop", tmp_path / "out")
    upload = tmp_path / "drop" / "initial.csv"
    shutil.copy(real_files[0], upload)
    watcher.scan()
    assert _actions(watcher.scan()) == {"initial.csv": "staged"}

    # The sender deletes the file and uploads the same bytes again (new mtime).
    (settings.inbox / "initial.csv").unlink()
    upload.unlink()
    assert _actions(watcher.scan()) == {}
    shutil.copy(real_files[0], upload)
    os.utime(upload, (1_700_000_000, 1_700_000_000))
    caplog.set_level(logging.INFO, logger=WATCH_LOGGER)
    assert _actions(watcher.scan()) == {"initial.csv": "waiting"}
    assert _actions(watcher.scan()) == {"initial.csv": "duplicate"}
    assert not (settings.inbox / "initial.csv").exists()
    assert len(watcher.state.files()) == 1
    assert any("initial.csv skipped: the same bytes" in message
               for message in caplog.messages)

    # Different bytes under the same name are a new file.
    upload.write_bytes(real_files[0].read_bytes() + b"\n")
    watcher.scan()
    assert _actions(watcher.scan()) == {"initial.csv": "staged"}
    assert len(watcher.state.files()) == 2


def test_wrong_name_is_skipped_once(settings, real_files, tmp_path, caplog):
    watcher = _watcher(settings, tmp_path / "drop", tmp_path / "out")
    shutil.copy(real_files[1], tmp_path / "drop" / "applications_october.csv")
    (tmp_path / "drop" / "20201001.csv.part").write_text("SK_ID_CURR\n")
    caplog.set_level(logging.INFO, logger=WATCH_LOGGER)

    for _ in range(3):
        assert _actions(watcher.scan()) == {"20201001.csv.part": "ignored",
                                            "applications_october.csv": "wrong_name"}
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "applications_october.csv" in warnings[0]
    assert "wrongly named" in warnings[0]
    assert sorted(path.name for path in settings.inbox.iterdir()) == []
    assert watcher.state.files() == []


def test_restart_mid_run_does_not_rerun(settings, real_files, tmp_path, caplog):
    watcher = _watcher(settings, tmp_path / "drop", tmp_path / "out")
    upload = tmp_path / "drop" / "20210101.csv"
    shutil.copy(real_files[4], upload)
    checksum = sha256_of(upload)
    # A watcher took this file and was killed during the run: its row has status running
    # and no process holds the month's lock.
    watcher.state.record("20210101.csv", checksum, upload.stat().st_size, "2021-01", RUNNING)
    caplog.set_level(logging.INFO, logger=WATCH_LOGGER)

    restarted = _watcher(settings, tmp_path / "drop", tmp_path / "out")
    assert _actions(restarted.scan()) == {"20210101.csv": "waiting"}
    assert [row["status"] for row in restarted.state.files()] == [INTERRUPTED]
    assert any("20210101.csv" in message and "not run again automatically" in message
               for message in caplog.messages)

    assert _actions(restarted.scan()) == {"20210101.csv": "duplicate"}
    assert _actions(restarted.scan()) == {"20210101.csv": "known"}
    assert not settings.warehouse.exists()


def test_running_month_is_left_alone(settings, real_files, tmp_path):
    watcher = _watcher(settings, tmp_path / "drop", tmp_path / "out")
    upload = tmp_path / "drop" / "20210101.csv"
    shutil.copy(real_files[4], upload)
    watcher.state.record("20210101.csv", sha256_of(upload), upload.stat().st_size, "2021-01",
                         RUNNING)
    lock = lock_path(watcher.settings, "2021-01")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "run_id": "live", "started_at": datetime.now(UTC).isoformat()}))

    watcher.scan()
    assert _actions(watcher.scan()) == {"20210101.csv": "month_busy"}
    assert [row["status"] for row in watcher.state.files()] == [RUNNING]
    assert not settings.warehouse.exists()


def test_history_handled_before_months(settings, real_files, tmp_path):
    watcher = _watcher(settings, tmp_path / "drop", tmp_path / "out")
    shutil.copy(real_files[2], tmp_path / "drop" / "20201101.csv")
    shutil.copy(real_files[1], tmp_path / "drop" / "20201001.csv")
    shutil.copy(real_files[0], tmp_path / "drop" / "initial.csv")
    # Both months are held by a live process, so the scan decides them without running them.
    for month in ("2020-10", "2020-11"):
        lock = lock_path(watcher.settings, month)
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                    "run_id": "live",
                                    "started_at": datetime.now(UTC).isoformat()}))

    watcher.scan()
    decisions = watcher.scan()

    assert [decision.name for decision in decisions] == ["initial.csv", "20201001.csv",
                                                         "20201101.csv"]
    assert _actions(decisions) == {"initial.csv": "staged", "20201001.csv": "month_busy",
                                   "20201101.csv": "month_busy"}


def test_default_inbox_is_local_inbox(settings, real_files):
    watcher = Watcher(settings)
    shutil.copy(real_files[0], settings.inbox / "initial.csv")

    assert watcher.inbox.url == str(settings.inbox)
    assert watcher.output.url == str(settings.exports)
    assert _actions(watcher.scan()) == {"initial.csv": "waiting"}
    assert _actions(watcher.scan()) == {"initial.csv": "staged"}
    assert sorted(path.name for path in settings.inbox.iterdir()) == ["initial.csv"]
    assert not any((settings.home / "watch").glob("*"))


def test_watch_command_once(settings, real_files, tmp_path, monkeypatch):
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(real_files[0], drop / "initial.csv")
    monkeypatch.setenv("CREDITFLOW_INBOX_URL", str(drop))
    monkeypatch.setenv("CREDITFLOW_OUTPUT_URL", str(tmp_path / "out"))

    assert main(["watch", "--once"]) == 0
    assert not (settings.inbox / "initial.csv").exists()
    assert main(["watch", "--once", "--interval", "5"]) == 0
    assert (settings.inbox / "initial.csv").read_bytes() == real_files[0].read_bytes()
    assert (drop / "initial.csv").exists()
    assert main(["watch", "--once", "--interval", "0"]) == 2


def test_folder_event_ends_wait(tmp_path):
    import threading

    drop = tmp_path / "drop"
    drop.mkdir()
    assert wait_for_change(drop, 0.2) is False
    assert wait_for_change(None, 0.01) is False

    # The upload is repeated until the wait ends, because the wait may start after a first write.
    stop = threading.Event()

    def upload() -> None:
        while not stop.is_set():
            (drop / "20210101.csv").write_text("SK_ID_CURR\n")
            stop.wait(0.2)

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        # Far longer than the upload interval: only a missed event makes it time out.
        changed = wait_for_change(drop, 120)
    finally:
        stop.set()
        uploader.join()
    assert changed is True


def test_rejected_file_fails_once(settings, tmp_path):
    watcher = _watcher(settings, tmp_path / "drop", tmp_path / "out")
    (tmp_path / "drop" / "20210101.csv").write_text("SK_ID_CURR,TARGET\n100002,0\n")

    watcher.scan()
    assert _actions(watcher.scan()) == {"20210101.csv": "failed"}
    assert _actions(watcher.scan()) == {"20210101.csv": "known"}
    [row] = watcher.state.files()
    assert row["status"] == "failed"
    assert "failed at step gate" in row["message"]
    assert list(settings.quarantine.rglob("*_20210101.csv.*"))
    assert not (tmp_path / "out").exists()


# --- a real monthly run per arrival ----------------------------------------------------------

@pytest.mark.slow
def test_local_arrival_runs_month_once(backfilled_home, real_files, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(backfilled_home, home)
    runs_before = _run_count(home)
    watcher = _watcher(Settings(home=home), tmp_path / "drop", tmp_path / "out")
    shutil.copy(real_files[4], tmp_path / "drop" / "20210101.csv")

    assert _actions(watcher.scan()) == {"20210101.csv": "waiting"}
    decisions = watcher.scan()
    assert _actions(decisions) == {"20210101.csv": "ran"}
    assert _actions(watcher.scan()) == {"20210101.csv": "known"}
    assert _run_count(home) == runs_before + 1

    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == [
        "predictions_2021-01.csv", "predictions_2021-01.parquet", "report_2021-01.html"]
    expected_ids = _ids_of_csv(real_files[4].read_text(), "SK_ID_CURR")
    assert len(expected_ids) == 1000
    assert _ids_of_csv((out / "predictions_2021-01.csv").read_text(), "sk_id_curr") == \
        expected_ids
    [row] = watcher.state.files()
    assert row["status"] == SUCCEEDED
    assert _run_detail(home, row["run_id"])["trigger_file"] == \
        f"{tmp_path / 'drop'}/20210101.csv"


@pytest.fixture
def s3_server(monkeypatch):
    """A moto S3 server on 127.0.0.1 with dummy credentials in the AWS variables."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", endpoint)):
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    yield endpoint
    server.stop()


def _month_rows(settings: Settings) -> dict[str, int]:
    with connect(settings.warehouse, read_only=True) as connection:
        rows = connection.execute(
            "select month, count(*) from raw_applications group by month").fetchall()
    return dict(rows)


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"][len(prefix):] for item in listed.get("Contents", []))


def test_s3_landed_and_quarantine(s3_server, settings, real_files, tmp_path, caplog,
                                   monkeypatch):
    import boto3

    from flows.ingest import ingest_file

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrHIDDENKEY")
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="lender-archive")
    configured = dataclasses.replace(settings, landed_url="s3://lender-archive/landed/",
                                     quarantine_url="s3://lender-archive/quarantine")
    caplog.set_level(logging.INFO)

    history = ingest_file(configured, real_files[0])
    october = ingest_file(configured, real_files[1])
    assert (history.outcome, october.outcome) == ("loaded", "loaded")
    october_key = f"2020-10/{october.sha256[:12]}_20201001.csv"
    assert october.stored_path == f"s3://lender-archive/landed/{october_key}"
    assert s3.get_object(Bucket="lender-archive", Key=f"landed/{october_key}")["Body"].read() == \
        real_files[1].read_bytes()
    assert f"2020-10/{october.sha256[:12]}_20201001.csv.{october.load_id}.report.json" in \
        _keys(s3, "lender-archive", "landed/")
    assert f"history/{history.sha256[:12]}_initial.csv" in _keys(s3, "lender-archive",
                                                                "landed/")

    bad = tmp_path / "20201101.csv"
    lines = real_files[2].read_text().splitlines(keepends=True)
    bad.write_text(lines[0] + lines[1].replace(lines[1].split(",", 1)[0], "not-a-number", 1)
                   + "".join(lines[2:]))
    rejected = ingest_file(configured, bad)
    assert rejected.outcome == "rejected"
    quarantined = _keys(s3, "lender-archive", "quarantine/")
    prefix = f"2020-11/{rejected.sha256[:12]}_20201101.csv"
    assert quarantined == [prefix, f"{prefix}.{rejected.load_id}.report.json"]
    report = json.loads(s3.get_object(Bucket="lender-archive",
                                      Key=f"quarantine/{quarantined[1]}")["Body"].read())
    assert report["outcome"] == "rejected"
    assert report["file"] == "20201101.csv"
    assert rejected.report_path == f"s3://lender-archive/quarantine/{quarantined[1]}"

    again = ingest_file(configured, real_files[1])
    assert again.outcome == "unchanged"
    assert again.stored_path == october.stored_path

    from flows.labels import ingest_labels

    labels = tmp_path / "labels_2020-10.csv"
    with real_files[1].open(newline="") as source, labels.open("w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(["SK_ID_CURR", "TARGET"])
        writer.writerows([row["SK_ID_CURR"], row["TARGET"]] for row in csv.DictReader(source))
    labeled = ingest_labels(configured, labels, "2020-10")
    kept_labels = f"labels/{labeled.sha256[:12]}_labels_2020-10.csv"
    assert labeled.rows == 1000
    assert labeled.stored_path == f"s3://lender-archive/landed/{kept_labels}"
    assert s3.get_object(Bucket="lender-archive", Key=f"landed/{kept_labels}")["Body"].read() \
        == labels.read_bytes()
    assert _month_rows(settings) == {"history": 2999, "2020-10": 1000}
    # The local folders only held the temporary copies, which are gone.
    assert sorted(path.name for path in settings.landed.iterdir()) == []
    assert sorted(path.name for path in settings.quarantine.iterdir()) == []

    with connect(settings.warehouse, read_only=True) as connection:
        logged = connection.execute("select stored_path, report_path, message from load_log"
                                    ).fetchall()
    texts = [str(value) for row in logged for value in row] + caplog.messages
    assert not [text for text in texts if "HIDDENKEY" in text]


def test_credentials_in_url_rejected():
    with pytest.raises(StorageError, match="has credentials or options in its URL") as caught:
        Location("s3://AKIDUSER:wJalrHIDDENKEY@lender-archive/landed")
    assert "HIDDENKEY" not in str(caught.value)
    assert "s3://lender-archive/landed" in str(caught.value)


def test_s3_listing_and_missing_bucket(s3_server):
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="lender-inbox")

    assert Location("s3://lender-inbox/creditflow/incoming").list_files() == []
    with pytest.raises(StorageError, match="bucket lender-missing of s3://lender-missing/in"):
        Location("s3://lender-missing/in").list_files()


@pytest.mark.slow
def test_s3_arrival_publishes_predictions(s3_server, backfilled_home, real_files, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="lender-inbox")
    s3.create_bucket(Bucket="lender-outputs")
    home = tmp_path / "home"
    shutil.copytree(backfilled_home, home)
    settings = Settings(home=home, inbox_url="s3://lender-inbox/creditflow/incoming",
                        output_url="s3://lender-outputs/creditflow/monthly")
    watcher = Watcher(settings, reuse_model=True)
    s3.upload_file(str(real_files[4]), "lender-inbox", "creditflow/incoming/20210101.csv")
    s3.put_object(Bucket="lender-inbox", Key="creditflow/incoming/january.csv", Body=b"x\n")

    assert _actions(watcher.scan()) == {"20210101.csv": "waiting", "january.csv": "wrong_name"}
    assert _actions(watcher.scan()) == {"20210101.csv": "ran", "january.csv": "wrong_name"}
    assert _actions(watcher.scan())["20210101.csv"] == "known"

    listed = s3.list_objects_v2(Bucket="lender-outputs", Prefix="creditflow/monthly/")
    assert sorted(item["Key"] for item in listed["Contents"]) == [
        "creditflow/monthly/predictions_2021-01.csv",
        "creditflow/monthly/predictions_2021-01.parquet",
        "creditflow/monthly/report_2021-01.html",
    ]
    body = s3.get_object(Bucket="lender-outputs",
                         Key="creditflow/monthly/predictions_2021-01.csv")["Body"].read()
    expected_ids = _ids_of_csv(real_files[4].read_text(), "SK_ID_CURR")
    assert len(expected_ids) == 1000
    assert _ids_of_csv(body.decode(), "sk_id_curr") == expected_ids
    [row] = watcher.state.files()
    assert row["status"] == SUCCEEDED
    assert _run_detail(home, row["run_id"])["trigger_file"] == \
        "s3://lender-inbox/creditflow/incoming/20210101.csv"


# --- months run by the Prefect deployment ----------------------------------------------------

def test_old_state_file_gets_deployment_column(settings, tmp_path):
    import sqlite3

    path = settings.home / "watch.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "create table watch_files (name text not null, checksum text not null, size integer "
            "not null, month text not null, status text not null, run_id text, taken_at text not "
            "null, ended_at text, outputs text, message text, primary key (name, checksum))")
        connection.execute("insert into watch_files (name, checksum, size, month, status, "
                           "taken_at) values ('20210101.csv', 'ab', 1, '2021-01', 'succeeded', "
                           "'2026-12-01T00:00:00+00:00')")
    connection.close()

    watcher = Watcher(settings)
    [row] = watcher.state.files()
    assert row["status"] == SUCCEEDED
    assert row["deployment"] is None


def test_watch_deployment_needs_server(settings, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        code = main(["watch", "--once", "--deployment", "creditflow-monthly/monthly"])
    assert code == 2
    error = capsys.readouterr().err
    assert "cannot trigger deployment creditflow-monthly/monthly" in error
    assert "PREFECT_API_URL is not set" in error


def test_watch_unreachable_server_named(settings, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.prefect_server import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        code = main(["watch", "--once", "--deployment", "creditflow-monthly/monthly"])
    assert code == 2
    error = capsys.readouterr().err
    assert f"the Prefect server {url} of deployment creditflow-monthly/monthly" in error
    assert "cannot be reached" in error


@pytest.mark.parametrize("name", ["monthly", "/monthly", "creditflow-monthly/", "a/b/c"])
def test_watch_deployment_name_checked(settings, capsys, name):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.prefect_server import free_port

    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        code = main(["watch", "--once", "--deployment", name])
    assert code == 2
    error = capsys.readouterr().err
    assert f"invalid deployment name {name!r}" in error
    assert "expected flow-name/deployment-name" in error


@pytest.mark.parametrize("variable", ["CREDITFLOW_INBOX_URL", "CREDITFLOW_OUTPUT_URL",
                                      "CREDITFLOW_LANDED_URL", "CREDITFLOW_QUARANTINE_URL"])
def test_unsupported_scheme_names_setting(settings, monkeypatch, capsys, variable):
    monkeypatch.setenv(variable, "ftp://user:secret@ftp.invalid/x")
    monkeypatch.setenv("CREDITFLOW_HOME", str(settings.home))
    from flows.config import load_settings
    from flows.storage import inbox_url, landed_url, output_url, quarantine_url

    configured = load_settings(settings.home)
    with pytest.raises(StorageError) as caught:
        for url_of in (inbox_url, output_url, landed_url, quarantine_url):
            url_of(configured)
    message = str(caught.value)
    assert f"{variable}=ftp://ftp.invalid/x uses the unsupported scheme ftp://" in message
    assert "secret" not in message


def test_location_rejects_ftp_scheme():
    with pytest.raises(StorageError, match="unsupported scheme ftp://"):
        Location("ftp://ftp.invalid/inbox")


@pytest.mark.slow
def test_deployment_run_followed_after_restart(prefect_server, backfilled_home, real_files,
                                               tmp_path, caplog):
    """The watcher triggers the deployment, stops, and its restart follows the same flow run."""
    from prefect.client.schemas.filters import DeploymentFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployment import build_deployment, ensure_work_pool, full_name
    from flows.watch_trigger import check_deployment
    from tests.prefect_server import start_process, stop_process, tail

    home = tmp_path / "home"
    shutil.copytree(backfilled_home, home)
    runs_before = _run_count(home)
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    # A pool and deployment of this test's own, so the worker runs no other test's flow runs.
    pool, name = "creditflow-watch-test", "watched"
    settings = Settings(home=home, inbox_url=str(drop), output_url=str(out),
                        deployment=full_name(name))
    caplog.set_level(logging.INFO, logger=WATCH_LOGGER)
    caplog.set_level(logging.INFO, logger="flows.watch_trigger")

    with temporary_settings({PREFECT_API_URL: prefect_server.url}):
        deployment = build_deployment(settings)
        deployment.name = name
        # Without the monthly schedule, every flow run of the deployment is one the watcher made.
        deployment.schedules = []
        ensure_work_pool(pool)
        deployment_id = deployment.apply(work_pool_name=pool)
        assert check_deployment(full_name(name)) == str(deployment_id)

        # No worker yet: the flow run stays scheduled, and the first watcher stops following it.
        first = Watcher(settings, reuse_model=True, poll_seconds=1, follow_seconds=2)
        shutil.copy(real_files[4], drop / "20210101.csv")
        assert _actions(first.scan()) == {"20210101.csv": "waiting"}
        assert _actions(first.scan()) == {"20210101.csv": "following"}
        [row] = first.state.files()
        assert row["status"] == RUNNING
        flow_run_id = row["run_id"]
        triggered = [message for message in caplog.messages if "triggered deployment" in message]
        assert triggered
        assert any(flow_run_id in message for message in triggered)

        restarted = Watcher(settings, reuse_model=True, poll_seconds=1, follow_seconds=600)
        log = tmp_path / "worker.log"
        worker = start_process([sys.executable, "-m", "prefect", "worker", "start", "--pool",
                                pool, "--type", "process"], prefect_server.env, log)
        try:
            decisions = [(item.name, item.action) for item in restarted.scan()]
        finally:
            stop_process(worker)
        assert decisions == [("20210101.csv", "ran"), ("20210101.csv", "known")], tail(log)
        assert _actions(restarted.scan()) == {"20210101.csv": "known"}

        with prefect_server.client() as client:
            flow_runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}))
    assert [str(flow_run.id) for flow_run in flow_runs] == [flow_run_id]
    assert flow_runs[0].state.is_completed()
    assert flow_runs[0].parameters == {"month": "2021-01", "reuse_model": True,
                                       "trigger_file": f"{drop}/20210101.csv"}
    assert _run_count(home) == runs_before + 1
    following = [message for message in caplog.messages if "following flow run" in message]
    assert following
    assert any(flow_run_id in message for message in following)

    [row] = restarted.state.files()
    assert row["status"] == SUCCEEDED
    assert row["run_id"] == flow_run_id
    # The run's summary is the notification it sent, which names the file that started it.
    assert _run_detail(home, flow_run_id)["trigger_file"] == f"{drop}/20210101.csv"
    assert sorted(path.name for path in out.iterdir()) == [
        "predictions_2021-01.csv", "predictions_2021-01.parquet", "report_2021-01.html"]
    assert _ids_of_csv((out / "predictions_2021-01.csv").read_text(), "sk_id_curr") == \
        _ids_of_csv(real_files[4].read_text(), "SK_ID_CURR")


@pytest.mark.slow
def test_file_deferred_while_run_followed(prefect_server, backfilled_home, real_files, tmp_path,
                                          caplog):
    """A second file stays untaken in the inbox while the first file's flow run is followed."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployment import build_deployment, ensure_work_pool, full_name
    from tests.conftest import REAL_UNLABELED

    home = tmp_path / "home"
    shutil.copytree(backfilled_home, home)
    drop = tmp_path / "drop"
    drop.mkdir()
    # A pool that no worker serves, so the triggered flow run stays scheduled.
    pool, name = "creditflow-defer-test", "deferring"
    settings = Settings(home=home, inbox_url=str(drop), output_url=str(tmp_path / "out"),
                        deployment=full_name(name))
    caplog.set_level(logging.INFO, logger=WATCH_LOGGER)

    with temporary_settings({PREFECT_API_URL: prefect_server.url}):
        deployment = build_deployment(settings)
        deployment.name = name
        deployment.schedules = []
        ensure_work_pool(pool)
        deployment.apply(work_pool_name=pool)

        watcher = Watcher(settings, reuse_model=True, poll_seconds=1, follow_seconds=2)
        shutil.copy(real_files[4], drop / "20210101.csv")
        shutil.copy(REAL_UNLABELED, drop / "20210201.csv")
        assert _actions(watcher.scan()) == {"20210101.csv": "waiting",
                                            "20210201.csv": "waiting"}
        assert _actions(watcher.scan()) == {"20210101.csv": "following",
                                            "20210201.csv": "deferred"}
        [row] = watcher.state.files()
        assert row["name"] == "20210101.csv"
        deferred = [message for message in caplog.messages
                    if message.startswith("20210201.csv: left for a later scan")]
        assert deferred
        assert row["run_id"] in deferred[0]

        # While the first run has not ended, later scans only follow it.
        assert _actions(watcher.scan()) == {"20210101.csv": "following"}
        assert [row["name"] for row in watcher.state.files()] == ["20210101.csv"]
