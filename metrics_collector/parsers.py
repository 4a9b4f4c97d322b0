"""Metric parsers: a trial's output bytes in, :class:`~tunery.trials.Observation` rows out.

Called by :class:`metrics_collector.collector.TrialCollector` (streaming: ``feed(chunk)`` as
output arrives, ``flush()`` at the end) and by its ``replay`` (re-parsing a log file). Build
one with :func:`make_parser` from an experiment's ``metricsCollectorSpec``.

Formats, as Katib's collectors:

- **TEXT** (:class:`TextParser`): regex filters, group 1 the metric name, group 2 the value,
  several matches per line. The default filter is Katib's ``DEFAULT_FILTER``
  (``loss=0.3``, ``accuracy = .98``, ``Score=-7.53e-05``). A leading RFC3339 token (up to the
  first space) sets the time, else Katib's zero time. Improvement: a timestamp without zone is
  read as local time (Katib ignores it).
- **JSON** (:class:`JsonLinesParser`): one object per line; metric values as numbers or
  strings (Katib accepts strings only); ``timestamp`` as epoch seconds or RFC3339; an optional
  ``step`` (or ``epoch``) gives the step. A line that is not an object is counted, not fatal.

Shared rules:

- Only lines containing a requested metric name as a substring are looked at (Katib's rule),
  and only names equal to a requested one are kept.
- LF, CRLF and a lone CR end a line: a carriage-return progress bar redraw is a line. ANSI
  escape sequences are removed, invalid UTF-8 is replaced, NUL bytes are harmless.
- A line longer than ``max_line_bytes`` (16 MiB) is parsed in pieces of that size, counted in
  :attr:`ParseStats.split_lines`; memory stays bounded whatever the input.
- Steps: the explicit step where given, else the value's ordinal among that metric's numeric
  reports (0-based).
- Values that do not parse as floats (Katib stores ``""`` for ``loss=abc``) are counted per
  metric with samples in :class:`ParseStats` and never emitted, so they can never become the
  objective. NaN and ±inf are emitted (stored, never chosen as best).
- Deterministic: the same bytes give the same observations and stats however they are split
  into chunks. The collector's write-ahead-log replay relies on this.

Speed: candidate lines are located with ``bytes.find`` over whole chunks; only those lines are
decoded and matched, with precompiled patterns. Katib's default filter is matched by an exact,
linear-time equivalent (:func:`default_filter_matches`): the literal regex is quadratic in the
length of a word, which a binary blob in the log would turn into a hang.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from metrics_collector.errors import InvalidTimestampError, MetricsFormatError
from metrics_collector.timefmt import from_epoch, parse_rfc3339
from tunery.trials import ZERO_TIME, Observation

DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
"""Katib's default metrics filter (``DefaultFilter``): ``name=value``; note the literal ``|``."""

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_SAMPLES = 5
"""How many examples of non-numeric values and malformed lines the stats keep."""

JSON_TIMESTAMP_KEY = "timestamp"
JSON_STEP_KEYS = ("step", "epoch")

_new_object = object.__new__


def _observation(
    name: str, value: str, step: int, time: dt.datetime, numeric: float
) -> Observation:
    """``Observation(name, value, step, time, numeric)`` for the hot loops.

    The frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (five
    calls); filling ``__dict__`` at once builds an equal object at a fifth of the cost, which
    is a third of the parser's time at a million lines per second. Observation has no
    ``__post_init__``; a test checks equality with the constructor.
    """
    obs = _new_object(Observation)
    obs.__dict__.update(metric_name=name, value=value, step=step, time=time, numeric=numeric)
    return obs


class MetricsFormat(enum.StrEnum):
    """Katib's ``metricsCollectorSpec.source.filter`` file formats."""

    TEXT = "TEXT"
    JSON = "JSON"


# -- Katib's default filter, exact and linear ------------------------------------------------
# Go's RE2 classes are ASCII: \w = [0-9A-Za-z_], \s = [\t\n\f\r ], \d = [0-9].
_WORD = "0-9A-Za-z_|-"
_SPACE = r"[\t\n\f\r ]*"
_VALUE = r"([+-]?[0-9]*(?:\.[0-9]+)?(?:[Ee][+-]?[0-9]+)?)"
_DEFAULT_AT_WORD_START = re.compile(rf"(?<![{_WORD}])([{_WORD}]+){_SPACE}={_SPACE}{_VALUE}")
_DEFAULT_AT = re.compile(rf"([{_WORD}]+){_SPACE}={_SPACE}{_VALUE}")
_WORD_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_|-")
_VALUE_END_IN_WORD = frozenset("0123456789-")
_WORD_RUN = re.compile(rf"[{_WORD}]+").fullmatch
_UNSAFE_NAME_START = re.compile(r"[0-9-]|[Ee]-?[0-9]").match


def default_filter_matches(line: str) -> Iterator[tuple[str, str]]:
    """``(name, value)`` pairs exactly as Katib's ``DEFAULT_FILTER`` finds them, in linear time.

    Leftmost-first matching starts a match at the first word character of a run (later starts
    in the same run reach the same ``=`` or fail alike), except right after the previous
    match, where a run may continue (``a=1b=2`` gives ``a=1`` then ``b=2``). Searching only at
    run starts, plus one anchored try at the previous match's end, gives the same matches
    without the literal pattern's quadratic backtracking inside long words.
    """
    search = _DEFAULT_AT_WORD_START.search
    pos = 0
    n = len(line)
    while pos < n:
        m = None
        if pos and line[pos - 1] in _VALUE_END_IN_WORD and line[pos] in _WORD_CHARS:
            m = _DEFAULT_AT.match(line, pos)
        if m is None:
            m = search(line, pos)
            if m is None:
                return
        yield m.group(1), m.group(2)
        pos = m.end()


_TIMESTAMP = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_DEFAULT_LINES_FINDALL = re.compile(
    # Over "\n"-prefixed candidate lines: a line start (with its leading timestamp token, looked
    # at but not consumed: Katib's filter runs over it too, so in "...12:00:00Z =1" the name is
    # "00Z"), or a match of the default filter; inside a line Go's \s is [\t\f ] (CR became LF).
    rf"\n(?:(?=({_TIMESTAMP}) ))?"
    rf"|(?<![{_WORD}])([{_WORD}]+)[\t\f ]*=[\t\f ]*{_VALUE}(?=([{_WORD}]+[\t\f ]*=)?)"
).findall


# -- line assembly helpers -------------------------------------------------------------------
_ANSI = re.compile(
    rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)|[@-Z\\-_])",
)
_LINE_END = re.compile(rb"[\r\n]")


def _minimal_needles(names: Iterable[str]) -> tuple[bytes, ...]:
    """Names to search for: a name containing another requested name is found through it."""
    encoded = sorted({n.encode() for n in names}, key=len)
    kept: list[bytes] = []
    for name in encoded:
        if not any(k in name for k in kept):
            kept.append(name)
    return tuple(kept)


@dataclass(frozen=True)
class ParseStats:
    """What a parser saw: counts, and examples of what it could not use.

    ``non_numeric`` counts values per metric that are not numbers (never emitted);
    ``malformed_lines`` counts candidate lines a JSON parser could not read;
    ``invalid_fields`` counts bad ``timestamp``/``step`` fields (ignored, zero time or ordinal
    step used instead); ``split_lines`` counts lines longer than ``max_line_bytes``.
    """

    lines: int = 0
    bytes: int = 0
    candidate_lines: int = 0
    observations: Mapping[str, int] = field(default_factory=dict)
    non_numeric: Mapping[str, int] = field(default_factory=dict)
    non_numeric_samples: tuple[tuple[str, str], ...] = ()
    malformed_lines: int = 0
    malformed_samples: tuple[str, ...] = ()
    invalid_fields: int = 0
    split_lines: int = 0

    @property
    def total_observations(self) -> int:
        return sum(self.observations.values())

    def describe(self, metric_name: str | None = None) -> str:
        """One sentence on the problems seen (for a metric, or all), or ``""`` if none."""
        parts = []
        bad = {
            k: v for k, v in self.non_numeric.items() if metric_name is None or k == metric_name
        }
        if bad:
            samples = [
                f"{k}={v!r}"
                for k, v in self.non_numeric_samples
                if metric_name is None or k == metric_name
            ]
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(bad.items()))
            parts.append(
                f"values that are not numbers were ignored ({counts}; e.g. {', '.join(samples)})"
            )
        if self.malformed_lines:
            parts.append(
                f"{self.malformed_lines} line(s) naming a metric were not valid JSON objects"
                f" (e.g. {self.malformed_samples[0]!r})"
            )
        if self.split_lines:
            parts.append(f"{self.split_lines} line(s) over the line limit were parsed in pieces")
        return "; ".join(parts)


class Parser(abc.ABC):
    """Streaming parser: assembles lines from byte chunks and emits observations.

    Not thread-safe: one feeder at a time (the collector serialises calls).
    """

    format: MetricsFormat

    def __init__(
        self, metric_names: Iterable[str], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        names = tuple(dict.fromkeys(metric_names))
        if not names:
            raise MetricsFormatError("a parser needs at least one metric name")
        if any(not n or n != n.strip() for n in names):
            raise MetricsFormatError(f"metric names must be non-empty and unpadded: {names!r}")
        if max_line_bytes < 1:
            raise MetricsFormatError(f"max_line_bytes must be positive, got {max_line_bytes}")
        self.metric_names = names
        self.max_line_bytes = max_line_bytes
        self._wanted = frozenset(names)
        self._needles = _minimal_needles(names)
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._ordinals: dict[str, int] = {}
        self._lines = 0
        self._bytes = 0
        self._candidates = 0
        self._non_numeric: dict[str, int] = {}
        self._non_numeric_samples: list[tuple[str, str]] = []
        self._malformed = 0
        self._malformed_samples: list[str] = []
        self._invalid_fields = 0
        self._split_lines = 0

    # -- public API ------------------------------------------------------------------------
    @abc.abstractmethod
    def clone(self) -> Parser:
        """A fresh parser with the same configuration and no state (for replays)."""

    def feed(self, chunk: bytes) -> list[Observation]:
        """Parse the complete lines ``chunk`` finishes; keep a trailing partial line."""
        out: list[Observation] = []
        if not chunk:
            return out
        limit = self.max_line_bytes
        if len(chunk) > limit:  # bound a single line's piece size, whatever the chunking
            for i in range(0, len(chunk), limit):
                out.extend(self.feed(chunk[i : i + limit]))
            return out
        self._bytes += len(chunk)
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if cut < 0:
            self._pending.append(chunk)
            self._pending_len += len(chunk)
            if self._pending_len > limit:
                data = b"".join(self._pending)
                self._pending = []
                self._pending_len = 0
                while len(data) > limit:
                    self._split_lines += 1
                    self._parse_block(data[:limit] + b"\n", out)
                    data = data[limit:]
                if data:
                    self._pending.append(data)
                    self._pending_len = len(data)
            return out
        self._lines += chunk.count(b"\n", 0, cut + 1)
        block = chunk if cut + 1 == len(chunk) else chunk[: cut + 1]
        if self._pending:
            first_end = _LINE_END.search(block).start()  # type: ignore[union-attr]
            if self._pending_len + first_end > limit:
                line = b"".join(self._pending) + block[:first_end]
                while len(line) > limit:
                    self._split_lines += 1
                    self._parse_block(line[:limit] + b"\n", out)
                    line = line[limit:]
                block = line + block[first_end:]
            else:
                self._pending.append(block)
                block = b"".join(self._pending)
            self._pending = []
            self._pending_len = 0
        if cut + 1 < len(chunk):
            self._pending.append(chunk[cut + 1 :])
            self._pending_len = len(chunk) - cut - 1
        self._parse_block(block, out)
        return out

    def flush(self) -> list[Observation]:
        """End of input: parse the trailing line that has no line terminator."""
        out: list[Observation] = []
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            self._pending_len = 0
            self._lines += 1
            self._parse_block(data + b"\n", out)
        return out

    def parse(self, data: bytes) -> list[Observation]:
        """Parse a whole input (``feed`` then ``flush``)."""
        return self.feed(data) + self.flush()

    @property
    def stats(self) -> ParseStats:
        return ParseStats(
            lines=self._lines,
            bytes=self._bytes,
            candidate_lines=self._candidates,
            observations=dict(self._ordinals),
            non_numeric=dict(self._non_numeric),
            non_numeric_samples=tuple(self._non_numeric_samples),
            malformed_lines=self._malformed,
            malformed_samples=tuple(self._malformed_samples),
            invalid_fields=self._invalid_fields,
            split_lines=self._split_lines,
        )

    # -- internals -------------------------------------------------------------------------
    def _parse_block(self, block: bytes, out: list[Observation]) -> None:
        """Parse complete lines; ``block`` ends with a line terminator."""
        if b"\r" in block:
            block = block.replace(b"\r", b"\n")
        if b"\x1b" in block:
            block = _ANSI.sub(b"", block)
        find = block.find
        rfind = block.rfind
        spans: dict[int, int] = {}
        for needle in self._needles:
            i = find(needle)
            while i >= 0:
                start = rfind(b"\n", 0, i) + 1
                end = find(b"\n", i)
                spans[start] = end
                i = find(needle, end)
        if not spans:
            return
        self._candidates += len(spans)
        order = sorted(spans) if len(self._needles) > 1 else spans
        joined = b"\n".join([block[start : spans[start]] for start in order])
        self._parse_lines(joined.decode("utf-8", "replace"), out)

    def _parse_lines(self, text: str, out: list[Observation]) -> None:
        """Parse candidate lines joined by ``\n``; subclasses may work on the whole text."""
        parse_line = self._parse_line
        for line in text.split("\n"):
            parse_line(line, out)

    @abc.abstractmethod
    def _parse_line(self, line: str, out: list[Observation]) -> None:
        """Append the observations of one candidate line (no terminator, ANSI removed)."""

    def _non_numeric_value(self, name: str, text: str) -> None:
        self._non_numeric[name] = self._non_numeric.get(name, 0) + 1
        if len(self._non_numeric_samples) < MAX_SAMPLES:
            self._non_numeric_samples.append((name, text[:200]))

    def _malformed_line(self, line: str) -> None:
        self._malformed += 1
        if len(self._malformed_samples) < MAX_SAMPLES:
            self._malformed_samples.append(line[:200])


def _parse_leading_timestamp(line: str):  # -> dt.datetime | None, kept untyped for speed
    space = line.find(" ")
    if space < 19:  # "2006-01-02T15:04:05" is the shortest
        return None
    try:
        return parse_rfc3339(line[:space], require_zone=False)
    except InvalidTimestampError:
        return None


def _stamp_time(stamp: str):  # -> dt.datetime
    """Time of a token already shaped like :data:`_TIMESTAMP`; zero time if it is invalid."""
    try:
        value = dt.datetime.fromisoformat(stamp[:-1] + "Z" if stamp[-1] == "z" else stamp)
        return value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
    except (ValueError, OverflowError, OSError):
        return ZERO_TIME


class TextParser(Parser):
    """Regex filters over text lines (Katib's TEXT format, StdOut and File collectors).

    ``filters`` are Python regexes with group 1 the name and group 2 the value, matched with
    ASCII classes as Go's RE2 does; none means Katib's :data:`DEFAULT_FILTER`.

    Raises:
        MetricsFormatError: a filter does not compile or has fewer than two groups.
    """

    format = MetricsFormat.TEXT

    def __init__(
        self,
        metric_names: Iterable[str],
        filters: Sequence[str] = (),
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        super().__init__(metric_names, max_line_bytes=max_line_bytes)
        self.filters = tuple(filters) or (DEFAULT_FILTER,)
        self._patterns: tuple[re.Pattern[str], ...] = ()
        self._fast: Callable[[str], list[tuple[str, str, str]]] | None = None
        if self.filters != (DEFAULT_FILTER,):
            self._patterns = tuple(_compile_filter(f) for f in self.filters)
            return
        # Default filter, requested names only (see _DEFAULT_LINES_FINDALL for the general
        # form). Exact unless a name could start inside a value ("e5", "1st") or a requested
        # name directly follows a value's last digit ("a=1loss=2"): the guard
        # (_name_follows_a_value) finds the latter, and such names or text take the general
        # path.
        matchable = sorted((n for n in self.metric_names if _WORD_RUN(n)), key=len, reverse=True)
        self._matchable = bool(matchable)
        if matchable and not any(_UNSAFE_NAME_START(n) for n in matchable):
            names = "|".join(re.escape(n) for n in matchable)
            self._fast = re.compile(
                rf"\n(?:(?=({_TIMESTAMP}) ))?"
                rf"|(?<![{_WORD}])({names})[\t\f ]*=[\t\f ]*{_VALUE}"
            ).findall
            self._guard_names = tuple(matchable)

    def clone(self) -> TextParser:
        return TextParser(self.metric_names, self.filters, max_line_bytes=self.max_line_bytes)

    def _parse_lines(self, text: str, out: list[Observation]) -> None:
        if self._patterns:
            super()._parse_lines(text, out)
            return
        if not self._matchable:  # no requested name can match [\w|-]+
            return
        # Katib's default filter over all candidate lines in one C-level findall.
        text = "\n" + text
        if self._fast is not None and not self._name_follows_a_value(text):
            self._emit_found(self._fast(text), out)
            return
        found = _DEFAULT_LINES_FINDALL(text)
        for _, _, value, following in found:
            if following and value and value[-1] in _VALUE_END_IN_WORD:
                super()._parse_lines(text[1:], out)
                return
        self._emit_found([(stamp, name, value) for stamp, name, value, _ in found], out)

    def _name_follows_a_value(self, text: str) -> bool:
        """Whether a requested name directly follows a digit or "-" (rare: ``a=1loss=2``)."""
        find = text.find
        for name in self._guard_names:
            i = find(name)
            while i >= 0:
                if text[i - 1] in _VALUE_END_IN_WORD:
                    return True
                i = find(name, i + 1)
        return False

    def _emit_found(self, found: list[tuple[str, str, str]], out: list[Observation]) -> None:
        """Observations from ``(line timestamp, "", "")`` / ``("", name, value)`` tuples."""
        wanted = self._wanted
        ordinals = self._ordinals
        append = out.append
        time = last_time = ZERO_TIME
        last_stamp = ""
        for stamp, name, value in found:
            if not name:  # a line starts
                if not stamp:
                    time = ZERO_TIME
                    continue
                if stamp != last_stamp:
                    last_stamp = stamp
                    last_time = _stamp_time(stamp)
                time = last_time
                continue
            if name not in wanted:
                continue
            try:
                numeric = float(value)
            except ValueError:
                self._non_numeric_value(name, value)
                continue
            step = ordinals.get(name, 0)
            ordinals[name] = step + 1
            append(_observation(name, value, step, time, numeric))

    def _parse_line(self, line: str, out: list[Observation]) -> None:
        time = ZERO_TIME
        if line[:1].isdigit():
            parsed = _parse_leading_timestamp(line)
            if parsed is not None:
                time = parsed
        if self._patterns:
            pairs: Iterable[tuple[str, str]] = [
                ((m.group(1) or "").strip(), (m.group(2) or "").strip())
                for pattern in self._patterns
                for m in pattern.finditer(line)
            ]
        else:
            pairs = default_filter_matches(line)
        wanted = self._wanted
        ordinals = self._ordinals
        for name, text in pairs:
            if name not in wanted:
                continue
            try:
                numeric = float(text)
            except ValueError:
                self._non_numeric_value(name, text)
                continue
            step = ordinals.get(name, 0)
            ordinals[name] = step + 1
            out.append(_observation(name, text, step, time, numeric))


def _compile_filter(pattern: str) -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern, re.ASCII)
    except re.error as e:
        raise MetricsFormatError(f"metrics filter {pattern!r} is not a valid regex: {e}") from None
    if compiled.groups < 2:
        raise MetricsFormatError(
            f"metrics filter {pattern!r} needs two groups (name, value), has {compiled.groups}"
        )
    return compiled


_JSON_RAW_DECODE = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str).raw_decode
"""Numbers stay as their literal text: the value column keeps what was reported."""


class JsonLinesParser(Parser):
    """One JSON object per line (Katib's JSON format; File collector and ``report_metrics``).

    ``{"loss": 0.25, "accuracy": "0.91", "timestamp": 1714564800.5, "step": 3}``: values as
    numbers or numeric strings; booleans, nulls and objects count as non-numeric.
    """

    format = MetricsFormat.JSON

    def clone(self) -> JsonLinesParser:
        return JsonLinesParser(self.metric_names, max_line_bytes=self.max_line_bytes)

    def _parse_line(self, line: str, out: list[Observation]) -> None:
        text = line if line[:1] == "{" else line.strip()
        try:
            obj, end = _JSON_RAW_DECODE(text)
        except (ValueError, RecursionError):
            self._malformed_line(line)
            return
        if type(obj) is not dict or (end != len(text) and text[end:].strip()):
            self._malformed_line(line)
            return
        found = [name for name in self.metric_names if name in obj]
        if not found:
            return
        time = ZERO_TIME
        if JSON_TIMESTAMP_KEY in obj:
            time = self._timestamp(obj[JSON_TIMESTAMP_KEY])
        step = None
        for key in JSON_STEP_KEYS:
            if key in obj:
                step = self._step(obj[key])
                break
        ordinals = self._ordinals
        for name in found:
            raw = obj[name]
            text = raw.strip() if isinstance(raw, str) else json.dumps(raw)
            try:
                numeric = float(text)
            except ValueError:
                self._non_numeric_value(name, text)
                continue
            ordinal = ordinals.get(name, 0)
            ordinals[name] = ordinal + 1
            out.append(_observation(name, text, ordinal if step is None else step, time, numeric))

    def _timestamp(self, raw: object):  # -> dt.datetime
        try:
            if isinstance(raw, str):
                try:
                    return from_epoch(float(raw))
                except ValueError:
                    return parse_rfc3339(raw.strip(), require_zone=False)
        except (InvalidTimestampError, ValueError):
            pass
        self._invalid_fields += 1
        return ZERO_TIME

    def _step(self, raw: object) -> int | None:
        if isinstance(raw, str):
            try:
                value = float(raw)
                if value.is_integer() and value >= 0:
                    return int(value)
            except (ValueError, OverflowError):
                pass
        self._invalid_fields += 1
        return None


def make_parser(
    metric_names: Iterable[str],
    format: MetricsFormat | str = MetricsFormat.TEXT,
    filters: Sequence[str] = (),
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Parser:
    """The parser for a metrics collector spec: ``format`` TEXT (with ``filters``) or JSON.

    Raises:
        MetricsFormatError: unknown format, filters given for JSON, or a bad filter.
    """
    try:
        fmt = MetricsFormat(str(format).upper())
    except ValueError:
        raise MetricsFormatError(
            f"unknown metrics format {format!r}; expected TEXT or JSON"
        ) from None
    if fmt is MetricsFormat.JSON:
        if filters:
            raise MetricsFormatError("metricsFormat filters apply to the TEXT format, not JSON")
        return JsonLinesParser(metric_names, max_line_bytes=max_line_bytes)
    return TextParser(metric_names, filters, max_line_bytes=max_line_bytes)
