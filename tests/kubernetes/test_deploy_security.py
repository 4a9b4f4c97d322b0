"""deploy/ hardened: no shipped credential, PodSecurity ``restricted``, NetworkPolicies that
admit exactly the pods that must talk, and servers that listen beyond loopback.

Offline, on the manifests as written and on trial jobs rendered the way the operator renders
them (``trial_render``). The NetworkPolicies are evaluated by a small model of Kubernetes'
ingress semantics against the labels the pods really carry; PodSecurity by ``pod_security``.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pod_security import restricted_violations
from trial_render import render_example

from controller.sidecar import COLLECTOR_UID, TRIAL_LABEL, pod_templates

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEM = "tunery-system"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "trialSpec" in p.read_text())


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _workloads() -> dict[str, dict[str, Any]]:
    """Workload name -> its pod template."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in _documents()
        if d["kind"] in WORKLOAD_KINDS
    }


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


# -- no default credential --------------------------------------------------------------------

SENSITIVE = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|CREDENTIAL|API_?KEY", re.IGNORECASE)
URL_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s]*)@")


def _credential_problems(documents: list[dict[str, Any]]) -> list[str]:
    """Every credential written into ``documents``: a Secret, a literal value of a variable
    named like a credential, a password inside a URL that is not a ``$(VAR)`` reference."""
    problems = []
    for doc in documents:
        name = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name', '')}"
        if doc["kind"] == "Secret":
            problems.append(f"{name}: a Secret with its values is shipped")
        for path, node in _walk(doc):
            if (
                isinstance(node, Mapping)
                and "value" in node
                and SENSITIVE.search(str(node.get("name", "")))
            ):
                problems.append(f"{name}{path}: {node['name']} has a literal value")
            if isinstance(node, str):
                for secret in URL_PASSWORD.findall(node):
                    if not re.fullmatch(r"\$\([A-Z_][A-Z0-9_]*\)", secret):
                        problems.append(f"{name}{path}: a literal password in {node!r}")
    return problems


def test_no_credential_is_shipped_in_deploy() -> None:
    assert _credential_problems(_documents()) == []
    assert not SENSITIVE.search((DEPLOY / "Dockerfile").read_text())


def test_the_credential_check_finds_what_used_to_be_shipped() -> None:
    secret = {
        "kind": "Secret",
        "metadata": {"name": "tunery-db"},
        "stringData": {"password": "change-me-before-installing"},
    }
    env = [
        {"name": "DB_PASSWORD", "value": "change-me"},
        {"name": "URL", "value": "postgresql://tunery:hunter2@db:5432/x"},
        {"name": "OK", "value": "postgresql://tunery:$(TUNERY_DB_PASSWORD)@db:5432/x"},
    ]
    deployment = {"kind": "Deployment", "metadata": {"name": "x"}, "env": env}  # fmt: skip
    problems = _credential_problems([secret, deployment])
    assert len(problems) == 3, problems
    assert "Secret/tunery-db" in problems[0]
    assert "DB_PASSWORD" in problems[1] and "hunter2" in problems[2]


def _secret_references() -> list[tuple[str, str, Mapping[str, Any]]]:
    """(workload, path, reference) for every reference to a Secret in a pod template."""
    found = []
    for workload, template in _workloads().items():
        for path, node in _walk(template["spec"]):
            if not isinstance(node, Mapping):
                continue
            for key in ("secretKeyRef", "secretRef", "secret"):
                if isinstance(node.get(key), Mapping):
                    found.append((workload, f"{path}.{key}", node[key]))
    return found


def test_every_secret_reference_is_required() -> None:
    references = _secret_references()
    assert {w for w, _, _ in references} == {
        "tunery-postgres",
        "tunery-operator",
        "tunery-db-manager",
        "tunery-earlystop",
        "tunery-dashboard",
    }
    for workload, path, ref in references:
        assert ref.get("optional") is not True, f"{workload}{path} is optional"
        keys = ("password", "dashboard-token") if workload == "tunery-dashboard" else ("password",)
        assert ref.get("name") == "tunery-db" and ref.get("key") in keys, (workload, path)


def test_every_database_url_takes_its_password_from_the_secret() -> None:
    for workload, template in _workloads().items():
        for container in template["spec"]["containers"]:
            env = container.get("env") or []
            from_secret = {e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
            for entry in env:
                if entry["name"] != "TUNERY_DB_URL":
                    continue
                (secret,) = URL_PASSWORD.findall(entry["value"])
                assert secret[2:-1] in from_secret, (workload, secret)
                # Kubernetes expands $(VAR) only from variables defined earlier in the list
                names = [e["name"] for e in env]
                assert names.index(secret[2:-1]) < names.index("TUNERY_DB_URL"), workload


def test_the_install_doc_creates_the_secret_the_pods_need() -> None:
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    commands = [c for c in re.findall(r"kubectl(?:\\\n|[^\n])*", doc) if "secret" in c]
    created = [shlex.split(c.replace("\\\n", " ")) for c in commands if "create secret" in c]
    assert created, "docs/kubernetes.md does not say how to create the Secret"
    argv = created[0]
    assert argv[argv.index("generic") + 1] == "tunery-db"
    assert argv[argv.index("-n") + 1] == SYSTEM
    literals = dict(
        a.removeprefix("--from-literal=").split("=", 1)
        for a in argv
        if a.startswith("--from-literal=")
    )
    assert {ref["key"] for _, _, ref in _secret_references()} <= set(literals)
    assert literals["password"].startswith("$(openssl rand"), "the password must be generated"


# -- PodSecurity restricted -------------------------------------------------------------------


def test_the_namespaces_enforce_restricted() -> None:
    namespaces = [d for d in _documents() if d["kind"] == "Namespace"]
    assert {n["metadata"]["name"] for n in namespaces} == {"tunery-system", "kubeflow"}
    for namespace in namespaces:
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("workload", sorted(_workloads()))
def test_deploy_pod_templates_pass_restricted(workload: str) -> None:
    assert restricted_violations(_workloads()[workload]["spec"]) == []


def test_postgres_runs_confined_with_a_read_only_root() -> None:
    pod = _workloads()["tunery-postgres"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 70  # postgres in the alpine image
    # the kubelet must not re-chmod PGDATA group-writable on every start
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    (container,) = pod["containers"]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PGDATA"].startswith(
        next(p for p, n in mounts.items() if n == "data") + "/"
    )  # data on the volume
    volumes = {v["name"]: v for v in pod["volumes"]}
    for writable in ("/var/run/postgresql", "/tmp"):  # socket + lock file; entrypoint scratch
        assert "emptyDir" in volumes[mounts[writable]], writable


def _compliant_trial_template() -> dict[str, Any]:
    """examples/quickstart's template made restricted-compliant by its author."""
    document = yaml.safe_load((ROOT / "examples" / "quickstart" / "experiment.yaml").read_text())
    pod = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for container in pod["containers"]:
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    return document


def test_a_restricted_trial_stays_restricted_with_the_collector(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(_compliant_trial_template()))
    _, job = render_example(path)
    (template,) = pod_templates(job)
    pod = template.template["spec"]
    (collector,) = pod["initContainers"]
    assert collector["name"] == "metrics-logger-and-collector"
    assert restricted_violations(pod) == []
    # the same user as the trial, so it can signal it to stop early
    assert collector["securityContext"]["runAsUser"] == 1000


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_the_injected_collector_passes_restricted_in_every_example(path: Path) -> None:
    spec, job = render_example(path)
    kind = ((spec.get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind")
    collectors = 0
    for template in pod_templates(job):
        pod = template.template["spec"]
        for container in pod.get("initContainers") or []:
            collectors += container["name"] != "tunery-checkpoint"  # pbt's copy: not counted
            # the collector judged alone, in the pod it was added to (pod-level fields count)
            alone = {**copy.deepcopy(pod), "containers": [], "initContainers": [container]}
            alone.pop("volumes", None)
            assert restricted_violations(alone) == [], container["name"]
    assert collectors == (0 if kind in ("Push", "Custom") else 1)


# -- NetworkPolicy ----------------------------------------------------------------------------


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (an empty selector selects everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    """A pod as a NetworkPolicy sees it: its namespace (and that namespace's labels) and labels."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def ns_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def admitted(policies: list[dict[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """Whether ingress from ``source`` to ``target``:``port`` (TCP) is allowed."""
    isolating = [
        p
        for p in policies
        if p["metadata"]["namespace"] == target.namespace
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], target.labels)
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(
                p.get("protocol", "TCP") == "TCP" and p.get("port") in (None, port) for p in ports
            ):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    continue
                if "namespaceSelector" in peer:
                    ns_ok = _selects(peer["namespaceSelector"], source.ns_labels())
                else:
                    ns_ok = source.namespace == policy["metadata"]["namespace"]
                if ns_ok and _selects(peer.get("podSelector"), source.labels):
                    return True
    return False


def _pods() -> dict[str, tuple[Pod, int | None]]:
    """Every pod that matters, with the port it serves on (None: serves nothing)."""
    pods: dict[str, tuple[Pod, int | None]] = {}
    for name, template in _workloads().items():
        (container,) = template["spec"]["containers"]
        ports = [
            p["containerPort"]
            for p in container.get("ports", [])
            if p["name"] not in ("health", "metrics")
        ]
        short = name.removeprefix("tunery-")
        pods[short] = (Pod(short, SYSTEM, template["metadata"]["labels"]), (ports or [None])[0])
    _, job = render_example(ROOT / "examples" / "quickstart" / "experiment.yaml", "team-a")
    (trial,) = pod_templates(job)
    pods["trial"] = (Pod("trial", "team-a", trial.template["metadata"]["labels"]), None)
    for template in pod_templates(_pytorch_trial()):  # master and worker replicas
        labels = {**template.template["metadata"]["labels"], **template.derived_labels()}
        pods[f"pytorch-{template.replica_type}"] = (Pod("t", "team-b", labels), None)
    pods["stranger"] = (Pod("stranger", "team-a", {"app": "web"}), None)
    pods["stranger-in-system"] = (Pod("debug", SYSTEM, {"app": "debug"}), None)
    return pods


def _pytorch_trial() -> dict[str, Any]:
    """examples/quickstart's trial as a PyTorchJob with a Master and two Workers, rendered."""
    document = yaml.safe_load((ROOT / "examples" / "quickstart" / "experiment.yaml").read_text())
    trial_spec = document["spec"]["trialTemplate"]["trialSpec"]
    pod = trial_spec["spec"]["template"]
    document["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {"pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "template": copy.deepcopy(pod)},
            "Worker": {"replicas": 2, "template": copy.deepcopy(pod)},
        }},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "experiment.yaml"
        path.write_text(yaml.safe_dump(document))
        _, job = render_example(path, "team-b")
    return job


EXPECTED = {
    ("operator", "suggestion"),
    ("operator", "earlystop"),
    ("trial", "earlystop"),
    ("trial", "db-manager"),
    ("pytorch-Master", "earlystop"),
    ("pytorch-Master", "db-manager"),
    ("pytorch-Worker", "earlystop"),  # every pod template of a trial is labelled
    ("pytorch-Worker", "db-manager"),
    ("operator", "postgres"),
    ("db-manager", "postgres"),
    ("earlystop", "postgres"),
    ("dashboard", "postgres"),
}


def test_network_policies_admit_exactly_the_pods_that_must_talk() -> None:
    policies = [d for d in _documents() if d["kind"] == "NetworkPolicy"]
    pods = _pods()
    assert {"operator", "suggestion", "earlystop", "db-manager", "postgres"} <= set(pods)
    assert pods["trial"][0].labels.get(TRIAL_LABEL)
    allowed = set()
    for target, (target_pod, port) in pods.items():
        if port is None:  # the operator (health port: the kubelet only), trial pods
            continue
        for source, (source_pod, _) in pods.items():
            if source != target and admitted(policies, source_pod, target_pod, port):
                allowed.add((source, target))
    assert allowed == EXPECTED
    # the operator's health port is reached by nobody but the kubelet (from the node)
    operator = pods["operator"][0]
    assert not any(admitted(policies, p, operator, 8080) for p, _ in pods.values())
    # the right ports only
    assert not admitted(policies, pods["trial"][0], pods["db-manager"][0], 5432)
    # metrics (:9090): Prometheus in namespace monitoring, and no pod of tunery or its trials
    prometheus = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
    for target in ("operator", "suggestion", "earlystop", "db-manager"):
        assert admitted(policies, prometheus, pods[target][0], 9090), target
        assert not any(admitted(policies, p, pods[target][0], 9090) for p, _ in pods.values())
    assert not admitted(policies, prometheus, pods["postgres"][0], 9090)
    assert not admitted(policies, prometheus, pods["db-manager"][0], 6789)


def test_the_policy_model_is_not_vacuous() -> None:
    """Without policies everything is admitted; a namespaceSelector-less peer stays local."""
    pods = _pods()
    trial, _ = pods["trial"]
    target, port = pods["db-manager"]
    assert admitted([], trial, target, port or 0)
    local_only = {
        "metadata": {"namespace": SYSTEM},
        "spec": {
            "podSelector": {},
            "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                {"key": TRIAL_LABEL, "operator": "Exists"}]}}]}],
        },
    }  # fmt: skip
    assert not admitted([local_only], trial, target, port or 0)


# -- servers listen beyond loopback -----------------------------------------------------------


def _serve_argvs() -> list[tuple[str, list[str]]]:
    found = []
    for name, template in _workloads().items():
        for container in template["spec"]["containers"]:
            argv = [*container.get("command", []), *container.get("args", [])]
            if argv[:2] == ["tunery", "serve"]:
                found.append((name, argv[1:]))
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT") and '"serve"' in line:
            argv = yaml.safe_load(line.removeprefix("ENTRYPOINT"))
            found.append((f"Dockerfile {argv[2]}", argv[1:]))
    return found


def test_every_server_is_told_to_listen_on_all_interfaces() -> None:
    import click

    from tunery.cli import main

    argvs = _serve_argvs()
    assert len(argvs) == 6  # three Deployments, three Dockerfile targets
    for where, args in argvs:
        # explicit: `tunery serve` listens on loopback only by default
        assert "--host" in args and args[args.index("--host") + 1] == "0.0.0.0", where
        ctx = main.make_context("tunery", list(args), resilient_parsing=True)
        serve = main.get_command(ctx, args[0])
        assert isinstance(serve, click.Group), where
        serve_ctx = serve.make_context("serve", list(args[1:]), parent=ctx)
        command = serve.get_command(serve_ctx, args[1])
        assert command is not None, where
        params = command.make_context(args[1], list(args[2:]), parent=serve_ctx).params
        assert params["host"] == "0.0.0.0", where


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_kustomization_installs_the_policies_and_no_secret() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = [d["kind"] for d in documents]
    assert kinds.count("NetworkPolicy") == 6 and "Secret" not in kinds
    assert _credential_problems(documents) == []
    for doc in documents:
        if doc["kind"] in WORKLOAD_KINDS:
            assert restricted_violations(doc["spec"]["template"]["spec"]) == [], doc["kind"]


def test_the_collector_user_is_the_image_user() -> None:
    """The collector's default uid is the one the image runs as, as the services do."""
    (user,) = re.findall(r"^USER (\d+)", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert int(user) == COLLECTOR_UID
    for name, template in _workloads().items():
        if name != "tunery-postgres":
            assert template["spec"]["securityContext"]["runAsUser"] == COLLECTOR_UID, name
