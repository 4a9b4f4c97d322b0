"""Trial entry point of ``tune()``: load the objective, call it with typed parameters, report.

Runs inside every trial process that :func:`tunery.tune` starts. The trial's container runs

- locally: ``[python, -m, tunery.sdk.trial_entry, <trial.json>, name=value, ...]``, where
  ``trial.json`` sits in the experiment's folder beside the cloudpickled objective;
- on Kubernetes: ``[python, -u, -c, <this module's source>, <spec as JSON>, name=value, ...]``,
  so the image needs only Python (and cloudpickle when the objective had to be pickled).

Each ``name=value`` argument comes from the trialParameters placeholder of that parameter (no
shell in between, so the value arrives verbatim) and is converted back to the parameter's real
type: int → ``int``, double → ``float``, categorical → ``str``, discrete → the list's number.
The objective is called with one dict: the tuned values plus the constants given to ``tune``,
in the order of ``tune``'s ``parameters``.

Reporting. A returned number is the objective metric; a returned dict maps metric names to
numbers; ``None`` means the objective reported by itself (``report_metrics`` or printing
``name=value``). Returned metrics are printed as ``<RFC3339 time> name=value`` (Katib's
StdOut format, parsed by the default filter), except where the objective already pushed that
metric to ``$TUNERY_METRICS_FILE``: there the value is appended to that file at the next step,
so a returned final value continues the step sequence the objective reported. An exception is
printed with its traceback to the trial's log and the process exits 1 (the trial is Failed).

Locally the trials usually do not start a fresh interpreter: the local runner's fork server
(:mod:`controller.runners.forkserver`) imports this module, calls :func:`warm` once per
experiment (the user's modules are imported and the objective unpickled there) and forks one
child per trial, which calls :func:`main` with the trial's arguments.

Standard library only: this module's source also runs, unchanged, in images without tunery.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import numbers
import os
import pickle
import re
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable, Mapping
from typing import Any

SPEC_VERSION = 1
EXIT_OBJECTIVE_FAILED = 1
EXIT_USAGE = 2
METRICS_FILE_ENV = "TUNERY_METRICS_FILE"
RESERVED_FILE_KEYS = frozenset({"timestamp", "step", "epoch"})
"""Keys of a metrics-file line that carry its time and step, not metrics."""
PRINTABLE_NAME = re.compile(r"[\w|-]+", re.ASCII)
"""Metric names Katib's default StdOut filter can parse."""
_PREFIX = "tunery trial:"


class TrialSpecError(Exception):
    """The trial's spec or arguments are unusable (a tunery bug or a hand-edited document)."""


# -- the spec and the arguments -----------------------------------------------------------------


def load_spec(source: str) -> dict[str, Any]:
    """The trial spec: inline JSON (``{...}``) or the path of a JSON file."""
    try:
        if source.lstrip().startswith("{"):
            spec = json.loads(source)
        else:
            with open(source, encoding="utf-8") as handle:
                spec = json.load(handle)
    except OSError as exc:
        raise TrialSpecError(f"cannot read the trial spec {source!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise TrialSpecError(f"the trial spec is not valid JSON: {exc}") from None
    version = spec.get("version") if isinstance(spec, dict) else None
    if version != SPEC_VERSION:
        raise TrialSpecError(
            f"unsupported trial spec version {version!r} (expected {SPEC_VERSION}): the trial "
            "was created by another tunery version"
        )
    return spec


def convert(parameter: Mapping[str, Any], text: str) -> int | float | str:
    """The typed value of one parameter's wire string.

    Raises:
        TrialSpecError: the string is not a value of the parameter's type.
    """
    name, kind = parameter["name"], parameter["type"]
    if kind == "categorical":
        return text
    try:
        number = float(text)
    except ValueError:
        raise TrialSpecError(f"parameter {name!r}: {text!r} is not a number") from None
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            if not number.is_integer():
                raise TrialSpecError(f"parameter {name!r}: {text!r} is not an integer") from None
            return int(number)
    if kind == "double":
        return number
    if kind == "discrete":
        for value in parameter.get("values", ()):
            if value == number:
                return value  # type: ignore[no-any-return]
        return int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else number
    raise TrialSpecError(f"parameter {name!r}: unknown parameter type {kind!r}")


def parse_arguments(
    parameters: list[Mapping[str, Any]], args: list[str]
) -> dict[str, int | float | str]:
    """Typed values from ``name=value`` arguments, one per parameter, in the spec's order; a
    conditional parameter's argument is absent when it is inactive (the controller leaves the
    argv element out), and so is it from the values."""
    required = [p for p in parameters if not p.get("conditional")]
    if not len(required) <= len(args) <= len(parameters):
        raise TrialSpecError(
            f"expected {len(parameters)} name=value argument(s) "
            f"({', '.join(p['name'] for p in parameters)}), got {len(args)}: {args!r}"
        )
    values: dict[str, int | float | str] = {}
    index = 0
    for parameter in parameters:
        arg = args[index] if index < len(args) else ""
        prefix = f"{parameter['name']}="
        if not arg.startswith(prefix):
            if parameter.get("conditional"):
                continue
            raise TrialSpecError(f"expected an argument {prefix}<value>, got {arg!r}")
        values[parameter["name"]] = convert(parameter, arg[len(prefix) :])
        index += 1
    if index < len(args):
        raise TrialSpecError(f"unexpected argument(s) {args[index:]!r}")
    return values


# -- the objective ------------------------------------------------------------------------------


def _extend_sys_path(entries: list[str]) -> None:
    """Append the caller's import path entries this interpreter lacks (its own come first)."""
    for entry in entries:
        if entry not in sys.path:
            sys.path.append(entry)


def _install_packages(spec: Mapping[str, Any]) -> None:
    packages = list(spec.get("packages") or ())
    if not packages:
        return
    urls = list(spec.get("pip_index_urls") or ())
    index: list[str] = []
    if urls:
        index = ["--index-url", urls[0]]
        for url in urls[1:]:
            index += ["--extra-index-url", url]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-script-location"]
    print(f"{_PREFIX} installing {' '.join(packages)}", file=sys.stderr, flush=True)
    subprocess.run([*command, *index, *packages], check=True)


def load_objective(spec: Mapping[str, Any]) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The objective and the constants passed with it.

    Raises:
        TrialSpecError: the spec names no known objective form.
        Exception: whatever unpickling or executing the objective's source raises.
    """
    source = spec.get("objective") or {}
    kind = source.get("kind")
    if kind == "pickle":
        with open(source["path"], "rb") as handle:
            payload = pickle.load(handle)
    elif kind == "pickle-b64":
        payload = pickle.loads(base64.b64decode(source["data"]))
    elif kind == "source":
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(source["source"], "<objective>", "exec"), namespace)
        payload = {
            "objective": namespace[source["name"]],
            "constants": dict(spec.get("constants") or {}),
        }
    else:
        raise TrialSpecError(f"unknown objective kind {kind!r}")
    objective = payload["objective"]
    if payload.get("source_file"):
        restore_source_file(objective, payload["source_file"])
    return objective, dict(payload.get("constants") or {})


_DYNAMIC_CODE = "<dynamic-code>"
"""The file name cloudpickle (3.1.3 on) gives the code of functions it pickles by value."""


def restore_source_file(objective: Callable[..., Any], filename: str) -> None:
    """Give the objective, and the functions of its module pickled along with it, their source
    file back, so that a traceback in the trial's log names the file and shows the failing line
    (where the file exists here) instead of ``File "<dynamic-code>"``."""
    module = getattr(objective, "__module__", None)
    candidates = [objective, *getattr(objective, "__globals__", {}).values()]
    for cell in getattr(objective, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    for function in candidates:
        if not isinstance(function, types.FunctionType) or function.__module__ != module:
            continue
        if function.__code__.co_filename == _DYNAMIC_CODE:
            function.__code__ = _with_filename(function.__code__, filename)


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(
        _with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


# -- the result ---------------------------------------------------------------------------------


def metric_text(value: Any) -> str | None:
    """The reported text of a numeric value (ints as ints, floats round-trip), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return None
        return value.strip()
    try:
        number = float(value)  # numpy and torch scalars, 0-d tensors
    except (TypeError, ValueError):
        return None
    dtype = str(getattr(value, "dtype", ""))
    if math.isfinite(number) and number.is_integer() and "int" in dtype:
        return str(int(number))
    return repr(number)


def metrics_of(result: Any, objective_metric_name: str) -> tuple[dict[str, str], list[str]]:
    """The metrics a returned value reports, and warnings for the trial's log.

    Raises:
        TypeError: the value is neither None, a number nor a mapping of names to numbers.
    """
    warnings: list[str] = []
    if result is None:
        return {}, warnings
    if isinstance(result, Mapping):
        metrics: dict[str, str] = {}
        for key, value in result.items():
            text = metric_text(value)
            if text is None:
                warnings.append(f"metric {key!r}: {value!r} is not a number; not reported")
                continue
            metrics[str(key)] = text
        if objective_metric_name not in metrics:
            warnings.append(
                f"the objective returned {sorted(map(str, result))} without the objective "
                f"metric {objective_metric_name!r}"
            )
    else:
        text = None if isinstance(result, str) else metric_text(result)
        if text is None:
            raise TypeError(
                f"the objective returned {type(result).__name__} {result!r:.80}: return a "
                f"number (the value of {objective_metric_name!r}), a dict of metric names to "
                "numbers, or None after reporting with report_metrics() or print(name=value)"
            )
        metrics = {objective_metric_name: text}
    for name, text in metrics.items():
        if not math.isfinite(float(text)):
            warnings.append(f"metric {name!r} is {text}: never chosen as the best value")
    return metrics, warnings


# -- reporting ----------------------------------------------------------------------------------


def pushed_steps(path: str, names: set[str]) -> dict[str, int | None]:
    """For each of ``names`` already in the metrics file: the next step to use (after the
    largest explicit step), or None when its lines carry no step (ordinals continue)."""
    found: dict[str, int | None] = {}
    try:
        with open(path, "rb") as handle:
            lines = handle.readlines()
    except OSError:
        return found
    for raw in lines:
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        step = next((record[k] for k in ("step", "epoch") if k in record), None)
        try:
            step = None if step is None else int(float(step))
        except (TypeError, ValueError):
            step = None
        for name in names & record.keys():
            previous = found.get(name)
            if step is not None:
                found[name] = step + 1 if previous is None else max(previous, step + 1)
            else:
                found.setdefault(name, None)
    return found


def _append_line(path: str, values: Mapping[str, str], step: int | None) -> None:
    record: dict[str, Any] = {"timestamp": time.time()}
    if step is not None:
        record["step"] = step
    record.update(values)
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def report(metrics: Mapping[str, str]) -> list[str]:
    """Report returned metrics (see the module docstring); returns warnings."""
    warnings: list[str] = []
    path = os.environ.get(METRICS_FILE_ENV)
    steps = pushed_steps(path, set(metrics)) if path else {}
    to_file: dict[int | None, dict[str, str]] = {}
    printed: dict[str, str] = {}
    for name, text in metrics.items():
        printable = PRINTABLE_NAME.fullmatch(name) is not None
        if path and name not in RESERVED_FILE_KEYS and (name in steps or not printable):
            to_file.setdefault(steps.get(name), {})[name] = text
        elif printable:
            printed[name] = text
        else:
            warnings.append(
                f"metric {name!r} cannot be printed as name=value (Katib's default filter takes "
                "letters, digits, _, - and |); rename it or use report_metrics()"
            )
    for step, values in to_file.items():
        _append_line(path or "", values, step)
    if printed:
        utc = datetime.timezone.utc  # noqa: UP017 - the source also runs on Python < 3.11
        now = datetime.datetime.now(utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        pairs = " ".join(f"{name}={text}" for name, text in printed.items())
        print(f"{now} {pairs}", flush=True)
    return warnings


# -- main ---------------------------------------------------------------------------------------


def _warn(message: str) -> None:
    print(f"{_PREFIX} warning: {message}", file=sys.stderr, flush=True)


def _print_exception(exc: BaseException, what: str) -> None:
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    sys.stdout.flush()
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    print(f"{_PREFIX} {what}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


_warm: dict[str, tuple[dict[str, Any], Callable[..., Any], dict[str, Any]]] = {}
"""What :func:`warm` loaded, by spec source: the spec, the objective and its constants."""


def warm(source: str) -> None:
    """Load the spec and the objective of ``source`` now, once, for the trials that
    :mod:`controller.runners.forkserver` forks from this process: the user's modules are
    imported and the objective unpickled here, and :func:`main` reuses them.

    Raises:
        TrialSpecError, Exception: as :func:`main` would report them; nothing is kept then.
    """
    spec = load_spec(source)
    if spec.get("packages"):
        return  # installs belong to each trial's own environment
    _extend_sys_path(list(spec.get("sys_path") or ()))
    objective, constants = load_objective(spec)
    _warm[source] = (spec, objective, constants)


def main(argv: list[str] | None = None) -> int:
    """Run one trial. Returns the exit status: 0, 1 (the objective failed), 2 (bad spec)."""
    args = sys.argv[1:] if argv is None else argv
    warmed = _warm.get(args[0]) if args else None
    try:
        if not args:
            raise TrialSpecError("usage: python -m tunery.sdk.trial_entry SPEC [name=value ...]")
        spec = warmed[0] if warmed is not None else load_spec(args[0])
        _extend_sys_path(list(spec.get("sys_path") or ()))
        _install_packages(spec)
        values = parse_arguments(list(spec["parameters"]), args[1:])
    except (TrialSpecError, subprocess.CalledProcessError) as exc:
        print(f"{_PREFIX} {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        objective, constants = warmed[1:] if warmed is not None else load_objective(spec)
    except TrialSpecError as exc:
        print(f"{_PREFIX} {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Exception as exc:
        _print_exception(exc, "cannot load the objective in the trial process")
        return EXIT_OBJECTIVE_FAILED
    order = list(spec.get("order") or [*constants, *values])
    arguments = {  # an inactive conditional parameter is in neither: left out
        name: values[name] if name in values else constants[name]
        for name in order
        if name in values or name in constants
    }
    try:
        result = objective(arguments)
    except Exception as exc:
        _print_exception(exc, "the objective raised")
        return EXIT_OBJECTIVE_FAILED
    try:
        metrics, warnings = metrics_of(result, spec["objective_metric_name"])
    except TypeError as exc:
        print(f"{_PREFIX} {exc}", file=sys.stderr, flush=True)
        return EXIT_OBJECTIVE_FAILED
    try:
        warnings += report(metrics)
    except OSError as exc:
        print(f"{_PREFIX} cannot report the returned metrics: {exc}", file=sys.stderr, flush=True)
        return EXIT_OBJECTIVE_FAILED
    for warning in warnings:
        _warn(warning)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
