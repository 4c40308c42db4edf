"""Run notifications posted to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import logging
import socket

import pytest

from flows.notify import build_payload, notify, webhook_host
from tests.webhook import WebhookReceiver


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _success_payload() -> dict:
    return build_payload(month="2021-01", status="succeeded", run_id="r1", rows_scored=1000,
                         auc=0.7412, model_id="abc", predictions_csv="/data/p.csv",
                         alerts=[{"level": "alert", "message": "drift"}])


def test_success_payload_fields():
    payload = _success_payload()
    assert payload["text"].startswith("creditflow 2021-01 succeeded")
    assert "1,000 applications scored" in payload["text"]
    assert "AUC 0.741" in payload["text"]
    assert "/data/p.csv" in payload["text"]
    assert payload["rows_scored"] == 1000
    assert payload["failed_step"] is None
    assert payload["alerts"] == [{"level": "alert", "message": "drift"}]


def test_failure_payload_names_step_and_error():
    payload = build_payload(month="2021-01", status="failed", run_id="r1", failed_step="score",
                            error="model file corrupt")
    assert payload["text"] == "creditflow 2021-01 failed at step score: model file corrupt"
    assert payload["failed_step"] == "score"
    assert payload["error"] == "model file corrupt"


def test_notify_posts_json(settings):
    with WebhookReceiver() as receiver:
        delivered = notify(dataclasses.replace(settings, webhook_url=receiver.url),
                           _success_payload())
    assert delivered is True
    assert receiver.paths == ["/hooks/creditflow"]
    assert receiver.messages == [_success_payload()]


def test_notify_without_url_logs(settings, caplog):
    caplog.set_level(logging.INFO, logger="flows.notify")
    assert notify(settings, _success_payload()) is False
    assert "no CREDITFLOW_WEBHOOK_URL configured" in caplog.text
    assert "creditflow 2021-01 succeeded" in caplog.text


@pytest.mark.parametrize("status", [404, 500])
def test_notify_error_status_logged(settings, caplog, status):
    with WebhookReceiver(status=status) as receiver:
        delivered = notify(dataclasses.replace(settings, webhook_url=receiver.url + "?token=s3"),
                           _success_payload())
    assert delivered is False
    assert len(receiver.messages) == 1
    assert f"HTTP {status}" in caplog.text
    # The webhook's path and query often carry a secret token: only the host is logged.
    assert "s3" not in caplog.text


def test_notify_unreachable_logged(settings, caplog):
    url = f"http://127.0.0.1:{_free_port()}/hook"
    assert notify(dataclasses.replace(settings, webhook_url=url), _success_payload()) is False
    assert "ConnectError" in caplog.text


def test_notify_invalid_url_logged(settings, caplog):
    assert notify(dataclasses.replace(settings, webhook_url="not a url"),
                  _success_payload()) is False
    assert "failed" in caplog.text


def test_notify_slow_receiver_times_out(settings, caplog, monkeypatch):
    monkeypatch.setattr("flows.notify.TIMEOUT_SECONDS", 0.2)
    with WebhookReceiver(delay=2.0) as receiver:
        delivered = notify(dataclasses.replace(settings, webhook_url=receiver.url),
                           _success_payload())
    assert delivered is False
    assert "ReadTimeout" in caplog.text


def test_webhook_host_drops_path():
    assert webhook_host("https://hooks.example.com/services/T0/B0/secret") == \
        "https://hooks.example.com"
