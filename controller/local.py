"""Run an experiment on this machine: submit it to the store, then reconcile until it is done.

Called by ``tunery run`` / ``tunery resume`` and by the SDK's local ``tune()``. Wires the
embedded defaults together: the store (SQLite unless a URL is given), local processes with
GPUs assigned, in-process suggestion and early-stopping services (or gRPC endpoints mapped per
algorithm name), and a collector per trial tailing its log. SIGINT (KeyboardInterrupt), SIGTERM
and SIGHUP stop the running trials and leave the experiment interrupted and resumable.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller import status
from controller.clients import (
    EarlyStoppingClient,
    InProcessEarlyStoppingClient,
    suggestion_client,
)
from controller.collecting import LogWatcher
from controller.gpus import (
    GPU_OPTIONAL_ANNOTATION,
    TRIALS_PER_GPU_ANNOTATION,
    GpuAllocator,
    discover_gpus,
)
from controller.interrupts import SignalWatch, shielded, signal_name
from controller.metrics import default_metrics
from controller.reconcile import Reconciler, StepResult, objective_from_spec
from controller.runners.local import LocalRunner
from tunery.retry import RetryPolicy
from tunery.store.base import Store, TrialRecord
from tunery.store.errors import NotFoundError
from tunery.store.retrying import RetryingStore
from tunery.trials import Objective, StopCheck

log = logging.getLogger(__name__)

BASE_DIR_KEY = "localBaseDir"
WRITE_BEHIND_SECONDS = 0.1
"""How long the driver lets the experiment status and started trials' runner handles wait, to
be written with a later transaction (:meth:`Reconciler.flush`): a trial costs fewer store
transactions, and readers see the counters at most this late (conditions are written at
once)."""
_MUTABLE_SPEC_FIELDS = (
    "parallelTrialCount",
    "maxTrialCount",
    "maxFailedTrialCount",
    "resumePolicy",
)


class SubmitError(ValueError):
    """The experiment cannot be (re)submitted as given; the message says why."""


@dataclass(frozen=True)
class LocalSettings:
    """How to run locally. ``endpoints`` maps algorithm names to gRPC Suggestion servers.

    Early stopping runs in process: the stopper decides as each metric arrives, which a
    remote EarlyStopping service (rules fixed when a trial starts) cannot match locally."""

    logs_dir: Path = Path(".tunery/logs")
    endpoints: Mapping[str, str] = field(default_factory=dict)
    poll_interval: float = 0.5
    stop_grace_seconds: float = 10.0
    outage: RetryPolicy = field(default_factory=RetryPolicy.from_env)
    """How long a database or suggestion-service outage is waited out (docs/local.md)."""


def submit(
    store: Store, document: Mapping[str, Any], base_dir: Path, *, now: dt.datetime | None = None
) -> tuple[str, bool]:
    """Create the experiment, or accept a re-submission of the same one.

    A re-submitted document may change only parallelTrialCount, maxTrialCount,
    maxFailedTrialCount (as Katib's webhook allows) and resumePolicy. Raising maxTrialCount of
    an experiment that finished with ExperimentMaxTrialsReached restarts it, whatever its
    resumePolicy: Katib's policy says whether a cluster keeps the suggestion service (and its
    volume) after the end, while locally every piece of state is in the store and the
    algorithm rebuilds from the stored trials. (The operator keeps Katib's rule.)

    Returns:
        (name, created): ``created`` is False when it already existed.

    Raises:
        SubmitError: a different spec under the same name, or a change that cannot continue a
            completed experiment.
    """
    name = document["metadata"]["name"]
    now = now or dt.datetime.now(dt.UTC)
    try:
        existing = store.get_experiment(name)
    except NotFoundError:
        store.create_experiment(name, document)
        reason = status.ExperimentReason.CREATED
        store.update_experiment(
            name,
            status={
                "startTime": now.isoformat(),
                BASE_DIR_KEY: str(base_dir.resolve()),
                "conditions": status.set_condition(
                    [], "Created", reason, status.MESSAGES[reason], now=now
                ),
            },
        )
        namespace = (document.get("metadata") or {}).get("namespace") or "default"
        default_metrics().experiment_created.labels(namespace).inc()
        return name, True
    old_spec, new_spec = dict(existing.spec["spec"]), dict(document["spec"])
    changed = sorted(
        k
        for k in set(old_spec) | set(new_spec)
        if old_spec.get(k) != new_spec.get(k) and k not in _MUTABLE_SPEC_FIELDS
    )
    if changed:
        raise SubmitError(
            f"experiment {name!r} already exists with a different spec (changed: "
            f"{', '.join('spec.' + k for k in changed)}); only parallelTrialCount, "
            f"maxTrialCount, maxFailedTrialCount and resumePolicy may change. Use another name "
            "or delete the experiment first"
        )
    new_status = dict(existing.status)
    current = status.current_condition(existing.status)
    old_max, new_max = old_spec.get("maxTrialCount"), new_spec.get("maxTrialCount")
    raised = old_max is not None and (new_max is None or new_max > old_max)
    if status.is_completed(existing.status) and raised:
        ended = current.get("reason") if current else None
        if ended != status.ExperimentReason.MAX_TRIALS_REACHED:
            raise SubmitError(
                f"experiment {name!r} is completed ({ended}) and cannot continue: only an "
                "experiment that ended with ExperimentMaxTrialsReached gets more trials"
            )
        have = existing.status.get("trials", 0)
        if new_max is not None and new_max <= have:
            raise SubmitError(
                f"spec.maxTrialCount: {new_max} must be greater than the {have} trials the "
                "experiment already has"
            )
        reason = status.ExperimentReason.RESTARTING
        new_status["conditions"] = status.set_condition(
            existing.status.get("conditions", []),
            "Restarting",
            reason,
            status.MESSAGES[reason],
            now=now,
        )
        new_status.pop("completionTime", None)
        new_status.pop("suggestionEndReached", None)
    if old_spec != new_spec:
        store.update_experiment(name, spec={**existing.spec, "spec": new_spec})
    new_status.setdefault(BASE_DIR_KEY, str(base_dir.resolve()))
    store.update_experiment(name, status=new_status)
    return name, False


def _stopper_factory(
    store: Store, name: str, spec: Mapping[str, Any], objective: Objective
) -> Callable[[TrialRecord], StopCheck | None] | None:
    early = spec.get("earlyStopping") or {}
    if not early.get("algorithmName"):
        return None
    from earlystop import get_early_stopper
    from earlystop.inprocess import InProcessEarlyStopping, StoreCompletedSource

    stopper_cls = get_early_stopper(early["algorithmName"])
    stopper = stopper_cls.from_settings(
        {s["name"]: str(s.get("value", "")) for s in early.get("algorithmSettings") or []}
    )
    shared = InProcessEarlyStopping(
        stopper,
        objective,
        StoreCompletedSource(
            store, name, objective.metric_name, conditions=stopper.compared_conditions
        ),
    )
    return lambda _trial: shared.stop_check()


def _early_stopping_client(
    store: Store, spec: Mapping[str, Any], settings: LocalSettings
) -> EarlyStoppingClient | None:
    early = spec.get("earlyStopping") or {}
    if not early.get("algorithmName"):
        return None
    from earlystop.service import EarlyStoppingServicer

    return InProcessEarlyStoppingClient(EarlyStoppingServicer(store))


def build_reconciler(
    store: Store, name: str, settings: LocalSettings, *, runner: LocalRunner | None = None
) -> Reconciler:
    record = store.get_experiment(name)
    spec = record.spec["spec"]
    annotations = (record.spec.get("metadata") or {}).get("annotations") or {}
    per_gpu = int(annotations.get(TRIALS_PER_GPU_ANNOTATION, "1"))
    objective = objective_from_spec(spec)
    algorithm = spec["algorithm"]["algorithmName"]
    logs_dir = settings.logs_dir
    return Reconciler(
        store,
        name,
        runner=runner or LocalRunner(),
        suggestions=suggestion_client(algorithm, settings.endpoints, settings.outage),
        early_stopping=_early_stopping_client(store, spec, settings),
        watcher_factory=LogWatcher.factory(store, record.spec, hold_last_rows=True),
        stopper_factory=_stopper_factory(store, name, spec, objective),
        allocator=GpuAllocator(
            discover_gpus(),
            per_gpu,
            optional=annotations.get(GPU_OPTIONAL_ANNOTATION, "").lower() == "true",
        ),
        base_dir=Path(record.status.get(BASE_DIR_KEY, ".")),
        logs_dir=logs_dir,
        stop_grace_seconds=settings.stop_grace_seconds,
        write_behind=WRITE_BEHIND_SECONDS,
    )


ProgressCallback = Callable[[StepResult, list[TrialRecord]], None]
GiveUpRule = Callable[[Sequence[TrialRecord]], str | None]


def run_until_done(
    store: Store,
    name: str,
    settings: LocalSettings,
    *,
    on_progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
    give_up: GiveUpRule | None = None,
) -> StepResult:
    """Reconcile ``name`` until it completes (or ``stop_event`` is set / a signal arrives).

    SIGINT (Ctrl-C), SIGTERM and SIGHUP all stop the running trials (Killed), mark the
    experiment interrupted (:func:`controller.status.mark_interrupted`; it stays resumable)
    and raise a KeyboardInterrupt (``KeyboardInterrupt("SIGTERM")`` for a signal).

    ``give_up`` sees each step's trials; when it returns a message the running trials are
    stopped and the experiment is marked Failed with it (the SDK's fail-fast).

    Raises:
        KeyboardInterrupt: after stopping the running trials (the experiment is resumable).
        ReconcileError: the experiment failed validation or its suggestion service failed.
        StoreUnavailableError, ServiceUnavailableError: an outage outlasted
            ``settings.outage.limit``; running trials keep running (resume picks them up).
    """
    if not isinstance(store, RetryingStore):
        store = RetryingStore(store, settings.outage)
    wake = threading.Event()
    runner = LocalRunner(on_exit=wake.set)
    reconciler = build_reconciler(store, name, settings, runner=runner)
    try:
        with SignalWatch(wake.set) as signals:
            if not status.is_completed(store.get_experiment(name).status):
                reconciler.validate()
            while True:
                # Cleared before the step, not after the wait: an exit during the step or
                # the wait sets it for the next wait; one between the wait and this line is
                # seen by the step itself (it polls the runner).
                wake.clear()
                signals.raise_if_received()
                result = reconciler.step()
                why = None if give_up is None or result.done else give_up(result.trials)
                if why:
                    result = reconciler.fail(why)
                if on_progress is not None:
                    on_progress(result, result.trials)
                if result.done:
                    return result
                signals.raise_if_received()
                if stop_event is not None and stop_event.is_set():
                    _interrupt(store, name, reconciler, "stopped by the caller")
                    return result
                if result.finished and not result.started:
                    continue  # slots freed, none filled: look again at once
                # a trial's exit wakes the loop (also one during the step: wake is still set)
                due = reconciler.flush()  # what was written behind, once it is due
                wake.wait(
                    settings.poll_interval if due is None else min(settings.poll_interval, due)
                )
    except KeyboardInterrupt as exc:
        _interrupt(store, name, reconciler, f"interrupted ({signal_name(exc) or 'Ctrl-C'})")
        raise
    finally:
        reconciler.close()
        runner.close()


def _interrupt(store: Store, name: str, reconciler: Reconciler, why: str) -> None:
    """Stop the running trials and mark the experiment interrupted; signals wait meanwhile."""
    with shielded():
        reconciler.interrupt(why)
        record = store.get_experiment(name)
        if not status.is_completed(record.status):
            message = f"Experiment was {why}; it is resumable: tunery resume {name}"
            store.update_experiment(
                name,
                status=status.mark_interrupted(record.status, message, dt.datetime.now(dt.UTC)),
            )
