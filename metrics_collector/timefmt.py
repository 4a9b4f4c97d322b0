"""RFC3339 timestamps as Katib writes and reads them (Go's ``time.RFC3339Nano``).

Used by the parsers (leading timestamps, JSON ``timestamp``), the DBManager service and its
client, and ``report_metrics``. Python keeps microseconds: nanosecond digits are truncated.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from metrics_collector.errors import InvalidTimestampError

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?([Zz]|[+-]\d{2}:\d{2})?", re.ASCII
)


def parse_rfc3339(text: str, *, require_zone: bool = True) -> dt.datetime:
    """Parse ``2006-01-02T15:04:05.999999999Z07:00`` into an aware UTC datetime.

    With ``require_zone=False`` a timestamp without zone is read as the collector's local time
    (the trial runs beside it), an improvement over Katib, which ignores such timestamps.

    Raises:
        InvalidTimestampError: ``text`` is not such a timestamp (quoted in the message).
    """
    m = _RFC3339.fullmatch(text)
    if m is None or (require_zone and m.group(1) is None):
        raise InvalidTimestampError(
            f"{text!r} is not an RFC3339 timestamp like 2006-01-02T15:04:05.999Z"
        )
    try:
        # The structure is checked above; fromisoformat (C) does the arithmetic quickly.
        value = dt.datetime.fromisoformat(text[:-1] + "Z" if text[-1] == "z" else text)
        if value.tzinfo is not dt.UTC:
            value = value.astimezone(dt.UTC)  # naive: local time
    except (ValueError, OverflowError, OSError) as e:
        raise InvalidTimestampError(f"{text!r} is not a valid timestamp: {e}") from None
    return value


def from_epoch(seconds: float) -> dt.datetime:
    """Epoch seconds (JSON ``timestamp``) as an aware UTC datetime.

    Raises:
        InvalidTimestampError: not finite or out of datetime's range.
    """
    if not math.isfinite(seconds):
        raise InvalidTimestampError(f"epoch timestamp {seconds!r} is not finite")
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (ValueError, OverflowError, OSError) as e:
        raise InvalidTimestampError(f"epoch timestamp {seconds!r} is out of range: {e}") from None


def format_rfc3339_nano(value: dt.datetime) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing fraction zeros trimmed, ``Z`` suffix.

    Naive datetimes are taken as UTC. Katib's zero time gives ``0001-01-01T00:00:00Z``.
    """
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
    text += f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"
