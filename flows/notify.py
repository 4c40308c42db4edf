"""Run notifications: a JSON message posted to a webhook (Slack-compatible), or a log line.

The body has Slack's ``text`` field plus the run's facts as structured fields, so a Slack incoming
webhook shows the text and any other receiver can read the fields. A failed notification is logged
and never fails the run.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from flows.config import Settings

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0


def build_payload(
    month: str,
    status: str,
    run_id: str,
    failed_step: str | None = None,
    error: str | None = None,
    rows_scored: int | None = None,
    auc: float | None = None,
    model_id: str | None = None,
    predictions_csv: str | None = None,
    predictions_parquet: str | None = None,
    report_path: str | None = None,
    alerts: list[dict[str, Any]] | None = None,
    steps: list[dict[str, Any]] | None = None,
    trigger_file: str | None = None,
) -> dict[str, Any]:
    """Build the message of one run: ``text`` for people, the other fields for programs."""
    alerts = alerts or []
    if status == "succeeded":
        parts = [f"creditflow {month} succeeded"]
        if rows_scored is not None:
            parts.append(f"{rows_scored:,} applications scored")
        if auc is not None:
            parts.append(f"AUC {auc:.3f}")
        if alerts:
            parts.append(f"{len(alerts)} monitoring alert(s)")
        text = ", ".join(parts)
        if predictions_csv:
            text += f". Predictions: {predictions_csv}"
    else:
        text = f"creditflow {month} {status} at step {failed_step}: {error}"
    return {
        "text": text,
        "month": month,
        "status": status,
        "run_id": run_id,
        "failed_step": failed_step,
        "error": error,
        "rows_scored": rows_scored,
        "auc": auc,
        "model_id": model_id,
        "predictions_csv": predictions_csv,
        "predictions_parquet": predictions_parquet,
        "report_path": report_path,
        "alerts": alerts,
        "steps": steps or [],
        # The file whose arrival started the run (creditflow watch); None for other runs.
        "trigger_file": trigger_file,
    }


def webhook_host(url: str) -> str:
    """Return scheme and host of a webhook URL; its path often contains a secret token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def notify(settings: Settings, payload: dict[str, Any]) -> bool:
    """Post ``payload`` to ``settings.webhook_url``, or log its text when no URL is configured.

    Returns True when the receiver accepted the message (2xx). Every failure is logged, not raised.
    """
    url = settings.webhook_url
    if not url:
        logger.info("notification (no CREDITFLOW_WEBHOOK_URL configured): %s", payload["text"])
        return False
    try:
        # default=str keeps a value JSON cannot encode (a date, a path) from losing the message.
        body = json.dumps(payload, default=str)
        response = httpx.post(url, content=body, headers={"Content-Type": "application/json"},
                              timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
    except httpx.HTTPStatusError as error:
        logger.warning("notification of %s %s to %s failed: HTTP %s",
                       payload.get("month"), payload.get("status"), webhook_host(url),
                       error.response.status_code)
        return False
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        logger.warning("notification of %s %s to %s failed: %s: %s",
                       payload.get("month"), payload.get("status"), webhook_host(url),
                       type(error).__name__, error)
        return False
    logger.info("notification of %s %s sent to %s", payload.get("month"), payload.get("status"),
                webhook_host(url))
    return True
