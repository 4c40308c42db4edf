"""Request and response bodies of the operations API, as published in its OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.runs import STEPS

Role = Literal["viewer", "operator", "admin"]
StepName = Literal[STEPS]  # type: ignore[valid-type]
MONTH_PATTERN = r"^(history|\d{4}-(0[1-9]|1[0-2]))$"
CALENDAR_MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class ErrorOut(BaseModel):
    """An error: what failed and what to do."""

    detail: str = Field(examples=["no run with id 0f3c...: list runs with GET /api/v1/runs"])


class UploadOut(BaseModel):
    """The gate's verdict on an uploaded file."""

    detail: str = Field(description="one-line summary of the outcome and what to do next")
    outcome: Literal["loaded", "replaced", "unchanged", "rejected"]
    month: str
    rows: int | None = Field(description="rows in the file")
    sha256: str | None
    load_id: str | None
    file_format: Literal["csv", "parquet"]
    size_bytes: int
    client_filename: str = Field(description="the name the client sent, for display only")
    message: str
    report: dict[str, Any] = Field(description="the gate's validation report")


class UploadRejectedOut(BaseModel):
    """An upload the gate rejected (the file is kept in quarantine) or a form that is invalid.

    Only ``detail`` is set for an invalid form; a gate rejection sets the upload fields too.
    """

    detail: str
    outcome: Literal["rejected"] | None = None
    month: str | None = None
    rows: int | None = None
    sha256: str | None = None
    load_id: str | None = None
    file_format: Literal["csv", "parquet"] | None = None
    size_bytes: int | None = None
    client_filename: str | None = None
    message: str | None = None
    report: dict[str, Any] | None = None


class MonthOut(BaseModel):
    """A month known to the warehouse: its rows, last load and whether it is scored."""

    month: str
    rows: int = Field(description="applications of the month in the warehouse")
    load_status: str | None = Field(description="outcome of the latest load attempt")
    loaded_at: datetime | None
    file_name: str | None
    loaded_by: str | None
    load_attempts: int
    scored: bool
    predictions: int
    scored_at: datetime | None
    running: bool = Field(description="a run for this month is in progress")


class RunIn(BaseModel):
    """A request to run the monthly flow for one month."""

    # An unknown field (a misspelled ``from_step``) is a 422, not a silently ignored option.
    model_config = ConfigDict(extra="forbid")

    month: str = Field(pattern=CALENDAR_MONTH_PATTERN, examples=["2021-01"])
    from_step: StepName | None = Field(default=None, description="start at this step")
    reuse_model: bool = Field(default=False, description="score with the current champion "
                                                         "instead of retraining")


class StepOut(BaseModel):
    """Progress of one step of a run."""

    step: str
    status: str = Field(description="pending, skipped, running, succeeded or failed "
                                    "(as the flow records it)")
    started_at: str | None
    ended_at: str | None
    error: str | None
    detail: str | None


class RunOut(BaseModel):
    """A run started through the API."""

    run_id: str
    month: str
    from_step: str | None
    reuse_model: bool
    status: Literal["queued", "running", "succeeded", "failed", "interrupted", "unknown"]
    requested_by: str
    requested_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    message: str | None
    steps: list[StepOut]
    steps_checked_at: datetime | None = Field(
        description="when step progress was last read; the warehouse is busy while a run writes it")


class HistogramBin(BaseModel):
    lower: float
    upper: float
    count: int


class PredictionSummaryOut(BaseModel):
    """Rows, decisions and score distribution of a month's predictions."""

    month: str
    rows: int
    mean_default_probability: float
    decision_counts: dict[str, int]
    score_histogram: list[HistogramBin]
    model_ids: list[str]
    scored_at: datetime | None
    source: Literal["warehouse", "export"] = Field(
        description="warehouse, or the exported file while a run has the warehouse locked")


class ModelOut(BaseModel):
    """One model of the registry."""

    model_id: str
    trained_at: datetime
    score_month: str | None
    training_months: list[str]
    validation_month: str | None
    metrics: dict[str, Any]
    status: str
    champion: bool
    artifact_sha256: str | None
    note: str | None


class HealthOut(BaseModel):
    """Liveness and the state of the warehouse."""

    status: Literal["ok"]
    version: str
    warehouse: Literal["ready", "busy", "missing"]
    active_runs: int


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, examples=["alice"])
    role: Role


class TokenOut(BaseModel):
    """A token without its secret."""

    token_id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="the token; shown only in this response")


class AuditOut(BaseModel):
    """One entry of the audit log."""

    audit_id: int
    at: datetime
    who: str
    role: str | None
    action: str
    target: str | None
    outcome: str
    detail: str | None


class WhoAmIOut(BaseModel):
    token_id: str
    name: str
    role: Role
