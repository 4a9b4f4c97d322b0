"""The operator's kopf retries of a database or API outage: backoff, then the longest delay
past the outage limit, and the message says what is awaited."""

from __future__ import annotations

import logging

import pytest

kopf = pytest.importorskip("kopf")

from controller.operator.app import temporary_error  # noqa: E402
from tunery.retry import OutageWatch, RetryPolicy  # noqa: E402
from tunery.store.errors import StoreUnavailableError  # noqa: E402


def test_backoff_then_the_longest_delay_past_the_limit(caplog) -> None:
    now = [0.0]
    outages = OutageWatch(
        RetryPolicy(initial_delay=0.5, max_delay=2.0, limit=5.0),
        "the database",
        clock=lambda: now[0],
    )
    cause = StoreUnavailableError("database postgresql://u:***@db/t unavailable: refused")
    delays = []
    for _ in range(4):
        error = temporary_error(outages, cause)
        assert isinstance(error, kopf.TemporaryError)
        assert "postgresql://u:***@db/t" in str(error) and "retrying in" in str(error)
        delays.append(error.delay)
        now[0] += error.delay
    assert delays == [0.5, 1.0, 2.0, 1.5]  # the last try lands on the limit
    with caplog.at_level(logging.ERROR, "controller.operator.app"):
        late = temporary_error(outages, cause)
    assert late.delay == 2.0 and "still retrying" in str(late)
    assert "longer than the outage limit of 5 s" in caplog.text
    assert outages.recovered() is not None and outages.recovered() is None
