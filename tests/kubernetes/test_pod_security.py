"""The ``restricted`` checker (``pod_security``) catches each rule it claims to check."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pod_security import restricted_violations

COMPLIANT: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "data", "persistentVolumeClaim": {}}],
    "initContainers": [{"name": "side", "image": "i", "restartPolicy": "Always",
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}}}],
    "containers": [{"name": "main", "image": "i", "ports": [{"containerPort": 80}],
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"],
                                                         "add": ["NET_BIND_SERVICE"]}}}],
}  # fmt: skip


def _main(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["containers"][0]["securityContext"]  # type: ignore[no-any-return]


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "hostNetwork": (lambda p: p.update(hostNetwork=True), "spec.hostNetwork"),
    "hostPID": (lambda p: p.update(hostPID=True), "spec.hostPID"),
    "hostPath": (
        lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "spec.volumes[2](h)",
    ),
    "unsafe sysctl": (
        lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "sysctls[0]",
    ),
    "pod root": (lambda p: p["securityContext"].update(runAsUser=0), "spec.securityContext"),
    "pod non-root unset": (
        lambda p: p["securityContext"].pop("runAsNonRoot"),
        "containers[0](main).securityContext.runAsNonRoot",
    ),
    "container may be root": (
        lambda p: _main(p).update(runAsNonRoot=False),
        "containers[0](main).securityContext.runAsNonRoot",
    ),
    "container root": (lambda p: _main(p).update(runAsUser=0), "runAsUser: 0"),
    "privileged": (lambda p: _main(p).update(privileged=True), "privileged"),
    "escalation": (
        lambda p: p["initContainers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
        "initContainers[0](side).securityContext.allowPrivilegeEscalation",
    ),
    "capabilities kept": (lambda p: _main(p)["capabilities"].pop("drop"), "capabilities.drop"),
    "capability added": (
        lambda p: _main(p)["capabilities"]["add"].append("SYS_ADMIN"),
        "capabilities.add",
    ),
    "seccomp unset": (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
    "seccomp unconfined": (
        lambda p: _main(p).update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile.type: 'Unconfined'",
    ),
    "host port": (lambda p: p["containers"][0]["ports"][0].update(hostPort=80), "hostPort"),
    "proc mount": (lambda p: _main(p).update(procMount="Unmasked"), "procMount"),
    "selinux": (lambda p: _main(p).update(seLinuxOptions={"type": "spc_t"}), "seLinuxOptions"),
    "apparmor": (
        lambda p: p["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
        "appArmorProfile",
    ),
    "host process": (
        lambda p: _main(p).update(windowsOptions={"hostProcess": True}),
        "hostProcess",
    ),
}


def test_a_compliant_pod_passes() -> None:
    assert restricted_violations(COMPLIANT) == []
    # per-container settings can stand in for the pod's
    pod = copy.deepcopy(COMPLIANT)
    del pod["securityContext"]
    for container in pod["containers"] + pod["initContainers"]:
        container["securityContext"].update(
            runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p"}
        )
    assert restricted_violations(pod) == []


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_each_rule_is_caught_and_named(rule: str) -> None:
    mutate, expected = MUTATIONS[rule]
    pod = copy.deepcopy(COMPLIANT)
    mutate(pod)
    problems = restricted_violations(pod)
    assert problems and any(expected in p for p in problems), problems
