"""The processes of the kopf end-to-end tests, and the test's kubelet.

Used by ``test_kopf_e2e.py``, ``test_kopf_trial_kinds.py`` and ``test_kopf_katib_examples.py``.
:class:`Stack` starts, each as its own process, the fake API server (``python -m
tests.kubernetes.fake_cluster``), tunery's Suggestion, DBManager and EarlyStopping gRPC
services (the first two on one SQLite store), and ``tunery operator`` (real kopf, real
watches) pointed at
them; the operator can be killed (SIGKILL) and started again, and more replicas started beside it
(they elect a leader through a Lease with short timings; each serves its metrics on its own
port, :attr:`Stack.metrics_ports`). :class:`Kubelet` plays the
kubelet and Job controller for one namespace: it marks new Jobs active, and for each Job it
releases, pushes the trial's metrics through the DBManager exactly as Katib's
``katib.report_metrics`` does (one ``ReportObservationLog``, string values, RFC 3339 time),
then writes the Job's ``Complete`` status. With ``execute`` it runs the primary container's
rendered argv here and pushes what it printed; with ``collect`` it runs the whole pod (the
collector sidecar beside the trial, which then pushes itself); with ``training`` it plays the
training operator for that kind instead of the Job controller.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from kubernetes import client as k8s_client
from prometheus_client.parser import text_string_to_metric_families

from tunery.api import api_pb2, api_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
V1B1 = "kubeflow.org/v1beta1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """Fake cluster + Suggestion + DBManager + operator, as processes, under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.db_url = f"sqlite:///{workdir / 'tunery.db'}"
        self.suggestion_port = free_port()
        self.dbmanager_port = free_port()
        self.earlystop_port = free_port()
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "KUBECONFIG": str(self.kubeconfig)}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""
        self.operator_starts = 0
        self.metrics_ports: dict[str, int] = {}

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        self._spawn(
            "apiserver",
            [
                "-m",
                "tests.kubernetes.fake_cluster",
                "--port",
                "0",
                "--kubeconfig",
                str(self.kubeconfig),
                "--crds",
                "deploy/crds",
                "--crds",
                "tests/kubernetes/crds",
            ],
        )
        self._spawn(
            "suggestion",
            ["-m", "tunery.cli", "serve", "suggestion", "--port", str(self.suggestion_port)],
        )
        self._spawn(
            "dbmanager",
            [
                "-m",
                "tunery.cli",
                "serve",
                "dbmanager",
                "--port",
                str(self.dbmanager_port),
                "--db",
                self.db_url,
            ],
        )
        self._spawn(
            "earlystop",
            [
                "-m",
                "tunery.cli",
                "serve",
                "earlystop",
                "--port",
                str(self.earlystop_port),
                "--db-manager-address",
                f"127.0.0.1:{self.dbmanager_port}",
            ],
        )
        deadline = time.monotonic() + 30
        while not (match := re.search(r"serving on (\S+)", self.log("apiserver"))):
            if time.monotonic() > deadline or self.processes["apiserver"].poll() is not None:
                raise RuntimeError(f"the fake API server did not start:\n{self.log('apiserver')}")
            time.sleep(0.05)
        self.url = match.group(1)
        self.start_operator()

    def start_operator(self, name: str = "operator") -> None:
        self.operator_starts += 1
        self.metrics_ports[name] = free_port()
        env = {
            **self.env,
            "TUNERY_SUGGESTION_ADDRESS": f"127.0.0.1:{self.suggestion_port}",
            "TUNERY_DB_MANAGER_ADDRESS": f"127.0.0.1:{self.dbmanager_port}",
            "TUNERY_EARLYSTOP_ADDRESS": f"127.0.0.1:{self.earlystop_port}",
            "TUNERY_RECONCILE_INTERVAL": "0.5",
            "TUNERY_COLLECTOR_IMAGE": "tunery:e2e",
            "TUNERY_METRICS_PORT": str(self.metrics_ports[name]),
            "TUNERY_LEASE_DURATION": "3",
            "TUNERY_LEASE_RENEW_DEADLINE": "2",
            "TUNERY_LEASE_RETRY_PERIOD": "0.3",
        }
        self._spawn(name, ["-m", "tunery.cli", "operator", "--db", self.db_url], env)

    def metrics(
        self, name: str = "operator"
    ) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """The samples operator ``name`` serves on its metrics port (Prometheus text)."""
        url = f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def kill_operator(self, name: str = "operator") -> None:
        """SIGKILL: no cleanup handler runs, as when a node dies."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()

    def api_client(self) -> k8s_client.ApiClient:
        config = k8s_client.Configuration()
        config.host = self.url
        return k8s_client.ApiClient(config)

    def report_metrics(self, trial: str, metrics: dict[str, float]) -> None:
        """What ``katib.report_metrics(metrics)`` sends from inside trial ``trial``."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        request = api_pb2.ReportObservationLogRequest(
            trial_name=trial,
            observation_log=api_pb2.ObservationLog(
                metric_logs=[
                    api_pb2.MetricLog(time_stamp=now, metric=api_pb2.Metric(name=k, value=str(v)))
                    for k, v in metrics.items()
                ]
            ),
        )
        with grpc.insecure_channel(f"127.0.0.1:{self.dbmanager_port}") as channel:
            api_pb2_grpc.DBManagerStub(channel).ReportObservationLog(request, timeout=10)


class Kubelet:
    """The kubelet and Job controller of one namespace, in a background thread.

    New Jobs become active at once. With ``hold`` a Job finishes only after :meth:`release`
    (one at a time, oldest first); without, it finishes at the next tick. A finishing Job's
    metrics (``metrics(parameters)``, parameters parsed from ``--name=value`` arguments) are
    pushed (``push``, default :meth:`Stack.report_metrics`) before its status says Complete, as
    a trial's would be.
    """

    def __init__(
        self,
        stack: Stack,
        namespace: str,
        metrics: Callable[[dict[str, str]], dict[str, float]],
        *,
        hold: bool = False,
        push: Callable[[str, dict[str, float]], None] | None = None,
        execute: Path | None = None,
        collect: bool = False,
        training: tuple[str, str, str] | None = None,
    ) -> None:
        self.stack, self.namespace, self.metrics, self.hold = stack, namespace, metrics, hold
        self.push = push or stack.report_metrics
        self.execute = execute
        self.collect = collect
        self.training = training  # (group, version, plural) of a training-operator kind
        self.crs = k8s_client.CustomObjectsApi(stack.api_client())
        self.collector_outputs: dict[str, str] = {}  # job name -> what its collector printed
        self.outputs: dict[str, str] = {}  # job name -> what its container printed
        self.batch = k8s_client.BatchV1Api(stack.api_client())
        self.seen: dict[str, str] = {}  # job name -> uid
        self.finished: list[str] = []
        self._releases = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=f"kubelet-{namespace}", daemon=True)

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def release(self, count: int = 1) -> None:
        with self._lock:
            self._releases += count

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self._tick()
            except BaseException as exc:  # surfaced by the test through .errors
                self.errors.append(exc)

    def _tick(self) -> None:
        if self.training is not None:
            self._tick_training()
            return
        jobs = self.batch.list_namespaced_job(self.namespace).items
        for job in sorted(jobs, key=lambda j: j.metadata.creation_timestamp):
            name = job.metadata.name
            if job.metadata.deletion_timestamp or name in self.finished:
                continue
            if self.seen.get(name) != job.metadata.uid:  # new, or created again by that name
                self.seen[name] = job.metadata.uid
                self._status(name, {"active": 1, "startTime": _now()})
                continue
            with self._lock:
                if self.hold and self._releases <= 0:
                    return
                self._releases -= 1
            containers = job.spec.template.spec.containers
            if self.collect:
                self._run_pod(name, job.spec.template.spec)
            elif self.execute is not None:
                self.push(name, self._run_container(name, containers[0]))
            else:
                args = " ".join(" ".join((c.command or []) + (c.args or [])) for c in containers)
                parameters = dict(re.findall(r"--([\w-]+)=(\S+)", args))
                self.push(name, self.metrics(parameters))
            condition = {
                "type": "Complete",
                "status": "True",
                "lastProbeTime": _now(),
                "lastTransitionTime": _now(),
            }
            self._status(
                name,
                {"active": 0, "succeeded": 1, "completionTime": _now(), "conditions": [condition]},
            )
            self.finished.append(name)

    def _run_container(self, name: str, container: Any) -> dict[str, float]:
        """Run the container's argv as rendered (wrapper and all) here, in a folder of its own
        under ``execute`` standing in for the image's file system, and read the Katib
        ``name=value`` metrics it prints."""
        folder = self.execute / name  # type: ignore[operator]
        folder.mkdir(parents=True, exist_ok=True)
        env = {e.name: e.value or "" for e in container.env or []}
        env.update(
            PATH=os.environ["PATH"],
            HOME=str(folder),
            TMPDIR=str(folder),
            TUNERY_METRICS_DIR=str(folder / "katib"),
            TUNERY_METRICS_FILE=str(folder / "katib" / "metrics.log"),
        )
        run = subprocess.run(
            [*(container.command or []), *(container.args or [])],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.outputs[name] = run.stdout + run.stderr
        if run.returncode != 0:
            raise AssertionError(f"job {name} exited {run.returncode}: {self.outputs[name]}")
        found = re.findall(r"^([\w-]+)=([-+0-9.eE]+)\s*$", run.stdout, re.MULTILINE)
        return {metric: float(value) for metric, value in found}

    def _tick_training(self) -> None:
        """The training operator of ``training``'s kind: each new job runs the pod of its
        master replica (Master, Chief or Launcher: the one carrying the collector) with
        :meth:`_run_pod`, then its status says Succeeded, as the training operator writes it."""
        group, version, plural = self.training  # type: ignore[misc]
        listed = self.crs.list_namespaced_custom_object(group, version, self.namespace, plural)
        for job in listed["items"]:
            name = job["metadata"]["name"]
            if job["metadata"].get("deletionTimestamp") or name in self.finished:
                continue
            replicas = next(v for k, v in job["spec"].items() if k.endswith("ReplicaSpecs"))
            master = next(
                (v for k, v in replicas.items() if k.lower() in ("master", "chief", "launcher")),
                next(iter(replicas.values())),
            )
            pod = self.batch.api_client._ApiClient__deserialize(  # the typed pod spec
                master["template"]["spec"], "V1PodSpec"
            )
            self._run_pod(name, pod)
            conditions = [
                {"type": "Created", "status": "True", "reason": "Created"},
                {"type": "Succeeded", "status": "True", "reason": "Succeeded"},
            ]
            self.crs.patch_namespaced_custom_object_status(
                group, version, self.namespace, plural, name,
                {"status": {"conditions": conditions, "completionTime": _now()}},
            )  # fmt: skip
            self.finished.append(name)
            self.seen[name] = job["metadata"]["uid"]

    def _run_pod(self, name: str, pod: Any) -> None:
        """Run the pod as rendered: its collector sidecar (a native sidecar, or a second
        container) beside the primary container, each volume a folder of its own under
        ``execute/<job>/volumes`` linked at its mount path under ``execute/<job>/root`` (the
        paths in argv and env under a mount's top folder rewritten into it), the downward
        API's namespace and pod name filled in. The collector reads what the trial wrote and
        pushes it to the DBManager itself; the kubelet pushes nothing. Like the kubelet, it
        stops a native sidecar with SIGTERM once the trial has exited (after a grace period
        in which the collector normally ends on the wrapper's mark)."""
        folder = self.execute / name  # type: ignore[operator]
        sidecars = [c for c in pod.init_containers or [] if c.restart_policy == "Always"]
        primary, *rest = pod.containers
        root = folder / "root"  # the pod's file system: each mount a link to its volume
        tops: set[str] = set()
        for container in [primary, *sidecars, *rest]:
            for mount in container.volume_mounts or []:
                volume = folder / "volumes" / mount.name
                volume.mkdir(parents=True, exist_ok=True)
                at = root / mount.mount_path.strip("/")
                at.parent.mkdir(parents=True, exist_ok=True)
                if not at.is_symlink():
                    at.symlink_to(volume, target_is_directory=True)
                tops.add("/" + mount.mount_path.strip("/").split("/")[0])
        pattern = re.compile(
            "|".join(f"(?<![\\w.-]){re.escape(t)}(?=/|$|[^\\w.-])" for t in sorted(tops))
        )

        def mapped(text: str) -> str:
            """Absolute paths under a mount's top folder, inside the pod's file system."""
            return pattern.sub(lambda m: f"{root}{m.group(0)}", text) if tops else text

        def argv_env(container: Any) -> tuple[list[str], dict[str, str]]:
            env = {"PATH": os.environ["PATH"], "HOME": str(folder), "PYTHONPATH": str(ROOT)}
            for var in container.env or []:
                field = var.value_from.field_ref.field_path if var.value_from else None
                known = {"metadata.namespace": self.namespace, "metadata.name": name}
                env[var.name] = mapped(var.value or "") if field is None else known.get(field, "")
            argv = [*(container.command or []), *(container.args or [])]
            return [mapped(a) for a in argv], env

        folder.mkdir(parents=True, exist_ok=True)
        started = []
        for container in [*sidecars, *rest]:
            argv, env = argv_env(container)
            log = (folder / f"{container.name}.log").open("w")
            started.append((container.name, log, subprocess.Popen(
                argv, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )))  # fmt: skip
        argv, env = argv_env(primary)
        run = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=60)
        self.outputs[name] = run.stdout + run.stderr
        for container_name, log, process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=20)
            log.close()
            text = (folder / f"{container_name}.log").read_text(errors="replace")
            self.collector_outputs[name] = text
            if process.returncode != 0:
                raise AssertionError(
                    f"{container_name} of {name} exited {process.returncode}: {text}"
                )
        if run.returncode != 0:
            raise AssertionError(f"job {name} exited {run.returncode}: {self.outputs[name]}")

    def _status(self, name: str, status: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status})


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 20.0, *, stack: Stack | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (with the
    operator's log tail) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = stack.log("operator")[-4000:] if stack else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{tail}")
        time.sleep(0.1)
