"""Reading an Experiment document from bytes, text or a file, at a bounded cost.

Part of :mod:`tunery.experiment`; called by :func:`tunery.experiment.load_experiment` (and so
by ``tunery validate``/``run``, the SDK and the controller) before the model validates anything.
It turns whatever a user hands in into plain JSON-like data (dicts with string keys, lists,
strings, finite numbers, booleans, None) or raises :class:`ExperimentError` naming the field
path and/or the line and column of the problem. Hostile input costs little:

- at most :data:`MAX_DOCUMENT_BYTES` (10 MB) are read; a larger document is refused unread;
- the bytes must be UTF-8 (a UTF-8 byte-order mark is allowed); UTF-16/32 and invalid bytes
  get an error saying so, with the line and column of the first bad byte;
- YAML is read event by event (libyaml when installed) into Python values directly, never as
  a node graph, counting values as they come: at most :data:`MAX_VALUES` values, aliases
  counted by what they expand to (so an alias bomb is refused after a few hundred events),
  and at most :data:`MAX_DEPTH` levels of nesting; building is iterative (no recursion);
- duplicate mapping keys are refused (kubectl refuses them too), as are complex keys, tags
  other than YAML's standard scalar/sequence/mapping ones, more than one document, integers
  outside 64 bits (Kubernetes' widest integer), integers too long to parse, and NaN/infinity
  (JSON, and so Kubernetes and the store, have neither). Merge keys (``<<: *base``) work.

A mapping handed in directly (the SDK's path) gets the same depth, size and type checks.
"""

from __future__ import annotations

import codecs
import datetime as dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from tunery.experiment.errors import ExperimentError, FieldError, format_path, show

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
"""The largest Experiment document read (Kubernetes itself stores objects of at most 1.5 MB)."""
MAX_VALUES = 100_000
"""The most values (scalars, lists and mappings; aliases counted expanded) a document holds."""
MAX_DEPTH = 100
"""The deepest nesting of lists and mappings (a Kubernetes Job template needs about 15)."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp"))
_MERGE_TAG = _TAG + "merge"
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _fail(message: str, path: str = "") -> ExperimentError:
    return ExperimentError([FieldError(path, message)])


def _too_large(size: int | str) -> ExperimentError:
    return _fail(
        f"the document is {size} bytes; Experiment documents are limited to "
        f"{MAX_DOCUMENT_BYTES} bytes (10 MB)"
    )


# -- entry points -----------------------------------------------------------------------------


def read_file(path: str | os.PathLike[str]) -> Any:
    """The data of the YAML file at ``path`` (at most :data:`MAX_DOCUMENT_BYTES` are read).

    Raises:
        ExperimentError: the file is too large, not UTF-8, or not acceptable YAML.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as handle:
        data = handle.read(MAX_DOCUMENT_BYTES + 1)
        if len(data) > MAX_DOCUMENT_BYTES:
            size = os.fstat(handle.fileno()).st_size
            raise _too_large(size if size > MAX_DOCUMENT_BYTES else f"over {MAX_DOCUMENT_BYTES}")
    return read_bytes(data)


def read_bytes(data: bytes) -> Any:
    """The data of a YAML document given as bytes (strict UTF-8)."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _too_large(len(data))
    return read_text(decode(data))


def read_text(text: str) -> Any:
    """The data of a YAML document given as text (None for an empty document)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise _too_large(f"over {MAX_DOCUMENT_BYTES}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        column = exc.start - (text.rfind("\n", 0, exc.start) + 1) + 1
        raise _fail(
            f"line {line}, column {column}: U+{ord(text[exc.start]):04X} is not a valid "
            "Unicode character"
        ) from None
    if size > MAX_DOCUMENT_BYTES:
        raise _too_large(size)
    loader = _Loader(text)
    try:
        return _Builder(loader).document()
    except yaml.MarkedYAMLError as exc:
        raise _fail(_syntax_message(exc)) from None
    except yaml.YAMLError as exc:
        raise _fail(f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def check_data(data: Any) -> None:
    """Check data handed in as Python objects as a YAML document would be: nesting, size, and
    JSON-like types (string keys, finite numbers, 64-bit integers). Iterative; bounded by
    :data:`MAX_VALUES` even for self-referencing containers."""
    count = 0
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while todo:
        value, loc = todo.pop()
        count += 1
        if count > MAX_VALUES:
            raise _fail(f"the document holds more than {MAX_VALUES} values", format_path(loc))
        if len(loc) > MAX_DEPTH:
            raise _fail(f"is nested more than {MAX_DEPTH} levels deep", format_path(loc))
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise _fail(f"key {show(key)} is not a string", format_path(loc))
                todo.append((item, (*loc, str(key))))
        elif isinstance(value, list | tuple):
            todo.extend((item, (*loc, i)) for i, item in enumerate(value))
        else:
            problem = _scalar_problem(value)
            if problem is not None:
                raise _fail(problem, format_path(loc))


def _scalar_problem(value: Any) -> str | None:
    if value is None or isinstance(value, str | bool | dt.date):
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else _int_range_message(value)
    if isinstance(value, float):
        return None if math.isfinite(value) else _not_finite_message(value)
    return f"{show(value)} ({type(value).__name__}) is not a YAML/JSON value"


def _int_range_message(value: int) -> str:
    digits = len(str(abs(value))) if value.bit_length() < 14000 else None
    what = f"an integer of {digits} digits" if digits else "an integer"
    return f"{what} is out of range: integers must fit in 64 bits (as in Kubernetes)"


def _not_finite_message(value: float) -> str:
    return f"{show(value)} is not a finite number (JSON and Kubernetes have no NaN or infinity)"


# -- decoding ---------------------------------------------------------------------------------


def decode(data: bytes) -> str:
    """``data`` as UTF-8 text (a leading UTF-8 byte-order mark dropped).

    Raises:
        ExperimentError: a UTF-16/UTF-32 byte-order mark, bytes that are not UTF-8, or a NUL
            character (YAML allows none; UTF-16 without a byte-order mark is full of them).
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise _fail(
                f"the document is {name}-encoded; tunery reads UTF-8 (as kubectl does): convert "
                f"it, e.g. iconv -f {name} -t UTF-8"
            )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        hint = " (it looks UTF-16-encoded)" if data[:4].count(0) >= 1 else ""
        raise _fail(
            f"line {line}, column {column}: byte 0x{data[exc.start]:02x} is not valid UTF-8"
            f"{hint}; save the document as UTF-8"
        ) from None
    nul = text.find("\0")
    if nul >= 0:  # valid UTF-8 that YAML refuses: typically UTF-16 or UTF-32 without a BOM
        line = text.count("\n", 0, nul) + 1
        column = nul - (text.rfind("\n", 0, nul) + 1) + 1
        hint = (
            "the document looks UTF-16- or UTF-32-encoded without a byte-order mark; save it "
            "as UTF-8"
            if 4 * text.count("\0") >= len(text)
            else "YAML allows none"
        )
        raise _fail(f"line {line}, column {column}: a NUL character; {hint}")
    return text


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "syntax error"
    what = f"{exc.context}, {problem}" if exc.context else problem
    if "not allowed" in problem or "expected <block end>" in problem:
        what += " (check the indentation)"
    if mark is None:
        return f"invalid YAML: {what}"
    return f"invalid YAML at {_at(mark)}: {what}"


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


# -- building values from events --------------------------------------------------------------


_SHOWN_DEPTH = 12
_NO_KEY = object()
_MERGE = object()


@dataclass
class _Frame:
    """A list or mapping being built."""

    value: Any
    anchor: str | None
    mark: Any
    size: int = 1
    key: Any = _NO_KEY
    key_mark: Any = None
    key_lines: dict[str, int] = field(default_factory=dict)
    merged: dict[str, Any] | None = None


class _Builder:
    """Builds one document's data from the loader's events; bounded, iterative."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.stack: list[_Frame] = []
        self.count = 0

    def document(self) -> Any:
        loader = self.loader
        loader.get_event()  # StreamStartEvent
        if loader.check_event(StreamEndEvent):
            return None
        start = loader.get_event()
        assert isinstance(start, DocumentStartEvent)
        result = self._node()
        loader.get_event()  # DocumentEndEvent
        if not loader.check_event(StreamEndEvent):
            event = loader.peek_event()
            raise _fail(
                f"invalid YAML at {_at(event.start_mark)}: the file holds more than one "
                "document; give one Experiment per file"
            )
        return result

    def _node(self) -> Any:
        """Read one complete node (scalar, alias or collection) and return its value."""
        loader = self.loader
        while True:
            event = loader.get_event()
            if isinstance(event, ScalarEvent):
                done = self._add(self._scalar(event), 1, event)
            elif isinstance(event, AliasEvent):
                done = self._alias(event)
            elif isinstance(event, SequenceStartEvent | MappingStartEvent):
                self._open(event)
                continue
            elif isinstance(event, SequenceEndEvent | MappingEndEvent):
                done = self._close()
            else:  # pragma: no cover - the parser guarantees the event order
                raise _fail(f"invalid YAML at {_at(event.start_mark)}: unexpected {event}")
            if done is not None:
                return done[0]

    # -- events --------------------------------------------------------------------------------

    def _scalar(self, event: ScalarEvent) -> Any:
        tag = event.tag
        if tag == "!":  # the non-specific tag: a string
            tag = _TAG + "str"
        elif tag is None:
            tag = self.loader.resolve(ScalarNode, event.value, event.implicit)
        if tag == _MERGE_TAG:
            return _MERGE
        if tag not in _SCALAR_TAGS:
            raise self._error(event.start_mark, f"the YAML tag {tag} is not supported here")
        if tag == _TAG + "str":
            return event.value
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            value = self.loader.yaml_constructors[tag](self.loader, node)
        except Exception:  # the constructors raise ValueError, KeyError, AttributeError...
            if tag == _TAG + "int":
                digits = sum(c.isdigit() for c in event.value)
                message = (
                    f"an integer of {digits} digits is out of range: integers must fit in 64 "
                    "bits (as in Kubernetes)"
                )
            else:
                message = f"{show(event.value)} is not a valid {tag.removeprefix(_TAG)}"
            raise self._error(event.start_mark, message) from None
        if isinstance(value, dt.date):  # Kubernetes reads timestamps as strings
            return value.isoformat()
        problem = _scalar_problem(value)
        if problem is not None:
            raise self._error(event.start_mark, problem)
        return value

    def _alias(self, event: AliasEvent) -> tuple[Any] | None:
        name = event.anchor
        if name in self.open_anchors:
            raise self._error(event.start_mark, f"alias *{name} refers to a node that contains it")
        if name not in self.anchors:
            raise self._error(event.start_mark, f"alias *{name} is not defined before its use")
        value, size = self.anchors[name]
        return self._add(value, size, event)

    def _open(self, event: SequenceStartEvent | MappingStartEvent) -> None:
        is_map = isinstance(event, MappingStartEvent)
        expected = _TAG + ("map" if is_map else "seq")
        if event.tag not in (None, "!", expected):
            raise self._error(event.start_mark, f"the YAML tag {event.tag} is not supported here")
        if self.stack and self.stack[-1].key is _NO_KEY and isinstance(self.stack[-1].value, dict):
            raise self._error(
                event.start_mark, "a mapping key must be a plain value, not a list or mapping"
            )
        self._count(1, event)
        if len(self.stack) >= MAX_DEPTH:
            raise self._error(event.start_mark, f"is nested more than {MAX_DEPTH} levels deep")
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        self.stack.append(_Frame({} if is_map else [], event.anchor, event.start_mark))

    def _close(self) -> tuple[Any] | None:
        frame = self.stack.pop()
        value = frame.value
        if frame.merged is not None:
            value = {**{k: v for k, v in frame.merged.items() if k not in value}, **value}
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = (value, frame.size)
        if not self.stack:
            return (value,)
        return self._attach(value, frame.size, frame.mark)

    def _add(self, value: Any, size: int, event: Any) -> tuple[Any] | None:
        """A scalar or alias arrived: count it, anchor it, place it."""
        self._count(size, event)
        anchor = getattr(event, "anchor", None)
        if isinstance(event, ScalarEvent) and anchor is not None:
            self.anchors[anchor] = (value, size)
        if not self.stack:
            if value is _MERGE:
                return ("<<",)
            return (value,)
        return self._attach(value, size, event.start_mark)

    def _attach(self, value: Any, size: int, mark: Any) -> None:
        """Place a complete value in the innermost open list or mapping."""
        frame = self.stack[-1]
        frame.size += size
        container = frame.value
        if isinstance(container, list):
            container.append("<<" if value is _MERGE else value)
            return None
        if frame.key is _NO_KEY:
            if value is _MERGE:
                frame.key = _MERGE
            elif isinstance(value, dict | list):
                raise self._error(mark, "a mapping key must be a plain value, not a list")
            else:
                key = _key_text(value)
                if key in container:
                    raise self._error(
                        mark,
                        f"duplicate key {show(key)}: each key may appear once (first at line "
                        f"{frame.key_lines[key]}, again at",
                        key,
                    )
                frame.key = key
                frame.key_lines[key] = mark.line + 1
            frame.key_mark = mark
            return None
        if frame.key is _MERGE:
            self._merge(frame, value, mark)
        else:
            container[frame.key] = value
        frame.key = _NO_KEY
        return None

    def _merge(self, frame: _Frame, value: Any, mark: Any) -> None:
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(s, dict) for s in sources):
            raise self._error(mark, "a merge key (<<) takes a mapping or a list of mappings")
        merged = frame.merged if frame.merged is not None else {}
        for source in sources:
            for key, item in source.items():
                merged.setdefault(key, item)
        frame.merged = merged

    # -- limits and errors ---------------------------------------------------------------------

    def _count(self, size: int, event: Any) -> None:
        self.count += size
        if self.count > MAX_VALUES:
            what = " once its aliases are expanded" if isinstance(event, AliasEvent) else ""
            raise self._error(
                event.start_mark,
                f"the document holds more than {MAX_VALUES} values{what}; an Experiment "
                "needs far fewer",
            )

    def _loc(self) -> list[str | int]:
        loc: list[str | int] = []
        for frame in self.stack:
            if isinstance(frame.value, list):
                loc.append(len(frame.value))
            elif frame.key is not _NO_KEY:
                loc.append("<<" if frame.key is _MERGE else frame.key)
        return loc

    def _error(self, mark: Any, message: str, *more: str | int) -> ExperimentError:
        loc = [*self._loc(), *more]
        path = format_path(loc)
        if len(loc) > _SHOWN_DEPTH:
            path = f"{format_path(loc[:_SHOWN_DEPTH])}... ({len(loc)} levels)"
        opener = " " if message.endswith(" at") else " ("
        return _fail(f"{message}{opener}{_at(mark)})", path)


def _key_text(key: Any) -> str:
    """A mapping key as the string Kubernetes (JSON) would see."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)
