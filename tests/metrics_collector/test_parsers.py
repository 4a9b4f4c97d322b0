"""Parsers: golden cases per format, Katib equivalence, robustness and chunking invariance."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_collector.errors import MetricsFormatError
from metrics_collector.parsers import (
    DEFAULT_FILTER,
    JsonLinesParser,
    MetricsFormat,
    Parser,
    TextParser,
    _observation,
    default_filter_matches,
    make_parser,
)
from metrics_collector.timefmt import parse_rfc3339
from tunery.trials import ZERO_TIME, Observation

UTC = dt.UTC


def t(text: str) -> dt.datetime:
    return parse_rfc3339(text, require_zone=False)


def rows(observations: list[Observation]) -> list[tuple[str, str, int, dt.datetime]]:
    return [(o.metric_name, o.value, o.step, o.time) for o in observations]


# -- TEXT, Katib's default filter ------------------------------------------------------------
TEXT_GOLDEN = [
    ("loss=0.5", [("loss", "0.5")]),
    ("loss = 0.5", [("loss", "0.5")]),
    ("loss\t=\t0.5", [("loss", "0.5")]),
    ("loss=1e-05", [("loss", "1e-05")]),  # Katib issue: regexes that truncate 1e-05
    ("loss=1E+3", [("loss", "1E+3")]),
    ("loss=-7.53e-05", [("loss", "-7.53e-05")]),
    ("loss=+2.5", [("loss", "+2.5")]),
    ("loss=3", [("loss", "3")]),
    ("loss=1234567", [("loss", "1234567")]),  # multi-digit ints
    ("loss=-42", [("loss", "-42")]),
    ("loss=.5", [("loss", ".5")]),
    ("loss=5.", [("loss", "5")]),  # the dot is not part of the value
    ("loss=0.25, accuracy=0.91", [("loss", "0.25"), ("accuracy", "0.91")]),
    (
        "epoch 3: loss=0.2 accuracy=0.8 loss=0.1",
        [("loss", "0.2"), ("accuracy", "0.8"), ("loss", "0.1")],
    ),
    ("val_loss=0.3", []),  # the name must be the whole word
    ("xloss=1 loss_x=2", []),
    ("step=3loss=7", [("loss", "7")]),  # Katib continues inside the word after a value
    ("a=1loss=2 b=-accuracy=3", [("loss", "2"), ("accuracy", "3")]),
    ("loss: 0.5 accuracy 0.9", []),
    ("LOSS=0.5", []),  # names are case-sensitive
    ("accuracy=.98 loss=1e0", [("accuracy", ".98"), ("loss", "1e0")]),
]


@pytest.mark.parametrize(("line", "expected"), TEXT_GOLDEN, ids=[c[0] for c in TEXT_GOLDEN])
def test_default_filter_golden(line: str, expected: list[tuple[str, str]]) -> None:
    parser = TextParser(["loss", "accuracy"])
    found = parser.parse(line.encode() + b"\n")
    assert [(o.metric_name, o.value) for o in found] == expected
    assert all(o.numeric == float(o.value) for o in found)
    assert all(o.time == ZERO_TIME for o in found)


@pytest.mark.parametrize(
    ("names", "line", "expected"),
    [
        (["e5", "loss"], "x=e5=3 loss=1 e5=2", [("loss", "1"), ("e5", "2")]),  # "e5" is a value
        (["1x", "loss"], "a=1x=2 1x=3", [("1x", "3")]),
        (["-y"], "b=-y=4 -y=5", [("-y", "5")]),
    ],
)
def test_names_that_can_start_inside_a_value(
    names: list[str], line: str, expected: list[tuple[str, str]]
) -> None:
    found = TextParser(names).parse(line.encode() + b"\n")
    assert [(o.metric_name, o.value) for o in found] == expected


def test_default_filter_counts_values_that_are_not_numbers() -> None:
    parser = TextParser(["loss", "accuracy"])
    found = parser.parse(b"loss=abc\nloss=\nloss= accuracy=x\nloss=0.5\n")
    assert rows(found) == [("loss", "0.5", 0, ZERO_TIME)]  # ordinal counts numeric only
    stats = parser.stats
    assert stats.non_numeric == {"loss": 3, "accuracy": 1}
    assert ("loss", "") in stats.non_numeric_samples
    assert "loss: 3" in stats.describe("loss") or "loss: 3" in stats.describe()
    assert "accuracy" not in stats.describe("loss")


def test_steps_are_ordinals_per_metric() -> None:
    found = TextParser(["loss", "accuracy"]).parse(
        b"loss=1 accuracy=0.1\nloss=2\nnoise\nloss=3 accuracy=0.3\n"
    )
    assert [(o.metric_name, o.step) for o in found] == [
        ("loss", 0),
        ("accuracy", 0),
        ("loss", 1),
        ("loss", 2),
        ("accuracy", 1),
    ]


TIMESTAMPS = [
    ("2024-05-01T12:00:00Z loss=1", t("2024-05-01T12:00:00Z")),
    ("2024-05-01T12:00:00.123456789Z loss=1", t("2024-05-01T12:00:00.123456Z")),
    ("2024-05-01T14:00:00.5+02:00 loss=1", t("2024-05-01T12:00:00.5Z")),
    ("2024-05-01t12:00:00z loss=1", t("2024-05-01T12:00:00Z")),
    # Without a zone: the collector's local time (Katib ignores such timestamps).
    ("2024-05-01T12:00:00 loss=1", dt.datetime(2024, 5, 1, 12).astimezone(UTC)),
    ("2024-13-01T12:00:00Z loss=1", ZERO_TIME),  # not a date
    ("2024-05-01 12:00:00 loss=1", ZERO_TIME),  # first token is a date only
    ("epoch 2024-05-01T12:00:00Z loss=1", ZERO_TIME),  # must lead the line
    ("2024-05-01T12:00:00Z,loss=1 x", ZERO_TIME),  # the token is not a timestamp
    ("loss=1", ZERO_TIME),
]


@pytest.mark.parametrize(("line", "expected"), TIMESTAMPS, ids=[c[0] for c in TIMESTAMPS])
def test_leading_timestamps(line: str, expected: dt.datetime) -> None:
    for parser in (TextParser(["loss"]), TextParser(["loss"], [DEFAULT_FILTER + "()"])):
        found = parser.parse(line.encode() + b"\n")
        assert [o.time for o in found if o.metric_name == "loss"] == [expected], parser.filters


# -- TEXT, custom filters --------------------------------------------------------------------
KATIB_FILE_FILTER = r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"
HF_FILTER = r"'([\w|-]+)'\s*:\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"


def test_katib_custom_filter_with_several_matches_per_line() -> None:
    parser = TextParser(["accuracy", "loss"], [KATIB_FILE_FILTER])
    line = (
        b"2024-05-01T12:00:00Z {metricName: accuracy, metricValue: 0.9};"
        b"{metricName: loss, metricValue: -12}\n"
    )
    found = parser.parse(line)
    assert rows(found) == [
        ("accuracy", "0.9", 0, t("2024-05-01T12:00:00Z")),
        ("loss", "-12", 0, t("2024-05-01T12:00:00Z")),
    ]


def test_llm_dict_filter_and_several_filters_in_order() -> None:
    parser = TextParser(["train_loss", "loss"], [HF_FILTER, DEFAULT_FILTER])
    found = parser.parse(b"{'train_loss': 0.8, 'epoch': 1.0} loss=0.7\n")
    assert [(o.metric_name, o.value) for o in found] == [("train_loss", "0.8"), ("loss", "0.7")]


def test_custom_filter_values_are_trimmed_and_empty_groups_are_empty() -> None:
    parser = TextParser(["loss"], [r"(\w+)\s*->\s*([^;]*)(;)?"])
    found = parser.parse(b"loss ->  0.5  ;loss->\n")
    assert [o.value for o in found] == ["0.5"]
    assert parser.stats.non_numeric == {"loss": 1}


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (["(unclosed"], "not a valid regex"),
        ([r"loss=(\d+)"], "needs two groups"),
    ],
)
def test_bad_filters_are_rejected_with_the_filter_named(filters: list[str], message: str) -> None:
    with pytest.raises(MetricsFormatError, match=message) as info:
        TextParser(["loss"], filters)
    assert repr(filters[0]) in str(info.value)


def test_make_parser() -> None:
    assert isinstance(make_parser(["loss"]), TextParser)
    assert isinstance(make_parser(["loss"], "json"), JsonLinesParser)
    assert make_parser(["loss"], MetricsFormat.TEXT, [KATIB_FILE_FILTER]).filters == (
        KATIB_FILE_FILTER,
    )
    with pytest.raises(MetricsFormatError, match="unknown metrics format 'XML'"):
        make_parser(["loss"], "XML")
    with pytest.raises(MetricsFormatError, match="TEXT format, not JSON"):
        make_parser(["loss"], "JSON", [KATIB_FILE_FILTER])
    with pytest.raises(MetricsFormatError, match="at least one metric"):
        make_parser([])


# -- JSON lines ------------------------------------------------------------------------------
def test_json_lines_golden() -> None:
    parser = JsonLinesParser(["loss", "accuracy"])
    lines = [
        {"loss": 0.5, "accuracy": "0.91", "timestamp": 1714564800.5, "step": 3},
        {"loss": "1e-05", "timestamp": "2024-05-01T12:00:00Z", "epoch": 7},
        {"loss": 2, "other": 1},
        {"accuracy": True, "loss": None},
        {"loss": {"nested": 1}},
        {"loss": 0.25, "step": -1, "timestamp": "yesterday"},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines)
    data += '{"loss": NaN}\n{"loss": -Infinity}\nloss is not json\n'
    data += '["loss", 1]\n{"loss": 1} trailing\n'
    found = parser.parse(data.encode())
    assert rows(found) == [
        ("loss", "0.5", 3, dt.datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("accuracy", "0.91", 3, dt.datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("loss", "1e-05", 7, t("2024-05-01T12:00:00Z")),
        ("loss", "2", 2, ZERO_TIME),
        ("loss", "0.25", 3, ZERO_TIME),  # bad step: ordinal; bad timestamp: zero time
        ("loss", "NaN", 4, ZERO_TIME),
        ("loss", "-Infinity", 5, ZERO_TIME),
    ]
    assert found[-2].numeric != found[-2].numeric  # NaN is stored
    stats = parser.stats
    assert stats.non_numeric == {"accuracy": 1, "loss": 2}
    assert stats.malformed_lines == 3
    assert stats.invalid_fields == 2
    assert "not valid JSON objects" in stats.describe()


def test_json_lines_written_by_report_metrics_shape() -> None:
    line = b'{"timestamp":1714564800.0,"step":5,"loss":"0.125"}\n'
    (obs,) = JsonLinesParser(["loss"]).parse(line)
    assert (obs.value, obs.numeric, obs.step) == ("0.125", 0.125, 5)


# -- robustness ------------------------------------------------------------------------------
def test_line_endings_ansi_and_progress_bars() -> None:
    data = (
        b"loss=1\r\n"
        b"\x1b[32mloss=2\x1b[0m accuracy=\x1b[1m0.5\x1b[0m\n"
        b"train 10%|#    | loss=3\rtrain 50%|###  | loss=4\rtrain 100%|#####| loss=5\n"
        b"\x1b]0;title\x07loss=6\n"
    )
    found = TextParser(["loss", "accuracy"]).parse(data)
    assert [(o.metric_name, o.value) for o in found] == [
        ("loss", "1"),
        ("loss", "2"),
        ("accuracy", "0.5"),
        ("loss", "3"),
        ("loss", "4"),
        ("loss", "5"),
        ("loss", "6"),
    ]


def test_binary_garbage_and_invalid_utf8() -> None:
    data = bytes(range(256)) * 40 + b"\nloss=0.5\xff\xfe\x00accuracy=0.7\n\x00\x00loss=1"
    found = TextParser(["loss", "accuracy"]).parse(data)
    assert [(o.metric_name, o.value) for o in found] == [
        ("loss", "0.5"),
        ("accuracy", "0.7"),
        ("loss", "1"),
    ]


def test_lines_over_a_megabyte() -> None:
    big = b"x" * 3_000_000
    data = b"loss=1 " + big + b" accuracy=2\n" + b"y=" + big + b" loss=3\n"
    parser = TextParser(["loss", "accuracy"])
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    found = [o for c in chunks for o in parser.feed(c)] + parser.flush()
    assert [(o.metric_name, o.value) for o in found] == [
        ("loss", "1"),
        ("accuracy", "2"),
        ("loss", "3"),
    ]
    assert parser.stats.split_lines == 0


def test_long_words_take_linear_time() -> None:
    # Katib's regex backtracks quadratically inside a long word; a 4 MB blob would hang it.
    data = b"loss" + b"a1" * 2_000_000 + b"=5 loss=0.5\n"
    start = time.process_time()
    found = TextParser(["loss"]).parse(data)
    assert time.process_time() - start < 5.0
    assert [o.value for o in found] == ["0.5"]


def test_lines_over_the_limit_are_parsed_in_pieces_and_memory_stays_bounded() -> None:
    parser = TextParser(["loss"], max_line_bytes=1000)
    data = b"loss=1 " + b"z" * 2500 + b" loss=2\n"
    found = parser.parse(data)
    assert [o.value for o in found] == ["1", "2"]
    assert parser.stats.split_lines == 2
    for _ in range(50):
        parser.feed(b"q" * 999)
        assert parser._pending_len <= 1000


def test_observation_fast_constructor_equals_the_dataclass() -> None:
    args = ("loss", "0.5", 3, dt.datetime(2024, 5, 1, tzinfo=UTC), 0.5)
    fast = _observation(*args)
    assert fast == Observation(*args)
    assert hash(fast) == hash(Observation(*args))
    assert repr(fast) == repr(Observation(*args))


# -- equivalence with Katib's regex, and chunking invariance (hypothesis) ---------------------
_GO_DEFAULT = re.compile(DEFAULT_FILTER.replace(r"\s", r"[\t\n\f\r ]"), re.ASCII)


def katib_reference(data: bytes, names: list[str]) -> list[tuple[str, str, int, dt.datetime]]:
    """Katib's TEXT algorithm, line by line with its literal regex (quadratic but simple)."""
    out = []
    ordinals: dict[str, int] = {}
    for raw in re.split(rb"\r\n|\r|\n", data):
        line = raw.decode("utf-8", "replace")
        if not any(n in line for n in names):
            continue
        time_ = ZERO_TIME
        token, sep, _ = line.partition(" ")
        if sep:
            with contextlib.suppress(ValueError):
                time_ = parse_rfc3339(token, require_zone=False)
        for m in _GO_DEFAULT.finditer(line):
            name, value = m.group(1).strip(), m.group(2).strip()
            if name in names:
                try:
                    float(value)
                except ValueError:
                    continue
                step = ordinals.get(name, 0)
                ordinals[name] = step + 1
                out.append((name, value, step, time_))
    return out


# fmt: off
TOKENS = st.sampled_from(
    [
        "loss", "acc", "e5", "1x", "=", "==", " ", "\t", "\n", "\r", "\r\n", "0", "7", "12",
        ".", "e", "E", "-", "+", "|", "_", "a", "x", ":", ",",
        "2024-05-01T12:00:00Z ", "2024-05-01T12:00:00.5+01:00 ", "\x00", "\xe9", "=e5=",
        "=1x=", "=-",
    ]
)
# fmt: on
TEXTS = st.lists(TOKENS, max_size=60).map("".join)
NAME_SETS = st.sampled_from([["loss", "acc"], ["loss"], ["e5", "loss"], ["1x", "acc"]])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, names=NAME_SETS)
def test_default_filter_equals_katib(text: str, names: list[str]) -> None:
    data = text.encode()
    assert rows(TextParser(names).parse(data)) == katib_reference(data, names)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab1-=. e|\t", max_size=40))
def test_linear_matcher_equals_the_regex(text: str) -> None:
    expected = [(m.group(1), m.group(2)) for m in _GO_DEFAULT.finditer(text)]
    assert list(default_filter_matches(text)) == expected


def _parsers() -> list[Parser]:
    return [
        TextParser(["loss", "acc"]),
        TextParser(["e5", "acc"]),
        TextParser(["loss", "acc"], [KATIB_FILE_FILTER, HF_FILTER]),
        JsonLinesParser(["loss", "acc"]),
        TextParser(["loss", "acc"], max_line_bytes=7),
        JsonLinesParser(["loss"], max_line_bytes=16),
    ]


# fmt: off
CHUNK_TOKENS = st.one_of(
    TOKENS,
    st.sampled_from(
        [
            '{"loss": 0.5, "step": 2}', '{"acc": "0.1"', "}", '"timestamp": 1.5, ', "\x1b[3",
            "1m", "\x1b]0;t\x07", "{metricName: loss, metricValue: 3.5}", "'acc': 2",
        ]
    ),
    st.binary(max_size=8).map(lambda b: b.decode("latin-1")),
)
# fmt: on


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(CHUNK_TOKENS, max_size=50),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    which=st.integers(min_value=0, max_value=5),
)
def test_chunking_does_not_change_the_result(
    pieces: list[str], cuts: list[int], which: int
) -> None:
    data = "".join(pieces).encode("utf-8", "surrogateescape")
    whole = _parsers()[which]
    expected = whole.parse(data)
    chunked = whole.clone()
    got: list[Observation] = []
    last = 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        got += chunked.feed(data[last:cut])
        last = cut
    got += chunked.feed(data[last:]) + chunked.flush()
    assert got == expected
    assert chunked.stats == whole.stats


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000), which=st.integers(min_value=0, max_value=5))
def test_random_bytes_never_crash(data: bytes, which: int) -> None:
    parser = _parsers()[which]
    for observation in parser.parse(data):
        assert observation.metric_name in parser.metric_names
        assert observation.numeric is not None


def test_the_leading_timestamp_is_matched_over_as_katib_does() -> None:
    # Katib's filter also runs over the timestamp token: "00Z =1" is a match there, so the
    # "1x=1" after it is not (found by the property test above).
    data = b"2024-05-01T12:00:00Z =1x=1x\n2024-05-01T12:00:00Z 1x=2\n"
    names = ["1x", "acc"]
    assert rows(TextParser(names).parse(data)) == katib_reference(data, names)
    assert [r[:2] for r in katib_reference(data, names)] == [("1x", "2")]
