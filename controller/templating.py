"""Render a trial's job from the Experiment's trialTemplate, as Katib's manifest generator does.

Called by the reconciler (local and Kubernetes). Works on the Katib document form (camelCase
dicts), so it needs nothing but the template, the trialParameters and the trial's assignment.

``${trialParameters.<name>}`` is replaced by the trial's value of the parameter the
trialParameter references, or by a meta value when the reference is ``${trialSpec.Name}``,
``Namespace``, ``Kind``, ``APIVersion``, ``Labels[key]`` or ``Annotations[key]``.

Unlike Katib, which replaces text in the serialised template, substitution walks the structure:
inside a shell script (a container whose ``command`` + ``args`` run ``sh -c``, ``bash -o
pipefail -c``, ``env X=1 sh -lc``, ...), each value is quoted for the quoting context its
placeholder sits in (bare, ``"…"`` or ``'…'``; see :mod:`controller.shellscript`), so a
parameter value can never inject shell syntax; a placeholder whose context cannot be kept
literal (a here-document, ``$(…)``, ``eval``, a nested ``sh -c``, ...) is a TemplateError, which
validation reports earlier through :func:`script_problems`. Everywhere else the value lands
verbatim in one string, which local runners pass as one argv element.

Conditional parameters (tunery extension): a trialParameter whose reference is a parameter the
trial does not have (inactive, see docs/search-spaces.md) has no value. A ``command``/``args``
element holding its placeholder is left out of the argv (so write ``--momentum=${...}`` as one
element), an ``env`` entry whose value holds it is left out of the container's env, and any
other use (a shell script, a plain field) is a TemplateError; the Experiment model refuses such
templates at validation.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import shellscript
from controller.pod_units import workflow_units
from controller.shellscript import PLACEHOLDER, UnsafeScript, find_script

META_REFERENCE = re.compile(r"^\$\{trialSpec\.(.+?)\}$")
_INDEXED_META = re.compile(r"^(Labels|Annotations)\[(.+)\]$")


class TemplateError(ValueError):
    """The template cannot be rendered for this trial (names the placeholder and why)."""


@dataclass(frozen=True)
class TrialMeta:
    """What ``${trialSpec.X}`` references resolve to for one trial.

    ``labels`` and ``annotations`` are the trial template's own ``metadata`` (Katib reads
    ``${trialSpec.Labels[k]}`` from there); :meth:`of_template` builds one that way.
    """

    name: str
    namespace: str = "default"
    kind: str = ""
    api_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_template(cls, name: str, namespace: str, job_template: Mapping[str, Any]) -> TrialMeta:
        """The meta of trial ``name`` rendered from ``job_template`` (the trialSpec)."""
        metadata = job_template.get("metadata") or {}
        return cls(
            name=name,
            namespace=namespace,
            kind=str(job_template.get("kind", "")),
            api_version=str(job_template.get("apiVersion", "")),
            labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        )

    def resolve(self, key: str) -> str:
        simple = {
            "Name": self.name,
            "Namespace": self.namespace,
            "Kind": self.kind,
            "APIVersion": self.api_version,
        }
        if key in simple:
            return simple[key]
        indexed = _INDEXED_META.match(key)
        if indexed:
            source = self.labels if indexed.group(1) == "Labels" else self.annotations
            if indexed.group(2) in source:
                return source[indexed.group(2)]
            raise TemplateError(
                f"${{trialSpec.{key}}}: the trial template's metadata has no such "
                f"{indexed.group(1)[:-1].lower()}"
            )
        raise TemplateError(f"${{trialSpec.{key}}} is not a known trial meta reference")


def resolve_trial_parameters(
    trial_parameters: Sequence[Mapping[str, Any]],
    assignment: Mapping[str, str],
    meta: TrialMeta,
    parameter_names: Collection[str] = (),
) -> dict[str, str]:
    """Map each trialParameter name to its value for this trial (trialParameters referencing
    a parameter of ``parameter_names`` that the assignment lacks, an inactive one, are left
    out; :func:`inactive_trial_parameters` names them).

    Raises:
        TemplateError: a reference names neither a parameter of the assignment nor meta data.
    """
    values: dict[str, str] = {}
    for tp in trial_parameters:
        reference = str(tp.get("reference", ""))
        meta_match = META_REFERENCE.match(reference)
        if meta_match:
            values[tp["name"]] = meta.resolve(meta_match.group(1))
        elif reference in assignment:
            values[tp["name"]] = assignment[reference]
        elif reference in parameter_names:
            continue  # an inactive conditional parameter
        else:
            raise TemplateError(
                f"trialParameter {tp['name']!r} references {reference!r}, which is not a "
                "parameter of this trial"
            )
    return values


class _Values(dict[str, str]):
    """trialParameter values, plus the names of those inactive in this trial."""

    inactive: frozenset[str] = frozenset()


def _undefined(name: str, values: Mapping[str, str] | None = None) -> TemplateError:
    if values is not None and name in getattr(values, "inactive", ()):
        return TemplateError(
            f"${{trialParameters.{name}}} refers to a parameter that is inactive in this "
            "trial; such a placeholder may only be a whole command/args element or an env "
            "value (which are then left out)"
        )
    return TemplateError(f"${{trialParameters.{name}}} is not defined in trialParameters")


def _uses_inactive(text: object, values: Mapping[str, str]) -> bool:
    inactive = getattr(values, "inactive", ())
    return (
        bool(inactive)
        and isinstance(text, str)
        and any(m.group(1) in inactive for m in PLACEHOLDER.finditer(text))
    )


def _substitute(text: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise _undefined(match.group(1), values)
        return values[match.group(1)]

    return PLACEHOLDER.sub(replace, text)


def _argv_problems(argv: Sequence[str]) -> Iterator[tuple[int, str]]:
    """(index, why) for each element of a container's argv whose placeholders are unsafe."""
    invocation = find_script(argv)
    for i, item in enumerate(argv):
        if not PLACEHOLDER.search(item):
            continue
        if invocation.opaque is not None and i >= invocation.opaque:
            yield i, f"a placeholder may reach a shell here: {invocation.reason}"
        elif i == invocation.script:
            try:
                shellscript.analyse(item)
            except UnsafeScript as exc:
                yield i, f"{exc}; such a placeholder cannot be kept literal in a shell script"


def _render_container(container: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    argv = command + args
    for i, why in _argv_problems(argv):
        field_name = f"command[{i}]" if i < len(command) else f"args[{i - len(command)}]"
        raise TemplateError(f"container {container.get('name')!r} {field_name}: {why}")
    script_at = find_script(argv).script
    rest = {k: v for k, v in container.items() if k not in ("command", "args")}
    if isinstance(rest.get("env"), list):  # env entries of inactive parameters are left out
        rest["env"] = [
            e
            for e in rest["env"]
            if not (isinstance(e, Mapping) and _uses_inactive(e.get("value"), values))
        ]
    rendered = _render(rest, values)
    combined: list[str | None] = []
    for i, item in enumerate(argv):
        if i != script_at:
            combined.append(None if _uses_inactive(item, values) else _substitute(item, values))
            continue
        try:
            combined.append(shellscript.render(item, values, lambda n: _undefined(n, values)))
        except UnsafeScript as exc:  # a value this trial cannot have in its context
            field_name = f"command[{i}]" if i < len(command) else f"args[{i - len(command)}]"
            raise TemplateError(
                f"container {container.get('name')!r} {field_name}: {exc}"
            ) from None
    if "command" in container:
        rendered["command"] = [c for c in combined[: len(command)] if c is not None]
    if "args" in container:
        rendered["args"] = [a for a in combined[len(command) :] if a is not None]
    return rendered


def _render(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _substitute(node, values)
    if isinstance(node, list):
        return [_render(item, values) for item in node]
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                out[key] = [
                    _render_container(c, values) if isinstance(c, Mapping) else _render(c, values)
                    for c in value
                ]
            else:
                out[key] = _render(value, values)
        return out
    return copy.deepcopy(node)


def render_trial_job(
    template: Mapping[str, Any],
    trial_parameters: Sequence[Mapping[str, Any]],
    assignment: Mapping[str, str],
    meta: TrialMeta,
    parameter_names: Collection[str] = (),
) -> dict[str, Any]:
    """The trial's job: the template with every placeholder substituted and metadata set.

    ``metadata.name``/``namespace`` become the trial's, as Katib does. ``parameter_names``
    (the experiment's parameters) tells an inactive conditional parameter, absent from
    ``assignment``, from a reference to no parameter at all (see the module docstring).

    Raises:
        TemplateError: an undefined placeholder, an unresolvable reference, or an inactive
            parameter's placeholder where it cannot be left out.
    """
    values = _Values(resolve_trial_parameters(trial_parameters, assignment, meta, parameter_names))
    values.inactive = frozenset(
        str(tp["name"])
        for tp in trial_parameters
        if tp.get("reference") in parameter_names and tp.get("reference") not in assignment
    )
    job = _render(template, values)
    metadata = job.setdefault("metadata", {})
    metadata["name"] = meta.name
    metadata["namespace"] = meta.namespace
    return job


def script_problems(template: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, why) of every command/args element of the template's containers whose
    placeholders could not be kept literal when a shell runs it; [] when there are none.

    The location is relative to ``template`` (the trialSpec), e.g.
    ``("spec", "template", "spec", "containers", 0, "args", 0)``.
    """
    problems = []
    for loc, container in _containers_at(template, ()):
        command = container.get("command") or []
        args = container.get("args") or []
        if not isinstance(command, list) or not isinstance(args, list):
            continue
        for i, why in _argv_problems([str(a) for a in command + args]):
            at = ("command", i) if i < len(command) else ("args", i - len(command))
            problems.append(((*loc, *at), why))
    return problems


def conditional_script_problems(
    template: Any, conditional: Collection[str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, why) of every shell-script element of the template's containers holding a
    placeholder of a trialParameter in ``conditional`` (those referencing a conditional
    parameter): a script cannot leave out an inactive parameter, so such a template is refused.
    The location is relative to ``template``, as in :func:`script_problems`."""
    if not conditional:
        return []
    problems = []
    for loc, container in _containers_at(template, ()):
        command = container.get("command") or []
        args = container.get("args") or []
        if not isinstance(command, list) or not isinstance(args, list):
            continue
        argv = [str(a) for a in command + args]
        at = find_script(argv).script
        if at is None:
            continue
        used = sorted({m.group(1) for m in PLACEHOLDER.finditer(argv[at])} & set(conditional))
        if used:
            where = ("command", at) if at < len(command) else ("args", at - len(command))
            problems.append(
                (
                    (*loc, *where),
                    f"${{trialParameters.{used[0]}}} refers to a conditional parameter, which a "
                    "shell script cannot leave out when it is inactive: pass it as its own "
                    'command/args element after the script (e.g. "$1") or as an env value',
                )
            )
    return problems


def _containers_at(
    node: Any, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], Mapping[str, Any]]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for i, container in enumerate(value):
                    if isinstance(container, Mapping):
                        yield (*loc, key, i), container
            else:
                yield from _containers_at(value, (*loc, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _containers_at(item, (*loc, i))


def find_containers(node: Any) -> list[dict[str, Any]]:
    """Every container spec in a rendered job (depth-first, document order)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "containers" and isinstance(value, list):
                found.extend(c for c in value if isinstance(c, dict))
            else:
                found.extend(find_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(find_containers(item))
    return found


def primary_container(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The container called ``name``; raises TemplateError listing the names found.

    In an Argo Workflow or a Tekton PipelineRun (:mod:`controller.pod_units`) the name is the
    one the engine gives the container in its pod (``main``, ``step-<name>``).
    """
    containers = find_containers(job)
    for container in containers:
        if container.get("name") == name:
            return container
    in_units = [pair for unit in workflow_units(job) for pair in unit.containers()]
    for pod_name, container in in_units:
        if pod_name == name:
            return container
    names = ", ".join(
        repr(n) for n in [c.get("name") for c in containers] + [n for n, _ in in_units]
    )
    names = names or "none"
    raise TemplateError(f"primaryContainerName {name!r} matches no container (found {names})")
