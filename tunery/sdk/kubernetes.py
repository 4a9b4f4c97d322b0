"""The SDK's cluster backend: Experiments and Trials through the Kubernetes API, metrics through
the DBManager gRPC service, logs from the trial's pod.

Part of :mod:`tunery.sdk` (``Client(backend="kubernetes")`` and
``tune(..., backend="kubernetes")``). Talks to ``kubeflow.org/v1beta1`` custom resources with a
``CustomObjectsApi``, so it works against tunery's operator and against Katib alike. Both API
objects can be injected (tests pass mocks); otherwise they are built from the kube config (or
the in-cluster config), importing the optional ``kubernetes`` package only then.

Errors of the Kubernetes client are mapped here, once: 404 → :class:`NotFoundError`, 409 →
:class:`AlreadyExistsError`, 400/422 → :class:`InvalidExperimentError`, connection problems and
5xx → :class:`BackendUnavailableError`, anything else → :class:`TuneryError`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tunery.sdk.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    InvalidExperimentError,
    NotFoundError,
    TuneryError,
)
from tunery.trials import Observation

GROUP = "kubeflow.org"
VERSION = "v1beta1"
EXPERIMENTS = "experiments"
TRIALS = "trials"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
TRIAL_LABEL = "katib.kubeflow.org/trial"
DEFAULT_DB_MANAGER_ADDRESS = "katib-db-manager.kubeflow:6789"
DEFAULT_PRIMARY_CONTAINER = "training-container"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_NANOS = re.compile(r"(\.\d{6})\d+")


def _kubernetes() -> Any:
    """The ``kubernetes`` package, imported on first use (an optional dependency)."""
    try:
        import kubernetes
    except ImportError:
        raise BackendUnavailableError(
            "the kubernetes backend needs the 'kubernetes' package: pip install 'tunery[k8s]'"
        ) from None
    return kubernetes


def default_namespace(context_namespace: str | None = None) -> str:
    """The service account's namespace in a pod, else the kube context's, else "default"."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return context_namespace or "default"


class KubernetesBackend:
    """Experiments on a cluster (tunery's operator or Katib)."""

    def __init__(
        self,
        *,
        namespace: str | None = None,
        config_file: str | None = None,
        context: str | None = None,
        client_configuration: Any = None,
        custom_objects_api: Any = None,
        core_api: Any = None,
        db_manager_address: str | None = None,
        request_timeout: float = 120.0,
    ) -> None:
        self._config_file = config_file
        self._context = context
        self._client_configuration = client_configuration
        self._custom = custom_objects_api
        self._core = core_api
        self._api_client: Any = None
        context_namespace = None
        if custom_objects_api is None or core_api is None:
            context_namespace = self._load_config()
        self.namespace = namespace or default_namespace(context_namespace)
        self.db_manager_address = (
            db_manager_address
            or os.environ.get("TUNERY_DB_MANAGER_ADDRESS")
            or os.environ.get("TUNERY_DBMANAGER_ADDRESS")  # deprecated name
            or DEFAULT_DB_MANAGER_ADDRESS
        )
        self.request_timeout = request_timeout

    # -- plumbing ----------------------------------------------------------------------------

    def _load_config(self) -> str | None:
        kubernetes = _kubernetes()
        config = kubernetes.config
        context_namespace = None
        try:
            if self._config_file is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=self._client_configuration)
            else:
                config.load_kube_config(
                    config_file=self._config_file,
                    context=self._context,
                    client_configuration=self._client_configuration,
                )
                _, active = config.list_kube_config_contexts(config_file=self._config_file)
                if self._context is None and active:
                    context_namespace = (active.get("context") or {}).get("namespace")
        except Exception as exc:  # ConfigException, missing file, bad YAML
            raise BackendUnavailableError(
                f"cannot load the Kubernetes configuration: {type(exc).__name__}: {exc}"
            ) from exc
        api_client = kubernetes.client.ApiClient(configuration=self._client_configuration)
        if self._custom is None:
            self._custom = kubernetes.client.CustomObjectsApi(api_client)
        if self._core is None:
            self._core = kubernetes.client.CoreV1Api(api_client)
        return context_namespace  # type: ignore[no-any-return]

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            if not _is_api_error(exc):
                raise
            raise _map_error(what, exc) from exc

    def _ns(self, namespace: str | None) -> str:
        return namespace or self.namespace

    # -- experiments -------------------------------------------------------------------------

    def create_experiment(self, document: Mapping[str, Any], namespace: str | None) -> str:
        metadata = dict(document.get("metadata") or {})
        ns = self._ns(namespace or metadata.get("namespace"))
        body = {**document, "metadata": {**metadata, "namespace": ns}}
        created = self._call(
            f"experiment {metadata.get('name') or metadata.get('generateName')!r}",
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            EXPERIMENTS,
            body,
        )
        name = ((created or {}).get("metadata") or {}).get("name") or metadata.get("name")
        return str(name)

    def get_experiment(self, name: str, namespace: str | None) -> dict[str, Any]:
        return dict(
            self._call(
                f"experiment {name!r}",
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self._ns(namespace),
                EXPERIMENTS,
                name,
            )
        )

    def list_experiments(self, namespace: str | None) -> list[dict[str, Any]]:
        reply = self._call(
            "experiments",
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self._ns(namespace),
            EXPERIMENTS,
        )
        return [dict(item) for item in (reply or {}).get("items", [])]

    def edit_experiment_budget(
        self, name: str, namespace: str | None, budget: Mapping[str, int]
    ) -> dict[str, Any]:
        return dict(
            self._call(
                f"experiment {name!r}",
                self._custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                self._ns(namespace),
                EXPERIMENTS,
                name,
                {"spec": dict(budget)},
            )
        )

    def delete_experiment(self, name: str, namespace: str | None) -> None:
        self._call(
            f"experiment {name!r}",
            self._custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            self._ns(namespace),
            EXPERIMENTS,
            name,
        )

    # -- trials ------------------------------------------------------------------------------

    def list_trials(self, experiment_name: str, namespace: str | None) -> list[dict[str, Any]]:
        reply = self._call(
            f"trials of experiment {experiment_name!r}",
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self._ns(namespace),
            TRIALS,
            label_selector=f"{EXPERIMENT_LABEL}={experiment_name}",
        )
        items = [dict(item) for item in (reply or {}).get("items", [])]
        items.sort(key=lambda t: str((t.get("metadata") or {}).get("creationTimestamp", "")))
        return items

    def get_trial(self, name: str, namespace: str | None) -> dict[str, Any]:
        return dict(
            self._call(
                f"trial {name!r}",
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self._ns(namespace),
                TRIALS,
                name,
            )
        )

    def get_trial_metrics(self, name: str, namespace: str | None) -> list[Observation]:
        """The trial's observation log from the DBManager (Katib's ``GetObservationLog``)."""
        import grpc

        from tunery.api import api_pb2, api_pb2_grpc
        from tunery.tls import open_channel

        self.get_trial(name, namespace)  # NotFoundError for an unknown trial
        channel = open_channel(self.db_manager_address)  # TLS when TUNERY_TLS_CA is set
        try:
            reply = api_pb2_grpc.DBManagerStub(channel).GetObservationLog(
                api_pb2.GetObservationLogRequest(trial_name=name), timeout=self.request_timeout
            )
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise BackendUnavailableError(
                    f"the DBManager at {self.db_manager_address} is unavailable: {details}"
                ) from None
            raise TuneryError(
                f"GetObservationLog({name!r}) failed at {self.db_manager_address}: "
                f"{code.name if code else 'error'}: {details}"
            ) from None
        finally:
            channel.close()
        return observations_from_log(reply.observation_log.metric_logs)

    def get_trial_logs(
        self, name: str, namespace: str | None, *, follow: bool, timeout: float
    ) -> Iterator[str]:
        """Lines of the trial's primary container (its pod labelled with the trial).

        Finds the pod and opens the log stream before returning (so a missing trial or pod
        raises here); with ``follow``, waits up to ``timeout`` seconds for the pod to start.
        """
        ns = self._ns(namespace)
        trial = self.get_trial(name, ns)
        spec = trial.get("spec") or {}
        container = spec.get("primaryContainerName") or DEFAULT_PRIMARY_CONTAINER
        selector = ",".join(
            [f"{TRIAL_LABEL}={name}"]
            + [f"{k}={v}" for k, v in (spec.get("primaryPodLabels") or {}).items()]
        )
        deadline = time.monotonic() + timeout
        while True:
            pods = self._call(
                f"pods of trial {name!r}",
                self._core.list_namespaced_pod,
                ns,
                label_selector=selector,
            )
            items = list(getattr(pods, "items", None) or [])
            if items:
                break
            if not follow or time.monotonic() > deadline:
                raise NotFoundError(f"trial {name!r} has no pod (selector {selector})")
            time.sleep(1.0)
        items.sort(key=lambda p: str(getattr(p.metadata, "creation_timestamp", "") or ""))
        pod = items[0].metadata.name
        while True:
            try:
                reply = self._core.read_namespaced_pod_log(
                    pod,
                    ns,
                    container=container,
                    follow=follow,
                    _preload_content=False,
                    _request_timeout=None if follow else self.request_timeout,
                )
                break
            except Exception as exc:
                # 400 while the container is still being created: wait for it when following
                waiting = getattr(exc, "status", None) == 400 and time.monotonic() < deadline
                if follow and waiting:
                    time.sleep(1.0)
                    continue
                if not _is_api_error(exc):
                    raise
                raise _map_error(f"logs of pod {pod!r}", exc) from exc
        return _lines(reply)


def _lines(reply: Any) -> Iterator[str]:
    if isinstance(reply, str):
        yield from reply.splitlines()
        return
    if isinstance(reply, bytes):
        yield from reply.decode("utf-8", "replace").splitlines()
        return
    chunks = reply.stream(65536) if hasattr(reply, "stream") else iter(reply)
    pending = b""
    try:
        for chunk in chunks:
            pending += chunk if isinstance(chunk, bytes) else str(chunk).encode()
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")
    finally:
        release = getattr(reply, "release_conn", None)
        if callable(release):
            release()


def parse_timestamp(text: str) -> dt.datetime:
    """An RFC3339 timestamp (nanoseconds truncated); Katib's zero time when empty."""
    if not text:
        return dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    value = dt.datetime.fromisoformat(_NANOS.sub(r"\1", text.replace("Z", "+00:00")))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def observations_from_log(metric_logs: Any) -> list[Observation]:
    """Observations of DBManager ``MetricLog`` messages; steps are per-metric ordinals (the
    Katib wire carries no step)."""
    ordinals: dict[str, int] = {}
    out = []
    for log in metric_logs:
        name = log.metric.name
        step = ordinals.get(name, 0)
        ordinals[name] = step + 1
        try:
            when = parse_timestamp(log.time_stamp)
        except ValueError:
            when = parse_timestamp("")
        out.append(Observation.of(name, log.metric.value, step, when))
    return out


def _is_api_error(exc: BaseException) -> bool:
    """An error of the Kubernetes API or the connection to it (not a bug of the caller)."""
    module = type(exc).__module__
    return (
        hasattr(exc, "status")
        or isinstance(exc, OSError)
        or module.startswith(("urllib3", "kubernetes"))
    )


def _map_error(what: str, exc: Exception) -> TuneryError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", "") or ""
    body = getattr(exc, "body", "") or ""
    detail = _api_message(body) or reason or str(exc)
    if status == 404:
        return NotFoundError(f"{what} not found")
    if status == 409:
        return AlreadyExistsError(f"{what} already exists: {detail}")
    if status in (400, 422):
        return InvalidExperimentError(f"{what} was rejected by the cluster ({status}): {detail}")
    if status in (401, 403):
        return TuneryError(f"not allowed to access {what} ({status}): {detail}")
    if status is None or (isinstance(status, int) and status >= 500):
        return BackendUnavailableError(
            f"the Kubernetes API is unavailable for {what}: {type(exc).__name__}: {detail}"
        )
    return TuneryError(f"{what}: Kubernetes API error {status}: {detail}")


def _api_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        return str(json.loads(body).get("message", "")) or body
    except (ValueError, AttributeError):
        return body
