"""``tunery operator`` as its own process (real kopf, real watches) on the fake API server.

The fake cluster, the Suggestion and DBManager services and the operator run as processes
(:class:`e2e_stack.Stack`, shared by the module); each test has its own namespace and plays the
kubelet (:class:`e2e_stack.Kubelet`): Jobs complete, metrics arrive through the DBManager as
Katib's ``report_metrics`` sends them. Scenarios: Created -> Running -> Succeeded (with the
operator's Prometheus metrics scraped); the budget lowered and raised; deletion through the
finalizer; the operator killed mid-experiment and restarted; two Experiments named ``mnist`` in
two namespaces, each with its own trials; two replicas, where only the Lease
holder acts and the other takes over when it is killed.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_stack import ROOT, Kubelet, Stack, wait_for
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from tunery.store import open_store
from tunery.store.errors import NotFoundError

pytestmark = pytest.mark.slow

GROUP, VERSION = "kubeflow.org", "v1beta1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("e2e"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture()
def namespace(stack: Stack) -> str:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    k8s_client.CoreV1Api(stack.api_client()).create_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


@pytest.fixture()
def crs(stack: Stack) -> k8s_client.CustomObjectsApi:
    return k8s_client.CustomObjectsApi(stack.api_client())


def experiment(name: str, **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples/quickstart/experiment.yaml").read_text())
    doc["metadata"] = {"name": name}
    doc["spec"].update(
        parallelTrialCount=1,
        maxTrialCount=3,
        maxFailedTrialCount=1,
        metricsCollectorSpec={"collector": {"kind": "Push"}},
    )
    doc["spec"].update(spec)
    return doc


def loss_of(parameters: dict[str, str]) -> dict[str, float]:
    lr = float(parameters["lr"])
    return {"loss": lr, "accuracy": 1 - lr}


def get(
    crs: k8s_client.CustomObjectsApi, namespace: str, plural: str, name: str
) -> dict[str, Any]:
    return crs.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


def finished(crs: k8s_client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    body = get(crs, namespace, "experiments", name)
    return body if conditions(body).get("Succeeded") == "True" else None


def trials(crs: k8s_client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    return crs.list_namespaced_custom_object(GROUP, VERSION, namespace, "trials")["items"]


def test_created_running_succeeded(stack: Stack, namespace: str, crs: Any) -> None:
    crs.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "experiments", experiment("quick", parallelTrialCount=2)
    )
    with Kubelet(stack, namespace, loss_of) as kubelet:
        body = wait_for("Succeeded", lambda: finished(crs, namespace, "quick"), 30, stack=stack)
    assert not kubelet.errors
    assert set(conditions(body)) >= {"Created", "Running", "Succeeded"}
    status = body["status"]
    assert status["trialsSucceeded"] == 3 and len(kubelet.seen) == 3
    assert FINALIZER in body["metadata"]["finalizers"]
    owned = trials(crs, namespace)
    assert {t["metadata"]["name"] for t in owned} == set(kubelet.seen)
    assert all(
        t["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"] for t in owned
    )
    best = min(owned, key=lambda t: float(t["status"]["observation"]["metrics"][0]["latest"]))
    assert status["currentOptimalTrial"]["bestTrialName"] == best["metadata"]["name"]
    # Katib's counters, by namespace, counted once per transition however many passes ran
    samples = stack.metrics()
    ns = frozenset({("namespace", namespace)})
    assert samples[("katib_experiment_created_total", ns)] == 1
    assert samples[("katib_experiment_succeeded_total", ns)] == 1
    assert samples[("katib_trial_created_total", ns)] == 3
    assert samples[("katib_trial_succeeded_total", ns)] == 3
    assert samples.get(("katib_trial_failed_total", ns), 0) == 0
    assert samples[("tunery_reconcile_duration_seconds_count", ns)] >= 2
    current = ns | {("status", "Succeeded")}
    assert samples[("katib_experiments_current", current)] == 1
    assert samples[("katib_trials_current", current)] == 3
    wait_for(
        "finished Jobs deleted",
        lambda: not k8s_client.BatchV1Api(stack.api_client()).list_namespaced_job(namespace).items,
        10,
        stack=stack,
    )


def test_the_same_name_in_two_namespaces(stack: Stack, namespace: str, crs: Any) -> None:
    """Two Experiments named ``mnist``, in namespaces a and b, both run to completion with
    their own trials: the store keys experiments and trials by namespace and name, and the
    DBManager finds each trial's namespace from its name (Katib's wire carries no namespace)."""
    a, b = namespace, f"{namespace}-b"
    k8s_client.CoreV1Api(stack.api_client()).create_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": b}}
    )
    for ns in (a, b):
        crs.create_namespaced_custom_object(
            GROUP, VERSION, ns, "experiments", experiment("mnist", parallelTrialCount=2)
        )
    with Kubelet(stack, a, loss_of) as kubelet_a, Kubelet(stack, b, loss_of) as kubelet_b:
        done = {}
        for ns in (a, b):
            done[ns] = wait_for(
                f"mnist in {ns} Succeeded",
                lambda ns=ns: finished(crs, ns, "mnist"),
                40,
                stack=stack,
            )
    assert not kubelet_a.errors and not kubelet_b.errors
    store = open_store(stack.db_url)
    try:
        names = {}
        for ns, kubelet in ((a, kubelet_a), (b, kubelet_b)):
            status = done[ns]["status"]
            assert status["trialsSucceeded"] == 3, status
            names[ns] = {t["metadata"]["name"] for t in trials(crs, ns)}
            assert names[ns] == set(kubelet.seen)
            stored = store.in_namespace(ns).list_trials("mnist")
            assert {t.name for t in stored} == names[ns]
            assert all(t.observation.get("metrics") for t in stored)  # metrics reached them
            assert status["currentOptimalTrial"]["bestTrialName"] in names[ns]
        assert not names[a] & names[b]
        assert store.list_experiments() == []  # the default namespace holds neither
    finally:
        store.close()


def test_budget_lowered_then_raised(stack: Stack, namespace: str, crs: Any) -> None:
    crs.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "experiments",
        experiment("budget", maxTrialCount=5, resumePolicy="LongRunning"),
    )
    with Kubelet(stack, namespace, loss_of, hold=True) as kubelet:
        wait_for("the first Job", lambda: kubelet.seen, 15, stack=stack)
        kubelet.release()
        wait_for("the second Job", lambda: len(kubelet.seen) == 2, 15, stack=stack)
        crs.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "experiments", "budget", {"spec": {"maxTrialCount": 2}}
        )
        kubelet.release()
        body = wait_for(
            "Succeeded at 2", lambda: finished(crs, namespace, "budget"), 15, stack=stack
        )
        assert body["status"]["trialsSucceeded"] == 2
        time.sleep(1.5)  # three passes: no third trial is started
        assert len(kubelet.seen) == 2 and len(trials(crs, namespace)) == 2

        crs.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "experiments", "budget", {"spec": {"maxTrialCount": 3}}
        )
        wait_for("a third Job", lambda: len(kubelet.seen) == 3, 15, stack=stack)
        kubelet.release()
        body = wait_for(
            "Succeeded at 3",
            lambda: (
                (b := finished(crs, namespace, "budget"))
                and b["status"].get("trialsSucceeded") == 3
                and b
            ),
            15,
            stack=stack,
        )
    assert not kubelet.errors
    assert len(trials(crs, namespace)) == 3


def test_deletion_through_the_finalizer(stack: Stack, namespace: str, crs: Any) -> None:
    crs.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "experiments", experiment("doomed", parallelTrialCount=2)
    )
    batch = k8s_client.BatchV1Api(stack.api_client())
    with Kubelet(stack, namespace, loss_of, hold=True) as kubelet:
        wait_for("two running Jobs", lambda: len(kubelet.seen) == 2, 15, stack=stack)
        body = get(crs, namespace, "experiments", "doomed")
        assert FINALIZER in body["metadata"]["finalizers"]
        started = time.monotonic()
        crs.delete_namespaced_custom_object(GROUP, VERSION, namespace, "experiments", "doomed")

        def gone() -> bool:
            try:
                get(crs, namespace, "experiments", "doomed")
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_for("the Experiment removed", gone, 15, stack=stack)
        elapsed = time.monotonic() - started
    print(f"deletion through the finalizer: {elapsed:.2f} s")  # docs/kubernetes.md quotes it
    assert elapsed < 5, f"finalizer released after {elapsed:.1f} s"
    assert trials(crs, namespace) == []  # garbage-collected with their owner
    assert batch.list_namespaced_job(namespace).items == []
    assert (
        crs.list_namespaced_custom_object(GROUP, VERSION, namespace, "suggestions")["items"] == []
    )
    store = open_store(stack.db_url)
    try:
        with pytest.raises(NotFoundError):
            store.in_namespace(namespace).get_experiment("doomed")
    finally:
        store.close()


def test_operator_killed_mid_experiment_and_restarted(
    stack: Stack, namespace: str, crs: Any
) -> None:
    crs.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "experiments", experiment("phoenix", maxTrialCount=3)
    )
    with Kubelet(stack, namespace, loss_of, hold=True) as kubelet:
        wait_for("the first Job", lambda: kubelet.seen, 15, stack=stack)
        stack.kill_operator()
        kubelet.release()  # the trial finishes while no operator runs
        wait_for("the first Job complete", lambda: kubelet.finished, 5)
        stack.start_operator()
        kubelet.release(2)
        body = wait_for("Succeeded", lambda: finished(crs, namespace, "phoenix"), 30, stack=stack)
    assert not kubelet.errors
    assert body["status"]["trialsSucceeded"] == 3
    assert len(kubelet.seen) == 3  # no Job launched twice, none lost
    for trial in trials(crs, namespace):
        assert conditions(trial).get("Succeeded") == "True", trial["status"]
        assert "True" not in {conditions(trial).get("Failed"), conditions(trial).get("Running")}


def test_a_job_deleted_by_hand_is_created_again(stack: Stack, namespace: str, crs: Any) -> None:
    """As Katib does: the trial of a Job deleted by hand gets its Job again (same name, new
    uid) and goes on; it is not failed."""
    crs.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "experiments", experiment("handmade", maxTrialCount=2)
    )
    batch = k8s_client.BatchV1Api(stack.api_client())

    def recreated(name: str, uid: str) -> bool:
        jobs = batch.list_namespaced_job(namespace).items
        return any(j.metadata.name == name and j.metadata.uid != uid for j in jobs)

    with Kubelet(stack, namespace, loss_of, hold=True) as kubelet:
        wait_for("the first Job", lambda: kubelet.seen, 15, stack=stack)
        ((name, uid),) = list(kubelet.seen.items())
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        wait_for("the Job created again", lambda: recreated(name, uid), 20, stack=stack)
        kubelet.release(2)
        body = wait_for("Succeeded", lambda: finished(crs, namespace, "handmade"), 30, stack=stack)
    assert not kubelet.errors
    assert body["status"]["trialsSucceeded"] == 2
    assert not body["status"].get("trialsFailed")
    assert name in kubelet.finished
    for trial in trials(crs, namespace):
        assert conditions(trial).get("Succeeded") == "True", trial["status"]


def lease_holder(stack: Stack) -> tuple[str, int]:
    spec = (
        k8s_client.CoordinationV1Api(stack.api_client())
        .read_namespaced_lease("tunery-operator", "default")
        .spec
    )
    return spec.holder_identity or "", spec.lease_transitions or 0


def reporters(stack: Stack, namespace: str, reason: str) -> list[str]:
    """Which replica posted each event with ``reason`` in ``namespace``, oldest first."""
    events = k8s_client.CoreV1Api(stack.api_client()).list_namespaced_event(namespace).items
    events.sort(key=lambda e: (e.metadata.creation_timestamp, e.metadata.resource_version))
    return [e.reporting_instance for e in events if e.reason == reason]


def test_two_replicas_one_leads_and_the_other_takes_over(
    stack: Stack, namespace: str, crs: Any
) -> None:
    stack.start_operator("standby")
    wait_for(
        "the standby waiting for the Lease",
        lambda: "standing by: the Lease" in stack.log("standby"),
        30,
        stack=stack,
    )
    leader, transitions = lease_holder(stack)
    assert leader and leader in stack.log("operator")
    crs.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "experiments", experiment("twins", maxTrialCount=3)
    )
    ns = frozenset({("namespace", namespace)})
    with Kubelet(stack, namespace, loss_of, hold=True) as kubelet:
        wait_for("the first Job", lambda: kubelet.seen, 15, stack=stack)
        time.sleep(1.0)  # two passes of each replica's interval: a standby acting would show
        assert reporters(stack, namespace, "TrialCreated") == [leader]
        assert stack.metrics()[("katib_trial_created_total", ns)] == 1
        standby = stack.metrics("standby")  # it serves metrics while it waits, and did nothing
        assert ("katib_trial_created_total", ns) not in standby
        assert ("katib_experiment_created_total", ns) not in standby

        stack.kill_operator()  # SIGKILL: no release; the standby waits out the lease duration
        kubelet.release(3)
        body = wait_for("Succeeded", lambda: finished(crs, namespace, "twins"), 40, stack=stack)
    assert not kubelet.errors
    successor, after = lease_holder(stack)
    assert successor not in ("", leader) and successor in stack.log("standby")
    assert after == transitions + 1
    assert body["status"]["trialsSucceeded"] == 3
    assert len(kubelet.seen) == 3  # no Job created twice
    created = reporters(stack, namespace, "TrialCreated")
    assert created == [leader, successor, successor]
    assert stack.metrics("standby")[("katib_trial_created_total", ns)] == 2

    # a clean stop (SIGTERM) releases the Lease: a new replica leads without waiting it out
    standby = stack.processes.pop("standby")
    standby.terminate()
    assert standby.wait(timeout=15) == 0
    assert lease_holder(stack)[0] == ""
    log_before = len(stack.log("operator"))
    stack.start_operator()
    wait_for("a new leader", lambda: lease_holder(stack)[0], 15, stack=stack)
    assert "standing by" not in stack.log("operator")[log_before:]  # it found the Lease free


def test_a_leader_that_loses_the_lease_stops_and_exits(stack: Stack, namespace: str) -> None:
    """The Lease taken from under the leader (a partition healed the other way): it stops
    reconciling within its renew deadline and exits 3, so its pod restarts as a standby."""
    coordination = k8s_client.CoordinationV1Api(stack.api_client())
    leader, _ = lease_holder(stack)
    current = coordination.read_namespaced_lease("tunery-operator", "default")
    coordination.patch_namespaced_lease(
        "tunery-operator",
        "default",
        {
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "spec": {"holderIdentity": "intruder", "renewTime": _micro_now()},
        },
    )
    process = stack.processes.pop("operator")
    wait_for("the leader to exit", lambda: process.poll() is not None, 15, stack=stack)
    assert process.returncode == 3, stack.log("operator")[-2000:]
    assert "lost the Lease default/tunery-operator" in stack.log("operator")
    assert lease_holder(stack)[0] == "intruder"  # it did not write over the new holder
    stack.start_operator()  # waits out the intruder's silent Lease, then leads
    wait_for(
        "a new leader",
        lambda: lease_holder(stack)[0] not in ("intruder", leader, ""),
        15,
        stack=stack,
    )


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


FINALIZER = "tunery.io/finalizer"


KATIB_SDK = ("kubeflow-katib==0.19.0", "kubernetes==31.0.0")  # the client the SDK supports


@pytest.fixture(scope="module")
def katib_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with Katib's SDK, made for this run (skipped when no index answers)."""
    venv = tmp_path_factory.mktemp("katib-sdk") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *KATIB_SDK],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if install.returncode != 0:
        pytest.skip(f"cannot install {' '.join(KATIB_SDK)}: {install.stderr.strip()[-300:]}")
    return python


def test_katibs_sdk_drives_the_operator(
    stack: Stack, namespace: str, crs: Any, katib_python: Path, tmp_path: Path
) -> None:
    def push_with_katib(trial: str, metrics: dict[str, float]) -> None:
        code = (  # in a pod, the namespace comes from the service account's mounted file
            "import sys, json, kubeflow.katib as k, kubeflow.katib.utils.utils as u; "
            "u.get_current_k8s_namespace = lambda: sys.argv[3]; "
            "k.report_metrics(json.loads(sys.argv[1]), db_manager_address=sys.argv[2])"
        )
        address = f"127.0.0.1:{stack.dbmanager_port}"
        env = {**stack.env, "KATIB_TRIAL_NAME": trial}
        subprocess.run(
            [str(katib_python), "-c", code, json.dumps(metrics), address, namespace],
            env=env,
            check=True,
            timeout=60,
        )

    dbmanager = f"127.0.0.1:{stack.dbmanager_port}"
    document = experiment("sdk", maxTrialCount=2, resumePolicy="LongRunning")
    document["metadata"]["namespace"] = namespace
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(document))
    script = Path(__file__).parent / "katib_sdk_script.py"
    with Kubelet(stack, namespace, loss_of, push=push_with_katib) as kubelet:
        run = subprocess.run(
            [str(katib_python), str(script), namespace, str(path), dbmanager],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr[-3000:] + stack.log("operator")[-2000:]
    assert not kubelet.errors, kubelet.errors
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["created"] and seen["deleted"]
    assert seen["trials"] == seen["success_trials"] and len(seen["trials"]) == 2
    assert seen["best_trial"] in seen["trials"] and set(seen["best_parameters"]) == {
        "lr",
        "momentum",
    }
    assert seen["trials_after_edit"] == 3
    assert seen["best_trial_metrics"], seen  # what report_metrics stored, read back
    lr = float(seen["best_parameters"]["lr"])
    assert ("loss", pytest.approx(lr)) in [tuple(m) for m in seen["best_trial_metrics"]]


def test_katibs_sdk_tune_runs_its_here_document_script(
    stack: Stack, namespace: str, katib_python: Path, tmp_path: Path
) -> None:
    """Katib's tune() puts the objective's source in a bash here-document with the values
    substituted into it; the test's kubelet runs each rendered container here (bash, the
    collector's wrapper, python3) and pushes the metrics it printed."""
    script = Path(__file__).parent / "katib_sdk_script.py"
    with Kubelet(stack, namespace, loss_of, execute=tmp_path / "pods") as kubelet:
        run = subprocess.run(
            [str(katib_python), str(script), "tune", namespace, "sdk-tune"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert run.returncode == 0, run.stderr[-3000:] + stack.log("operator")[-2000:]
    assert not kubelet.errors, kubelet.errors
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(seen["trials"]) == 2 and seen["best_trial"] in seen["trials"]
    lr = float(seen["best_parameters"]["lr"])
    assert 0.01 <= lr <= 0.05
    printed = "".join(kubelet.outputs.values())
    assert printed.count("loss=") == 2, printed  # each trial ran the objective with its value
