"""A month run end to end through the API: upload, run, poll, read during the run, download."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.apiserver import ApiServer, start_server, stop_server, upload, wait_for_run

MONTH = "2020-10"
READ_PATHS = ["/api/v1/health", "/api/v1/months", "/api/v1/models", f"/api/v1/predictions/{MONTH}",
              "/api/v1/runs", f"/api/v1/predictions/{MONTH}.csv"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, real_files: list[Path]):
    """Upload history and 2020-10, run 2020-10 and read the API meanwhile.

    Yields the server, the finished run, the responses to the second run request and to the
    upload made during the run, and every (path, status, Retry-After) read during the run.
    """
    server = start_server(tmp_path_factory.mktemp("api_run") / "home")
    try:
        with server.client("operator", timeout=120) as client:
            for path, month in ((real_files[0], "history"), (real_files[1], MONTH)):
                response = upload(client, path, month)
                assert response.status_code == 200, response.text

            started = client.post("/api/v1/runs", json={"month": MONTH})
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            second = client.post("/api/v1/runs", json={"month": MONTH})
            upload_during_run = upload(client, real_files[1], MONTH)

            reads = read_until_finished(server, run_id)
            run = wait_for_run(client, run_id)
        yield server, run, second, upload_during_run, reads
    finally:
        stop_server(server)


def read_until_finished(server: ApiServer, run_id: str) -> list[tuple[str, int, str | None]]:
    """Read every path from two threads until the run ends; a hang fails on the client timeout."""
    results: list[tuple[str, int, str | None]] = []
    done = threading.Event()

    def reader() -> None:
        with server.client("viewer", timeout=15) as client:
            while not done.is_set():
                for path in READ_PATHS:
                    response = client.get(path)
                    results.append(
                        (path, response.status_code, response.headers.get("retry-after")))
                time.sleep(0.2)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        with server.client("viewer") as client:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                status = client.get(f"/api/v1/runs/{run_id}").json()["status"]
                if status not in ("queued", "running"):
                    break
                time.sleep(1)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    return results


def warehouse_predictions(server: ApiServer) -> pd.DataFrame:
    with duckdb.connect(str(server.settings.warehouse), read_only=True) as connection:
        return connection.execute(
            "select * from predictions where score_month = ? order by sk_id_curr", [MONTH]
        ).df()


def test_run_succeeds_with_every_step(finished_run):
    server, run, *_ = finished_run
    assert run["status"] == "succeeded", (run, (server.settings.home / "api_runs").iterdir())
    steps = {step["step"]: step["status"] for step in run["steps"]}
    assert list(steps) == ["land", "gate", "build", "train", "score", "monitor", "export",
                           "report", "notify"]
    for step in ("land", "gate", "build", "train", "score", "export"):
        assert steps[step] == "succeeded", steps
    assert run["requested_by"] == "test-operator"
    assert run["exit_code"] == 0


def test_second_run_of_month_409(finished_run):
    _, _, second, upload_during_run, _ = finished_run
    assert second.status_code == 409
    assert "already in progress" in second.json()["detail"]
    assert upload_during_run.status_code == 409


def test_reads_during_run_never_fail(finished_run):
    _, _, _, _, reads = finished_run
    assert reads, "no read finished during the run"
    statuses = Counter(status for _, status, _ in reads)
    assert set(statuses) <= {200, 404, 503}, statuses
    for path, status, retry_after in reads:
        if status == 503:
            assert retry_after and int(retry_after) > 0, path
    health = [status for path, status, _ in reads if path == "/api/v1/health"]
    assert set(health) == {200}


def test_csv_download_equals_predictions(finished_run):
    server, *_ = finished_run
    with server.client("viewer") as client:
        response = client.get(f"/api/v1/predictions/{MONTH}.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f"predictions_{MONTH}.csv" in response.headers["content-disposition"]
    downloaded = pd.read_csv(io.StringIO(response.text)).sort_values("sk_id_curr")
    expected = warehouse_predictions(server)
    assert len(downloaded) == len(expected) == 1000
    assert downloaded["sk_id_curr"].tolist() == expected["sk_id_curr"].tolist()
    assert downloaded["default_probability"].tolist() == expected["default_probability"].tolist()
    assert downloaded["decision"].tolist() == expected["decision"].tolist()
    assert downloaded["model_id"].tolist() == expected["model_id"].tolist()
    assert downloaded["reason_codes"].tolist() == expected["reason_codes"].tolist()
    assert (downloaded["score_month"] == MONTH).all()


def test_parquet_download_equals_predictions(finished_run):
    server, *_ = finished_run
    with server.client("viewer") as client:
        response = client.get(f"/api/v1/predictions/{MONTH}.parquet")
    assert response.status_code == 200
    downloaded = pq.read_table(io.BytesIO(response.content)).to_pandas().sort_values("sk_id_curr")
    expected = warehouse_predictions(server)
    assert downloaded["sk_id_curr"].tolist() == expected["sk_id_curr"].tolist()
    assert downloaded["default_probability"].tolist() == expected["default_probability"].tolist()


def test_summary_matches_predictions(finished_run):
    server, *_ = finished_run
    with server.client("viewer") as client:
        summary = client.get(f"/api/v1/predictions/{MONTH}").json()
    expected = warehouse_predictions(server)
    assert summary["rows"] == len(expected)
    assert summary["decision_counts"] == {
        d: int((expected["decision"] == d).sum()) for d in ("approve", "review", "decline")}
    assert sum(b["count"] for b in summary["score_histogram"]) == len(expected)
    assert summary["model_ids"] == sorted(expected["model_id"].unique())
    assert summary["mean_default_probability"] == pytest.approx(
        expected["default_probability"].mean())


def test_models_and_months_after_run(finished_run):
    server, *_ = finished_run
    with server.client("viewer") as client:
        models = client.get("/api/v1/models").json()
        months = {m["month"]: m for m in client.get("/api/v1/months").json()}
    champions = [m for m in models if m["champion"]]
    assert len(champions) == 1
    assert champions[0]["status"] == "champion"
    assert months[MONTH]["scored"] is True
    assert months[MONTH]["predictions"] == 1000
    assert months[MONTH]["running"] is False


def test_run_and_downloads_audited(finished_run):
    server, run, *_ = finished_run
    with server.client("admin") as client:
        entries = client.get("/api/v1/audit", params={"limit": 1000}).json()
    runs = [e for e in entries if e["action"] == "run"]
    assert any(e["outcome"] == "started" and run["run_id"] in (e["detail"] or "") for e in runs)
    assert any(e["outcome"] == "conflict" for e in runs)
    downloads = [e for e in entries if e["action"] == "download" and e["outcome"] == "ok"]
    assert {e["target"] for e in downloads} >= {f"predictions_{MONTH}.csv"}
    assert all(e["who"] for e in entries)


def test_report_served_when_written(finished_run):
    server, *_ = finished_run
    reports = list(server.settings.reports.glob(f"*{MONTH}*.html"))
    with server.client("viewer") as client:
        response = client.get(f"/api/v1/reports/{MONTH}")
    if reports:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
    else:
        assert response.status_code == 404
        assert "creditflow report" in response.json()["detail"]


def test_viewer_cannot_start_run(finished_run):
    server, *_ = finished_run
    with server.client("viewer") as client:
        response = client.post("/api/v1/runs", json={"month": MONTH})
    assert response.status_code == 403
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get(f"/api/v1/predictions/{MONTH}.csv").status_code == 401


def test_failed_run_names_step_and_cause(finished_run, real_files: list[Path]):
    server, *_ = finished_run
    lines = real_files[2].read_text(encoding="utf-8").splitlines()
    column = lines[0].split(",").index("DAYS_BIRTH")
    rows = []
    for number, line in enumerate(lines[1:]):
        cells = line.split(",")
        if number < 2:
            cells[column] = "yesterday"
        rows.append(",".join(cells))
    (server.settings.inbox / "20210301.csv").write_text("\n".join([lines[0], *rows]) + "\n",
                                                         encoding="utf-8")

    with server.client("operator") as client:
        started = client.post("/api/v1/runs", json={"month": "2021-03"})
        assert started.status_code == 202, started.text
        run = wait_for_run(client, started.json()["run_id"])
    assert run["status"] == "failed"
    assert run["exit_code"] != 0
    assert "gate" in run["message"]
    steps = {step["step"]: step for step in run["steps"]}
    assert steps["land"]["status"] == "succeeded"
    assert steps["gate"]["status"] == "failed"
    assert "DAYS_BIRTH" in steps["gate"]["error"]
    assert steps["build"]["status"] == "pending"
