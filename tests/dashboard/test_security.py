"""Who may use the dashboard: loopback by default, a token elsewhere, no token in logs."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from tests.dashboard.conftest import Run
from tunery.dashboard import DashboardSecurityError, DashboardSettings, create_app
from tunery.dashboard.security import RedactTokenFilter, host_is_loopback
from tunery.store import Store

TOKEN = "s3cret-token-0123456789"


def app(store: Store, run: Run, **options: object) -> object:
    return create_app(store, DashboardSettings(workdir=run.workdir, warm_up=False, **options))  # type: ignore[arg-type]


def test_another_host_needs_a_token(run_store: Store, finished_run: Run) -> None:
    with pytest.raises(DashboardSecurityError, match="TUNERY_DASHBOARD_TOKEN"):
        app(run_store, finished_run, host="0.0.0.0")
    with pytest.raises(DashboardSecurityError, match="at least 16"):
        app(run_store, finished_run, host="0.0.0.0", token="short")
    app(run_store, finished_run, host="0.0.0.0", token=TOKEN)
    app(run_store, finished_run, host="::1")  # loopback: no token needed


def test_without_a_token_only_loopback_hosts_are_answered(
    run_store: Store, finished_run: Run
) -> None:
    served = app(run_store, finished_run)
    assert (
        TestClient(served, base_url="http://127.0.0.1:8080").get("/api/config").status_code == 200
    )
    assert TestClient(served, base_url="http://localhost:8080").get("/").status_code == 200
    rebound = TestClient(served, base_url="http://attacker.example:8080").get("/api/experiments")
    assert rebound.status_code == 403


def test_a_token_is_required_and_accepted_three_ways(run_store: Store, finished_run: Run) -> None:
    served = app(run_store, finished_run, host="0.0.0.0", token=TOKEN)
    client = TestClient(served, base_url="http://dashboard.example")
    denied = client.get("/api/experiments")
    assert denied.status_code == 401 and "token" in denied.json()["detail"]
    assert (
        client.get("/", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code
        == 401
    )
    ok = client.get("/api/experiments", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    opened = client.get(f"/experiments/x?token={TOKEN}&keep=1", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/experiments/x?keep=1"  # the token leaves the URL
    assert "httponly" in opened.headers["set-cookie"].lower()
    assert client.get("/api/experiments").status_code == 200  # the cookie now
    assert client.get("/vendor/plotly.min.js").status_code == 200
    bare = TestClient(served, base_url="http://10.0.0.7:8080")
    assert bare.get("/healthz").text == "ok"  # the kubelet's probe needs no token
    assert bare.get("/api/experiments").status_code == 401


def test_loopback_host_headers() -> None:
    assert host_is_loopback("127.0.0.1:8080") and host_is_loopback("[::1]:8080")
    assert host_is_loopback("localhost") and host_is_loopback("127.0.0.2")
    assert not host_is_loopback("example.com") and not host_is_loopback(None)
    assert not host_is_loopback("127.0.0.1.evil.com:80")


def test_tokens_are_hidden_in_access_logs() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", f"/experiments/x?token={TOKEN}&keep=1", "1.1", 303),
        None,
    )
    RedactTokenFilter().filter(record)
    assert TOKEN not in record.getMessage()
    assert "token=***&keep=1" in record.getMessage()
