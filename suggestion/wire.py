"""Incremental decoding of serialised ``GetSuggestionsRequest`` messages.

Called by ``suggestion.service`` for requests that arrive over gRPC as bytes. A controller
sends the whole history every time, so consecutive requests of one experiment share a long
byte prefix: the experiment, then the trials in the same order, of which only the last few
are new or changed state. :class:`RequestDecoder` keeps the previous request's bytes and the
offsets where each of its trials ends; a new request is compared with it (``memcmp`` speed,
binary search over trial boundaries), only the differing tail is parsed by protobuf, and the
:class:`~tunery.trials.TrialResult` objects of the unchanged prefix are reused as they are.
The result is exactly what a full parse gives; any unexpected layout (the experiment not
first, repeated, groups, a malformed trial) raises :class:`WireFormatError` and the caller
parses the request fully instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from suggestion.algorithms.base import InvalidRequestError
from suggestion.convert import TrialConverter
from tunery.api import api_pb2
from tunery.trials import TrialResult

_EXPERIMENT = 1
_TRIALS = 2


class WireFormatError(ValueError):
    """The bytes are not laid out as this module expects (the caller parses them fully)."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireFormatError("varint too long")


def scan_fields(data: bytes, pos: int = 0) -> list[tuple[int, int, int]]:
    """Top-level fields of a message from ``pos``: (field number, value start, value end).

    One-byte tags and lengths (most fields) are read inline: this loop is what a cold
    request of 100,000 trials, or a refused larger one, costs."""
    out = []
    append = out.append
    end = len(data)
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(data, pos)
        wire_type = tag & 7
        start = pos
        if wire_type == 2:
            if pos < end and data[pos] < 0x80:
                start = pos + 1
                pos = start + data[pos]
            else:
                length, start = _varint(data, pos)
                pos = start + length
        elif wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise WireFormatError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise WireFormatError("truncated field")
        append((tag >> 3, start, pos))
    return out


def experiment_bytes(data: bytes) -> bytes:
    """The serialised ``experiment`` field, which every known client writes first.

    Raises:
        WireFormatError: the first field is not the experiment.
    """
    tag, pos = _varint(data, 0) if data else (0, 0)
    if tag != (_EXPERIMENT << 3 | 2):
        raise WireFormatError("the request does not start with its experiment")
    length, start = _varint(data, pos)
    if start + length > len(data):
        raise WireFormatError("truncated experiment")
    return data[start : start + length]


@dataclass(frozen=True)
class DecodedRequest:
    trials: list[TrialResult]
    current_request_number: int
    reused: int  # trials taken from the previous request without parsing


class RequestDecoder:
    """Decodes one experiment's successive requests, reusing their common prefix.

    Not thread-safe: the service holds the experiment's lock.
    """

    def __init__(self, converter: TrialConverter, *, max_trials: int | None = None) -> None:
        self.converter = converter
        self.max_trials = max_trials
        self._data = b""
        self._ends: list[int] = []  # byte offset where each previous trial ends
        self._trials: list[TrialResult] = []

    def decode(self, data: bytes) -> DecodedRequest:
        """Trials and requested count of a serialised ``GetSuggestionsRequest``.

        Raises:
            WireFormatError: an unexpected layout; the caller parses the request fully.
            InvalidRequestError: a trial does not fit the search space, or the request holds
                more than ``max_trials`` trials (refused before any is parsed).
        """
        try:
            return self._decode(data)
        except WireFormatError:
            self._data, self._ends, self._trials = b"", [], []
            raise

    def _decode(self, data: bytes) -> DecodedRequest:
        kept = self._common_trials(data)
        start = self._ends[kept - 1] if kept else self._first_trial_offset(data)
        fields = scan_fields(data, start)
        if self.max_trials is not None:
            check_trial_count(
                kept + sum(number == _TRIALS for number, _, _ in fields), self.max_trials
            )
        ends = self._ends[:kept]
        count = 0
        tail: list[api_pb2.Trial] = []
        for number, value_start, value_end in fields:
            if number == _TRIALS:
                try:
                    tail.append(api_pb2.Trial.FromString(data[value_start:value_end]))
                except Exception as exc:  # protobuf's DecodeError
                    raise WireFormatError(f"malformed trial: {exc}") from None
                ends.append(value_end)
            elif number == 4:
                raw, _ = _varint(data, value_start)
                count = _int32(raw)
            elif number == _EXPERIMENT:  # protobuf would merge it into the first one
                raise WireFormatError("a second experiment field")
        trials = self._trials[:kept] + self.converter.convert_new(tail)
        self._data, self._ends, self._trials = data, ends, trials
        return DecodedRequest(trials, count, kept)

    def _first_trial_offset(self, data: bytes) -> int:
        """Offset just after the experiment field (where the trials begin)."""
        tag, pos = _varint(data, 0) if data else (0, 0)
        if not data:
            return 0
        if tag != (_EXPERIMENT << 3 | 2):
            raise WireFormatError("the request does not start with its experiment")
        length, start = _varint(data, pos)
        return start + length

    def _common_trials(self, data: bytes) -> int:
        """How many leading trials (and the experiment before them) are byte-identical."""
        ends = self._ends
        if not ends:
            return 0
        old = memoryview(self._data)

        def same(end: int) -> bool:  # startswith on a memoryview: a memcmp, no copy
            return len(data) >= end and data.startswith(old[:end])

        if not same(ends[0]):
            return 0
        if same(ends[-1]):
            return len(ends)
        lo, hi = 1, len(ends) - 1  # lo trials are known equal; find the largest equal count
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if same(ends[mid - 1]):
                lo = mid
            else:
                hi = mid - 1
        return lo


def check_trial_count(count: int, limit: int) -> None:
    """Refuse a request with more than ``limit`` trials.

    Raises:
        InvalidRequestError: naming the count and the limit.
    """
    if count > limit:
        raise InvalidRequestError(
            f"trials: the request carries {count} trials, above the limit of {limit} per request"
        )


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
