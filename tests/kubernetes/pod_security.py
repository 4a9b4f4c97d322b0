"""A checker of the Kubernetes Pod Security Standards ``restricted`` profile, for tests.

Used by ``test_deploy_security.py`` on every pod template under ``deploy/`` and on rendered
trial pods (the injected collector included). :func:`restricted_violations` takes a pod spec
and returns one line per broken rule, naming the field path and the bad value; an empty list
means the PodSecurity admission controller would admit the pod at ``enforce: restricted``.

The rules are those of the profile as documented for Kubernetes 1.25+ (baseline, then the
restricted additions): no host namespaces, host ports, hostPath or other non-listed volume
types, no privileged or HostProcess containers, only the safe sysctls, default /proc mount,
AppArmor and SELinux left to the runtime, seccomp RuntimeDefault or Localhost, runAsNonRoot
true and runAsUser not 0, allowPrivilegeEscalation false, capabilities drop ALL and add nothing
but NET_BIND_SERVICE.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(spec.get(kind) or []):
            yield f"spec.{kind}[{i}]({container.get('name')})", container


def restricted_violations(spec: Mapping[str, Any]) -> list[str]:
    """Every rule of the ``restricted`` profile that the pod ``spec`` breaks (empty: none)."""
    found: list[str] = []
    pod_ctx = spec.get("securityContext") or {}

    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"spec.{field}: {spec[field]!r} (host namespaces are forbidden)")
    for i, volume in enumerate(spec.get("volumes") or []):
        kinds = set(volume) - {"name"}
        bad = sorted(kinds - ALLOWED_VOLUME_TYPES)
        if bad:
            found.append(f"spec.volumes[{i}]({volume.get('name')}): type {bad} is not allowed")
    for i, sysctl in enumerate(pod_ctx.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls[{i}]: {sysctl.get('name')!r} is unsafe")
    if pod_ctx.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser: 0 (root)")
    found += _common("spec.securityContext", pod_ctx)
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    pod_non_root = pod_ctx.get("runAsNonRoot") is True

    for path, container in _containers(spec):
        ctx = container.get("securityContext") or {}
        where = f"{path}.securityContext"
        found += _common(where, ctx)
        if ctx.get("privileged"):
            found.append(f"{where}.privileged: true")
        if ctx.get("procMount") not in (None, "Default"):
            found.append(f"{where}.procMount: {ctx['procMount']!r}")
        for j, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                found.append(f"{path}.ports[{j}].hostPort: {port['hostPort']}")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(
                f"{where}.allowPrivilegeEscalation: {ctx.get('allowPrivilegeEscalation')!r}, "
                "must be false"
            )
        non_root = ctx.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            found.append(f"{where}.runAsNonRoot: {non_root!r}, must be true (here or in the pod)")
        if ctx.get("runAsUser") == 0:
            found.append(f"{where}.runAsUser: 0 (root)")
        seccomp = (ctx.get("seccompProfile") or {}).get("type")
        if seccomp is None and pod_seccomp not in SECCOMP_TYPES:
            found.append(
                f"{where}.seccompProfile: unset and the pod's is {pod_seccomp!r}: must be "
                "RuntimeDefault or Localhost"
            )
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{where}.capabilities.drop: {caps.get('drop')!r}, must include ALL")
        added = sorted(set(caps.get("add") or []) - {"NET_BIND_SERVICE"})
        if added:
            found.append(f"{where}.capabilities.add: {added} (only NET_BIND_SERVICE)")
    return found


def _common(where: str, ctx: Mapping[str, Any]) -> list[str]:
    """Rules that apply alike to the pod's and to each container's securityContext."""
    found = []
    if (ctx.get("windowsOptions") or {}).get("hostProcess"):
        found.append(f"{where}.windowsOptions.hostProcess: true")
    seccomp = (ctx.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in SECCOMP_TYPES:
        found.append(f"{where}.seccompProfile.type: {seccomp!r}")
    apparmor = (ctx.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"{where}.appArmorProfile.type: {apparmor!r}")
    selinux = ctx.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        found.append(f"{where}.seLinuxOptions.type: {selinux['type']!r}")
    for key in ("user", "role"):
        if selinux.get(key):
            found.append(f"{where}.seLinuxOptions.{key}: {selinux[key]!r} (must be unset)")
    return found
