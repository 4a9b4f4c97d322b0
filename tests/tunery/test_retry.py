"""tunery.retry: the outage policy from the environment, and the backoff of one outage."""

from __future__ import annotations

import pytest

from tunery.retry import (
    DEFAULT_OUTAGE_LIMIT_S,
    ENV_OUTAGE_LIMIT,
    InvalidRetryPolicyError,
    Outage,
    RetryPolicy,
)


def test_default_limit_is_ten_minutes_and_the_environment_overrides_it() -> None:
    assert RetryPolicy.from_env({}).limit == DEFAULT_OUTAGE_LIMIT_S == 600
    assert RetryPolicy.from_env({ENV_OUTAGE_LIMIT: "42.5"}).limit == 42.5
    assert RetryPolicy.from_env({ENV_OUTAGE_LIMIT: "42"}, limit=3).limit == 3  # option wins


@pytest.mark.parametrize("raw", ["ten", "-1", "nan", "inf"])
def test_a_bad_limit_names_the_variable_and_the_value(raw: str) -> None:
    with pytest.raises(InvalidRetryPolicyError, match=f"{ENV_OUTAGE_LIMIT}: '{raw}'"):
        RetryPolicy.from_env({ENV_OUTAGE_LIMIT: raw})


def test_bad_delays_are_rejected() -> None:
    with pytest.raises(InvalidRetryPolicyError, match="initial_delay"):
        RetryPolicy(initial_delay=0)
    with pytest.raises(InvalidRetryPolicyError, match="max_delay"):
        RetryPolicy(initial_delay=3, max_delay=1)


def test_delays_double_to_the_maximum_and_stop_at_the_limit() -> None:
    now = [0.0]
    outage = Outage(
        RetryPolicy(initial_delay=1, max_delay=4, limit=10), "db", clock=lambda: now[0]
    )
    delays = []
    while (delay := outage.next_delay()) is not None:
        delays.append(delay)
        now[0] += delay
    assert delays == [1, 2, 4, 3]  # the last one lands on the limit
    assert "longer than the outage limit of 10 s" in outage.gave_up("refused")


def test_the_wait_message_says_what_why_when() -> None:
    outage = Outage(RetryPolicy(limit=60), "database postgresql://u:***@h/db")
    text = outage.describe(2.0, "connection refused")
    assert text.startswith("database postgresql://u:***@h/db unavailable (connection refused)")
    assert "retrying in 2.0 s, giving up at" in text and "UTC" in text


def test_waiting_is_worth_logging_once_per_30_seconds() -> None:
    now = [0.0]
    outage = Outage(RetryPolicy(), "db", clock=lambda: now[0])
    seen = []
    for _ in range(40):
        seen.append(outage.worth_logging())
        now[0] += 2.0
    assert [i * 2 for i, s in enumerate(seen) if s] == [0, 30, 60]
