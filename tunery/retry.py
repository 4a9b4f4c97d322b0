"""How long tunery waits out an outage (database, suggestion service), and the backoff meanwhile.

A kernel module with no dependencies. Used by :mod:`tunery.store.retrying` (the store the
controller and its collectors write through), by ``controller.clients`` (gRPC Suggestion
servers) and by the operator. :class:`RetryPolicy` is the value: first delay, longest delay,
and how long an outage may last before the caller gives up (``$TUNERY_OUTAGE_LIMIT``, default
600 s). :class:`Outage` is one outage in progress: it says when to try next and when it
gives up, and words that for the logs. :class:`OutageWatch` shares one outage among threads:
it starts at the first failure any of them sees and ends at the next success.

::

    policy = RetryPolicy.from_env()
    outage = Outage(policy, "database postgresql://tunery@db/tunery")
    while True:
        try:
            return operation()
        except StoreUnavailableError as exc:
            delay = outage.next_delay()   # None once the limit has passed
            if delay is None:
                raise
            log.warning("%s", outage.describe(delay, exc))
            time.sleep(delay)
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

ENV_OUTAGE_LIMIT = "TUNERY_OUTAGE_LIMIT"
"""Environment variable: seconds an outage may last before tunery gives up (exit 3)."""

DEFAULT_OUTAGE_LIMIT_S = 600.0

LOG_EVERY_S = 30.0
"""While an outage lasts, how often its waiting is logged (after the first time)."""


class InvalidRetryPolicyError(ValueError):
    """A limit or delay is not a usable number of seconds; the message names it."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff from ``initial_delay`` doubling up to ``max_delay`` seconds, for at
    most ``limit`` seconds of continuous unavailability."""

    initial_delay: float = 0.5
    max_delay: float = 2.0
    limit: float = DEFAULT_OUTAGE_LIMIT_S

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "limit"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidRetryPolicyError(f"{name}: {value!r} is not a number of seconds >= 0")
        if self.initial_delay <= 0 or self.max_delay < self.initial_delay:
            raise InvalidRetryPolicyError(
                f"initial_delay must be > 0 and <= max_delay, got {self.initial_delay!r} and "
                f"{self.max_delay!r}"
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, limit: float | None = None
    ) -> RetryPolicy:
        """The default policy with ``limit`` if given, else ``$TUNERY_OUTAGE_LIMIT``, else 600 s.

        Raises:
            InvalidRetryPolicyError: the variable is not a number of seconds >= 0.
        """
        if limit is None:
            raw = (os.environ if environ is None else environ).get(ENV_OUTAGE_LIMIT, "").strip()
            if raw:
                limit = parse_limit(raw, ENV_OUTAGE_LIMIT)
        return cls() if limit is None else cls(limit=limit)


def parse_limit(text: str, where: str) -> float:
    """Seconds from ``text``; ``where`` names the option or variable in the error.

    Raises:
        InvalidRetryPolicyError: not a finite number >= 0.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidRetryPolicyError(f"{where}: {text!r} is not a number of seconds >= 0")
    return value


class Outage:
    """One outage of ``what``, from the first failure on: the delays to wait, then giving up.

    ``clock`` is monotonic seconds (tests pass a fake one). Not thread-safe; each caller that
    retries keeps its own.
    """

    def __init__(
        self, policy: RetryPolicy, what: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self.what = what
        self._clock = clock
        self.started = clock()
        self.attempts = 0
        self._logged_at: float | None = None

    def worth_logging(self, every: float = LOG_EVERY_S) -> bool:
        """True for the first wait of the outage, then once per ``every`` seconds, so that
        many threads waiting on one outage do not flood the log."""
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < every:
            return False
        self._logged_at = now
        return True

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def remaining(self) -> float:
        return max(0.0, self.policy.limit - self.elapsed)

    def next_delay(self) -> float | None:
        """How long to wait before the next try, or None when the limit has passed (give up).
        The last delay is shortened so that the last try happens at the limit."""
        remaining = self.remaining
        if remaining <= 0:
            return None
        delay = min(self.policy.initial_delay * 2**self.attempts, self.policy.max_delay)
        self.attempts += 1
        return min(delay, remaining)

    def give_up_at(self) -> str:
        """The wall-clock time (UTC, HH:MM:SS) at which this outage is given up."""
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.remaining)
        return at.strftime("%H:%M:%S UTC")

    def describe(self, delay: float, cause: object) -> str:
        """The log line while waiting: what is awaited, why, the next try and the limit."""
        return (
            f"{self.what} unavailable ({cause}); retrying in {delay:.1f} s, giving up at "
            f"{self.give_up_at()} ({self.policy.limit:g} s outage limit, {ENV_OUTAGE_LIMIT})"
        )

    def gave_up(self, cause: object) -> str:
        """The message once the limit has passed."""
        return (
            f"{self.what} unavailable for {self.elapsed:.0f} s, longer than the outage limit of "
            f"{self.policy.limit:g} s ({ENV_OUTAGE_LIMIT} or --outage-limit): {cause}"
        )


class OutageWatch:
    """The outage of one resource as seen by many threads (thread-safe)."""

    def __init__(
        self, policy: RetryPolicy, what: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self.what = what
        self._clock = clock
        self._lock = threading.Lock()
        self._outage: Outage | None = None

    def failed(self) -> Outage:
        """The outage in progress, started now if there was none."""
        with self._lock:
            if self._outage is None:
                self._outage = Outage(self.policy, self.what, clock=self._clock)
            return self._outage

    def recovered(self) -> Outage | None:
        """End the outage; returns it (to log how long it lasted), or None if there was none."""
        with self._lock:
            outage, self._outage = self._outage, None
        return outage
