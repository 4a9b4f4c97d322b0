"""The GJSON path syntax, as far as Katib's trial success/failure conditions use it.

Called by the Kubernetes runner to evaluate ``trialTemplate.successCondition`` and
``failureCondition`` on a job's JSON (Katib evaluates them with tidwall/gjson). Pure Python, no
dependency; the subset implemented is the one conditions need, with GJSON's semantics:

- keys separated by ``.``, ``\\`` escaping a special character, ``*``/``?`` wildcards in a key
  (the first matching key wins), numeric keys indexing arrays;
- ``#``: the length of an array, or, followed by ``.path``, that path of every element;
- queries ``#(path OP value)`` (first match) and ``#(path OP value)#`` (every match), with OP
  one of ``== != < <= > >= % !%`` (``%`` is a ``*``/``?`` pattern), a JSON literal value
  (string, number, ``true``, ``false``, ``null``), an empty path meaning the element itself,
  nested queries in the path, and ``#(path)`` testing that the path exists;
- ``|``: the result so far becomes the document of the rest of the path (after a ``#`` or
  ``#(...)#``, a ``.`` applies the rest to each element, a ``|`` to the array as a whole);
- the ``@this`` modifier (the current value) and array multipaths ``[path, path, ...]`` (an
  array of each path's result, non-existing ones left out), as in Katib's Argo Workflow example
  ``status.[@this].#(phase=="Succeeded")#``.

Other modifiers (``@reverse``...), object multipaths (``{a,b}``) and JSON-lines (``..``) are not
supported and raise :class:`GjsonError` naming the construct, so a condition is never silently
misread. Katib's rule for a condition is in :func:`condition_match`.

gjson-py (PyPI ``gjson``) was evaluated as a replacement: it parses every path Katib's examples
use, but it is GPL-3.0-or-later (tunery is Apache-2.0) and it raises on a missing key where GJSON
answers "no result" (a Job without ``status.conditions`` yet), which a condition check cannot
tell from a malformed path. So this module stays, tested against GJSON's documented examples.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "GjsonError", "condition_match", "get"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""What :func:`get` returns when the path matches nothing (GJSON's non-existing result)."""


class GjsonError(ValueError):
    """The path is malformed or uses GJSON syntax this module does not implement."""


_OPERATORS = ("==", "!=", "<=", ">=", "!%", "<", ">", "%")


@dataclass(frozen=True)
class _Query:
    path: str  # "" = the element itself
    op: str  # "" = existence test
    value: Any
    all: bool


@dataclass(frozen=True)
class _Step:
    pipe: bool  # reached through "|" (else "." or the start)
    key: str | None = None
    count: bool = False  # the "#" component
    query: _Query | None = None
    this: bool = False  # the @this modifier
    multipath: tuple[str, ...] | None = None  # [path, path, ...]


def _unquoted(text: str, start: int, depth: int) -> Iterator[tuple[int, str, int]]:
    """``(index, char, depth)`` for each character outside strings and escapes, from ``start``;
    ``depth`` counts the parentheses open after the character."""
    i, in_string = start, False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "\\":
            i += 1
        else:
            depth += (ch == "(") - (ch == ")")
            yield i, ch, depth
        i += 1


def _read_query(path: str, start: int) -> tuple[str, int]:
    """The text inside ``#(`` ... ``)`` starting at ``start`` (after the paren); index past it."""
    for i, ch, depth in _unquoted(path, start, 1):
        if ch == ")" and depth == 0:
            return path[start:i], i + 1
    raise GjsonError(f"unbalanced parenthesis in query starting at {start - 2} of {path!r}")


def _read_multipath(path: str, start: int) -> tuple[tuple[str, ...], int]:
    """The comma-separated paths inside ``[`` ... ``]`` (``start`` is past the bracket)."""
    depth, item_start = 0, start
    items: list[str] = []
    for i, ch, _ in _unquoted(path, start, 0):
        if ch in "[{(":
            depth += 1
        elif ch in "]})" and depth:
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(path[item_start:i].strip())
            item_start = i + 1
        elif ch == "]":
            items.append(path[item_start:i].strip())
            if not all(items):
                raise GjsonError(f"empty path in the multipath at {start - 1} of {path!r}")
            for item in items:
                _parse(item)
            return tuple(items), i + 1
    raise GjsonError(f"unbalanced bracket in the multipath at {start - 1} of {path!r}")


def _split_operator(text: str) -> tuple[str, str, str]:
    """Split a query body into (path, operator, value text) outside quotes and parentheses."""
    for i, ch, depth in _unquoted(text, 0, 0):
        if depth == 0 and ch not in "()":
            for op in _OPERATORS:
                if text.startswith(op, i):
                    return text[:i].strip(), op, text[i + len(op) :].strip()
    return text.strip(), "", ""


def _literal(text: str, query: str) -> Any:
    if text in ("true", "false", "null"):
        return json.loads(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise GjsonError(
            f'query #({query}): {text!r} is not a JSON value (quote strings: "...")'
        ) from None
    if isinstance(value, (dict, list)):
        raise GjsonError(f"query #({query}): compare with a string, number, true, false or null")
    return value


def _parse(path: str) -> list[_Step]:
    if not path:
        raise GjsonError("the path is empty")
    steps: list[_Step] = []
    i, pipe = 0, False
    while i <= len(path):
        if path.startswith("#(", i):
            body, i = _read_query(path, i + 2)
            every = path.startswith("#", i)
            if every:
                i += 1
            query_path, op, value_text = _split_operator(body)
            value = _literal(value_text, body) if op else None
            if op and not value_text:
                raise GjsonError(f"query #({body}): no value after {op!r}")
            steps.append(_Step(pipe, query=_Query(query_path, op, value, every)))
        elif path.startswith("[", i):
            paths, i = _read_multipath(path, i + 1)
            steps.append(_Step(pipe, multipath=paths))
        elif path.startswith("@this", i) and (i + 5 == len(path) or path[i + 5] in ".|"):
            i += 5
            steps.append(_Step(pipe, this=True))
        else:
            key, escaped = [], False
            while i < len(path) and (escaped or path[i] not in ".|"):
                ch = path[i]
                if escaped:
                    key.append("\\" + ch if ch in "*?" else ch)
                    escaped = False
                elif ch == "\\":
                    escaped = True
                else:
                    key.append(ch)
                i += 1
            text = "".join(key)
            if not text:
                raise GjsonError(f"empty key at position {i} of {path!r}")
            if text.startswith("@"):
                raise GjsonError(f"GJSON modifiers ({text}) are not supported")
            if text[0] in "[{" or text == ".":
                raise GjsonError(f"GJSON multipaths ({text}) are not supported")
            steps.append(_Step(pipe, count=text == "#", key=None if text == "#" else text))
        if i >= len(path):
            break
        if path[i] not in ".|":
            raise GjsonError(f"expected '.' or '|' at position {i} of {path!r}, got {path[i]!r}")
        pipe = path[i] == "|"
        i += 1
        if i == len(path):
            raise GjsonError(f"the path {path!r} ends with a separator")
        if path[i] == "." and not pipe:
            raise GjsonError("GJSON JSON-lines paths ('..') are not supported")
    return steps


def _has_wildcard(key: str) -> bool:
    i = 0
    while i < len(key):
        if key[i] == "\\":
            i += 2
            continue
        if key[i] in "*?":
            return True
        i += 1
    return False


def _unescape(key: str) -> str:
    return key.replace("\\*", "*").replace("\\?", "?")


def _glob(pattern: str, text: str) -> bool:
    """GJSON's ``*``/``?`` match (``\\`` escapes); no character classes."""
    regex_parts, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            regex_parts.append(fnmatch.translate(pattern[i + 1])[4:-3])
            i += 2
            continue
        if ch == "*":
            regex_parts.append(".*")
        elif ch == "?":
            regex_parts.append(".")
        else:
            regex_parts.append(fnmatch.translate(ch)[4:-3])
        i += 1
    return re.fullmatch("".join(regex_parts), text, flags=re.DOTALL) is not None


def _child(node: Any, key: str) -> Any:
    if isinstance(node, Mapping):
        if _has_wildcard(key):
            for name, value in node.items():
                if _glob(key, str(name)):
                    return value
            return MISSING
        return node.get(_unescape(key), MISSING)
    if isinstance(node, list) and key.isdigit():
        index = int(key)
        return node[index] if index < len(node) else MISSING
    return MISSING


def _compare(left: Any, op: str, right: Any) -> bool:
    if op in ("%", "!%"):
        if not isinstance(left, str) or not isinstance(right, str):
            return False
        return _glob(right, left) == (op == "%")
    if right is None or isinstance(right, bool):  # only == and != mean something here
        same = (left is None and right is None) or (isinstance(left, bool) and left == right)
        if op == "==":
            return same
        return op == "!=" and (left is None or isinstance(left, bool)) and not same
    if isinstance(right, str):
        if not isinstance(left, str):
            return False
    elif isinstance(left, bool) or not isinstance(left, (int, float)):
        return False
    elif isinstance(left, float) and math.isnan(left):
        return op == "!="
    return {
        "==": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]


def _matches(element: Any, query: _Query) -> bool:
    value = element if not query.path else get(element, query.path)
    if not query.op:
        return value is not MISSING
    if value is MISSING:
        return False
    return _compare(value, query.op, query.value)


def _evaluate(node: Any, steps: Sequence[_Step], i: int) -> Any:
    while i < len(steps):
        if node is MISSING:
            return MISSING
        step = steps[i]
        if step.count or (step.query is not None and step.query.all):
            if not isinstance(node, list):
                return MISSING
            if step.count:
                items = node
                if i + 1 == len(steps) or steps[i + 1].pipe:
                    node, i = len(node), i + 1
                    continue
            else:
                assert step.query is not None
                items = [e for e in node if _matches(e, step.query)]
                if i + 1 == len(steps) or steps[i + 1].pipe:
                    node, i = items, i + 1
                    continue
            end = next((j for j in range(i + 1, len(steps)) if steps[j].pipe), len(steps))
            mapped = [_evaluate(e, steps[i + 1 : end], 0) for e in items]
            node, i = [m for m in mapped if m is not MISSING], end
            continue
        if step.this:
            i += 1
            continue
        if step.multipath is not None:
            found = (get(node, p) for p in step.multipath)
            node, i = [v for v in found if v is not MISSING], i + 1
            continue
        if step.query is not None:
            if not isinstance(node, list):
                return MISSING
            node = next((e for e in node if _matches(e, step.query)), MISSING)
        else:
            assert step.key is not None
            node = _child(node, step.key)
        i += 1
    return node


def get(document: Any, path: str) -> Any:
    """The value at ``path`` in ``document`` (parsed JSON), or :data:`MISSING`.

    Raises:
        GjsonError: the path is malformed or uses unsupported syntax.
    """
    return _evaluate(document, _parse(path), 0)


def validate(path: str) -> None:
    """Raise :class:`GjsonError` if ``path`` cannot be evaluated by :func:`get`."""
    _parse(path)


def condition_match(document: Any, path: str) -> Mapping[str, Any] | None:
    """Katib's test of a success/failure condition on a job's JSON.

    The condition holds when the result is an object or a non-empty array; the object (or the
    array's first element, when it is an object) is returned so its ``reason``/``message`` can
    be reported. Returns None when the condition does not hold.
    """
    result = get(document, path)
    if isinstance(result, Mapping):
        return result
    if isinstance(result, list) and result:
        first = result[0]
        return first if isinstance(first, Mapping) else {}
    return None
