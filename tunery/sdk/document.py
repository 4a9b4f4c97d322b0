"""Build the Experiment document ``tune()`` runs: parameters, objective, algorithm, budgets and a
trial template whose container calls the objective through :mod:`tunery.sdk.trial_entry`.

Part of :mod:`tunery.sdk` (kernel-clean: imports only tunery's kernel). The document
is a plain Katib ``kubeflow.org/v1beta1`` Experiment; ``tunery.sdk`` validates it with
:func:`tunery.experiment.load_experiment` before running or submitting it.

Two trial containers:

- :func:`local_container`: ``[python, -m, tunery.sdk.trial_entry, <trial.json>]`` plus one
  ``name=${trialParameters.name}`` argument per tuned parameter; the objective is cloudpickled
  beside ``trial.json`` in the experiment's folder (notebook functions, lambdas and closures
  work).
- :func:`kubernetes_container`: like Katib's ``tune``, a ``batch/v1`` Job running the objective
  in ``base_image``; ``python -u -c <the entry module's source>`` with the trial spec inline,
  the objective as its source when it is self-contained (Katib's rule: imports inside the
  function), otherwise cloudpickled inline (the image then needs cloudpickle and this Python's
  minor version).
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import secrets
import string
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.files import write_private
from tunery.pythonpath import child_pythonpath
from tunery.sdk import trial_entry as _trial_entry
from tunery.sdk.errors import InvalidArgumentError, ObjectiveSerializationError
from tunery.sdk.search import SearchSpec
from tunery.space import ParameterType, SearchSpace, SpaceError

API_VERSION = "kubeflow.org/v1beta1"
PRIMARY_CONTAINER = "training-container"
GPU_RESOURCE = "nvidia.com/gpu"
MAX_NAME_LENGTH = 40
ENTRY_MODULE = "tunery.sdk.trial_entry"
_NAME_ALPHABET = string.ascii_lowercase + string.digits
_RESOURCE_KEYS = {"gpu": GPU_RESOURCE, "cpu": "cpu", "memory": "memory"}


@dataclass(frozen=True)
class TuneSpec:
    """Everything of a ``tune()`` call that the Experiment document records, but the trial
    container. ``parameters`` maps names to :class:`~tunery.sdk.search.SearchSpec` (tuned) or any
    other value (a constant passed to the objective unchanged)."""

    name: str
    parameters: Mapping[str, Any]
    objective_metric_name: str
    objective_type: str = "maximize"
    objective_goal: float | None = None
    additional_metric_names: Sequence[str] = ()
    algorithm_name: str = "tpe"
    algorithm_settings: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    seed: int | None = None
    early_stopping: str | Mapping[str, Any] | None = None
    max_trial_count: int | None = None
    parallel_trial_count: int | None = None
    max_failed_trial_count: int | None = None
    resources_per_trial: Mapping[str, Any] | None = None
    env_per_trial: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None
    retain_trials: bool = False
    trial_active_deadline_seconds: int | None = None
    constraints: Sequence[str] = ()
    objectives: Mapping[str, str] | None = None
    """Multi-objective: every objective metric and its direction, the first being
    ``objective_metric_name``/``objective_type`` (``tune(objectives=...)``)."""

    @property
    def tuned(self) -> dict[str, SearchSpec]:
        return {k: v for k, v in self.parameters.items() if isinstance(v, SearchSpec)}

    @property
    def constants(self) -> dict[str, Any]:
        return {k: v for k, v in self.parameters.items() if not isinstance(v, SearchSpec)}

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (self.objective_metric_name, *self.additional_metric_names)

    def search_space(self) -> SearchSpace:
        """The typed space, conditions included.

        Raises:
            SpaceError: a condition names no tuned parameter, a value its parent lacks, or
                the conditions form a cycle.
        """
        params = []
        for name, spec in self.tuned.items():
            param = spec.to_parameter(name)
            if spec.condition is not None:
                param = param.when(spec.condition[0], *spec.condition[1])
            params.append(param)
        return SearchSpace(tuple(params))


# -- checks and names -----------------------------------------------------------------------------


def check(spec: TuneSpec) -> None:
    """Check the arguments a document cannot express well; the rest is ``load_experiment``'s.

    Raises:
        InvalidArgumentError: names the argument and says what is wrong.
    """
    if not isinstance(spec.parameters, Mapping):
        raise InvalidArgumentError(
            "parameters must be a dict of names to search.* specs (and constants), got "
            f"{type(spec.parameters).__name__}"
        )
    for key in spec.parameters:
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"parameters: key {key!r} must be a non-empty string")
        if any(c in key for c in "{}=") or key != key.strip():
            raise InvalidArgumentError(
                f"parameters: name {key!r} must not contain '{{', '}}', '=' or surrounding spaces"
            )
    if not spec.tuned:
        raise InvalidArgumentError(
            "parameters: nothing to tune; give at least one search.double/int/categorical/"
            "discrete spec"
        )
    if spec.objective_type not in ("minimize", "maximize"):
        raise InvalidArgumentError(
            f"objective_type must be 'minimize' or 'maximize', got {spec.objective_type!r}"
        )
    if isinstance(spec.additional_metric_names, str):
        raise InvalidArgumentError(
            "additional_metric_names must be a list of names, got the string "
            f"{spec.additional_metric_names!r}"
        )
    for label, metric in [
        ("objective_metric_name", spec.objective_metric_name),
        *(("additional_metric_names", m) for m in spec.additional_metric_names),
    ]:
        if not isinstance(metric, str) or not _trial_entry.PRINTABLE_NAME.fullmatch(metric):
            raise InvalidArgumentError(
                f"{label}: {metric!r} must be a non-empty name of letters, digits, '_', '-' or "
                "'|' (Katib's default metrics filter cannot parse other names)"
            )
    if isinstance(spec.constraints, str):
        raise InvalidArgumentError(
            f"constraints must be a list of metric names, got the string {spec.constraints!r}"
        )
    for metric in spec.constraints:
        if not isinstance(metric, str) or not _trial_entry.PRINTABLE_NAME.fullmatch(metric):
            raise InvalidArgumentError(
                f"constraints: {metric!r} must be a non-empty name of letters, digits, '_', "
                "'-' or '|'"
            )
        if metric == spec.objective_metric_name:
            raise InvalidArgumentError(
                f"constraints: {metric!r} is the objective metric; a constraint is another "
                "metric, feasible when <= 0"
            )
    for name, tuned in spec.tuned.items():
        if tuned.condition is not None and tuned.condition[0] not in spec.tuned:
            raise InvalidArgumentError(
                f"parameters: {name!r} is conditional on {tuned.condition[0]!r}, which is not a "
                f"tuned parameter (tuned: {', '.join(spec.tuned)})"
            )
    try:
        spec.search_space()
    except SpaceError as exc:
        raise InvalidArgumentError(f"parameters: {exc}") from None
    if spec.seed is not None and (
        isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0
    ):
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {spec.seed!r}")
    if spec.objectives is not None:
        _check_objectives(spec)
    elif spec.objective_metric_name in spec.additional_metric_names:
        raise InvalidArgumentError(
            f"additional_metric_names must not repeat the objective metric "
            f"{spec.objective_metric_name!r}"
        )


def _check_objectives(spec: TuneSpec) -> None:
    objectives = spec.objectives
    if not isinstance(objectives, Mapping) or len(objectives) < 2:
        raise InvalidArgumentError(
            "objectives must map at least two metric names to 'minimize' or 'maximize', got "
            f"{objectives!r} (for one objective use objective_metric_name and objective_type)"
        )
    for metric, direction in objectives.items():
        if not isinstance(metric, str) or not _trial_entry.PRINTABLE_NAME.fullmatch(metric):
            raise InvalidArgumentError(
                f"objectives: {metric!r} must be a non-empty name of letters, digits, '_', '-' "
                "or '|'"
            )
        if direction not in ("minimize", "maximize"):
            raise InvalidArgumentError(
                f"objectives[{metric!r}] must be 'minimize' or 'maximize', got {direction!r}"
            )


def experiment_name(objective: Callable[..., Any], name: str | None) -> str:
    """``name``, or ``tune-<function name>-<6 random characters>`` (a Katib-valid name)."""
    if name is not None:
        if not isinstance(name, str):
            raise InvalidArgumentError(f"name must be a string, got {name!r}")
        return name
    base = getattr(objective, "__name__", "") or "objective"
    base = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "objective"
    suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(6))
    room = MAX_NAME_LENGTH - len("tune--") - len(suffix)
    return f"tune-{base[:room].rstrip('-')}-{suffix}"


# -- document pieces ------------------------------------------------------------------------------


def _settings(label: str, settings: Any) -> list[dict[str, str]]:
    if settings is None:
        return []
    if isinstance(settings, Mapping):
        return [{"name": str(k), "value": _setting_text(v)} for k, v in settings.items()]
    if isinstance(settings, Sequence) and not isinstance(settings, str):
        out = []
        for item in settings:
            if not isinstance(item, Mapping) or "name" not in item:
                raise InvalidArgumentError(
                    f"{label}: each entry must be a {{'name': ..., 'value': ...}} mapping, "
                    f"got {item!r}"
                )
            out.append({"name": str(item["name"]), "value": _setting_text(item.get("value", ""))})
        return out
    raise InvalidArgumentError(
        f"{label} must be a dict of setting names to values (or Katib's list of name/value "
        f"mappings), got {settings!r}"
    )


def _seeded(settings: list[dict[str, str]], seed: int | None) -> list[dict[str, str]]:
    """``settings`` with ``random_state`` set to ``seed`` (the algorithms' seed setting).

    Raises:
        InvalidArgumentError: ``algorithm_settings`` sets another ``random_state``.
    """
    if seed is None:
        return settings
    given = [s["value"] for s in settings if s["name"] == "random_state"]
    if given and given != [str(seed)]:
        raise InvalidArgumentError(
            f"seed={seed} and algorithm_settings random_state={given[0]!r} disagree; give one"
        )
    return settings if given else [*settings, {"name": "random_state", "value": str(seed)}]


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def early_stopping_spec(value: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Katib's ``earlyStopping`` from a name (``"medianstop"``) or a mapping with
    ``algorithm_name``/``algorithmName`` and ``algorithm_settings``/``algorithmSettings``."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"algorithmName": value}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(
            "early_stopping must be an algorithm name ('medianstop') or a dict with "
            f"algorithm_name and algorithm_settings, got {value!r}"
        )
    known = {"algorithm_name", "algorithmName", "algorithm_settings", "algorithmSettings"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidArgumentError(
            f"early_stopping: unknown key(s) {unknown}; use algorithm_name and algorithm_settings"
        )
    name = value.get("algorithm_name", value.get("algorithmName"))
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("early_stopping: algorithm_name is required")
    settings = value.get("algorithm_settings", value.get("algorithmSettings"))
    spec: dict[str, Any] = {"algorithmName": name}
    listed = _settings("early_stopping.algorithm_settings", settings)
    if listed:
        spec["algorithmSettings"] = listed
    return spec


def resources(resources_per_trial: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Container ``resources`` from ``{"gpu": 1, "cpu": 2, "memory": "4Gi"}``: GPUs as
    ``nvidia.com/gpu`` limits, cpu and memory as requests and limits; a key with a ``/``
    (``amd.com/gpu``) is passed through as a limit."""
    if resources_per_trial is None:
        return None
    if not isinstance(resources_per_trial, Mapping):
        raise InvalidArgumentError(
            f"resources_per_trial must be a dict like {{'gpu': 1, 'cpu': 2, 'memory': '4Gi'}}, "
            f"got {resources_per_trial!r}"
        )
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for key, value in resources_per_trial.items():
        resource = _RESOURCE_KEYS.get(str(key).lower(), key if "/" in str(key) else None)
        if resource is None:
            raise InvalidArgumentError(
                f"resources_per_trial: unknown resource {key!r}; use 'gpu', 'cpu', 'memory' or "
                "a full resource name such as 'nvidia.com/gpu'"
            )
        if isinstance(value, bool) or not isinstance(value, int | float | str) or value == "":
            raise InvalidArgumentError(
                f"resources_per_trial[{key!r}]: {value!r} is not a quantity (a number or a "
                "string such as '4Gi')"
            )
        if resource.endswith("/gpu") and (not isinstance(value, int) or value < 0):
            raise InvalidArgumentError(
                f"resources_per_trial[{key!r}]: {value!r} must be a non-negative integer"
            )
        limits[resource] = value
        if resource in ("cpu", "memory"):
            requests[resource] = value
    out: dict[str, Any] = {"limits": limits}
    if requests:
        out["requests"] = requests
    return out


def trial_parameters(spec: TuneSpec) -> list[dict[str, str]]:
    return [{"name": name, "reference": name} for name in spec.tuned]


def parameter_arguments(spec: TuneSpec) -> list[str]:
    """One ``name=${trialParameters.name}`` argument per tuned parameter, in order."""
    return [f"{name}=${{trialParameters.{name}}}" for name in spec.tuned]


def entry_parameters(spec: TuneSpec) -> list[dict[str, Any]]:
    """What :mod:`tunery.sdk.trial_entry` needs to type each argument."""
    out = []
    for name, search_spec in spec.tuned.items():
        item: dict[str, Any] = {"name": name, "type": search_spec.parameter_type.value}
        if search_spec.parameter_type is ParameterType.DISCRETE:
            item["values"] = list(search_spec.values)
        if search_spec.condition is not None:
            item["conditional"] = True  # its argument is absent when it is inactive
        out.append(item)
    return out


def entry_spec(spec: TuneSpec, objective: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The trial spec :func:`tunery.sdk.trial_entry.main` reads."""
    return {
        "version": _trial_entry.SPEC_VERSION,
        "parameters": entry_parameters(spec),
        "order": list(spec.parameters),
        "objective_metric_name": spec.objective_metric_name,
        "objective": dict(objective),
        **extra,
    }


def build_document(spec: TuneSpec, container: Mapping[str, Any]) -> dict[str, Any]:
    """The Experiment document running ``container`` as each trial's primary container."""
    objective: dict[str, Any] = {
        "type": spec.objective_type,
        "objectiveMetricName": spec.objective_metric_name,
    }
    if spec.objective_goal is not None:
        objective["goal"] = spec.objective_goal
    if spec.additional_metric_names:
        objective["additionalMetricNames"] = list(spec.additional_metric_names)
    if spec.constraints:
        objective["constraints"] = list(spec.constraints)
    if spec.objectives is not None:
        objective["objectives"] = [
            {"name": metric, "type": direction} for metric, direction in spec.objectives.items()
        ]
        if spec.objective_goal is not None:
            objective["objectives"][0]["goal"] = spec.objective_goal
    algorithm: dict[str, Any] = {"algorithmName": spec.algorithm_name}
    settings = _seeded(_settings("algorithm_settings", spec.algorithm_settings), spec.seed)
    if settings:
        algorithm["algorithmSettings"] = settings
    body: dict[str, Any] = {"objective": objective, "algorithm": algorithm}
    early = early_stopping_spec(spec.early_stopping)
    if early is not None:
        body["earlyStopping"] = early
    for key, value in (
        ("parallelTrialCount", spec.parallel_trial_count),
        ("maxTrialCount", spec.max_trial_count),
        ("maxFailedTrialCount", spec.max_failed_trial_count),
    ):
        if value is not None:
            body[key] = value
    body["parameters"] = [s.to_parameter_spec(name) for name, s in spec.tuned.items()]
    body["metricsCollectorSpec"] = {"collector": {"kind": "StdOut"}}
    job_spec: dict[str, Any] = {
        "template": {
            "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {"containers": [dict(container)], "restartPolicy": "Never"},
        }
    }
    if spec.trial_active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.trial_active_deadline_seconds
    body["trialTemplate"] = {
        "primaryContainerName": PRIMARY_CONTAINER,
        "retain": spec.retain_trials,
        "trialParameters": trial_parameters(spec),
        "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": job_spec},
    }
    metadata: dict[str, Any] = {"name": spec.name}
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    return {"apiVersion": API_VERSION, "kind": "Experiment", "metadata": metadata, "spec": body}


def _env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgumentError(
                f"env_per_trial: {key!r}: {value!r} must map strings to strings"
            )
    return [{"name": k, "value": v} for k, v in env.items()]


def _container(
    spec: TuneSpec, image: str, command: list[str], args: list[str], env: Mapping[str, str]
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": PRIMARY_CONTAINER,
        "image": image,
        "command": command,
        "args": args,
    }
    env_list = _env_list(env)
    if env_list:
        container["env"] = env_list
    limits = resources(spec.resources_per_trial)
    if limits is not None:
        container["resources"] = limits
    return container


# -- local ----------------------------------------------------------------------------------------


def local_container(spec: TuneSpec, spec_path: Path) -> dict[str, Any]:
    """The primary container of a local trial: this interpreter running the entry module."""
    env = dict(spec.env_per_trial)
    pythonpath = child_pythonpath()
    if pythonpath is not None and "PYTHONPATH" not in env:
        env["PYTHONPATH"] = pythonpath
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return _container(
        spec,
        f"python:{version}",  # informative only: the local runner ignores images
        [sys.executable, "-m", ENTRY_MODULE, str(spec_path)],
        parameter_arguments(spec),
        env,
    )


def pickle_objective(objective: Callable[..., Any], constants: Mapping[str, Any]) -> bytes:
    """``{"objective": ..., "constants": ..., "source_file": ...}`` pickled with cloudpickle (by
    value for functions defined in ``__main__``, notebooks and lambdas).

    Raises:
        ObjectiveSerializationError: cloudpickle is missing or cannot pickle something.
    """
    try:
        import cloudpickle
    except ImportError:
        raise ObjectiveSerializationError(
            "tune() needs the 'cloudpickle' package to send the objective to its trial "
            "processes: pip install cloudpickle"
        ) from None
    code = getattr(objective, "__code__", None)
    payload = {
        "objective": objective,
        "constants": dict(constants),
        # cloudpickle >= 3.1.3 ships by-value code as "<dynamic-code>"; the trial puts the
        # file back so that tracebacks show it (tunery.sdk.trial_entry.restore_source_file)
        "source_file": code.co_filename if code is not None else None,
    }
    try:
        return bytes(cloudpickle.dumps(payload))
    except Exception as exc:
        raise ObjectiveSerializationError(
            f"cannot pickle the objective {getattr(objective, '__qualname__', objective)!r} or "
            f"its constants for the trial processes: {type(exc).__name__}: {exc}. Objects it "
            "uses (open files, locks, live connections) must be created inside the objective"
        ) from exc


def local_payload(
    spec: TuneSpec, objective: Callable[..., Any], folder: Path
) -> tuple[dict[Path, bytes], Path]:
    """The files of a local experiment's objective (``objective.pkl`` and ``trial.json`` in
    ``folder``), not yet written, and the path of ``trial.json``.

    Raises:
        ObjectiveSerializationError: the objective or a constant cannot be pickled.
    """
    payload = pickle_objective(objective, spec.constants)
    pickle_path = folder / "objective.pkl"
    spec_path = folder / "trial.json"
    entry = entry_spec(
        spec,
        {"kind": "pickle", "path": str(pickle_path)},
        sys_path=[p for p in sys.path if p],
    )
    return {pickle_path: payload, spec_path: json.dumps(entry, indent=2).encode()}, spec_path


def write_files(files: Mapping[Path, bytes]) -> None:
    """Write each file atomically, so a trial starting meanwhile reads a whole file."""
    for path, data in files.items():
        write_private(path, data)  # 0600 in 0700 folders: a trial unpickles what it reads


def write_local_payload(
    spec: TuneSpec, objective: Callable[..., Any], folder: Path
) -> tuple[Path, Path]:
    """Write ``objective.pkl`` and ``trial.json`` into ``folder``; returns both paths."""
    files, spec_path = local_payload(spec, objective, folder)
    write_files(files)
    return spec_path, folder / "objective.pkl"


# -- kubernetes -----------------------------------------------------------------------------------


def objective_source(objective: Callable[..., Any]) -> tuple[str, str] | None:
    """``(source, name)`` when the objective is a self-contained function (no closure, no
    module globals: Katib's rule), else None."""
    if not inspect.isfunction(objective) or objective.__name__ == "<lambda>":
        return None
    if objective.__closure__:
        return None
    try:
        if inspect.getclosurevars(objective).globals:
            return None
        source = textwrap.dedent(inspect.getsource(objective))
    except (OSError, TypeError):
        return None
    return source, objective.__name__


def _json_round_trips(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value)) == value)
    except (TypeError, ValueError):
        return False


def entry_source() -> str:
    """The source of :mod:`tunery.sdk.trial_entry`, run by ``python -c`` in cluster trials."""
    return inspect.getsource(_trial_entry)


def kubernetes_container(
    spec: TuneSpec,
    objective: Callable[..., Any],
    *,
    base_image: str,
    packages_to_install: Sequence[str] = (),
    pip_index_urls: Sequence[str] = (),
) -> tuple[dict[str, Any], str]:
    """The primary container of a cluster trial, and how the objective travels
    (``"source"`` or ``"pickle"``)."""
    found = objective_source(objective)
    constants = spec.constants
    if found is not None and _json_round_trips(constants):
        source, name = found
        payload: dict[str, Any] = {"kind": "source", "source": source, "name": name}
        extra: dict[str, Any] = {"constants": constants}
        mode = "source"
    else:
        data = base64.b64encode(pickle_objective(objective, constants)).decode()
        payload, extra, mode = {"kind": "pickle-b64", "data": data}, {}, "pickle"
    if isinstance(packages_to_install, str):
        raise InvalidArgumentError("packages_to_install must be a list of requirement strings")
    if packages_to_install:
        extra["packages"] = list(packages_to_install)
        extra["pip_index_urls"] = list(pip_index_urls)
    entry = entry_spec(spec, payload, **extra)
    container = _container(
        spec,
        base_image,
        ["python", "-u", "-c", entry_source()],
        [json.dumps(entry, separators=(",", ":")), *parameter_arguments(spec)],
        spec.env_per_trial,
    )
    return container, mode
