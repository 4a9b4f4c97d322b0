"""Add the metrics collector to a rendered trial job: no webhook, done when the job is built.

Called by the Kubernetes runner (``controller.runners.kubernetes``) on every job it creates,
and by the tests that validate rendered jobs. Pure functions over the job document (camelCase
dicts); nothing here talks to a cluster.

What Katib does with a mutating pod webhook, tunery does here, to the job's *primary pod
units* (batch/v1 Job: ``spec.template``; training-operator kinds: the replica templates
whose pods carry ``primaryPodLabels``, by default the master/chief/launcher replica, with the
labels the operators add predicted — ``mpi-job-role`` for an MPIJob; Argo Workflow templates
and Tekton tasks: the list entries of :mod:`controller.pod_units`, with the engine's container
names, its sidecar and volume fields, and no shared process namespace for Tekton):

- every pod template gets the labels ``katib.kubeflow.org/trial`` and
  ``katib.kubeflow.org/experiment``; the primary container gets ``KATIB_TRIAL_NAME`` (and
  tunery's own variables) whatever the collector kind, ``Push`` included;
- unless the collector kind is ``Push``: an emptyDir ``metrics-volume`` mounted at the metrics
  file's folder (TensorFlowEvent: the event folder; PrometheusMetric: :data:`MARKER_DIR`, for
  the wrapper's marks only) in the primary container and in the collector; the collector itself
  (``python -m metrics_collector`` with Katib's flags) as a native sidecar (an init container
  with ``restartPolicy: Always``, stopped by the kubelet once the trial's containers exit) or,
  for clusters older than 1.29, as a plain container; it gets ``POD_NAMESPACE`` from the
  downward API and names that namespace to the DBManager (gRPC metadata ``tunery-namespace``);
- the primary container's command wrapped by :data:`WRAPPER`, a fixed POSIX ``sh`` script that
  receives the original command as ``"$@"`` — no parameter value is ever re-quoted or placed in
  a script — and, for ``StdOut``, *tees* its output (stdout and stderr) to the metrics file, so
  ``kubectl logs`` still shows it. The script follows Katib's marker convention, which the
  collector (``metrics_collector.sidecar``) implements: it records its own pid in
  ``<dir>/main.pid`` (read from ``/proc/self/stat``: the kubelet would expand ``$$``), keeps
  the command's exit status, exits 0 when the collector wrote ``early-stopped`` to
  ``<dir>/<pid>.pid`` before stopping the trial, otherwise writes ``completed`` there so a
  collector running as a plain container knows when to finish, and forwards SIGTERM to the
  whole trial;
- a ``StdOut`` primary container without ``command`` (its image's entrypoint is unknown here)
  is not wrapped: the collector follows its log through the Kubernetes API instead
  (``--follow-container``, :mod:`metrics_collector.podlog`), with ``POD_NAME`` (and
  ``POD_NAMESPACE``) from the downward API and the pod's service-account token projected into
  the collector alone (:data:`TOKEN_VOLUME`); no metrics volume, no shared process namespace,
  and no early stopping (refused at admission, :func:`controller.collector_check.kind_problems`);
- the collector runs under a restricted ``securityContext`` (:func:`collector_security_context`:
  non-root, no privilege escalation, every capability dropped, seccomp ``RuntimeDefault``, a
  read-only root), so it keeps a trial pod within PodSecurity ``restricted``. It runs as the
  trial's user when the pod or the primary container names a non-root ``runAsUser``: a
  process without capabilities can signal only processes of its own user, and stopping a
  trial early is a signal. Otherwise it runs as :data:`COLLECTOR_UID`, the image's user. The
  shared ``metrics-volume`` is an emptyDir, which the kubelet creates world-writable, so
  either user can write its files there.

Errors: :class:`SidecarError` (a ``ValueError``) names what cannot be done and why.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.pod_units import PodUnit, sidecar_pod_name, workflow_units

TRIAL_LABEL = "katib.kubeflow.org/trial"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
METRICS_VOLUME = "metrics-volume"
DEFAULT_METRICS_FILE = "/var/log/katib/metrics.log"
DEFAULT_TFEVENT_DIR = "/var/log/katib/tfevent/"
DEFAULT_PROMETHEUS_PORT = 8080
DEFAULT_PROMETHEUS_PATH = "/metrics"
MARKER_DIR = "/var/log/katib"
"""PrometheusMetric reads no file: the volume at this folder carries only the wrapper's marks."""
MAIN_PID_FILE = "main.pid"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
MPI_JOB_ROLE_LABEL = "mpi-job-role"
_MASTER_REPLICAS = frozenset({"master", "chief", "launcher"})

WRAPPER = """\
trap 'trap - TERM INT; kill -TERM 0' TERM INT
mkdir -p "$TUNERY_METRICS_DIR"
read -r tunery_pid tunery_rest < /proc/self/stat
echo "$tunery_pid" > "$TUNERY_METRICS_DIR/main.pid"
if [ "$TUNERY_TEE_OUTPUT" = 1 ]; then
  exec 3>&1
  code=`{ { "$@" 2>&1 3>&- 4>&-; echo $? >&4; } | tee -a "$TUNERY_METRICS_FILE" >&3 4>&-; } 4>&1`
else
  "$@"
  code=$?
fi
code=${code:-1}
tunery_mark=
if [ -f "$TUNERY_METRICS_DIR/$tunery_pid.pid" ]; then
  read -r tunery_mark < "$TUNERY_METRICS_DIR/$tunery_pid.pid"
fi
if [ "$tunery_mark" = early-stopped ]; then
  echo "tunery: the trial was stopped early by the metrics collector"
  exit 0
fi
echo completed > "$TUNERY_METRICS_DIR/$tunery_pid.pid"
exit "$code"
"""
"""The trial's shell wrapper. Constant text: it contains no ``$(`` and no ``$$``, which the
kubelet would expand in ``command``/``args``; the trial's argv follows it as ``"$@"``."""

WRAPPER_ARGV0 = "tunery-trial"

COLLECTOR_UID = 65532
"""The user of the tunery image (``USER 65532`` in deploy/Dockerfile); the collector's user
unless the trial names its own."""


class SidecarError(ValueError):
    """The collector cannot be added to this job as rendered (the message says why)."""


@dataclass(frozen=True)
class CollectorSettings:
    """How the operator renders the collector.

    ``db_manager_address`` is where the collector pushes observations (``host:port``);
    ``early_stopping_address`` the EarlyStopping service for experiments that stop early;
    ``native_sidecar`` False puts the collector among the pod's containers (clusters < 1.29).
    ``tls_secret``: a Secret in the trial's namespace with ``ca.crt`` (and ``tls.crt``/``tls.key``
    when ``tls_mutual``): mounted read-only into the collector and the primary container, whose
    ``TUNERY_TLS_*`` variables then point at it, so both reach TLS-only services.
    """

    image: str
    db_manager_address: str
    early_stopping_address: str = ""
    native_sidecar: bool = True
    tls_secret: str = ""
    tls_mutual: bool = False
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        }
    )


@dataclass(frozen=True)
class PodTemplate:
    """A pod template inside a job: its path from the job root and the replica type, if any.

    One kind of :class:`controller.pod_units.PodUnit` (the others live in workflow engines'
    lists); it is edited in place.
    """

    path: tuple[str, ...]
    template: dict[str, Any]
    replica_type: str | None = None
    job_kind: str = ""

    native_sidecars = True

    @property
    def description(self) -> str:
        return ".".join(self.path)

    def derived_labels(self) -> dict[str, str]:
        """Labels the workload's controller adds to these pods (training-operator kinds; the
        MPI operator's ``mpi-job-role`` on an MPIJob's launcher and workers)."""
        if self.replica_type is None:
            return {}
        replica = self.replica_type.lower()
        labels = {REPLICA_TYPE_LABEL: replica}
        if replica in _MASTER_REPLICAS:
            labels[JOB_ROLE_LABEL] = "master"
        if self.job_kind == "MPIJob" and replica in ("launcher", "worker"):
            labels[MPI_JOB_ROLE_LABEL] = replica
        return labels

    def labels(self) -> dict[str, str]:
        own = (self.template.get("metadata") or {}).get("labels") or {}
        return {**{str(k): str(v) for k, v in own.items()}, **self.derived_labels()}

    def add_labels(self, labels: Mapping[str, str]) -> None:
        self.template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)

    def containers(self) -> list[tuple[str, dict[str, Any]]]:
        return [(str(c.get("name")), c) for c in _containers(self.template)]

    def taken_names(self) -> set[str]:
        spec = self.template["spec"]
        return {str(c.get("name")) for c in spec.get("containers", [])} | {
            str(c.get("name")) for c in spec.get("initContainers") or []
        }

    def pod_security_context(self) -> Mapping[str, Any]:
        return self.template["spec"].get("securityContext") or {}

    def volumes(self) -> list[dict[str, Any]]:
        return self.template["spec"].setdefault("volumes", [])  # type: ignore[no-any-return]

    def add_sidecar(self, container: dict[str, Any], native: bool) -> None:
        spec = self.template["spec"]
        if native:
            container["restartPolicy"] = "Always"
            spec.setdefault("initContainers", []).append(container)
        else:
            spec["containers"].append(container)

    def share_processes(self) -> bool:
        self.template["spec"]["shareProcessNamespace"] = True
        return True


def _is_pod_template(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and isinstance(node.get("spec"), dict)
        and isinstance(node["spec"].get("containers"), list)
    )


def pod_templates(job: Mapping[str, Any]) -> list[PodTemplate]:
    """Every pod template of the job (``...template`` objects with ``spec.containers``).

    For training-operator kinds (``spec.<x>ReplicaSpecs.<Type>.template``) the replica type is
    recorded so :meth:`PodTemplate.derived_labels` can predict the pods' labels.
    """
    found: list[PodTemplate] = []
    kind = str(job.get("kind", ""))

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            here = (*path, str(key))
            if key == "template" and _is_pod_template(value):
                replica = None
                if len(path) >= 2 and path[-2].endswith("ReplicaSpecs"):
                    replica = path[-1]
                found.append(PodTemplate(here, value, replica, kind))
            elif isinstance(value, dict):
                walk(value, here)

    walk(job, ())  # type: ignore[arg-type]
    return found


def pod_units(job: Mapping[str, Any]) -> list[PodUnit]:
    """Every pod-producing unit of the job: its pod templates, or (Argo Workflow, Tekton
    PipelineRun) the entries of the engine's lists that each run a pod."""
    return [*pod_templates(job), *workflow_units(job)]


def primary_pod_templates(
    job: Mapping[str, Any], primary_pod_labels: Mapping[str, str] | None
) -> list[PodUnit]:
    """The pod units whose pods carry every ``primaryPodLabels`` label (all when unset)."""
    units = pod_units(job)
    if not primary_pod_labels:
        return units
    return [
        u for u in units if all(u.labels().get(k) == str(v) for k, v in primary_pod_labels.items())
    ]


def _containers(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    return template["spec"]["containers"]  # type: ignore[no-any-return]


def _set_env(container: dict[str, Any], env: Mapping[str, str]) -> None:
    entries = [e for e in container.get("env") or [] if e.get("name") not in env]
    entries.extend({"name": k, "value": v} for k, v in env.items())
    container["env"] = entries


def label_pods(job: dict[str, Any], trial_name: str, experiment_name: str) -> None:
    """Label every pod unit of ``job`` with the trial and the experiment (in place)."""
    for unit in pod_units(job):
        unit.add_labels({TRIAL_LABEL: trial_name, EXPERIMENT_LABEL: experiment_name})


@dataclass(frozen=True)
class CollectorPlan:
    """What the experiment's metricsCollectorSpec asks for, resolved with Katib's defaults."""

    kind: str
    path: str = ""
    """The file to tail; the event folder (TensorFlowEvent); the URL (PrometheusMetric)."""
    format: str = ""
    filters: tuple[str, ...] = ()
    custom: Mapping[str, Any] | None = None

    @property
    def directory(self) -> str:
        """The shared volume's mount path, where the wrapper leaves its marks."""
        if self.kind == "TensorFlowEvent":
            return self.path.rstrip("/") or "/"
        if self.kind == "PrometheusMetric":
            return MARKER_DIR
        return posixpath.dirname(self.path.rstrip("/")) or "/"

    @property
    def container_name(self) -> str:
        return (
            "metrics-logger-and-collector"
            if self.kind in ("StdOut", "File")
            else ("metrics-collector")
        )


def collector_plan(spec: Mapping[str, Any]) -> CollectorPlan:
    """The collector for an Experiment ``spec`` (defaulted the way Katib's webhook does).

    Raises:
        SidecarError: an unknown kind, or a Custom collector without its container.
    """
    mc = spec.get("metricsCollectorSpec") or {}
    kind = (mc.get("collector") or {}).get("kind") or "StdOut"
    source = mc.get("source") or {}
    fs = source.get("fileSystemPath") or {}
    filters = tuple((source.get("filter") or {}).get("metricsFormat") or ())
    if kind == "StdOut":
        return CollectorPlan(kind, DEFAULT_METRICS_FILE, "TEXT", filters)
    if kind == "File":
        return CollectorPlan(
            kind, fs.get("path") or DEFAULT_METRICS_FILE, fs.get("format") or "TEXT", filters
        )
    if kind == "TensorFlowEvent":
        return CollectorPlan(kind, fs.get("path") or DEFAULT_TFEVENT_DIR)
    if kind == "PrometheusMetric":
        http = source.get("httpGet") or {}
        port = http.get("port") or DEFAULT_PROMETHEUS_PORT
        path = http.get("path") or DEFAULT_PROMETHEUS_PATH
        return CollectorPlan(kind, f"http://127.0.0.1:{port}{path}")
    if kind == "Push":
        return CollectorPlan(kind)
    if kind == "Custom":
        custom = (mc.get("collector") or {}).get("customCollector")
        if not custom:
            raise SidecarError("metricsCollectorSpec.collector.customCollector is required")
        return CollectorPlan(kind, fs.get("path") or "", fs.get("format") or "", filters, custom)
    raise SidecarError(
        f"metricsCollectorSpec.collector.kind {kind!r} is not supported on Kubernetes: use "
        "StdOut, File, TensorFlowEvent, PrometheusMetric, Custom or Push (report_metrics)"
    )


def collector_args(
    plan: CollectorPlan,
    *,
    trial_name: str,
    objective: Mapping[str, Any],
    settings: CollectorSettings,
    early_stopping: bool,
    stop_rules: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """Katib's sidecar flags for ``python -m metrics_collector``."""
    metrics = [objective["objectiveMetricName"], *(objective.get("additionalMetricNames") or [])]
    args = [
        "-t", trial_name,
        "-m", ";".join(metrics),
        "-o-type", str(objective.get("type", "minimize")),
        "-s-db", settings.db_manager_address,
        "-path", plan.path,
        "--pid-file", posixpath.join(plan.directory, MAIN_PID_FILE),
        "--marker-dir", plan.directory,
    ]  # fmt: skip
    if plan.kind in ("TensorFlowEvent", "PrometheusMetric"):
        args += ["--kind", plan.kind]
    if plan.filters:
        args += ["-f", ";".join(plan.filters)]
    if plan.format:
        args += ["-format", plan.format]
    for rule in stop_rules:
        args += [
            "-stop-rule",
            f"{rule['name']};{rule['value']};{rule['comparison']};{rule.get('startStep', 0)}",
        ]
    if early_stopping and settings.early_stopping_address:
        args += ["-s-earlystop", settings.early_stopping_address]
    return args


def wrap_command(container: dict[str, Any]) -> None:
    """Run the container's command under :data:`WRAPPER` (in place).

    Raises:
        SidecarError: the container has no ``command`` (its image's entrypoint is unknown here).
    """
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if not command:
        raise SidecarError(
            f"container {container.get('name')!r} has no command: to collect its output the "
            "operator wraps the command, and it cannot read the image's entrypoint. Set "
            "command (and args) in the trialTemplate, or use the Push collector"
        )
    container["command"] = ["sh", "-c", WRAPPER, WRAPPER_ARGV0, *command, *args]
    container.pop("args", None)


def is_wrapped(container: Mapping[str, Any]) -> bool:
    command = container.get("command") or []
    return len(command) >= 3 and command[2] == WRAPPER


def _add_volume(unit: PodUnit, volume: dict[str, Any]) -> None:
    volumes = unit.volumes()
    for existing in volumes:
        if existing.get("name") == volume["name"]:
            raise SidecarError(
                f"the {unit.description} already has a volume named {volume['name']!r}, which "
                "the metrics collector needs; rename it"
            )
    volumes.append(volume)


TLS_VOLUME = "tunery-tls"
TLS_DIRECTORY = "/etc/tunery/tls"


def _tls_env(settings: CollectorSettings) -> dict[str, str]:
    """The ``TUNERY_TLS_*`` variables of a container that has the TLS Secret mounted."""
    if not settings.tls_secret:
        return {}
    env = {"TUNERY_TLS_CA": f"{TLS_DIRECTORY}/ca.crt"}
    if settings.tls_mutual:
        env.update(
            TUNERY_TLS_CERT=f"{TLS_DIRECTORY}/tls.crt", TUNERY_TLS_KEY=f"{TLS_DIRECTORY}/tls.key"
        )
    return env


def _add_tls(unit: PodUnit, containers: Sequence[dict[str, Any]], secret: str) -> None:
    """Mount the TLS Secret read-only into ``containers`` of the pod unit."""
    _add_volume(unit, {"name": TLS_VOLUME, "secret": {"secretName": secret}})
    for container in containers:
        container.setdefault("volumeMounts", []).append(
            {"name": TLS_VOLUME, "mountPath": TLS_DIRECTORY, "readOnly": True}
        )


def _mount(container: dict[str, Any], directory: str) -> None:
    mounts = container.setdefault("volumeMounts", [])
    for mount in mounts:
        if posixpath.normpath(mount.get("mountPath", "")) == posixpath.normpath(directory):
            raise SidecarError(
                f"container {container.get('name')!r} already mounts {directory!r}, where the "
                "metrics collector's volume goes; change metricsCollectorSpec's path"
            )
    mounts.append({"name": METRICS_VOLUME, "mountPath": directory})


def inject_collector(
    job: Mapping[str, Any],
    *,
    trial_name: str,
    experiment_name: str,
    spec: Mapping[str, Any],
    settings: CollectorSettings,
    extra_env: Mapping[str, str] | None = None,
    stop_rules: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The job with trial labels, the primary container's environment and the collector.

    ``spec`` is the (defaulted) Experiment spec: its trialTemplate names the primary container
    and pod labels, its metricsCollectorSpec the collector, its objective the metrics.

    Raises:
        SidecarError: no primary pod unit, no primary container in it, or a name clash.
    """
    out: dict[str, Any] = copy.deepcopy(dict(job))
    template_spec = spec.get("trialTemplate") or {}
    primary_name = template_spec.get("primaryContainerName", "")
    plan = collector_plan(spec)
    label_pods(out, trial_name, experiment_name)
    primaries = primary_pod_templates(out, template_spec.get("primaryPodLabels"))
    kind = out.get("kind", "?")
    if not primaries:
        if plan.kind == "Push":
            return out
        raise SidecarError(_no_template_message(out, template_spec.get("primaryPodLabels")))
    found = False
    for unit in primaries:
        containers = [c for name, c in unit.containers() if name == primary_name]
        if not containers:
            continue
        found = True
        _inject(unit, containers[0], plan, trial_name, spec, settings, extra_env, stop_rules)
    if not found:
        raise SidecarError(
            f"primaryContainerName {primary_name!r} matches no container of the {kind}'s "
            f"primary pod units ({_describe(primaries)})"
        )
    return out


def follows_log(plan: CollectorPlan, container: Mapping[str, Any]) -> bool:
    """Whether the collector reads the container's log through the API (StdOut, no command)."""
    return plan.kind == "StdOut" and not container.get("command")


def _inject(
    unit: PodUnit,
    container: dict[str, Any],
    plan: CollectorPlan,
    trial_name: str,
    spec: Mapping[str, Any],
    settings: CollectorSettings,
    extra_env: Mapping[str, str] | None,
    stop_rules: Sequence[Mapping[str, Any]],
) -> None:
    """Add the collector for ``container`` (the primary) to ``unit`` (in place)."""
    follow = follows_log(plan, container)
    env = {"KATIB_TRIAL_NAME": trial_name, **(extra_env or {}), **_tls_env(settings)}
    if plan.kind != "Push" and not follow:
        env.update(
            TUNERY_METRICS_DIR=plan.directory,
            TUNERY_TEE_OUTPUT="1" if plan.kind == "StdOut" else "0",
        )
        if plan.kind in ("StdOut", "File"):
            env["TUNERY_METRICS_FILE"] = plan.path
    _set_env(container, env)
    if plan.kind == "Push":
        if settings.tls_secret:  # report_metrics reaches the DBManager itself
            _add_tls(unit, [container], settings.tls_secret)
        return
    if not follow and plan.kind in _WRAPPED_KINDS and container.get("command"):
        wrap_command(container)
    try:
        shared = False if follow else unit.share_processes()
    except ValueError as exc:  # e.g. an Argo podSpecPatch that is not YAML
        raise SidecarError(f"the {unit.description}: {exc}") from None
    sidecar = _sidecar(plan, trial_name, spec, settings, stop_rules)
    if plan.kind != "Custom":
        extra = []
        if follow:
            primary_name = next(n for n, c in unit.containers() if c is container)
            extra = ["--follow-container", primary_name]
        elif not shared:
            extra = ["--marks-only"]
        sidecar["args"] += extra
        # a custom collector keeps the securityContext it was given
        pod_security = {"securityContext": unit.pod_security_context()}
        sidecar["securityContext"] = collector_security_context(pod_security, container)
    if settings.tls_secret:
        _add_tls(unit, [container, sidecar], settings.tls_secret)
        if plan.kind != "Custom":
            _set_env(sidecar, _tls_env(settings))
    if sidecar_pod_name(unit, sidecar["name"]) in unit.taken_names():
        raise SidecarError(
            f"the {unit.description} already has a container named {sidecar['name']!r}, the "
            "name of the metrics collector; rename it"
        )
    if follow:
        _add_volume(unit, _token_volume())
        sidecar.setdefault("volumeMounts", []).append(
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIRECTORY, "readOnly": True}
        )
        sidecar["env"].append(
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        )
    elif plan.kind != "Custom" or plan.path:
        _add_volume(unit, {"name": METRICS_VOLUME, "emptyDir": {}})
        _mount(container, plan.directory)
        sidecar.setdefault("volumeMounts", []).append(
            {"name": METRICS_VOLUME, "mountPath": plan.directory}
        )
    unit.add_sidecar(sidecar, settings.native_sidecar and unit.native_sidecars)


_WRAPPED_KINDS = frozenset({"StdOut", "File", "TensorFlowEvent", "PrometheusMetric"})
TOKEN_VOLUME = "tunery-collector-token"
TOKEN_DIRECTORY = "/var/run/secrets/tunery/serviceaccount"
"""Where a log-following collector finds its API token and the cluster's CA (``token``,
``ca.crt``): a projected volume mounted into the collector only, so the trial's own
containers keep whatever ``automountServiceAccountToken`` says."""


def _token_volume() -> dict[str, Any]:
    """The pod's service account token, projected for the collector only (1 h, rotated)."""
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
            ]
        },
    }


def _sidecar(
    plan: CollectorPlan,
    trial_name: str,
    spec: Mapping[str, Any],
    settings: CollectorSettings,
    stop_rules: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    if plan.kind == "Custom":
        assert plan.custom is not None
        container = copy.deepcopy(dict(plan.custom))
        container.setdefault("name", plan.container_name)
        return container
    return {
        "name": plan.container_name,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "metrics_collector"],
        "args": collector_args(
            plan,
            trial_name=trial_name,
            objective=spec["objective"],
            settings=settings,
            early_stopping=bool((spec.get("earlyStopping") or {}).get("algorithmName")),
            stop_rules=stop_rules,
        ),
        "env": [
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            # the trial's namespace, sent to the DBManager in the metadata key tunery-namespace
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ],
        "resources": copy.deepcopy(dict(settings.resources)),
    }


def _declared(pod_spec: Mapping[str, Any], container: Mapping[str, Any], key: str) -> Any:
    """A ``securityContext`` field as it applies to ``container``: its own, else the pod's."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod_spec.get("securityContext") or {}).get(key)


def _user_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def collector_security_context(
    pod_spec: Mapping[str, Any], primary: Mapping[str, Any]
) -> dict[str, Any]:
    """The collector's ``securityContext``: PodSecurity ``restricted``, as the trial's user.

    The user is the primary container's non-root ``runAsUser`` (its own, else the pod's), with
    its ``runAsGroup``; else :data:`COLLECTOR_UID`. Set explicitly in both cases, so
    ``runAsNonRoot`` holds whatever the collector image declares.
    """
    uid = _user_id(_declared(pod_spec, primary, "runAsUser"))
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid if uid else COLLECTOR_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    gid = _user_id(_declared(pod_spec, primary, "runAsGroup"))
    if uid and gid is not None:
        context["runAsGroup"] = gid
    return context


def _describe(units: Sequence[PodUnit]) -> str:
    parts = []
    for u in units:
        names = ", ".join(repr(name) for name, _ in u.containers())
        parts.append(f"{u.description}: {names or 'no containers'}")
    return "; ".join(parts)


def _no_template_message(job: Mapping[str, Any], labels: Mapping[str, str] | None) -> str:
    kind = job.get("kind", "?")
    units = pod_units(job)
    if not units:
        return (
            f"the {kind} has no pod template the operator can add the metrics collector to "
            "(TrainJob pods come from its runtime; an Argo template or Tekton task must be "
            "inline, not a templateRef/taskRef/pipelineRef); use "
            "metricsCollectorSpec.collector.kind Push and report metrics from the trial "
            "(tunery.report_metrics)"
        )
    return (
        f"no pod template of the {kind} matches primaryPodLabels {dict(labels or {})} "
        f"(templates: {_describe(units)}); set trialTemplate.primaryPodLabels to the labels "
        "of the pods that run the primary container"
    )
