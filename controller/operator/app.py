"""The kopf application: Experiment handlers that drive :class:`ExperimentOperator`.

Called by :func:`controller.operator.run_operator` (``tunery operator``). Handlers are thin:
create/resume/spec-update -> ``admit``, a timer per unfinished Experiment -> ``reconcile``
(a Succeeded or Failed one has none: it goes quiet until a budget edit restarts it), delete ->
``delete`` (behind the finalizer ``tunery.io/finalizer``). kopf keeps its own bookkeeping in
annotations prefixed ``tunery.io``; the operator keeps everything else in the store, so a
restarted operator resumes every experiment. Transient failures (API server or database
unreachable) become kopf temporary errors, retried with backoff (:class:`tunery.retry.
RetryPolicy`, ``$TUNERY_OUTAGE_LIMIT``); the message says what is awaited. An operator is a
service, so past the outage limit it says so as an error and keeps retrying at the longest
delay (its readiness follows the database through the DBManager, not its own exit).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes import client as k8s_client

from controller.operator.core import ExperimentOperator, OperatorSettings, is_finished
from controller.operator.mirror import GROUP, VERSION
from controller.runners.kubernetes import KubeUnavailableError
from tunery.retry import OutageWatch, RetryPolicy
from tunery.store.errors import StoreUnavailableError

log = logging.getLogger(__name__)

FINALIZER = "tunery.io/finalizer"
EXPERIMENTS = {"group": GROUP, "version": VERSION, "plural": "experiments"}


def connection_info(config: k8s_client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the ``kubernetes`` client's configuration."""
    token = None
    scheme = None
    auth = (config.api_key or {}).get("authorization") or (config.api_key or {}).get("BearerToken")
    if auth:
        scheme, _, token = auth.partition(" ") if " " in auth else ("Bearer", "", auth)
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert or None,
        insecure=not config.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file or None,
        private_key_path=config.key_file or None,
    )


def temporary_error(outages: OutageWatch, exc: Exception) -> kopf.TemporaryError:
    """The kopf retry for a transient failure: backoff within the outage, then the longest
    delay once the outage limit has passed (logged as an error)."""
    outage = outages.failed()
    delay = outage.next_delay()
    if delay is None:
        log.error("%s", outage.gave_up(exc))
        return kopf.TemporaryError(
            f"{exc}; still retrying every {outage.policy.max_delay:g} s",
            delay=outage.policy.max_delay,
        )
    return kopf.TemporaryError(outage.describe(delay, exc), delay=delay)


def build_registry(
    operator: ExperimentOperator,
    settings: OperatorSettings,
    kube_config: k8s_client.Configuration,
) -> kopf.OperatorRegistry:
    """A kopf registry with the Experiment handlers bound to ``operator``."""
    registry = kopf.OperatorRegistry()
    outages = OutageWatch(RetryPolicy.from_env(), "the database or the Kubernetes API")

    def transient(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # kopf derives handler ids from the qualified name
        def wrapper(**kwargs: Any) -> Any:
            try:
                result = fn(**kwargs)
            except (KubeUnavailableError, StoreUnavailableError) as exc:
                raise temporary_error(outages, exc) from exc
            ended = outages.recovered()
            if ended is not None:
                log.warning("%s available again after %.1f s", ended.what, ended.elapsed)
            return result

        return wrapper

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tunery.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="tunery.io", key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(kube_config)

    @kopf.on.create(**EXPERIMENTS, registry=registry)
    @kopf.on.resume(**EXPERIMENTS, registry=registry)
    @kopf.on.update(**EXPERIMENTS, field="spec", registry=registry)
    @transient
    def admit(body: kopf.Body, **_: Any) -> None:
        operator.admit(dict(body))

    @kopf.timer(
        **EXPERIMENTS,
        interval=settings.interval_seconds,
        when=lambda body, **_: not is_finished(body),
        registry=registry,
    )
    @transient
    def reconcile(body: kopf.Body, **_: Any) -> None:
        operator.reconcile(dict(body))

    @kopf.on.delete(**EXPERIMENTS, registry=registry)
    @transient
    def delete(body: kopf.Body, **_: Any) -> None:
        operator.delete(dict(body))

    @kopf.on.cleanup(registry=registry)
    def cleanup(**_: Any) -> None:
        operator.close()

    return registry
