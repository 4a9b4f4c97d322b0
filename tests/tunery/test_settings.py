"""tunery.settings: Katib's name/value strings to typed settings, shared by algorithms and
early stoppers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from tunery.settings import parse_settings


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Knobs:
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    label: str = ""


def parse(raw: object) -> Knobs:
    return parse_settings(Knobs, raw, "algo", SettingsError)  # type: ignore[arg-type]


def test_values_are_typed_and_absent_names_keep_defaults() -> None:
    knobs = parse({"count": "3.0", "rate": "1e-3", "flag": "TRUE", "mode": "slow", "limit": ""})
    assert knobs == Knobs(count=3, rate=0.001, flag=True, mode="slow", limit=None)
    assert parse([("limit", "7"), ("label", "x")]) == Knobs(limit=7, label="x")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cuont": "1"}, "unknown setting cuont for algorithm algo"),
        ([("count", "1"), ("count", "2")], "setting count is given more than once"),
        ({"count": "1.5"}, r"failed to validate count\(1.5\): must be an integer"),
        ({"count": "many"}, r"failed to validate count\(many\): must be an integer"),
        ({"rate": "nan"}, "must be a number, not NaN"),
        ({"flag": "yes"}, "must be true or false"),
        ({"mode": "medium"}, "must be one of fast, slow"),
    ],
)
def test_bad_settings_raise_the_callers_error_with_katibs_messages(
    raw: object, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        parse(raw)
