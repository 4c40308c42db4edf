"""The operations API and its page: upload a month, run it, download the predictions.

``create_app(settings)`` builds the FastAPI application; ``creditflow api`` serves it with
uvicorn. Warehouse reads use short read-only connections and return 503 with ``Retry-After``
while a run has the DuckDB file locked. Downloads are served from the exported files, which a run
replaces atomically, so they keep working during a run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import duckdb
import pyarrow.parquet as pq
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import queries
from api.audit import recent_events, record_event
from api.runs import RunConflictError, RunManager
from api.schemas import (
    CALENDAR_MONTH_PATTERN,
    MONTH_PATTERN,
    AuditOut,
    ErrorOut,
    HealthOut,
    ModelOut,
    MonthOut,
    PredictionSummaryOut,
    RunIn,
    RunOut,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
    UploadOut,
    UploadRejectedOut,
    WhoAmIOut,
)
from api.store import StateStore
from api.tokens import TokenRecord, authenticate, create_token, get_token, list_tokens, revoke_token
from api.uploads import (
    ReceivedUpload,
    UploadError,
    max_upload_bytes_from_env,
    safe_display_name,
)
from flows.config import Settings, load_settings
from flows.errors import CreditflowError
from flows.month_lock import lock_path, process_is_running, read_holder
from flows.months import monthly_file_name
from flows.warehouse import (
    WarehouseLockedError,
    WarehouseUnavailableError,
    connect,
    warehouse_exists,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
API = "/api/v1"
TRIALS_ENV = "CREDITFLOW_TRIALS"
RETRY_AFTER_SECONDS = 5
# How long a request waits for another request of this process to finish with the warehouse,
# and then for another process's lock, before returning 503.
_GATE_WAIT_SECONDS = 3.0
_LOCK_WAIT_SECONDS = 0.5
_INGEST_GATE_WAIT_SECONDS = 30.0

# The monitoring report, which the page opens as a blob: document, inherits this policy and
# carries its own <style> block, hence 'unsafe-inline' for styles (scripts stay 'self' only).
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
}
_COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

T = TypeVar("T")
MonthPath = Annotated[str, PathParam(pattern=MONTH_PATTERN, examples=["2021-01"],
                                     description="YYYY-MM, or history")]
CalendarMonthPath = Annotated[str, PathParam(pattern=CALENDAR_MONTH_PATTERN, examples=["2021-01"],
                                             description="YYYY-MM")]


class ApiError(Exception):
    """An error returned as JSON ``{"detail": message}`` with an HTTP status."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "malformed request", 401: "missing or invalid token",
        403: "the token's role does not allow this",
        404: "not found", 409: "a run for the month is in progress", 413: "file too large",
        415: "not a CSV or Parquet file", 422: "invalid request",
        503: "the warehouse is busy with a run; retry after the Retry-After seconds",
    }
    return {code: {"model": ErrorOut, "description": texts[code]} for code in codes}


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "month"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "the month's applications, CSV or Parquet"},
                        "month": {"type": "string", "pattern": MONTH_PATTERN,
                                  "description": "YYYY-MM, or history for the initial file"},
                    },
                }
            }
        },
    }
}


_bearer = HTTPBearer(auto_error=False, description="API token: cf_<id>_<secret>")


def require(role: str, action: str | None = None) -> Callable[..., TokenRecord]:
    """Return a dependency that authenticates the request's token and checks its role.

    A refused ``action`` (upload, run, download, token change) is written to the audit log.
    """
    def dependency(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                   ) -> TokenRecord:
        store: StateStore = request.app.state.store
        if credentials is None:
            raise ApiError(401, "missing token: send the header Authorization: Bearer "
                                "<token>; an admin creates tokens with creditflow token "
                                "create", {"WWW-Authenticate": "Bearer"})
        token = authenticate(store, credentials.credentials)
        if token is None:
            raise ApiError(401, "invalid or revoked token: ask an admin for a new one "
                                "(creditflow token create)", {"WWW-Authenticate": "Bearer"})
        if not token.allows(role):
            if action:
                record_event(store, token.name, token.role, action,
                             request.url.path, "denied", f"needs role {role}")
            raise ApiError(403, f"the {token.role} token of {token.name} cannot do this: "
                                f"it needs the {role} role; ask an admin")
        return token
    return dependency


# The token of a request, checked for the role an endpoint needs (and the audited action).
Viewer = Annotated[TokenRecord, Depends(require("viewer"))]
Downloader = Annotated[TokenRecord, Depends(require("viewer", "download"))]
Uploader = Annotated[TokenRecord, Depends(require("operator", "upload"))]
RunStarter = Annotated[TokenRecord, Depends(require("operator", "run"))]
Admin = Annotated[TokenRecord, Depends(require("admin"))]
TokenCreator = Annotated[TokenRecord, Depends(require("admin", "token.create"))]
TokenRevoker = Annotated[TokenRecord, Depends(require("admin", "token.revoke"))]


class _SecurityHeaders:
    """ASGI middleware adding browser security headers; the page gets a strict CSP."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        extra = dict(_COMMON_HEADERS)
        if not path.startswith(API):
            extra.update(_PAGE_HEADERS)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in extra.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, max_upload_bytes: int | None = None,
               run_trials: int | None = None) -> FastAPI:
    """Build the API for one deployment.

    ``max_upload_bytes`` defaults to ``CREDITFLOW_MAX_UPLOAD_BYTES`` (else 1 GiB) and
    ``run_trials``, the Optuna trials of runs started here, to ``CREDITFLOW_TRIALS`` (else the
    number in ml/params.yml).
    """
    settings.ensure_dirs()
    upload_root = settings.home / "uploads"
    upload_root.mkdir(parents=True, exist_ok=True)
    upload_limit = max_upload_bytes or max_upload_bytes_from_env()
    store = StateStore.for_settings(settings)
    store.init()
    # DuckDB refuses a read-only and a read-write connection to one file in the same process, so
    # the API's own uses of the warehouse (reads, the gate of an upload) take turns.
    warehouse_gate = threading.Lock()
    runs = RunManager(settings, store, warehouse_gate, trials=run_trials or trials_from_env())
    runs.recover()
    version = importlib.metadata.version("creditflow")

    app = FastAPI(
        title="creditflow operations API",
        version=version,
        description=(
            "Upload a month's application file, run the monthly flow, download its predictions. "
            "Send the token as `Authorization: Bearer cf_...`. Roles: viewer (read, download), "
            "operator (+ upload, run), admin (+ tokens, audit log)."
        ),
    )
    app.state.settings = settings
    app.state.store = store
    app.state.runs = runs
    app.state.max_upload_bytes = upload_limit
    app.add_middleware(_SecurityHeaders)

    # --- errors -------------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, error.status_code, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 400 and "parsing the body" in detail:
            detail = ("the request body is not valid JSON: send a JSON object as described in "
                      "/docs, with Content-Type: application/json")
        elif error.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint {request.url.path}: see /docs for the API"
        elif error.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}: see /docs"
        return JSONResponse({"detail": detail}, error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors()[:5]:
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
            problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
        return JSONResponse({"detail": "invalid request: " + "; ".join(problems)
                             + ". Fix the listed fields and send the request again (see /docs)."},
                            422)

    @app.exception_handler(Exception)
    async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:12]
        logger.error("unexpected error %s on %s %s", reference, request.method, request.url.path,
                     exc_info=error)
        return JSONResponse({"detail": f"internal error (reference {reference}): the server log "
                                       "has the details; report the reference to the operator"},
                            500)

    # --- warehouse reads ----------------------------------------------------------------------

    def busy(message: str = "the warehouse is busy with a run") -> ApiError:
        return ApiError(503, f"{message}: retry in {RETRY_AFTER_SECONDS} seconds",
                        {"Retry-After": str(RETRY_AFTER_SECONDS)})

    def read_warehouse(query: Callable[[duckdb.DuckDBPyConnection], T], empty: T) -> T:
        """Run ``query`` on a read-only connection; ``empty`` when there is no warehouse yet."""
        if not warehouse_exists(settings):
            return empty
        if not warehouse_gate.acquire(timeout=_GATE_WAIT_SECONDS):
            raise busy("the warehouse is busy with an upload")
        try:
            with connect(settings, read_only=True,
                         wait_seconds=_LOCK_WAIT_SECONDS) as connection:
                return query(connection)
        except WarehouseLockedError:
            raise busy() from None
        except (duckdb.Error, WarehouseUnavailableError) as error:
            logger.warning("warehouse read failed: %s", error)
            raise busy("the warehouse could not be read") from None
        finally:
            warehouse_gate.release()

    def month_running(month: str) -> bool:
        if month in runs.active_months():
            return True
        holder = read_holder(lock_path(settings, month))
        return bool(holder) and process_is_running(int(holder.get("pid", 0) or 0))

    # --- page -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # --- health and identity ------------------------------------------------------------------

    @app.get(f"{API}/health", response_model=HealthOut, tags=["status"])
    def health() -> HealthOut:
        """Liveness and the warehouse's state; needs no token."""
        state = "missing"
        if warehouse_exists(settings):
            state = "busy"
            if warehouse_gate.acquire(timeout=_LOCK_WAIT_SECONDS):
                try:
                    with connect(settings, read_only=True):
                        state = "ready"
                except (WarehouseLockedError, WarehouseUnavailableError, duckdb.Error):
                    pass
                finally:
                    warehouse_gate.release()
        return HealthOut(status="ok", version=version, warehouse=state,
                         active_runs=len(runs.active_months()))

    @app.get(f"{API}/whoami", response_model=WhoAmIOut, responses=_errors(401), tags=["status"])
    def whoami(token: Viewer) -> WhoAmIOut:
        """Return the token's name and role (the page uses it to check a token)."""
        return WhoAmIOut(token_id=token.token_id, name=token.name, role=token.role)

    # --- uploads ------------------------------------------------------------------------------

    def ingest_received(received: ReceivedUpload, user: str):
        from flows.ingest import ingest_file

        if not warehouse_gate.acquire(timeout=_INGEST_GATE_WAIT_SECONDS):
            raise busy("the warehouse is busy with another upload")
        try:
            return ingest_file(settings, received.path, month=received.month, user=user)
        finally:
            warehouse_gate.release()

    @app.post(
        f"{API}/uploads", response_model=UploadOut, tags=["months"], openapi_extra=_UPLOAD_BODY,
        responses={**_errors(400, 401, 403, 409, 413, 415, 503),
                   422: {"model": UploadRejectedOut,
                         "description": "the gate rejected the file (kept in quarantine), or "
                                        "the form is invalid"}},
    )
    async def upload(request: Request,
                     token: Uploader) -> Any:
        """Receive a month's file, run the gate on it and return its validation report.

        A rejected file is kept in quarantine, and the response is 422 with the report.
        """
        try:
            received = await receive_upload_or_error(request)
        except UploadError as error:
            record_event(store, token.name, token.role, "upload", error.audit_target(), "invalid",
                         error.message)
            return JSONResponse({"detail": error.message}, error.status_code)
        target = f"{received.month} ({received.client_filename}, {received.size_bytes} bytes)"
        try:
            if month_running(received.month):
                record_event(store, token.name, token.role, "upload", target, "conflict")
                raise ApiError(409, f"a run for {received.month} is in progress: upload the "
                                    "file again when it has finished (GET /api/v1/runs)")
            try:
                result = await run_in_threadpool(ingest_received, received, token.name)
            except (CreditflowError, WarehouseLockedError) as error:
                if isinstance(error, WarehouseLockedError) or isinstance(
                        error.__cause__, WarehouseLockedError):
                    record_event(store, token.name, token.role, "upload", target, "busy")
                    raise busy() from None
                record_event(store, token.name, token.role, "upload", target, "invalid",
                             str(error))
                raise ApiError(422, str(error)) from None
        finally:
            shutil.rmtree(received.path.parent, ignore_errors=True)

        record_event(store, token.name, token.role, "upload", target, result.outcome,
                     result.message)
        body = UploadOut(
            detail=_upload_summary(result, received), outcome=result.outcome,
            month=result.month or received.month, rows=result.rows, sha256=result.sha256,
            load_id=result.load_id, file_format=received.file_format,
            size_bytes=received.size_bytes, client_filename=received.client_filename,
            message=result.message, report=result.report or {},
        )
        if result.outcome == "rejected":
            return JSONResponse(body.model_dump(mode="json"), 422)
        return body

    async def receive_upload_or_error(request: Request) -> ReceivedUpload:
        from api.uploads import receive_upload

        return await receive_upload(request, upload_root, upload_limit)

    # --- months, runs -------------------------------------------------------------------------

    @app.get(f"{API}/months", response_model=list[MonthOut], tags=["months"],
             responses=_errors(401, 503))
    def months(token: Viewer) -> list[MonthOut]:
        """List loaded months with row counts, the latest load's outcome and whether scored."""
        rows = read_warehouse(queries.list_months, [])
        active = runs.active_months()
        return [MonthOut(**row, running=row["month"] in active) for row in rows]

    def month_has_data(month: str) -> bool | None:
        """Return whether the warehouse or the inbox has applications of ``month``.

        Returns None when the warehouse is busy, so the caller lets the run find out.
        """
        inbox_name = Path(monthly_file_name(month))
        if any((settings.inbox / inbox_name.with_suffix(suffix).name).exists()
               for suffix in (".csv", ".parquet")):
            return True

        def count(connection: duckdb.DuckDBPyConnection) -> int:
            from flows.warehouse import table_exists

            if not table_exists(connection, "raw_applications"):
                return 0
            return connection.execute(
                "select count(*) from raw_applications where month = ?", [month]
            ).fetchone()[0]

        try:
            return read_warehouse(count, 0) > 0
        except ApiError:
            return None

    @app.post(f"{API}/runs", response_model=RunOut, status_code=202, tags=["runs"],
              responses=_errors(400, 401, 403, 409, 422))
    def start_run(run: RunIn, token: RunStarter) -> RunOut:
        """Start the monthly flow for a month in the background; poll GET /runs/{run_id}."""
        target = run.month + (f" from {run.from_step}" if run.from_step else "")
        if month_running(run.month):
            record_event(store, token.name, token.role, "run", target, "conflict")
            raise ApiError(409, f"a run for {run.month} is already in progress: wait for it to "
                                "finish (GET /api/v1/runs) before starting another")
        if month_has_data(run.month) is False:
            record_event(store, token.name, token.role, "run", target, "invalid", "no data")
            raise ApiError(422, f"no applications for {run.month} in the warehouse or the inbox: "
                                "upload the month's file first (POST /api/v1/uploads)")
        try:
            state = runs.start(run.month, run.from_step, run.reuse_model, token.name)
        except RunConflictError as error:
            record_event(store, token.name, token.role, "run", target, "conflict")
            raise ApiError(409, f"{error}: wait for it to finish before starting another") \
                from None
        record_event(store, token.name, token.role, "run", target, "started",
                     f"run {state.run_id}")
        return RunOut.model_validate(state, from_attributes=True)

    @app.get(f"{API}/runs", response_model=list[RunOut], tags=["runs"],
             responses=_errors(401, 422))
    def list_runs(token: Viewer, limit: Annotated[int, Query(ge=1, le=200)] = 20
                  ) -> list[RunOut]:
        """Recent runs started through the API, newest first."""
        return [RunOut.model_validate(r, from_attributes=True) for r in runs.recent(limit)]

    @app.get(f"{API}/runs/{{run_id}}", response_model=RunOut, tags=["runs"],
             responses=_errors(401, 404, 422))
    def get_run(run_id: Annotated[str, PathParam(max_length=64)],
                token: Viewer) -> RunOut:
        """Status and step progress of one run."""
        state = runs.get(run_id)
        if state is None:
            raise ApiError(404, f"no run with id {safe_display_name(run_id)!r}: list runs with "
                                "GET /api/v1/runs")
        return RunOut.model_validate(state, from_attributes=True)

    # --- predictions --------------------------------------------------------------------------

    def download(month: str, suffix: str, media_type: str, token: TokenRecord) -> FileResponse:
        path = settings.exports / f"predictions_{month}.{suffix}"
        if not path.is_file():
            record_event(store, token.name, token.role, "download", path.name, "not_found")
            raise ApiError(404, f"no exported predictions for {month}: run the month first "
                                "(POST /api/v1/runs), which scores and exports it")
        record_event(store, token.name, token.role, "download", path.name, "ok")
        return FileResponse(path, media_type=media_type, filename=path.name)

    download_responses = _errors(401, 403, 404, 422)

    @app.get(f"{API}/predictions/{{month}}.csv", tags=["predictions"], response_class=FileResponse,
             responses={200: {"content": {"text/csv": {}}, "description": "the predictions"},
                        **download_responses})
    def download_csv(month: CalendarMonthPath,
                     token: Downloader) -> FileResponse:
        """Download a month's predictions as CSV (one row per application)."""
        return download(month, "csv", "text/csv", token)

    @app.get(f"{API}/predictions/{{month}}.parquet", tags=["predictions"],
             response_class=FileResponse,
             responses={200: {"content": {"application/vnd.apache.parquet": {}},
                              "description": "the predictions"}, **download_responses})
    def download_parquet(month: CalendarMonthPath,
                         token: Downloader
                         ) -> FileResponse:
        """Download a month's predictions as Parquet."""
        return download(month, "parquet", "application/vnd.apache.parquet", token)

    def summary_from_export(month: str) -> dict | None:
        path = settings.exports / f"predictions_{month}.parquet"
        if not path.is_file():
            return None
        table = pq.read_table(path)
        with duckdb.connect() as connection:
            connection.register("exported", table)
            return queries.prediction_summary(connection, "exported", month)

    @app.get(f"{API}/predictions/{{month}}", response_model=PredictionSummaryOut,
             tags=["predictions"], responses=_errors(401, 404, 422, 503))
    def prediction_summary(month: CalendarMonthPath,
                           token: Viewer) -> PredictionSummaryOut:
        """Rows, decision counts and the score distribution of a month's predictions.

        While a run has the warehouse locked, the summary comes from the month's exported file.
        """
        source = "warehouse"
        try:
            summary = read_warehouse(
                lambda c: queries.prediction_summary(c, "predictions", month), None)
        except ApiError:
            summary = summary_from_export(month)
            source = "export"
            if summary is None:
                raise
        if summary is None:
            raise ApiError(404, f"no predictions for {month}: run the month first "
                                "(POST /api/v1/runs)")
        return PredictionSummaryOut(**summary, source=source)

    @app.get(f"{API}/models", response_model=list[ModelOut], tags=["models"],
             responses=_errors(401, 503))
    def models(token: Viewer) -> list[ModelOut]:
        """List the model registry, newest first, with the champion marked."""
        return [ModelOut(**row) for row in read_warehouse(queries.list_models, [])]

    @app.get(f"{API}/reports/{{month}}", tags=["predictions"], response_class=FileResponse,
             responses={200: {"content": {"text/html": {}}, "description": "the HTML report"},
                        **_errors(401, 404, 422)})
    def report(month: CalendarMonthPath,
               token: Viewer) -> FileResponse:
        """Return the month's monitoring report (HTML), written by the run's report step."""
        candidates = sorted(
            (p for p in settings.reports.glob("*.html") if month in p.name),
            key=lambda p: p.stat().st_mtime,
        )
        if not candidates:
            raise ApiError(404, f"no report for {month}: run the month (POST /api/v1/runs) or "
                                f"write it with creditflow report --month {month}")
        return FileResponse(candidates[-1], media_type="text/html")

    # --- tokens and audit (admin) -------------------------------------------------------------

    @app.post(f"{API}/tokens", response_model=TokenCreatedOut, status_code=201, tags=["admin"],
              responses=_errors(400, 401, 403, 422))
    def create_api_token(body: TokenIn,
                         token: TokenCreator
                         ) -> TokenCreatedOut:
        """Create a token; the response is the only place its text appears."""
        try:
            record, text = create_token(store, body.name, body.role, created_by=token.name)
        except CreditflowError as error:
            raise ApiError(422, str(error)) from None
        record_event(store, token.name, token.role, "token.create",
                     f"{record.token_id} ({record.name}, {record.role})", "ok")
        return TokenCreatedOut(**record.__dict__, token=text)

    @app.get(f"{API}/tokens", response_model=list[TokenOut], tags=["admin"],
             responses=_errors(401, 403))
    def api_tokens(token: Admin) -> list[TokenOut]:
        """List every token, revoked ones included, without secrets."""
        return [TokenOut(**record.__dict__) for record in list_tokens(store)]

    @app.delete(f"{API}/tokens/{{token_id}}", status_code=204, tags=["admin"],
                responses=_errors(401, 403, 404, 422), response_class=Response)
    def revoke_api_token(token_id: Annotated[str, PathParam(max_length=64)],
                         token: TokenRevoker
                         ) -> Response:
        """Revoke a token; requests with it get 401 from then on."""
        if get_token(store, token_id) is None:
            raise ApiError(404, f"no token with id {safe_display_name(token_id)!r}: list them "
                                "with GET /api/v1/tokens")
        record = revoke_token(store, token_id)
        record_event(store, token.name, token.role, "token.revoke",
                     f"{record.token_id} ({record.name})", "ok")
        return Response(status_code=204)

    @app.get(f"{API}/audit", response_model=list[AuditOut], tags=["admin"],
             responses=_errors(401, 403, 422))
    def audit(token: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              action: Annotated[str | None, Query(max_length=32)] = None) -> list[AuditOut]:
        """List the audit log, newest first: uploads, runs, downloads and token changes."""
        return [AuditOut(**entry.__dict__) for entry in recent_events(store, limit, action)]

    return app


def _upload_summary(result, received: ReceivedUpload) -> str:
    month = result.month or received.month
    if result.outcome == "rejected":
        return (f"{received.client_filename} was rejected by the gate and kept in quarantine: "
                f"fix the problems in the report and upload it again")
    if result.outcome == "unchanged":
        return f"{month} already holds this exact file; nothing changed"
    verb = "replaced" if result.outcome == "replaced" else "loaded"
    return f"{month}: {result.rows} applications {verb}; start the run for {month} next"


def trials_from_env() -> int | None:
    """Return ``CREDITFLOW_TRIALS`` as a positive number, or None when it is not set."""
    text = os.environ.get(TRIALS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"invalid {TRIALS_ENV}={text!r}: give a whole number of trials, 1 or more")
    return int(text)


def create_app_from_env() -> FastAPI:
    """Build the API from the environment (``uvicorn --factory api.server:create_app_from_env``)."""
    return create_app(load_settings())


def command_api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the API and page with uvicorn until interrupted (``creditflow api``)."""
    import uvicorn

    app = create_app(settings)
    if not list_tokens(app.state.store, include_revoked=False):
        print("no API tokens yet: create one with "
              "creditflow token create --role admin --name YOUR_NAME")
    print(f"creditflow API and page on http://{args.host}:{args.port}/ "
          f"(data directory {settings.home})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
