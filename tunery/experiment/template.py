"""Trial template of the Experiment model: its pydantic models, Katib's defaults, its checks.

Part of :mod:`tunery.experiment`, which re-exports the public names. Katib
substitutes ``${trialParameters.<name>}`` anywhere in the serialised template (keys included),
so the scans here walk every key and string value of the free-form Kubernetes object and report
where each placeholder sits. Only inline ``trialSpec`` templates are checked this way: a
``configMap`` template is read by whoever renders the trials, not here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import StrictBool

from tunery.experiment.base import FreeForm, Node
from tunery.experiment.errors import Problems, did_you_mean, show

PLACEHOLDER_PREFIX = "${trialParameters."
_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^{}]+)\}")

META_KEYS = ("Name", "Namespace", "Kind", "APIVersion")
"""Plain trial metadata keys a trialParameter may reference as ``${trialSpec.<key>}``."""
META_MAP_KEYS = ("Labels", "Annotations")
"""Map-valued metadata keys, referenced as ``${trialSpec.Labels[<key>]}``."""

_META_REFERENCE = re.compile(
    r"^\$\{trialSpec\.(?:(Name|Namespace|Kind|APIVersion)|(Labels|Annotations)\[([^\[\]]+)\])\}$"
)


def meta_reference(reference: str) -> tuple[str, str | None] | None:
    """``("Name", None)`` for ``${trialSpec.Name}``, ``("Labels", "k")`` for
    ``${trialSpec.Labels[k]}``; None when ``reference`` is not trial metadata."""
    match = _META_REFERENCE.match(reference)
    if match is None:
        return None
    plain_key, map_key, item = match.groups()
    return (plain_key, None) if plain_key else (map_key, item)


def is_meta_reference(reference: str) -> bool:
    """Whether ``reference`` is a trial metadata reference such as ``${trialSpec.Name}``."""
    return meta_reference(reference) is not None


def looks_like_meta_reference(reference: str) -> bool:
    return reference.startswith("${")


@dataclass(frozen=True)
class Placeholder:
    """A ``${trialParameters.<name>}`` found in a template; ``loc`` is where (keys, indices)."""

    name: str
    loc: tuple[str | int, ...]


@dataclass(frozen=True)
class Malformed:
    """Text that starts like a placeholder but is not one, e.g. ``${trialParameters.lr``."""

    text: str
    loc: tuple[str | int, ...]


def scan_placeholders(node: Any) -> tuple[list[Placeholder], list[Malformed]]:
    """Every placeholder (and malformed one) in the keys and strings of ``node``."""
    found: list[Placeholder] = []
    malformed: list[Malformed] = []
    for loc, text in _strings(node, ()):
        start = text.find(PLACEHOLDER_PREFIX)
        while start != -1:
            match = _PLACEHOLDER.match(text, start)
            if match is None:
                end = text.find("}", start)
                snippet = text[start : end + 1 if end != -1 else len(text)]
                malformed.append(Malformed(snippet[:60], loc))
            else:
                found.append(Placeholder(match.group(1), loc))
            start = text.find(PLACEHOLDER_PREFIX, start + 1)
    return found, malformed


def _strings(node: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(node, str):
        yield loc, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str):
                yield (*loc, key), key
            yield from _strings(value, (*loc, key))
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from _strings(item, (*loc, i))


def dig(node: Any, *keys: str) -> Any:
    """``node[k1][k2]...`` through mappings, or None where a step is missing."""
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


JOB_CONTAINERS_PATH = ("spec", "template", "spec", "containers")


def container_names(trial_spec: Mapping[str, Any]) -> list[str] | None:
    """Names of the containers of a template's pods, or None when the template has no
    ``containers`` list anywhere (custom kinds like Argo Workflows name theirs differently).

    A ``batch/v1`` Job is read at ``spec.template.spec.containers``; other kinds are searched
    recursively for ``containers`` lists (``initContainers`` are not candidates).
    """
    if trial_spec.get("kind") == "Job":
        containers = dig(trial_spec, *JOB_CONTAINERS_PATH)
        return _names(containers) if isinstance(containers, list) else None
    lists = list(_container_lists(trial_spec))
    if not lists:
        return None
    return [name for containers in lists for name in _names(containers)]


def _container_lists(node: Any) -> Iterator[list[Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "containers" and isinstance(value, list):
                yield value
            else:
                yield from _container_lists(value)
    elif isinstance(node, list):
        for item in node:
            yield from _container_lists(item)


def _located_container_lists(
    node: Any, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Like :func:`_container_lists`, with where each ``containers`` value sits (any type)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "containers":
                yield (*loc, key), value
            else:
                yield from _located_container_lists(value, (*loc, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _located_container_lists(item, (*loc, i))


def check_containers(trial_spec: Mapping[str, Any], problems: Problems) -> None:
    """The container fields the local runner reads, against their Kubernetes types:
    ``command``/``args`` lists of strings, ``env`` a list of ``{name, value | valueFrom}``,
    ``envFrom`` a list of mappings, ``workingDir`` a string, ``resources`` ``{limits,
    requests, claims}`` with quantity maps. Locations are relative to the trialSpec."""
    for loc, containers in _located_container_lists(trial_spec, ()):
        if not isinstance(containers, list):
            problems.add(f"{show(containers)} is not a list of containers", "trialSpec", *loc)
            continue
        for i, container in enumerate(containers):
            where = ("trialSpec", *loc, i)
            if not isinstance(container, Mapping):
                problems.add(f"{show(container)} is not a container (a mapping)", *where)
                continue
            _check_container(container, where, problems)


def _check_container(
    c: Mapping[str, Any], where: tuple[str | int, ...], problems: Problems
) -> None:
    name = c.get("name")
    if name is not None and not isinstance(name, str):
        problems.add(f"{show(name)} is not a string", *where, "name")
    for key in ("command", "args"):
        value = c.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            problems.add(f"{show(value)} is not a list of strings", *where, key)
            continue
        for j, item in enumerate(value):
            if not isinstance(item, str):
                problems.add(
                    f"{show(item)} is not a string (Kubernetes takes strings here: quote it)",
                    *where,
                    key,
                    j,
                )
            elif "\0" in item:  # no program can receive one (as in env values)
                problems.add("must not contain a NUL character", *where, key, j)
    working_dir = c.get("workingDir")
    if working_dir is not None and not isinstance(working_dir, str):
        problems.add(f"{show(working_dir)} is not a string", *where, "workingDir")
    elif working_dir is not None and "\0" in working_dir:
        problems.add("must not contain a NUL character", *where, "workingDir")
    _check_env(c.get("env"), (*where, "env"), problems)
    env_from = c.get("envFrom")
    if env_from is not None:
        if not isinstance(env_from, list):
            problems.add(f"{show(env_from)} is not a list", *where, "envFrom")
        else:
            for j, item in enumerate(env_from):
                if not isinstance(item, Mapping):
                    problems.add(
                        f"{show(item)} is not a mapping (configMapRef, secretRef, prefix)",
                        *where,
                        "envFrom",
                        j,
                    )
    _check_resources(c.get("resources"), (*where, "resources"), problems)


_ENV_KEYS = ("name", "value", "valueFrom")


def _check_env(env: Any, where: tuple[str | int, ...], problems: Problems) -> None:
    if env is None:
        return
    if not isinstance(env, list):
        problems.add(
            f"{show(env)} is not a list of {{name, value}} entries, e.g. [{{name: A, value: "
            '"1"}]',
            *where,
        )
        return
    for j, entry in enumerate(env):
        if not isinstance(entry, Mapping):
            problems.add(f"{show(entry)} is not a {{name, value}} mapping", *where, j)
            continue
        for key in entry:
            if key not in _ENV_KEYS:
                problems.add(
                    f"unknown field (allowed here: {', '.join(_ENV_KEYS)})"
                    f"{did_you_mean(str(key), _ENV_KEYS)}",
                    *where,
                    j,
                    key,
                )
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            message = "is required" if name is None else f"{show(name)} is not a non-empty string"
            problems.add(message, *where, j, "name")
        elif "=" in name or "\0" in name:
            problems.add(f"{show(name)} must not contain = or NUL", *where, j, "name")
        value = entry.get("value")
        if value is not None and not isinstance(value, str):
            problems.add(
                f"{show(value)} is not a string (Kubernetes takes strings here: quote it)",
                *where,
                j,
                "value",
            )
        elif isinstance(value, str) and "\0" in value:
            problems.add("must not contain a NUL character", *where, j, "value")
        value_from = entry.get("valueFrom")
        if value_from is not None and not isinstance(value_from, Mapping):
            problems.add(f"{show(value_from)} is not a mapping", *where, j, "valueFrom")
        if value is not None and value_from is not None:
            problems.add("give either value or valueFrom, not both", *where, j, "valueFrom")


def _check_resources(resources: Any, where: tuple[str | int, ...], problems: Problems) -> None:
    if resources is None:
        return
    if not isinstance(resources, Mapping):
        problems.add(f"{show(resources)} is not a mapping (limits, requests)", *where)
        return
    for key, value in resources.items():
        if key == "claims":
            if not isinstance(value, list):
                problems.add(f"{show(value)} is not a list", *where, key)
            continue
        if key not in ("limits", "requests"):
            problems.add(
                f"unknown field (allowed here: limits, requests, claims)"
                f"{did_you_mean(str(key), ('limits', 'requests', 'claims'))}",
                *where,
                key,
            )
            continue
        if value is None:
            continue
        if not isinstance(value, Mapping):
            problems.add(f"{show(value)} is not a mapping of resource quantities", *where, key)
            continue
        for resource, quantity in value.items():
            if resource == GPU_RESOURCE and not _whole_number(quantity):
                problems.add(
                    f"{show(quantity)} is not a whole number of GPUs (0, 1, 2...)",
                    *where,
                    key,
                    resource,
                )
            elif isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
                problems.add(
                    f'{show(quantity)} is not a quantity (e.g. 1, "500m", "2Gi")',
                    *where,
                    key,
                    resource,
                )


GPU_RESOURCE = "nvidia.com/gpu"


def _whole_number(quantity: object) -> bool:
    """A non-negative integer GPU count (an int, a digit string, or a placeholder)."""
    if isinstance(quantity, bool):
        return False
    if isinstance(quantity, int):
        return quantity >= 0
    return isinstance(quantity, str) and (
        quantity.strip().isdigit() or PLACEHOLDER_PREFIX in quantity
    )


def _names(containers: list[Any]) -> list[str]:
    return [
        c["name"] for c in containers if isinstance(c, Mapping) and isinstance(c.get("name"), str)
    ]


JOB_SUCCESS_CONDITION = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
KUBEFLOW_JOB_SUCCESS_CONDITION = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
KUBEFLOW_JOB_FAILURE_CONDITION = JOB_FAILURE_CONDITION
KUBEFLOW_JOB_KINDS = frozenset({"TFJob", "PyTorchJob", "XGBoostJob", "MPIJob"})
KUBEFLOW_JOB_PRIMARY_POD_LABELS: Mapping[str, str] = {"training.kubeflow.org/job-role": "master"}
TRAINJOB_PRIMARY_POD_LABELS: Mapping[str, str] = {
    "jobset.sigs.k8s.io/replicatedjob-name": "node",
    "batch.kubernetes.io/job-completion-index": "0",
}

_DEFAULTED_KINDS = "Job, TFJob, PyTorchJob, XGBoostJob, MPIJob and TrainJob"


# -- trial template ---------------------------------------------------------------------------


class ConfigMapSource(Node):
    """A trial template stored in a ConfigMap."""

    config_map_name: str
    config_map_namespace: str
    template_path: str
    """The ConfigMap key holding the template."""

    def _check(self, problems: Problems) -> None:
        for alias, value in (
            ("configMapName", self.config_map_name),
            ("configMapNamespace", self.config_map_namespace),
            ("templatePath", self.template_path),
        ):
            if value == "":
                problems.add("must not be empty", alias)


class TrialParameterSpec(Node):
    """A ``${trialParameters.<name>}`` placeholder of the template and what fills it."""

    name: str
    description: str | None = None
    reference: str
    """A parameter name, or trial metadata such as ``${trialSpec.Name}``."""

    @property
    def is_meta(self) -> bool:
        """Whether the reference is trial metadata rather than a parameter."""
        return is_meta_reference(self.reference)

    @property
    def meta_key(self) -> tuple[str, str | None] | None:
        """The trial metadata referenced: ``("Kind", None)``, ``("Labels", "<key>")``, or None
        when the reference names a parameter."""
        return meta_reference(self.reference)

    @property
    def placeholder(self) -> str:
        """The text the controller replaces: ``${trialParameters.<name>}``."""
        return f"{PLACEHOLDER_PREFIX}{self.name}}}"


_TEMPLATE_DEFAULTS: Mapping[str, tuple[str, str, Mapping[str, str] | None]] = {
    "Job": (JOB_SUCCESS_CONDITION, JOB_FAILURE_CONDITION, None),
    **{
        kind: (
            KUBEFLOW_JOB_SUCCESS_CONDITION,
            KUBEFLOW_JOB_FAILURE_CONDITION,
            KUBEFLOW_JOB_PRIMARY_POD_LABELS,
        )
        for kind in KUBEFLOW_JOB_KINDS
    },
    "TrainJob": (JOB_SUCCESS_CONDITION, JOB_FAILURE_CONDITION, TRAINJOB_PRIMARY_POD_LABELS),
}


class TrialTemplate(Node):
    """How each trial runs: a Kubernetes object template with ``${trialParameters.x}``."""

    retain: StrictBool = False
    """Keep each trial's job after it completes."""
    trial_spec: FreeForm | None = None
    """The trial's Kubernetes object (e.g. a batch/v1 Job), free-form."""
    config_map: ConfigMapSource | None = None
    trial_parameters: tuple[TrialParameterSpec, ...]
    primary_pod_labels: dict[str, str] | None = None
    """Labels of the pod whose metrics are collected (all pods when absent)."""
    primary_container_name: str
    """The container that runs the training code."""
    success_condition: str = ""
    """GJSON condition on the job marking success; defaulted for known job kinds."""
    failure_condition: str = ""
    """GJSON condition on the job marking failure; defaulted for known job kinds."""

    _requires: ClassVar[tuple[str, ...]] = ("trialParameters",)

    @classmethod
    def _defaults(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Katib's defaulting: conditions (and primary pod labels) by the trialSpec's kind."""
        trial_spec = data.get("trialSpec")
        kind = trial_spec.get("kind") if isinstance(trial_spec, Mapping) else None
        defaults = _TEMPLATE_DEFAULTS.get(kind) if isinstance(kind, str) else None
        if defaults is None:
            return data
        success, failure, labels = defaults
        out = dict(data)
        if out.get("successCondition") in (None, ""):
            out["successCondition"] = success
        if out.get("failureCondition") in (None, ""):
            out["failureCondition"] = failure
        if labels is not None and not out.get("primaryPodLabels"):
            out["primaryPodLabels"] = dict(labels)
        return out

    def _check(self, problems: Problems) -> None:
        _check_template(self, problems)

    @property
    def trial_parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.trial_parameters)

    @property
    def kind(self) -> str | None:
        """The trialSpec's kind (None for configMap templates)."""
        return None if self.trial_spec is None else self.trial_spec.get("kind")

    @property
    def api_version(self) -> str | None:
        return None if self.trial_spec is None else self.trial_spec.get("apiVersion")


def _check_template(t: TrialTemplate, problems: Problems) -> None:
    if t.trial_spec is None and t.config_map is None:
        problems.add("is required (or give a configMap template)", "trialSpec")
    elif t.trial_spec is not None and t.config_map is not None:
        problems.add("give either trialSpec or configMap, not both", "configMap")
    if not t.primary_container_name:
        problems.add("must not be empty", "primaryContainerName")
    for alias, condition in (
        ("successCondition", t.success_condition),
        ("failureCondition", t.failure_condition),
    ):
        if not condition:
            problems.add(
                f"is required: it is defaulted only for trialSpec kinds {_DEFAULTED_KINDS}", alias
            )
    if not t.trial_parameters:
        problems.add(
            "must not be empty: list the ${trialParameters.<name>} placeholders of the template",
            "trialParameters",
        )
    names = _check_trial_parameters(t.trial_parameters, problems)
    if t.trial_spec is not None:
        _check_trial_spec(t, names, problems)


def _check_trial_parameters(
    trial_parameters: tuple[TrialParameterSpec, ...], problems: Problems
) -> dict[str, int]:
    names: dict[str, int] = {}
    references: dict[str, int] = {}
    for i, tp in enumerate(trial_parameters):
        if not tp.name:
            problems.add("must not be empty", "trialParameters", i, "name")
        elif "{" in tp.name or "}" in tp.name:
            problems.add(
                f"{show(tp.name)} must not contain {{ or }}", "trialParameters", i, "name"
            )
        elif tp.name in names:
            problems.add(
                f"{show(tp.name)} is already defined at trialParameters[{names[tp.name]}]",
                "trialParameters",
                i,
                "name",
            )
        else:
            names[tp.name] = i
        ref = tp.reference
        if not ref:
            problems.add("must not be empty", "trialParameters", i, "reference")
        elif looks_like_meta_reference(ref) and not tp.is_meta:
            problems.add(
                f"{show(ref)} is not a trial metadata reference; use ${{trialSpec.Name}}, "
                "${trialSpec.Namespace}, ${trialSpec.Kind}, ${trialSpec.APIVersion}, "
                "${trialSpec.Labels[<key>]} or ${trialSpec.Annotations[<key>]}",
                "trialParameters",
                i,
                "reference",
            )
        elif ref in references:
            problems.add(
                f"{show(ref)} is already referenced by trialParameters[{references[ref]}]",
                "trialParameters",
                i,
                "reference",
            )
        else:
            references[ref] = i
    return names


def _check_trial_spec(t: TrialTemplate, names: Mapping[str, int], problems: Problems) -> None:
    spec = t.trial_spec
    assert spec is not None
    for key in ("apiVersion", "kind"):
        value = spec.get(key)
        if value is None:
            problems.add("is required", "trialSpec", key)
        elif not isinstance(value, str) or not value:
            problems.add(f"{show(value)} must be a non-empty string", "trialSpec", key)
    meta = spec.get("metadata")
    if isinstance(meta, Mapping):
        for key in ("name", "namespace"):
            if meta.get(key) not in (None, ""):
                problems.add(
                    "must be omitted: each trial's job is named after the trial and runs in the "
                    "experiment's namespace",
                    "trialSpec",
                    "metadata",
                    key,
                )
    elif meta is not None:
        problems.add(f"{show(meta)} is not a mapping", "trialSpec", "metadata")

    found, malformed = scan_placeholders(spec)
    for bad in malformed:
        problems.add(
            f"{show(bad.text)} is not a complete placeholder; write ${{trialParameters.<name>}}",
            "trialSpec",
            *bad.loc,
        )
    used: set[str] = set()
    for placeholder in found:
        used.add(placeholder.name)
        if placeholder.name not in names:
            defined = list(names)
            problems.add(
                f"${{trialParameters.{placeholder.name}}} is not defined in "
                f"spec.trialTemplate.trialParameters (defined: {', '.join(defined) or 'none'})"
                f"{did_you_mean(placeholder.name, defined)}",
                "trialSpec",
                *placeholder.loc,
            )
    for name, i in names.items():
        if name not in used:
            problems.add(
                f"{show(name)} is not used: the trialSpec has no ${{trialParameters.{name}}}",
                "trialParameters",
                i,
                "name",
            )

    check_containers(spec, problems)
    if spec.get("kind") == "TrainJob":  # its containers come from the training runtime
        return
    containers = container_names(spec)
    if spec.get("kind") == "Job" and not containers:
        problems.add(
            "is required: a Job's pod template needs at least one named container",
            "trialSpec",
            *JOB_CONTAINERS_PATH,
        )
    elif (
        containers is not None
        and t.primary_container_name
        and (t.primary_container_name not in containers)
    ):
        problems.add(
            f"{show(t.primary_container_name)} is not a container of the trialSpec "
            f"(containers: {', '.join(containers) or 'none'})"
            f"{did_you_mean(t.primary_container_name, containers)}",
            "primaryContainerName",
        )
