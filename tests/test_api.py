"""The operations API over a real uvicorn server: tokens, roles, uploads, audit, errors."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from api.store import StateStore
from api.tokens import authenticate, create_token
from tests.apiserver import ApiServer, free_port, start_server, stop_server, upload

UPLOAD_LIMIT = 3 * 1024 * 1024

# Every endpoint with the lowest role allowed to use it (None: no token needed) and a request
# that an allowed role can send without starting a run or changing the warehouse.
ENDPOINTS = [
    ("GET", "/api/v1/health", None, {}),
    ("GET", "/api/v1/whoami", "viewer", {}),
    ("GET", "/api/v1/months", "viewer", {}),
    ("GET", "/api/v1/runs", "viewer", {}),
    ("GET", "/api/v1/runs/0123456789abcdef", "viewer", {}),
    ("GET", "/api/v1/predictions/2099-01", "viewer", {}),
    ("GET", "/api/v1/predictions/2099-01.csv", "viewer", {}),
    ("GET", "/api/v1/predictions/2099-01.parquet", "viewer", {}),
    ("GET", "/api/v1/models", "viewer", {}),
    ("GET", "/api/v1/reports/2099-01", "viewer", {}),
    ("POST", "/api/v1/uploads", "operator", {"data": {"note": "no file"}, "files": {"x": b"1"}}),
    ("POST", "/api/v1/runs", "operator", {"json": {"month": "2099-01"}}),
    ("GET", "/api/v1/tokens", "admin", {}),
    ("POST", "/api/v1/tokens", "admin", {"json": {"name": "matrix", "role": "viewer"}}),
    ("DELETE", "/api/v1/tokens/000000000000", "admin", {}),
    ("GET", "/api/v1/audit", "admin", {}),
]
ROLES = ("viewer", "operator", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, real_files: list[Path]) -> ApiServer:
    """A server with the history and 2020-10 loaded through the API."""
    home = tmp_path_factory.mktemp("api") / "home"
    running = start_server(home, {"CREDITFLOW_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)})
    try:
        with running.client("operator", timeout=120) as client:
            for path, month in ((real_files[0], "history"), (real_files[1], "2020-10")):
                response = upload(client, path, month)
                assert response.status_code == 200, response.text
        yield running
    finally:
        stop_server(running)
        assert "Traceback" not in running.log(), running.log()


def test_health_needs_no_token(server: ApiServer):
    with server.client() as client:
        body = client.get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert body["warehouse"] in ("ready", "busy")


@pytest.mark.parametrize(("method", "path", "minimum", "request_kwargs"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_auth_matrix(server: ApiServer, method, path, minimum, request_kwargs):
    client = server.client()
    for role in (None, "bogus", *ROLES):
        headers = {}
        if role == "bogus":
            headers["Authorization"] = "Bearer cf_0123456789ab_" + "x" * 43
        elif role:
            headers["Authorization"] = f"Bearer {server.tokens[role]}"
        response = client.request(method, path, headers=headers, **request_kwargs)
        if minimum is None:
            expected_denial = None
        elif role in (None, "bogus"):
            expected_denial = 401
        elif RANK[role] < RANK[minimum]:
            expected_denial = 403
        else:
            expected_denial = None
        if expected_denial:
            assert response.status_code == expected_denial, (role, response.text)
            assert "detail" in response.json()
        else:
            assert response.status_code not in (401, 403, 500), (role, response.text)
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    client.close()


def test_denied_actions_are_audited(server: ApiServer):
    with server.client("viewer") as client:
        assert client.post("/api/v1/runs", json={"month": "2020-10"}).status_code == 403
    with server.client("admin") as client:
        entries = client.get("/api/v1/audit", params={"action": "run"}).json()
    denied = [e for e in entries if e["outcome"] == "denied" and e["who"] == "test-viewer"]
    assert denied, entries


def test_uploads_loaded_months_listed(server: ApiServer):
    with server.client("viewer") as client:
        months = {m["month"]: m for m in client.get("/api/v1/months").json()}
    assert months["history"]["rows"] == 2999
    assert months["2020-10"]["rows"] == 1000
    assert months["2020-10"]["load_status"] == "loaded"
    assert months["2020-10"]["loaded_by"] == "test-operator"
    assert months["2020-10"]["file_name"] == "20201001.csv"
    assert months["2020-10"]["scored"] is False


def test_upload_same_bytes_unchanged(server: ApiServer, real_files: list[Path]):
    with server.client("operator") as client:
        response = upload(client, real_files[1], "2020-10")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outcome"] == "unchanged"
    assert body["rows"] == 1000


def test_upload_rejected_kept_in_quarantine(server: ApiServer, real_files: list[Path],
                                            tmp_path: Path):
    lines = real_files[2].read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    column = header.index("AMT_CREDIT")
    broken_rows = []
    for number, line in enumerate(lines[1:]):
        # Splitting on commas is safe only while no value before AMT_CREDIT is quoted; the
        # assertion on the finding's column below fails if that changes.
        cells = line.split(",")
        if number < 3:
            cells[column] = "lots"
        broken_rows.append(",".join(cells))
    broken = tmp_path / "20201101.csv"
    broken.write_text("\n".join([lines[0], *broken_rows]) + "\n", encoding="utf-8")

    with server.client("operator") as client:
        response = upload(client, broken, "2020-11")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["outcome"] == "rejected"
    assert any(f["column"] == "AMT_CREDIT" for f in body["report"]["failures"]), body["report"]
    quarantined = list((server.settings.quarantine / "2020-11").glob("*20201101.csv"))
    assert len(quarantined) == 1
    with server.client("viewer") as client:
        months = {m["month"]: m for m in client.get("/api/v1/months").json()}
    assert months["2020-11"]["rows"] == 0
    assert months["2020-11"]["load_status"] == "rejected"


def test_upload_parquet_accepted(server: ApiServer, real_files: list[Path], tmp_path: Path):
    table = pacsv.read_csv(real_files[3])
    path = tmp_path / "december.parquet"
    pq.write_table(table, path)
    with server.client("operator") as client:
        response = upload(client, path, "2020-12", content_type="application/octet-stream")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["file_format"] == "parquet"
    assert body["outcome"] == "loaded"
    assert body["rows"] == 1000


def test_upload_filename_never_a_path(server: ApiServer, real_files: list[Path], tmp_path: Path):
    target = tmp_path / "escaped.csv"
    names = [f"../../../../../../..{target}", "..\\..\\..\\escaped.csv", "/etc/cron.d/x.csv",
             "a\x00b.csv"]
    before = {p for p in server.settings.home.rglob("*")}
    with server.client("operator") as client:
        for name in names:
            response = upload(client, real_files[1], "2020-10", filename=name)
            assert response.status_code == 200, response.text
            assert response.json()["outcome"] == "unchanged"
    assert not target.exists()
    assert not Path("/etc/cron.d/x.csv").exists()
    created = {p for p in server.settings.home.rglob("*")} - before
    assert not any("escaped" in p.name or "cron" in str(p) for p in created), created
    assert not any((server.settings.home / "uploads").iterdir())
    with server.client("admin") as client:
        uploads = client.get("/api/v1/audit", params={"action": "upload"}).json()
    assert any("escaped.csv" in (e["target"] or "") for e in uploads)
    assert all("\x00" not in (e["target"] or "") for e in uploads)


def test_upload_over_limit_413(server: ApiServer, tmp_path: Path):
    big = tmp_path / "20210201.csv"
    big.write_bytes(b"SK_ID_CURR,TARGET\n" + b"100001,0\n" * (UPLOAD_LIMIT // 9 + 10))
    with server.client("operator") as client:
        response = upload(client, big, "2021-02")
        assert response.status_code == 413, response.text
        assert "CREDITFLOW_MAX_UPLOAD_BYTES" in response.json()["detail"]

        # Without Content-Length (chunked), the limit applies while the body streams in.
        boundary = "creditflowtestboundary"

        def body():
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"month\"\r\n\r\n"
                   f"2021-02\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                   f"filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode()
            with big.open("rb") as handle:
                while chunk := handle.read(256 * 1024):
                    yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()

        response = client.post("/api/v1/uploads", content=body(), headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 413, response.text
    assert not any((server.settings.home / "uploads").iterdir())


@pytest.mark.parametrize(("content", "name", "status"), [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "20210201.csv", 415),
    (b"PK\x03\x04" + b"\x00" * 100, "20210201.xlsx", 415),
    ("SK_ID_CURR;TARGET\n1;0\n".encode("utf-16"), "20210201.csv", 415),
    (b"name,amount\nalice,3\n", "20210201.csv", 422),
    (b"PAR1" + b"\x00" * 100, "20210201.parquet", 422),
    (b"", "20210201.csv", 422),
], ids=["png", "xlsx", "utf16", "no-contract-header", "truncated-parquet", "empty"])
def test_upload_wrong_type(server: ApiServer, tmp_path: Path, content: bytes, name: str,
                           status: int):
    path = tmp_path / name
    path.write_bytes(content)
    with server.client("operator") as client:
        response = upload(client, path, "2021-02", content_type="text/csv")
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_upload_form_errors(server: ApiServer, real_files: list[Path]):
    with server.client("operator") as client:
        no_month = client.post("/api/v1/uploads",
                               files={"file": ("a.csv", b"SK_ID_CURR\n1\n", "text/csv")})
        bad_month = upload(client, real_files[1], "2020-13")
        not_multipart = client.post("/api/v1/uploads", json={"month": "2020-10"})
    assert no_month.status_code == 422
    assert "month" in no_month.json()["detail"]
    assert bad_month.status_code == 422
    assert "YYYY-MM" in bad_month.json()["detail"]
    assert not_multipart.status_code == 415


def test_run_for_month_without_data_422(server: ApiServer):
    with server.client("operator") as client:
        response = client.post("/api/v1/runs", json={"month": "2031-05"})
        invalid_step = client.post("/api/v1/runs", json={"month": "2020-10", "from_step": "x"})
    assert response.status_code == 422
    assert "upload" in response.json()["detail"]
    assert invalid_step.status_code == 422


def test_unknown_request_fields_422(server: ApiServer):
    with server.client("admin") as client:
        run = client.post("/api/v1/runs", json={"month": "2021-02", "from": "bogus"})
        token = client.post("/api/v1/tokens",
                            json={"name": "extra", "role": "viewer", "expires": "never"})
        runs = client.get("/api/v1/runs").json()
    assert run.status_code == 422, run.text
    assert "from: Extra inputs are not permitted" in run.json()["detail"]
    assert token.status_code == 422, token.text
    assert "expires" in token.json()["detail"]
    assert not [r for r in runs if r["month"] == "2021-02"]


def test_page_run_request_matches_schema(server: ApiServer):
    with server.client() as client:
        schema = client.get("/openapi.json").json()
    run_in = schema["components"]["schemas"]["RunIn"]
    assert run_in["additionalProperties"] is False
    script = (Path(__file__).parents[1] / "api" / "static" / "app.js").read_text()
    start_run = script[script.index("async function startRun"):]
    start_run = start_run[:start_run.index("\n}\n")]
    sent = set(re.findall(r"request\.(\w+) =", start_run))
    sent |= set(re.findall(r"(\w+): \$\(", start_run))
    assert sent == {"month", "reuse_model", "from_step"}
    assert sent <= set(run_in["properties"])


def test_semicolon_upload_names_delimiter(server: ApiServer, tmp_path: Path):
    path = tmp_path / "20210201.csv"
    path.write_text("SK_ID_CURR;TARGET\n100001;0\n", encoding="utf-8")
    with server.client("operator") as client:
        response = upload(client, path, "2021-02", filename="march;export.csv")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "separated by semicolons (';')" in detail
    assert "comma-separated" in detail
    with server.client("admin") as client:
        entries = client.get("/api/v1/audit", params={"action": "upload"}).json()
    entry = next(e for e in entries if e["outcome"] == "invalid")
    assert entry["target"] == "2021-02 (march;export.csv)"
    assert "separated by semicolons" in entry["detail"]


def test_form_error_audit_names_file(server: ApiServer):
    with server.client("operator") as client:
        response = client.post("/api/v1/uploads", data={"month": "2021-13"},
                               files={"file": ("../march.csv", b"SK_ID_CURR\n1\n")})
    assert response.status_code == 422, response.text
    with server.client("admin") as client:
        entries = client.get("/api/v1/audit", params={"action": "upload"}).json()
    entry = next(e for e in entries if e["outcome"] == "invalid")
    assert entry["target"] == "- (../march.csv)"
    assert "2021-13" in entry["detail"]


def test_audit_log_line_has_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from api.audit import record_event

    store = StateStore(tmp_path / "state.sqlite")
    store.init()
    with caplog.at_level("INFO", logger="api.audit"):
        record_event(store, "alice", "operator", "upload", "2021-02 (a.csv)", "invalid",
                     "line 1 is separated by semicolons\nsecond line")
    assert ("audit: alice (operator) upload 2021-02 (a.csv) -> invalid: line 1 is separated "
            "by semicolons second line") in caplog.text


def test_sniff_names_semicolon_delimiter(tmp_path: Path):
    from api.uploads import UploadError, sniff_format

    path = tmp_path / "x.csv"
    path.write_text("SK_ID_CURR;TARGET\n1;0\n", encoding="utf-8")
    with pytest.raises(UploadError) as raised:
        sniff_format(path, "x.csv")
    assert raised.value.status_code == 422
    assert "separated by semicolons (';')" in raised.value.message


def test_tokens_lifecycle(server: ApiServer):
    with server.client("admin") as admin:
        created = admin.post("/api/v1/tokens", json={"name": "bob", "role": "viewer"})
        assert created.status_code == 201
        token = created.json()["token"]
        listed = admin.get("/api/v1/tokens").json()
        assert all("token" not in item and "token_hash" not in item for item in listed)
        assert any(item["name"] == "bob" for item in listed)
        with server.client() as client:
            headers = {"Authorization": f"Bearer {token}"}
            assert client.get("/api/v1/whoami", headers=headers).json()["role"] == "viewer"
            revoked = admin.delete(f"/api/v1/tokens/{created.json()['token_id']}")
            assert revoked.status_code == 204
            assert client.get("/api/v1/whoami", headers=headers).status_code == 401
        invalid = admin.post("/api/v1/tokens", json={"name": "../x", "role": "viewer"})
        assert invalid.status_code == 422


def test_tokens_stored_hashed(server: ApiServer):
    store = StateStore.for_settings(server.settings)
    record, token = create_token(store, "carol", "operator", created_by="tests")
    secret = token.split("_", 2)[2]
    raw = store.path.read_bytes()
    assert secret.encode() not in raw
    assert authenticate(store, token).token_id == record.token_id
    assert authenticate(store, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    for item in server.tokens.values():
        assert item not in server.log()


def test_errors_are_json_with_advice(server: ApiServer):
    with server.client("viewer") as client:
        unknown = client.get("/api/v1/nothing")
        missing_run = client.get("/api/v1/runs/doesnotexist")
        bad_month = client.get("/api/v1/predictions/2020-1")
        missing = client.get("/api/v1/predictions/2020-10.csv")
    for response in (unknown, missing_run, bad_month, missing):
        assert response.headers["content-type"].startswith("application/json")
        assert isinstance(response.json()["detail"], str)
    assert unknown.status_code == 404
    assert missing_run.status_code == 404
    assert bad_month.status_code == 422
    assert missing.status_code == 404
    assert "POST /api/v1/runs" in missing.json()["detail"]


def test_page_served_without_external_urls(server: ApiServer):
    with server.client() as client:
        page = client.get("/")
        script = client.get("/static/app.js")
        style = client.get("/static/app.css")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for response in (page, script, style):
        assert response.status_code == 200
        assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in response.text


def test_openapi_lists_every_endpoint(server: ApiServer):
    with server.client() as client:
        schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    for _, path, _, _ in ENDPOINTS:
        template = (path.replace("0123456789abcdef", "{run_id}")
                    .replace("000000000000", "{token_id}").replace("2099-01", "{month}"))
        assert template in paths, template
    upload_body = schema["paths"]["/api/v1/uploads"]["post"]["requestBody"]
    assert "multipart/form-data" in upload_body["content"]
    months = schema["paths"]["/api/v1/months"]["get"]["responses"]["200"]
    assert months["content"]["application/json"]["schema"]["items"]["$ref"].endswith("MonthOut")


def test_state_store_separate_from_warehouse(server: ApiServer):
    with duckdb.connect(str(server.settings.warehouse), read_only=True) as connection:
        tables = {row[0] for row in connection.execute("show tables").fetchall()}
    assert "api_tokens" not in tables
    assert "audit_log" not in tables
    with StateStore.for_settings(server.settings).connect() as connection:
        names = {row[0] for row in connection.execute(
            "select name from sqlite_master where type = 'table'")}
    assert {"api_tokens", "audit_log", "api_runs"} <= names
    # An upload entry names the month and the client's file, never a token.
    with StateStore.for_settings(server.settings).connect() as connection:
        rows = [dict(r) for r in connection.execute("select * from audit_log")]
    text = json.dumps(rows)
    for token in server.tokens.values():
        assert token not in text


def test_parquet_sniff_reads_real_parquet(tmp_path: Path):
    from api.uploads import sniff_format

    path = tmp_path / "x.parquet"
    buffer = io.BytesIO()
    pq.write_table(pa.table({"SK_ID_CURR": [1, 2]}), buffer)
    path.write_bytes(buffer.getvalue())
    assert sniff_format(path, "x.parquet") == "parquet"


def run_cli(server: ApiServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "--home", str(server.settings.home), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_token_command_create_list_revoke(server: ApiServer):
    created = run_cli(server, "token", "create", "--role", "operator", "--name", "alice")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("cf_")
    with server.client() as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/whoami", headers=headers).json() == {
            "token_id": token.split("_")[1], "name": "alice", "role": "operator"}

        listed = run_cli(server, "token", "list")
        assert listed.returncode == 0
        assert "alice" in listed.stdout
        assert token.split("_", 2)[2] not in listed.stdout

        revoked = run_cli(server, "token", "revoke", "--name", "alice")
        assert revoked.returncode == 0, revoked.stderr
        assert client.get("/api/v1/whoami", headers=headers).status_code == 401

    missing_role = run_cli(server, "token", "create", "--name", "bob")
    assert missing_role.returncode == 2
    assert "--role" in missing_role.stderr


def test_api_command_serves(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--home", str(tmp_path / "home"), "api", "--port",
         str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).json()
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None
        assert health["warehouse"] == "missing"
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "creditflow token create --role admin" in output
    assert f"http://127.0.0.1:{port}/" in output


def test_run_registry_recovers_dead_runs(settings):
    import threading

    from api.runs import RunManager

    store = StateStore.for_settings(settings)
    store.init()
    with store.connect() as connection:
        connection.execute(
            "insert into api_runs (run_id, month, status, requested_by, requested_at, pid)"
            " values ('deadbeef', '2021-01', 'running', 'alice', '2026-01-01T00:00:00+00:00',"
            " 999999999)")
    manager = RunManager(settings, store, threading.Lock())
    manager.recover()
    run = manager.get("deadbeef")
    assert run.status == "interrupted"
    assert "creditflow status" in run.message
    assert manager.active_months() == set()
