"""The install manifests and the rendered trial jobs against the Kubernetes OpenAPI schema.

Offline (kubernetes-validate ships the schemas): every document under ``deploy/`` validates;
the CRDs are exactly what ``tools/gen_crds.py`` generates from the spec model; every example
Experiment validates against the generated Experiment CRD schema, and renders — for a trial,
with the collector sidecar — to jobs that validate.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from trial_render import render_example

from controller.sidecar import pod_templates

ROOT = Path(__file__).resolve().parents[2]
VERSION = kubernetes_validate.latest_version()
MANIFESTS = sorted((ROOT / "deploy").rglob("*.yaml"))
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "trialSpec" in p.read_text())


def _gen_crds() -> Any:
    spec = importlib.util.spec_from_file_location("gen_crds", ROOT / "tools" / "gen_crds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_manifests_and_examples() -> None:
    names = {p.name for p in MANIFESTS}
    assert {"kustomization.yaml", "operator.yaml", "postgres.yaml", "rbac.yaml"} <= names
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", MANIFESTS, ids=[str(p.relative_to(ROOT)) for p in MANIFESTS])
def test_manifest_validates(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for document in documents:
        if document["kind"] == "Kustomization":
            for resource in document["resources"]:
                assert (path.parent / resource).is_file(), resource
            continue
        if document["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # the Prometheus Operator's kinds: checked by the test below
        kubernetes_validate.validate(document, VERSION, strict=True)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_the_service_monitor_scrapes_every_metrics_port() -> None:
    """The ServiceMonitor selects the Service of every workload that serves metrics, by the
    port name its endpoint names; every such pod has the scrape annotations and passes
    --metrics-port (or TUNERY_METRICS_PORT) for the port it declares."""
    documents = [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]
    (monitor,) = [d for d in documents if d["kind"] == "ServiceMonitor"]
    assert set(monitor["spec"]) == {"namespaceSelector", "selector", "endpoints"}
    (endpoint,) = monitor["spec"]["endpoints"]
    services = [
        d
        for d in documents
        if d["kind"] == "Service"
        and d["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
        and _selects(monitor["spec"]["selector"], d["metadata"].get("labels") or {})
    ]
    names = {s["metadata"]["name"] for s in services}
    assert names == {
        "tunery-operator",
        "tunery-suggestion",
        "tunery-earlystop",
        "tunery-db-manager",
    }
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    for service in services:
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        pod = deployments[service["metadata"]["name"]]["spec"]["template"]
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port["targetPort"])
        (container,) = pod["spec"]["containers"]
        declared = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert declared["metrics"] == port["targetPort"]
        args = container.get("args", [])
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        served = (
            args[args.index("--metrics-port") + 1]
            if "--metrics-port" in args
            else env.get("TUNERY_METRICS_PORT")
        )
        assert served == str(port["targetPort"]), service["metadata"]["name"]


def test_the_crds_are_generated_from_the_spec_model() -> None:
    gen = _gen_crds()
    for name, document in gen.definitions().items():
        assert (ROOT / "deploy" / "crds" / name).read_text() == gen.render(document), (
            f"deploy/crds/{name} is stale: run python tools/gen_crds.py"
        )


def _structural_problems(node: Any, path: str = "") -> list[str]:
    """Kubernetes' structural-schema rules that kubernetes-validate does not check."""
    problems = []
    if not isinstance(node, dict):
        return problems
    if (
        "type" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and not node.get("x-kubernetes-int-or-string")
    ):
        problems.append(f"{path or '/'}: no type")
    for banned in ("$ref", "anyOf", "oneOf", "allOf", "const"):
        if banned in node:
            problems.append(f"{path}: {banned}")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties beside additionalProperties")
    for key, sub in (node.get("properties") or {}).items():
        problems += _structural_problems(sub, f"{path}/{key}")
    if isinstance(node.get("items"), dict):
        problems += _structural_problems(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _structural_problems(node["additionalProperties"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize("name", ["experiments", "trials", "suggestions"])
def test_crd_schemas_are_structural_with_status_and_columns(name: str) -> None:
    crd = yaml.safe_load((ROOT / "deploy" / "crds" / f"{name}.yaml").read_text())
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Status", "Age"} <= columns
    assert _structural_problems(version["schema"]["openAPIV3Schema"]) == []


def _crd_validator() -> jsonschema.Validator:
    crd = yaml.safe_load((ROOT / "deploy" / "crds" / "experiments.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_example_is_accepted_by_the_crd_and_renders_valid_jobs(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    errors = sorted(_crd_validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]

    spec, built = render_example(path)
    if built["apiVersion"] == "batch/v1":
        kubernetes_validate.validate(built, VERSION, strict=True)
    for t in pod_templates(built):  # every pod template, whatever the kind
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **t.template}
        kubernetes_validate.validate(pod, VERSION, strict=True)
    collector = spec.get("metricsCollectorSpec") or {}
    containers = [
        c for t in pod_templates(built) for c in t.template["spec"].get("initContainers", [])
    ]
    if ((collector.get("collector") or {}).get("kind") or "StdOut") != "Push":
        assert containers, "no collector sidecar was added"
    text = yaml.safe_dump(built)
    assert "${trialParameters." not in text


def test_examples_cover_the_gpu_request() -> None:
    text = (ROOT / "examples" / "pytorch-digits" / "experiment.yaml").read_text()
    assert re.search(r"nvidia\.com/gpu", text)


def _grpc_probes() -> list[tuple[str, str, str]]:
    """(component served by ``tunery serve``, probe kind, health service name) of every gRPC
    probe in deploy/."""
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                args = container.get("args", [])
                if container.get("command") != ["tunery"] or args[:1] != ["serve"]:
                    continue
                for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if "grpc" in container.get(kind, {}):
                        found.append((args[1], kind, container[kind]["grpc"].get("service", "")))
    return found


def test_every_grpc_probe_names_a_health_service_the_server_answers(tmp_path: Path) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from earlystop.server import create_earlystop_server
    from metrics_collector.dbmanager import create_dbmanager_server
    from suggestion.server import create_suggestion_server
    from tunery.store import open_store

    probes = _grpc_probes()
    assert {component for component, _, _ in probes} == {"suggestion", "earlystop", "dbmanager"}
    store = open_store(f"sqlite:///{tmp_path / 'probe.db'}")
    factories = {
        "suggestion": lambda: create_suggestion_server("127.0.0.1:0", max_workers=2),
        "earlystop": lambda: create_earlystop_server("127.0.0.1:0", store),
        "dbmanager": lambda: create_dbmanager_server("127.0.0.1:0", store, max_workers=2),
    }
    try:
        for component, factory in factories.items():
            server, port = factory()
            server.start()
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    for probed, kind, service in probes:
                        if probed != component:
                            continue
                        request = health_pb2.HealthCheckRequest(service=service)
                        reply = stub.Check(request, timeout=10)
                        assert reply.status == health_pb2.HealthCheckResponse.SERVING, (
                            component,
                            kind,
                            service,
                        )
            finally:
                server.stop(None)
    finally:
        store.close()


def test_liveness_does_not_follow_the_database() -> None:
    """A database outage must make the store-backed services unready, not restart them."""
    for component, kind, service in _grpc_probes():
        if component in ("earlystop", "dbmanager") and kind == "livenessProbe":
            assert service == "tunery.Liveness", (component, service)
