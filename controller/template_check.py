"""Trial template checks that need the controller's knowledge of how a trial is rendered.

Called by :func:`controller.settings_check.load_checked` (``tunery validate``/``run``, the SDK's
local ``tune()``) and by the Kubernetes operator before it stores an Experiment. Today one
check: every ``${trialParameters.x}`` inside a shell script of a container (``sh -c``,
``bash -o pipefail -c``, ``env X=1 sh -lc`` ...) sits where its value can be kept literal
(:mod:`controller.shellscript`); otherwise the experiment is refused at the field that holds
it, e.g. ``spec.trialTemplate.trialSpec.spec.template.spec.containers[0].args[0]:
${trialParameters.lr} is inside a here-document ...``. A ``configMap`` template is checked by
whoever resolves it (the operator), as it is not part of the document. Also: a placeholder of
a conditional parameter (tunery extension) inside a shell script is refused, since a script
cannot leave out an inactive parameter (docs/search-spaces.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.templating import conditional_script_problems, script_problems
from tunery.experiment import Experiment, FieldError


def template_problems(experiment: Experiment | Mapping[str, Any]) -> list[FieldError]:
    """Every unsafe placeholder of the experiment's inline trialSpec; [] if none."""
    document = experiment.to_document() if isinstance(experiment, Experiment) else experiment
    template = (document.get("spec") or {}).get("trialTemplate") or {}
    trial_spec = template.get("trialSpec")
    if not isinstance(trial_spec, Mapping):
        return []
    conditional_parameters = {
        p.get("name")
        for p in (document.get("spec") or {}).get("parameters") or []
        if isinstance(p, Mapping) and p.get("condition")
    }
    conditional = {
        str(tp.get("name"))
        for tp in template.get("trialParameters") or []
        if isinstance(tp, Mapping) and tp.get("reference") in conditional_parameters
    }
    return [
        FieldError(_path(("spec", "trialTemplate", "trialSpec", *loc)), why)
        for loc, why in [
            *script_problems(trial_spec),
            *conditional_script_problems(trial_spec, conditional),
        ]
    ]


def _path(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
