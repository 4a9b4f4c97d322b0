"""The sidecar's last flush waits for an unavailable DBManager as long as the outage limit."""

from __future__ import annotations

import pytest

from metrics_collector.sidecar import parse_args

ARGS = ["-t", "t", "-m", "loss", "-path", "x"]


def test_the_flush_timeout_defaults_to_the_outage_limit(monkeypatch) -> None:
    monkeypatch.delenv("TUNERY_OUTAGE_LIMIT", raising=False)
    assert parse_args(ARGS)[0].flush_timeout == 600
    monkeypatch.setenv("TUNERY_OUTAGE_LIMIT", "900")
    assert parse_args(ARGS)[0].flush_timeout == 900
    assert parse_args([*ARGS, "--flush-timeout", "30"])[0].flush_timeout == 30


def test_a_bad_limit_is_a_usage_error_naming_it(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TUNERY_OUTAGE_LIMIT", "soon")
    with pytest.raises(SystemExit) as exited:
        parse_args(ARGS)
    assert exited.value.code == 2
    assert "TUNERY_OUTAGE_LIMIT: 'soon'" in capsys.readouterr().err
