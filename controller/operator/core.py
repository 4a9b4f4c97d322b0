"""The operator's logic: Experiment custom resources in, trials as Kubernetes jobs out.

Called by the kopf handlers of ``controller.operator.app`` (and directly by tests):
:meth:`ExperimentOperator.admit` when an Experiment is created, resumed or its spec changes,
:meth:`ExperimentOperator.reconcile` periodically per Experiment, and
:meth:`ExperimentOperator.delete` when it is deleted. Kubernetes is reached through
:class:`~controller.runners.kubernetes.KubeApi`, state lives in the store.

Each pass runs the same reconcile core as ``tunery run`` (``controller.reconcile``) with a
:class:`KubernetesRunner`, gRPC clients of the shared suggestion and early-stopping services,
and a watcher that reads the observations the collector sidecars pushed through the DBManager.
It then mirrors the store into the cluster: a Trial CR per trial (owned by the Experiment; the
trial's job is owned by its Trial), the Trial and Experiment status, a Suggestion CR, and events
on every transition. Finished jobs are deleted unless ``trialTemplate.retain``.

Nothing lives only in memory: the store holds experiments, trials, job handles and
observations, the custom resources hold what was last mirrored (so events are emitted once),
and a restarted operator continues every experiment where it was. Status is written as a JSON
merge patch that nulls keys the new status no longer has (:func:`merge_patch`), and stays
bounded (``controller.operator.mirror``). A finished experiment whose resource shows it
(:func:`is_finished`) costs nothing per pass; a lowered parallelTrialCount stops the newest
extra active trials; a trialTemplate ConfigMap is read only in the experiment's namespace
unless ``OperatorSettings.template_namespaces`` allows another.

Experiments are keyed by namespace and name, as the resources are: each Experiment is
reconciled against ``store.in_namespace(its namespace)``, so ``mnist`` in namespaces ``a`` and
``b`` are two experiments with their own trials, observations and reconcilers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller import checkpoints
from controller import status as experiment_status
from controller.clients import (
    EarlyStoppingClient,
    GrpcEarlyStoppingClient,
    GrpcSuggestionClient,
    ServiceCallError,
    SuggestionClient,
)
from controller.collector_check import collector_problems, kind_problems
from controller.gpus import GpuAllocator
from controller.metrics import ControllerMetrics, default_metrics
from controller.operator import mirror
from controller.reconcile import (
    CollectionResult,
    ReconcileError,
    Reconciler,
    StepResult,
    objective_from_spec,
)
from controller.runners.kubernetes import KubeApi, KubeError, KubernetesRunner, owner_reference
from controller.sidecar import EXPERIMENT_LABEL, CollectorSettings
from controller.template_check import template_problems
from metrics_collector.dbclient import ADDRESS_ENV as DB_MANAGER_ENV
from tunery.experiment import ExperimentError, load_experiment
from tunery.seeding import is_queued
from tunery.store.base import ExperimentRecord, Store, TrialRecord, utcnow
from tunery.store.errors import NotFoundError
from tunery.trials import UNAVAILABLE, Objective, TrialCondition, summarize_metrics

log = logging.getLogger(__name__)

COMPONENT = "tunery-operator"
NAMESPACE_KEY = "namespace"
UID_ANNOTATION = "tunery.io/experiment-uid"
_MUTABLE = ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount")
_ACTIVE = (TrialCondition.CREATED, TrialCondition.RUNNING)


@dataclass(frozen=True)
class OperatorSettings:
    """The operator's configuration (``tunery operator`` flags / environment).

    ``suggestion_endpoints`` maps algorithm names to other Suggestion services (custom
    algorithms); every other algorithm goes to ``suggestion_address``.
    """

    db_url: str | None = None
    namespaces: tuple[str, ...] = ()
    suggestion_address: str = "tunery-suggestion.tunery-system:6789"
    suggestion_endpoints: Mapping[str, str] = field(default_factory=dict)
    early_stopping_address: str = "tunery-earlystop.tunery-system:6788"
    db_manager_address: str = "tunery-db-manager.tunery-system:6789"
    collector_image: str = "ghcr.io/tunery/tunery:0.1.0"
    native_sidecar: bool = True
    interval_seconds: float = 5.0
    stop_grace_seconds: float = 30.0
    liveness_endpoint: str | None = None
    template_namespaces: tuple[str, ...] = ()
    collector_tls_secret: str = ""
    """A Secret (in each trial's namespace) with ``ca.crt`` (+ ``tls.crt``/``tls.key`` when
    ``collector_tls_mutual``) for trials and collectors to reach TLS-only services
    (``TUNERY_COLLECTOR_TLS_SECRET``, ``TUNERY_COLLECTOR_TLS_MUTUAL``)."""
    collector_tls_mutual: bool = False
    """Namespaces besides an Experiment's own whose ConfigMaps its trialTemplate.configMap
    may name (``*``: any); empty by default, so a user cannot make the operator read another
    namespace's ConfigMap."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from ``TUNERY_*`` variables (what ``deploy/operator.yaml`` sets).

        Raises:
            ValueError: a malformed ``TUNERY_SUGGESTION_ENDPOINTS`` or number.
        """
        import os

        from controller.clients import parse_endpoints

        env = os.environ if environ is None else environ
        defaults = cls()

        def pick(key: str, default: str) -> str:
            return env.get(key) or default

        return cls(
            db_url=env.get("TUNERY_DB_URL") or None,
            namespaces=tuple(
                n.strip() for n in env.get("TUNERY_NAMESPACES", "").split(",") if n.strip()
            ),
            suggestion_address=pick("TUNERY_SUGGESTION_ADDRESS", defaults.suggestion_address),
            suggestion_endpoints=parse_endpoints(env.get("TUNERY_SUGGESTION_ENDPOINTS") or None),
            early_stopping_address=pick(
                "TUNERY_EARLYSTOP_ADDRESS", defaults.early_stopping_address
            ),
            db_manager_address=pick(DB_MANAGER_ENV, defaults.db_manager_address),
            collector_image=pick("TUNERY_COLLECTOR_IMAGE", defaults.collector_image),
            native_sidecar=env.get("TUNERY_NATIVE_SIDECAR", "true").lower()
            not in ("0", "false", "no"),
            interval_seconds=float(
                pick("TUNERY_RECONCILE_INTERVAL", str(defaults.interval_seconds))
            ),
            liveness_endpoint=env.get("TUNERY_LIVENESS_ENDPOINT") or None,
            template_namespaces=tuple(
                n.strip()
                for n in env.get("TUNERY_TEMPLATE_NAMESPACES", "").split(",")
                if n.strip()
            ),
            collector_tls_secret=env.get("TUNERY_COLLECTOR_TLS_SECRET", ""),
            collector_tls_mutual=env.get("TUNERY_COLLECTOR_TLS_MUTUAL", "").lower() == "true",
        )

    def collector(self) -> CollectorSettings:
        return CollectorSettings(
            image=self.collector_image,
            db_manager_address=self.db_manager_address,
            early_stopping_address=self.early_stopping_address,
            native_sidecar=self.native_sidecar,
            tls_secret=self.collector_tls_secret,
            tls_mutual=self.collector_tls_mutual,
        )


class ClusterGpus(GpuAllocator):
    """The scheduler places GPUs in a cluster: every request fits, nothing is reserved here."""

    def __init__(self) -> None:
        super().__init__([])

    def check(self, count: int) -> None:
        return None

    def allocate(self, trial: str, count: int) -> list[str] | None:
        return []


class StoreWatcher:
    """A trial's metrics as the collector sidecar pushed them (DBManager -> store).

    :meth:`finish` summarises the stored observations the way Katib's trial controller does
    (min/max/latest per metric of the experiment's strategies).
    """

    def __init__(self, store: Store, trial: TrialRecord, objective: Objective) -> None:
        self.store = store
        self.trial = trial
        self.objective = objective

    def finish(self) -> CollectionResult:
        observations = self.store.get_observations(self.trial.name)
        summaries = summarize_metrics(observations, self.objective.metric_names)
        metrics = [
            {"name": s.name, "min": s.min, "max": s.max, "latest": s.latest}
            for s in summaries.values()
        ]
        objective = summaries[self.objective.metric_name]
        available = objective.latest != UNAVAILABLE
        message = ""
        if not available:
            message = (
                f"Metrics are not available: the trial reported no {self.objective.metric_name!r}"
                f" ({len(observations)} observation(s) of other metrics); check the trial's "
                "output (kubectl logs) and the collector's (container "
                "metrics-logger-and-collector)"
            )
        return CollectionResult(metrics, available, message)

    def close(self) -> None:
        return None


SuggestionFactory = Callable[[str], SuggestionClient]
EarlyStoppingFactory = Callable[[], EarlyStoppingClient]


class ExperimentOperator:
    """Reconciles Experiment custom resources. Thread-safe: one pass per experiment at a time."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        settings: OperatorSettings | None = None,
        *,
        suggestion_factory: SuggestionFactory | None = None,
        early_stopping_factory: EarlyStoppingFactory | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        metrics: ControllerMetrics | None = None,
        identity: str = "",
    ) -> None:
        self.api = api
        self.store = store
        self.metrics = metrics or default_metrics()
        self.identity = identity  # the replica (Lease holder) named in its events
        self.settings = settings or OperatorSettings()
        self.clock = clock
        self._suggestion_factory = suggestion_factory or self._grpc_suggestions
        self._early_stopping_factory = early_stopping_factory or (
            lambda: GrpcEarlyStoppingClient(self.settings.early_stopping_address)
        )
        self._reconcilers: dict[tuple[str, str], Reconciler] = {}  # by (namespace, name)
        # mirroring: the experiments whose every trial was mirrored by this operator, and per
        # experiment the changed trials not mirrored yet (see :meth:`sync`)
        self._mirrored: set[tuple[str, str]] = set()
        self._unmirrored: dict[tuple[str, str], dict[str, TrialRecord]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _grpc_suggestions(self, algorithm: str) -> SuggestionClient:
        address = self.settings.suggestion_endpoints.get(
            algorithm, self.settings.suggestion_address
        )
        return GrpcSuggestionClient(address)

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def _store(self, namespace: str) -> Store:
        """The store of one namespace's experiments and trials."""
        return self.store.in_namespace(namespace)

    # -- events ---------------------------------------------------------------------------------

    def event(
        self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        """Post a core/v1 Event about ``obj``; failures are logged, never raised."""
        meta = obj.get("metadata") or {}
        now = mirror.rfc3339(self.clock())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{meta.get('name', 'tunery')}.",
                "namespace": meta.get("namespace") or "default",
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        if self.identity:
            body["reportingInstance"] = self.identity
        try:
            self.api.create(body)
        except KubeError as exc:
            log.warning("cannot post event %s on %s: %s", reason, meta.get("name"), exc)

    # -- admission ------------------------------------------------------------------------------

    def _fail_resource(self, body: Mapping[str, Any], message: str) -> None:
        """Mark an Experiment CR Failed without a store record (invalid or clashing)."""
        meta = body.get("metadata") or {}
        current = _cr_current(body.get("status") or {})
        if current is not None and current.get("message") == message:
            return
        if current is None or current.get("type") != "Failed":
            self.metrics.experiment_failed.labels(meta.get("namespace") or "default").inc()
        now = self.clock()
        conditions = experiment_status.set_condition(
            (body.get("status") or {}).get("conditions") or [],
            "Failed",
            experiment_status.ExperimentReason.FAILED,
            message,
            now=now,
        )
        status = {
            "conditions": [
                {**c, "lastUpdateTime": mirror.rfc3339(c["lastUpdateTime"]),
                 "lastTransitionTime": mirror.rfc3339(c["lastTransitionTime"])}
                for c in conditions
            ],
            "completionTime": mirror.rfc3339(now),
        }  # fmt: skip
        try:
            self.api.patch(
                mirror.API_VERSION, "Experiment", meta.get("namespace", "default"),
                meta["name"], {"status": status}, subresource="status",
            )  # fmt: skip
        except KubeError as exc:
            log.warning("cannot write the status of %s: %s", meta.get("name"), exc)
        self.event(body, "ExperimentFailed", message, warning=True)

    def _document(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The validated, defaulted document to store (configMap templates resolved).

        Raises:
            ExperimentError: invalid.
            ValueError: the trial template ConfigMap cannot be read.
        """
        raw = {k: v for k, v in body.items() if k != "status"}
        meta = dict(raw.get("metadata") or {})
        raw["metadata"] = {
            k: v for k, v in meta.items() if k in ("name", "namespace", "labels", "annotations")
        }
        template = (raw.get("spec") or {}).get("trialTemplate") or {}
        if template.get("configMap") and not template.get("trialSpec"):
            raw = {**raw, "spec": {**raw["spec"], "trialTemplate": self._resolve_config_map(
                template, meta.get("namespace") or "default")}}  # fmt: skip
        document = load_experiment(raw).to_document()
        unsafe = template_problems(document) + collector_problems(document)
        unsafe += kind_problems(document)
        if unsafe:
            raise ExperimentError(unsafe)
        document.pop("status", None)
        document["metadata"].setdefault("annotations", {})[UID_ANNOTATION] = str(
            meta.get("uid", "")
        )
        document["metadata"]["namespace"] = meta.get("namespace") or "default"
        return document

    def _resolve_config_map(self, template: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        ref = template["configMap"]
        ns = ref.get("configMapNamespace") or namespace
        allowed = self.settings.template_namespaces
        if ns != namespace and ns not in allowed and "*" not in allowed:
            raise ValueError(
                f"spec.trialTemplate.configMap.configMapNamespace: {ns!r} is not the "
                f"experiment's namespace {namespace!r}; the operator reads trial-template "
                "ConfigMaps only there unless a cluster admin lists the namespace in "
                "TUNERY_TEMPLATE_NAMESPACES"
            )
        try:
            cm = self.api.get("v1", "ConfigMap", ns, ref["configMapName"])
        except KubeError as exc:
            raise ValueError(
                f"spec.trialTemplate.configMap: cannot read ConfigMap {ns}/"
                f"{ref.get('configMapName')}: {exc.message}"
            ) from None
        text = (cm.get("data") or {}).get(ref.get("templatePath", ""))
        if text is None:
            raise ValueError(
                f"spec.trialTemplate.configMap: ConfigMap {ns}/{ref['configMapName']} has no key "
                f"{ref.get('templatePath')!r}"
            )
        trial_spec = yaml.safe_load(text)
        resolved = {k: v for k, v in template.items() if k != "configMap"}
        resolved["trialSpec"] = trial_spec
        return resolved

    def admit(self, body: Mapping[str, Any]) -> bool:
        """Store a created, resumed or edited Experiment; False when it was rejected.

        A new experiment is created in the store. An existing one may change only
        parallelTrialCount, maxTrialCount and maxFailedTrialCount (Katib's rule); raising
        maxTrialCount of one that reached it restarts it when its resumePolicy allows. Any
        other change is refused with a Warning event, and the stored spec keeps running.
        """
        meta = body.get("metadata") or {}
        name, namespace = meta["name"], meta.get("namespace") or "default"
        try:
            document = self._document(body)
        except ExperimentError as exc:
            self._fail_resource(body, f"Experiment is invalid: {exc}")
            return False
        except ValueError as exc:
            self._fail_resource(body, str(exc))
            return False
        store = self._store(namespace)
        with self._lock(namespace, name):
            try:
                existing = store.get_experiment(name)
            except NotFoundError:
                store.create_experiment(name, document)
                now = self.clock()
                reason = experiment_status.ExperimentReason.CREATED
                store.update_experiment(
                    name,
                    status={
                        "startTime": now.isoformat(),
                        "conditions": experiment_status.set_condition(
                            [], "Created", reason, experiment_status.MESSAGES[reason], now=now
                        ),
                    },
                )
                self.event(body, reason, experiment_status.MESSAGES[reason])
                self.metrics.experiment_created.labels(namespace).inc()
                return True
            stored_meta = existing.spec.get("metadata") or {}
            stored_uid = (stored_meta.get("annotations") or {}).get(UID_ANNOTATION)
            if stored_uid and meta.get("uid") and stored_uid != meta["uid"]:
                # the stored one belonged to a deleted resource of the same name: start afresh
                log.info(
                    "experiment %s/%s was re-created; dropping the old record", namespace, name
                )
                self._drop(namespace, name)
                return self.admit(body)
            return self._resubmit(body, existing.spec, existing.status, document)

    def _resubmit(
        self,
        body: Mapping[str, Any],
        stored: Mapping[str, Any],
        stored_status: Mapping[str, Any],
        document: Mapping[str, Any],
    ) -> bool:
        name = document["metadata"]["name"]
        namespace = document["metadata"].get("namespace") or "default"
        old, new = dict(stored["spec"]), dict(document["spec"])
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        forbidden = [k for k in changed if k not in _MUTABLE]
        if forbidden:
            self.event(
                body,
                "SpecChangeRefused",
                f"only parallelTrialCount, maxTrialCount and maxFailedTrialCount may change; "
                f"the change of {', '.join('spec.' + k for k in forbidden)} is ignored (delete "
                "and re-create the experiment to change them)",
                warning=True,
            )
            return False
        if not changed:
            return True
        new_status = dict(stored_status)
        if experiment_status.is_completed(stored_status):
            current = experiment_status.current_condition(stored_status) or {}
            restartable = current.get(
                "reason"
            ) == experiment_status.ExperimentReason.MAX_TRIALS_REACHED and new.get(
                "resumePolicy", "Never"
            ) in ("LongRunning", "FromVolume")
            have = stored_status.get("trials", 0)
            new_max = new.get("maxTrialCount")
            if not restartable or (new_max is not None and new_max <= have):
                self.event(
                    body,
                    "RestartRefused",
                    f"experiment is completed ({current.get('reason')}); only one that reached "
                    "maxTrialCount with resumePolicy LongRunning or FromVolume can continue, "
                    f"with maxTrialCount above its {have} trials",
                    warning=True,
                )
                return False
            reason = experiment_status.ExperimentReason.RESTARTING
            new_status["conditions"] = experiment_status.set_condition(
                stored_status.get("conditions", []), "Restarting", reason,
                experiment_status.MESSAGES[reason], now=self.clock(),
            )  # fmt: skip
            new_status.pop("completionTime", None)
            new_status.pop("suggestionEndReached", None)
            self.event(body, reason, experiment_status.MESSAGES[reason])
        record = self._store(namespace).update_experiment(
            name, spec={**stored, "spec": new}, status=new_status
        )
        self._forget(namespace, name)  # the reconciler re-reads the spec
        if experiment_status.is_completed(stored_status):
            # a finished Experiment has no timer (is_finished): its status wakes it up
            self._write_experiment_status(body, record)
        return True

    # -- reconciling ----------------------------------------------------------------------------

    def _reconciler(
        self, name: str, namespace: str, experiment_body: Mapping[str, Any]
    ) -> Reconciler:
        with self._guard:
            existing = self._reconcilers.get((namespace, name))
        if existing is not None:
            return existing
        store = self._store(namespace)
        record = store.get_experiment(name)
        spec = record.spec["spec"]
        early = bool((spec.get("earlyStopping") or {}).get("algorithmName"))
        experiment_owner = owner_reference(experiment_body)

        def trial_owner(trial_name: str) -> Mapping[str, Any]:
            trial = self.ensure_trial(record.spec, trial_name, experiment_owner)
            return owner_reference(trial)

        runner = KubernetesRunner(
            self.api,
            namespace=namespace,
            spec=spec,
            collector=self.settings.collector(),
            owner=trial_owner,
            stop_rules=lambda trial_name: list(store.get_trial(trial_name).early_stopping_rules),
            extra_env={DB_MANAGER_ENV: self.settings.db_manager_address},
        )
        objective = objective_from_spec(spec)
        reconciler = Reconciler(
            store,
            name,
            runner=runner,
            suggestions=self._suggestion_factory(spec["algorithm"]["algorithmName"]),
            watcher_factory=lambda trial, _o, _s, _cb, **_: StoreWatcher(store, trial, objective),
            allocator=ClusterGpus(),
            base_dir=Path("."),
            logs_dir=Path("."),
            early_stopping=self._early_stopping_factory() if early else None,
            namespace=namespace,
            clock=self.clock,
            stop_grace_seconds=self.settings.stop_grace_seconds,
            metrics=self.metrics,
        )
        if not experiment_status.is_completed(record.status):
            reconciler.validate()
        with self._guard:
            self._reconcilers[(namespace, name)] = reconciler
        return reconciler

    def _forget(self, namespace: str, name: str) -> None:
        with self._guard:
            reconciler = self._reconcilers.pop((namespace, name), None)
            self._mirrored.discard((namespace, name))  # the next pass mirrors every trial
            self._unmirrored.pop((namespace, name), None)
        if reconciler is not None:
            reconciler.close()
            reconciler.suggestions.close()
            if reconciler.early_stopping is not None:
                reconciler.early_stopping.close()

    def reconcile(self, body: Mapping[str, Any]) -> StepResult | None:
        """One pass over the Experiment ``body`` (a resource as read from the cluster).

        Returns the reconciler's step result (None when there was nothing to run).

        Raises:
            KubeUnavailableError, StoreUnavailableError: transient; the next pass retries.
        """
        meta = body["metadata"]
        name, namespace = meta["name"], meta.get("namespace") or "default"
        store = self._store(namespace)
        with self._lock(namespace, name):
            try:
                record = store.get_experiment(name)
            except NotFoundError:
                record = None
        if record is None:
            if not self.admit(body):
                return None
            record = store.get_experiment(name)
        result: StepResult | None = None
        with self._lock(namespace, name):
            if experiment_status.is_completed(record.status) and is_finished(body):
                return None  # mirrored when it finished: a finished experiment goes quiet
            active = store.list_trials(name, _ACTIVE)  # not the history: a pass stays flat
            done = experiment_status.is_completed(record.status) and not active
            if not done:
                try:
                    reconciler = self._reconciler(name, namespace, body)
                    self._trim_parallel(reconciler, active)
                    result = reconciler.step()
                except ReconcileError as exc:
                    log.warning("experiment %s/%s failed: %s", namespace, name, exc)
                    self._forget(namespace, name)
                except ServiceCallError as exc:
                    log.warning("experiment %s/%s: service unavailable: %s", namespace, name, exc)
            self.sync(body, result)
        return result

    def _trim_parallel(self, reconciler: Reconciler, trials: Sequence[TrialRecord]) -> None:
        """Stop the newest active trials beyond a lowered parallelTrialCount (Killed, with a
        message saying why), as Katib deletes the newest extra trials. ``trials``: the active
        ones, in creation order."""
        spec = reconciler.store.get_experiment(reconciler.name).spec["spec"]
        parallel = int(spec.get("parallelTrialCount") or 3)
        active = [t for t in trials if not is_queued(t)]  # enqueued ones wait: not extra
        if len(active) <= parallel:
            return
        extra = active[parallel:]  # creation order: the newest are last
        log.info("experiment %s: stopping %d trial(s) over parallelTrialCount %d",
                 reconciler.name, len(extra), parallel)  # fmt: skip
        reconciler.interrupt(f"parallelTrialCount was lowered to {parallel}", extra)

    # -- mirroring ------------------------------------------------------------------------------

    def ensure_trial(
        self,
        document: Mapping[str, Any],
        trial_name: str,
        experiment_owner: Mapping[str, Any] | None,
        existing: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The Trial CR of a stored trial, created when missing."""
        namespace = (document.get("metadata") or {}).get("namespace") or "default"
        if existing is not None and trial_name in existing:
            return dict(existing[trial_name])
        try:
            return self.api.get(mirror.API_VERSION, "Trial", namespace, trial_name)
        except KubeError as exc:
            if not exc.not_found:
                raise
        trial = self._store(namespace).get_trial(trial_name)
        body = mirror.trial_document(trial, document, experiment_owner)
        try:
            created = self.api.create(body)
        except KubeError as exc:
            if not exc.conflict:
                raise
            return self.api.get(mirror.API_VERSION, "Trial", namespace, trial_name)
        self.event(created, "TrialCreated", f"Trial {trial_name} is created")
        return created

    def sync(self, body: Mapping[str, Any], step: StepResult | None = None) -> None:
        """Mirror the store into the cluster: Trial CRs and status, finished jobs, the
        Suggestion, the Experiment status, and events for what changed since the last pass.

        The first pass of this operator over an experiment (and any pass without a ``step``)
        mirrors every trial; after it, a pass mirrors only the trials the reconciler's
        ``step`` saw change (and those a failed pass left), so its cost follows what changed,
        not the history. A trial whose mirroring failed is tried again next pass."""
        meta = body["metadata"]
        name, namespace = meta["name"], meta.get("namespace") or "default"
        key = (namespace, name)
        store = self._store(namespace)
        record = store.get_experiment(name)
        document = record.spec
        spec = document["spec"]
        objective = objective_from_spec(spec)
        now = self.clock()
        owner = owner_reference(body)
        with self._guard:
            incremental = step is not None and key in self._mirrored
            unmirrored = self._unmirrored.setdefault(key, {})
        existing: dict[str, Mapping[str, Any]] | None = None
        if incremental:
            assert step is not None
            trials = step.trials  # every trial, as the reconciler's view holds them
            unmirrored.update((t.name, t) for t in step.changed)
            changed = list(unmirrored.values())
        else:
            trials = changed = store.list_trials(name)
            unmirrored.clear()
            unmirrored.update((t.name, t) for t in trials)
            existing = {
                t["metadata"]["name"]: t
                for t in self.api.list(
                    mirror.API_VERSION, "Trial", namespace, f"{EXPERIMENT_LABEL}={name}"
                )
            }
        retain = bool((spec.get("trialTemplate") or {}).get("retain"))
        for trial in changed:
            cr = self.ensure_trial(document, trial.name, owner, existing)
            previous = cr.get("status") or {}
            new_status = mirror.trial_status_document(trial, previous, objective, now)
            if _differs(previous, new_status):
                self.api.patch(
                    mirror.API_VERSION, "Trial", namespace, trial.name,
                    {"status": merge_patch(previous, new_status)}, subresource="status",
                )  # fmt: skip
                self._trial_event(cr, previous, trial)
            ended = trial.condition.is_terminal and trial.completion_time and not retain
            if ended and not self._delete_job(store, trial):
                continue  # stays unmirrored: its job is deleted next pass
            unmirrored.pop(trial.name, None)
        active = store.list_trials(name, _ACTIVE) if incremental else None
        self._sync_suggestion(body, document, trials, now, active)
        self._write_experiment_status(body, record)
        with self._guard:
            self._mirrored.add(key)

    def _write_experiment_status(self, body: Mapping[str, Any], record: ExperimentRecord) -> None:
        """Mirror the stored status onto the Experiment CR (with an event when it moved)."""
        meta = body["metadata"]
        status_doc = mirror.experiment_status_document(
            record, objective_from_spec(record.spec["spec"])
        )
        previous = body.get("status") or {}
        if _differs(previous, status_doc):
            self.api.patch(
                mirror.API_VERSION, "Experiment", meta.get("namespace") or "default",
                meta["name"], {"status": merge_patch(previous, status_doc)},
                subresource="status",
            )  # fmt: skip
            self._experiment_event(body, previous, status_doc)

    def _delete_job(self, store: Store, trial: TrialRecord) -> bool:
        """Delete a finished trial's job; False when it could not be deleted now."""
        handle = trial.runner_handle
        if not handle or handle.get("deleted"):
            return True
        try:
            self.api.delete(
                handle["apiVersion"], handle["kind"], handle["namespace"], handle["name"]
            )
        except KubeError as exc:
            log.warning("cannot delete the job of %s: %s", trial.name, exc)
            return False
        kept = {k: v for k, v in handle.items() if k != "job"}  # no re-creation after the end
        store.update_trial(trial.name, runner_handle={**kept, "deleted": True})
        return True

    def _sync_suggestion(
        self,
        body: Mapping[str, Any],
        document: Mapping[str, Any],
        trials: Sequence[TrialRecord],
        now: dt.datetime,
        active: Sequence[TrialRecord] | None = None,
    ) -> None:
        namespace = document["metadata"].get("namespace") or "default"
        name = document["metadata"]["name"]
        try:
            current = self.api.get(mirror.API_VERSION, "Suggestion", namespace, name)
        except KubeError as exc:
            if not exc.not_found:
                raise
            current = self.api.create(mirror.suggestion_document(document, owner_reference(body)))
            self._ensure_suggestion_volume(body, document)
        record = self._store(namespace).get_experiment(name)
        new_status = mirror.suggestion_status_document(
            trials, record.status, current.get("status") or {}, now, active=active
        )
        if (current.get("spec") or {}).get("requests") != len(trials):
            self.api.patch(
                mirror.API_VERSION,
                "Suggestion",
                namespace,
                name,
                {"spec": {"requests": len(trials)}},
            )
        if _differs(current.get("status") or {}, new_status, ignore=("conditions",)) or (
            _condition_types(current.get("status")) != _condition_types(new_status)
        ):
            self.api.patch(
                mirror.API_VERSION, "Suggestion", namespace, name,
                {"status": merge_patch(current.get("status") or {}, new_status)},
                subresource="status",
            )  # fmt: skip

    def _ensure_suggestion_volume(
        self, body: Mapping[str, Any], document: Mapping[str, Any]
    ) -> None:
        """Create the claim trials mount at ``suggestion_trial_dir`` (pbt's checkpoints), as
        Katib's suggestion controller does; an existing claim of that name is kept."""
        namespace = document["metadata"].get("namespace") or "default"
        claim = checkpoints.claim_document(
            document["spec"], document["metadata"]["name"], namespace, owner_reference(body)
        )
        if claim is None:
            return
        try:
            self.api.create(claim)
        except KubeError as exc:
            if not exc.conflict:
                raise

    def _trial_event(
        self, cr: Mapping[str, Any], previous: Mapping[str, Any], trial: TrialRecord
    ) -> None:
        before = _current_type(previous)
        if before == trial.condition.value:
            return
        warning = trial.condition in (TrialCondition.FAILED, TrialCondition.METRICS_UNAVAILABLE)
        self.event(
            cr, trial.reason.split(".")[0] or trial.condition.value, trial.message, warning=warning
        )

    def _experiment_event(
        self, body: Mapping[str, Any], previous: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        before = _cr_current(previous) or {}
        after = _cr_current(new) or {}
        if (before.get("type"), before.get("reason")) == (after.get("type"), after.get("reason")):
            return
        if after.get("reason") == experiment_status.ExperimentReason.CREATED:
            return  # posted by admit()
        message = str(after.get("message", ""))
        best = (new.get("currentOptimalTrial") or {}).get("bestTrialName")
        if after.get("type") == "Succeeded" and best:
            message += f"; best trial {best} ({new.get('bestObjectiveValue')})"
        self.event(
            body, str(after.get("reason", "")), message, warning=after.get("type") == "Failed"
        )

    # -- deletion -------------------------------------------------------------------------------

    def delete(self, body: Mapping[str, Any]) -> None:
        """Stop the experiment's running jobs and delete it from the store (with its trials and
        observation logs). Trial resources and jobs are garbage-collected by their owners."""
        meta = body["metadata"]
        name, namespace = meta["name"], meta.get("namespace") or "default"
        store = self._store(namespace)
        with self._lock(namespace, name):
            try:
                store.get_experiment(name)
            except NotFoundError:
                return
            trial_count = len(store.list_trials(name))
            self._drop(namespace, name, body)
            self.metrics.experiment_deleted.labels(namespace).inc()
            if trial_count:  # their Trial resources go with the Experiment (owner references)
                self.metrics.trial_deleted.labels(namespace).inc(trial_count)

    def _drop(self, namespace: str, name: str, body: Mapping[str, Any] | None = None) -> None:
        with self._guard:
            reconciler = self._reconcilers.get((namespace, name))
        try:
            if reconciler is None and body is not None:
                reconciler = self._reconciler_for_delete(namespace, name)
            if reconciler is not None:
                reconciler.interrupt("the experiment was deleted")
        except (KubeError, ReconcileError, ServiceCallError) as exc:
            log.warning("stopping the trials of %s/%s: %s", namespace, name, exc)
        finally:
            self._forget(namespace, name)
        with contextlib.suppress(NotFoundError):
            self._store(namespace).delete_experiment(name)

    def _reconciler_for_delete(self, namespace: str, name: str) -> Reconciler | None:
        """A reconciler able to stop trials, without validating the experiment again."""
        store = self._store(namespace)
        trials = store.list_trials(name)
        if not any(t.condition.is_active for t in trials):
            return None
        record = store.get_experiment(name)
        runner = KubernetesRunner(
            self.api, namespace=namespace, spec=record.spec["spec"],
            collector=self.settings.collector(),
        )  # fmt: skip
        objective = objective_from_spec(record.spec["spec"])
        return Reconciler(
            store, name, runner=runner, suggestions=_NoSuggestions(),
            watcher_factory=lambda trial, _o, _s, _cb, **_: StoreWatcher(store, trial, objective),
            allocator=ClusterGpus(), base_dir=Path("."), logs_dir=Path("."),
            namespace=namespace, clock=self.clock, stop_grace_seconds=0, metrics=self.metrics,
        )  # fmt: skip

    def close(self) -> None:
        with self._guard:
            keys = list(self._reconcilers)
        for namespace, name in keys:
            self._forget(namespace, name)


class _NoSuggestions:
    """A suggestion client for deletion passes, which never ask for suggestions."""

    def get_suggestions(self, request: Any) -> Any:
        raise RuntimeError("no suggestions are requested while deleting")

    def validate_algorithm_settings(self, request: Any) -> None:
        return None

    def close(self) -> None:
        return None


def is_finished(body: Mapping[str, Any]) -> bool:
    """Whether the Experiment resource ``body`` shows Succeeded or Failed: kopf runs no timer
    for it (nothing is listed or fetched for it again) until its status moves (a raised
    maxTrialCount restarts it and writes Restarting)."""
    current = _cr_current(body.get("status") or {})
    return current is not None and current.get("type") in ("Succeeded", "Failed")


def _cr_current(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The current condition of a status the operator wrote: the last one that is True
    (timestamps have one-second resolution there, so they cannot order conditions)."""
    true = [c for c in (status or {}).get("conditions") or [] if c.get("status") == "True"]
    return true[-1] if true else None


def _current_type(status: Mapping[str, Any]) -> str | None:
    current = _cr_current(status)
    return None if current is None else str(current.get("type"))


def _condition_types(status: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    return [
        (c.get("type", ""), c.get("status", "")) for c in (status or {}).get("conditions") or []
    ]


def merge_patch(previous: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning the status ``previous`` into ``new``: the new
    keys, and ``null`` for every key ``new`` no longer has (completionTime after a restart)."""
    patch = dict(new)
    for key in previous:
        if key not in new:
            patch[key] = None
    return patch


def _differs(
    previous: Mapping[str, Any],
    new: Mapping[str, Any],
    ignore: Sequence[str] = ("lastReconcileTime",),
) -> bool:
    """True when ``new`` changes something in ``previous`` (ignoring timestamps of passes),
    or drops one of its keys."""
    for key, value in new.items():
        if key in ignore:
            continue
        if previous.get(key) != value:
            return True
    return any(key not in new for key in previous)
