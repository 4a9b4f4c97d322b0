"""The reconcile step: Katib's experiment semantics, one pass at a time, state in the store.

Called by ``controller.local`` (``tunery run``/``resume``) in a loop, and by the operator. Each
:meth:`Reconciler.step` reads the experiment and the trials written since its previous step
(the store's change counter; a :class:`controller.trial_view.TrialView` keeps counts and the
best trial from them), decides, acts (start, stop, finish trials; ask for suggestions, each
trial encoded once per change) and writes the result back, at a cost that follows what
changed rather than the experiment's history. Nothing that
matters lives only in memory: watchers and GPU allocations are rebuilt from the store and the
trials' runner handles after a restart, so a killed controller resumes where it stopped with
no trial run twice and no observation lost.

Differences from Katib, on purpose (design.md): every trial reaches a terminal condition with a
reason and message; when the experiment completes (goal reached, failed) trials still running
are stopped and marked Killed instead of left running; ExperimentSuggestionEndReached is emitted
when the algorithm has no new assignment left; MetricsUnavailable trials count toward
maxTrialCount.

tunery's extensions (:mod:`tunery.seeding`): enqueued points are Created trials made up front;
they start oldest first, never more than parallelTrialCount at a time, before the algorithm is
asked for more, and an interruption leaves those not yet started queued. Warm-start trials
(Succeeded, reason WarmStart, never run) reach the algorithm like completed trials and do not
count toward maxTrialCount.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc

from controller import checkpoints, paths, protos, status
from controller.clients import (
    EarlyStoppingClient,
    ServiceCallError,
    ServiceUnavailableError,
    SuggestionClient,
)
from controller.gpus import GpuAllocator, GpuRequestError, gpu_request
from controller.local_collectors import tfevent_plan
from controller.metrics import ControllerMetrics, default_metrics
from controller.runners.base import (
    JOB_NOT_FOUND,
    NOT_STARTED,
    Handle,
    LaunchError,
    RunnerError,
    RunnerUnavailableError,
    RunPhase,
    RunState,
    TrialLaunch,
    TrialRunner,
)
from controller.templating import TemplateError, TrialMeta, primary_container, render_trial_job
from controller.trial_logs import failure_message
from controller.trial_view import TrialView
from tunery import seeding
from tunery.api import api_pb2
from tunery.seeding import is_queued, is_warm_start
from tunery.store.base import ExperimentRecord, Store, TrialRecord, TrialUpdate, utcnow
from tunery.store.errors import NotFoundError
from tunery.trials import (
    MetricStrategy,
    Objective,
    ObjectiveTerm,
    ObjectiveType,
    Observation,
    StopCheck,
    StopDecision,
    TrialCondition,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
_NAME_ALPHABET = string.ascii_lowercase + string.digits


class ReconcileError(Exception):
    """The experiment cannot proceed; the message says why (it is also in its status)."""


@dataclass(frozen=True)
class CollectionResult:
    """What a watcher collected by the end of a trial."""

    metrics: list[dict[str, str]]  # Katib's observation.metrics: name, min, max, latest
    objective_available: bool
    unavailable_message: str = ""
    pending: Sequence[Observation] = ()
    """The trial's last observations, collected but not yet stored: the reconciler stores
    them with its outcome, in one transaction (the trial's files still hold them until then,
    so a controller that dies first collects them again)."""


class TrialWatcher(Protocol):
    """Collects one running trial's metrics (see ``controller.collecting``)."""

    def finish(self) -> CollectionResult:
        """Drain all remaining output, store every observation (or return those it did not
        store in ``pending``: the reconciler stores them with the outcome), and summarise."""

    def close(self) -> None:
        """Stop watching without finishing (controller shutting down)."""


class WatcherFactory(Protocol):
    """Makes the watcher of a trial: ``make_stop_check`` builds its early-stopping check,
    ``on_stop`` is called when that says stop; ``fresh``: the trial was started just now, so
    the store holds nothing of its output yet (a re-attached one is matched against it)."""

    def __call__(
        self,
        trial: TrialRecord,
        objective: Objective,
        make_stop_check: Callable[[], StopCheck | None],
        on_stop: Callable[[StopDecision], None],
        /,
        *,
        fresh: bool = False,
    ) -> TrialWatcher: ...


StopperFactory = Callable[[TrialRecord], StopCheck | None]


def objective_from_spec(spec: Mapping[str, Any]) -> Objective:
    """The kernel Objective of a (defaulted) Experiment spec document."""
    o = spec["objective"]
    return Objective(
        type=ObjectiveType(o["type"]),
        metric_name=o["objectiveMetricName"],
        goal=None if o.get("goal") is None else float(o["goal"]),
        additional_metric_names=tuple(o.get("additionalMetricNames") or ()),
        strategies={
            s["name"]: MetricStrategy(s["value"]) for s in o.get("metricStrategies") or []
        },
        constraints=tuple(o.get("constraints") or ()),
        extra_objectives=tuple(
            ObjectiveTerm(
                item["name"],
                ObjectiveType(item["type"]),
                None if item.get("goal") is None else float(item["goal"]),
            )
            for item in (o.get("objectives") or [])[1:]
        ),
    )


@dataclass(frozen=True)
class StepResult:
    done: bool
    condition: str
    reason: str
    message: str
    started: int = 0
    finished: int = 0
    trials: Sequence[TrialRecord] = field(default=(), repr=False, compare=False)
    """The experiment's trials as the step last read them (for a progress view)."""
    changed: Sequence[TrialRecord] = field(default=(), repr=False, compare=False)
    """The trials this step read as new or changed (all of them on a controller's first step),
    so a view can follow an experiment without scanning its history each step."""
    counts: status.TrialCounts | None = field(default=None, repr=False, compare=False)
    best: tuple[TrialRecord, float] | None = field(default=None, repr=False, compare=False)
    """The optimal trial and its objective value (Failed trials excluded), None while none."""


def _replace_in_container(container: dict[str, Any], old: str, new: str) -> None:
    """Point a File collector's path at the trial's private file (local runs only)."""
    for key in ("command", "args"):
        if key in container:
            container[key] = [str(item).replace(old, new) for item in container[key]]
    for entry in container.get("env") or []:
        if isinstance(entry.get("value"), str):
            entry["value"] = entry["value"].replace(old, new)


class Reconciler:
    """Drives one experiment. Not thread-safe: one step at a time (watchers call back safely)."""

    def __init__(
        self,
        store: Store,
        name: str,
        *,
        runner: TrialRunner,
        suggestions: SuggestionClient,
        watcher_factory: WatcherFactory,
        allocator: GpuAllocator,
        base_dir: Path,
        logs_dir: Path,
        early_stopping: EarlyStoppingClient | None = None,
        stopper_factory: StopperFactory | None = None,
        namespace: str = "default",
        clock: Callable[[], dt.datetime] = utcnow,
        stop_grace_seconds: float = 10.0,
        metrics: ControllerMetrics | None = None,
        write_behind: float = 0.0,
    ) -> None:
        """``write_behind``: seconds the experiment status and the handles of just-started
        trials may wait to be written (see :meth:`flush`); 0 writes them in the step."""
        self.store = store
        self.metrics = metrics or default_metrics()
        self.name = name
        self.runner = runner
        self.suggestions = suggestions
        self.early_stopping = early_stopping
        self.watcher_factory = watcher_factory
        self.stopper_factory = stopper_factory
        self.allocator = allocator
        self.base_dir = base_dir
        self.logs_dir = logs_dir
        self.namespace = namespace
        self.clock = clock
        self.stop_grace_seconds = stop_grace_seconds
        self._watchers: dict[str, TrialWatcher] = {}
        self._lock = threading.Lock()
        self._restored = False
        record = store.get_experiment(name)
        self.spec: Mapping[str, Any] = record.spec["spec"]
        self.objective = objective_from_spec(self.spec)
        self._view = TrialView(self.objective)
        self._requests = protos.SuggestionRequestEncoder(name)
        self._changed: list[TrialRecord] = []  # what this step's reads took in
        self._end_marked = False  # this step wrote suggestionEndReached
        self._warm: set[str] = set()  # warm-start trials: not run, not in maxTrialCount
        self._seeded: tuple[str | None, str | None] = (None, None)  # annotations applied
        self.write_behind = write_behind
        # written behind (see flush): started trials' handles, the status of a step
        self._pending_handles: dict[str, Handle] = {}
        self._pending_status: tuple[tuple[str, str, str], ExperimentRecord] | None = None
        self._behind_since: float | None = None  # when the oldest pending write was deferred
        self._status_written = -float("inf")  # time.monotonic() of the last status write
        self._pools: dict[str, ThreadPoolExecutor] = {}  # trial-start, trial-finish
        # ended jobs' outcomes, in the view but not yet stored (see _conclude_all), with the
        # trials' last observations, stored in the same transaction
        self._outcomes: dict[str, tuple[TrialUpdate, TrialRecord]] = {}
        self._rows: dict[str, list[Observation]] = {}

    # -- validation -----------------------------------------------------------------------------

    def validate(self) -> None:
        """Ask the services to validate the settings and check the GPU request fits.

        Raises:
            ReconcileError: invalid settings or an impossible GPU request; the experiment is
                marked Failed with the message first.
        """
        experiment = protos.experiment_proto(self.name, self.spec)
        try:
            self.suggestions.validate_algorithm_settings(
                api_pb2.ValidateAlgorithmSettingsRequest(experiment=experiment)
            )
            if self.early_stopping is not None:
                self.early_stopping.validate_early_stopping_settings(
                    api_pb2.ValidateEarlyStoppingSettingsRequest(
                        early_stopping=experiment.spec.early_stopping
                    )
                )
        except ServiceCallError as exc:
            if exc.retryable or isinstance(exc, ServiceUnavailableError):
                raise
            kind = "Algorithm" if exc.service.startswith("Suggestion") else "EarlyStopping"
            self._fail(f"Validation failed: Validate{kind}Settings Error: {exc.details}")
        template = self.spec["trialTemplate"]
        if "trialSpec" in template:
            try:
                container = primary_container(
                    template["trialSpec"], template["primaryContainerName"]
                )
                self.allocator.check(gpu_request(container))
            except (GpuRequestError, TemplateError) as exc:
                self._fail(str(exc))

    def _fail(self, message: str) -> None:
        self._write_outcomes()
        self._refresh()
        self._write_status(("Failed", status.ExperimentReason.FAILED, message))
        raise ReconcileError(message)

    # -- the step ------------------------------------------------------------------------------

    def step(self) -> StepResult:
        """One pass. Reads only the trials written since the previous pass (the store's change
        counter), so its cost follows what changed, not the experiment's history."""
        with self.metrics.timed(self.metrics.reconcile_seconds, self.namespace):
            return self._step()

    def _step(self) -> StepResult:
        self._changed = []
        self._end_marked = False
        record = self._refresh() or self.store.get_experiment(self.name)
        self.spec = record.spec["spec"]  # budgets may be edited while the experiment runs
        self._seed_from_annotations(record.spec)
        if not self._restored:
            self._restore(self._view.unfinished())
        started = 0
        finished = self._advance_all(self._view.unfinished())  # the view takes what it wrote
        counts = self._view.counts()
        best = self._view.best()  # once per step: the decision and the status share it
        max_trials = self.spec.get("maxTrialCount")
        if max_trials is not None:  # the budget is what this experiment runs
            max_trials = int(max_trials) + len(self._warm)
        decision = status.decide_condition(
            counts,
            None if best is None else best[1],
            self.objective,
            max_trials,
            self.spec.get("maxFailedTrialCount"),
            status.multi_goal_reached(self._view.trials(), self.objective)
            if self.objective.is_multi
            else None,
        )
        end_reached = record.status.get("suggestionEndReached")
        if decision[0] == "Running" and end_reached and counts.active == 0:
            reason = status.ExperimentReason.SUGGESTION_END_REACHED
            decision = ("Succeeded", reason, status.MESSAGES[reason])
        if decision[0] != "Running":
            self._write_outcomes()
            if counts.active:
                self._stop_all(self._active(), f"experiment {decision[0].lower()}: {decision[2]}")
                self._refresh()
            if self._view.unfinished():  # early stopped, their jobs still ending: end them
                for trial in self._view.unfinished():
                    self._end_job(trial)
                self._refresh()
            self._write_status(decision, record)
            return self._result(True, decision, started, finished)
        parallel = int(self.spec.get("parallelTrialCount") or 3)
        add = status.trials_to_add(counts, parallel, max_trials)
        new: list[TrialRecord] = []
        if add and not end_reached:
            new = self._suggest(add)
            if self._end_marked:  # the status gained suggestionEndReached: keep it
                record = self.store.get_experiment(self.name)
        # enqueued trials wait as Created: start the oldest, within parallelTrialCount (the new
        # ones fit: trials_to_add counted the waiting ones)
        waiting = self._view.with_condition(TrialCondition.CREATED)
        waiting = waiting[: max(0, parallel - counts.running)]
        started = self._start_all(waiting, new)  # the view takes what it wrote
        self._write_outcomes(handles=False)  # the ended jobs' outcomes, unless written above
        current = status.current_condition(record.status)
        unchanged = (
            current is not None and (current["type"], current.get("reason")) == (decision[:2])
        )
        if not unchanged:
            self._write_status(decision, record)
        elif started or finished or new:
            self._write_status_behind(decision, record)
        return self._result(False, decision, started, finished)

    def _seed_from_annotations(self, document: Mapping[str, Any]) -> None:
        """Apply the document's warm-start and enqueue annotations (:mod:`tunery.seeding`)
        once per controller and whenever they change; nothing already stored is added twice,
        so a restarted controller adds nothing new."""
        annotations = (document.get("metadata") or {}).get("annotations") or {}
        key = (
            annotations.get(seeding.ENQUEUE_ANNOTATION),
            annotations.get(seeding.WARM_START_ANNOTATION),
        )
        if key == self._seeded:
            return
        try:
            points, sources = seeding.annotation_seeds(document)
            for source in sources:
                results = seeding.results_of(self.store, source)
                report = seeding.warm_start(self.store, self.name, results, now=self.clock())
                for line in report.warnings():
                    log.warning("experiment %s: %s", self.name, line)
            if points:
                seeding.enqueue(self.store, self.name, points, now=self.clock())
        except seeding.SeedError as exc:
            self._fail(f"Seeding failed: {exc}")
        except NotFoundError as exc:
            self._fail(f"Seeding failed: warm start: {exc}")
        self._seeded = key
        self._refresh()

    def _result(
        self, done: bool, decision: tuple[str, str, str], started: int = 0, finished: int = 0
    ) -> StepResult:
        return StepResult(
            done,
            *decision,
            started=started,
            finished=finished,
            trials=self._view.trials(),
            changed=list({t.name: t for t in self._changed}.values()),
            counts=self._view.counts(),
            best=self._view.best(),
        )

    def _refresh(self) -> ExperimentRecord | None:
        """Take in the trials written since the last read (every trial on the first); returns
        the experiment where the store reads it with them (else None)."""
        changes = self.store.list_trial_changes(self.name, self._view.seq)
        self._take(changes.trials)
        self._view.seq = changes.seq
        return changes.experiment

    def _take(self, records: Sequence[TrialRecord]) -> None:
        """Take trial records into the view: read back, or returned by this step's writes
        (the counter stays, so the next read returns them again, and they are skipped as
        unchanged; what others wrote meanwhile comes with it)."""
        if records and self._pending_handles:  # the job's handle, not yet written
            records = [
                dataclasses.replace(t, runner_handle=self._pending_handles[t.name])
                if t.name in self._pending_handles
                else t
                for t in records
            ]
        if records and self._outcomes:  # how its job ended, not yet written
            records = [
                self._outcomes[t.name][1]
                if t.name in self._outcomes and t.condition is TrialCondition.RUNNING
                else t
                for t in records
            ]
        if records:
            applied = self._view.apply(records)
            self._warm.update(t.name for t in applied if is_warm_start(t))
            self._requests.apply(applied, self.spec)
            self._changed += applied

    def _active(self) -> list[TrialRecord]:
        return self._view.with_condition(TrialCondition.CREATED, TrialCondition.RUNNING)

    def _write_status(
        self, condition: tuple[str, str, str] | None, record: ExperimentRecord | None = None
    ) -> None:
        """Write Katib's status document from the view (call :meth:`_refresh` first);
        ``record`` is the experiment as this step read it (read again when not given)."""
        if record is None:
            record = self.store.get_experiment(self.name)
        current = status.current_condition(record.status)
        if (
            current is not None
            and condition is not None
            and (current["type"], current.get("reason")) == condition[:2]
        ):
            condition = None  # unchanged: keep the transition times
        elif condition is not None and (current is None or current["type"] != condition[0]):
            self.metrics.experiment_ended(self.namespace, condition[0])
        new = status.build_status(record.status, self._view, condition, self.clock())
        for key in ("suggestionEndReached", "localBaseDir"):  # the drivers' bookkeeping
            if key in record.status:
                new[key] = record.status[key]
        self.store.update_experiment(self.name, status=new)
        self._pending_status = None
        self._status_written = time.monotonic()
        if not self._pending_handles:
            self._behind_since = None

    def _write_status_behind(
        self, condition: tuple[str, str, str], record: ExperimentRecord
    ) -> None:
        """Write the status now if none was written in the last ``write_behind`` seconds,
        else leave it to :meth:`flush` (the counters change with every trial; the condition
        did not, or it would be written at once)."""
        now = time.monotonic()
        if self._pending_status is None and now - self._status_written >= self.write_behind:
            self._write_status(condition, record)
            return
        self._pending_status = (condition, record)
        self._behind_since = now if self._behind_since is None else self._behind_since

    def flush(self, *, force: bool = False) -> float | None:
        """Write what was left behind (the status, started trials' handles) once it waited
        ``write_behind`` seconds, or at once with ``force``; returns the seconds until the
        next pending write is due, None when nothing is pending. The driver calls it before
        it waits for trials to end.

        What waits is never lost for good: the status is derived from the trials (the next
        step writes it again), and a trial's handle as prepared before its start finds the
        process after a restart (its pid file and exit record).
        """
        if self._behind_since is None:
            return None
        left = self._behind_since + self.write_behind - time.monotonic()
        if left > 0 and not force:
            return left
        if self._pending_handles:
            self._update_trials([])
        if self._pending_status is not None:
            self._write_status(*self._pending_status)
        self._behind_since = None
        return None

    # -- restoring after a restart ---------------------------------------------------------------

    def _restore(self, trials: Sequence[TrialRecord]) -> None:
        """Re-register GPU allocations and watchers of trials that were running."""
        self.allocator.restore(
            (t.name, t.runner_handle.get("gpus", []))
            for t in trials
            if t.condition is TrialCondition.RUNNING and t.runner_handle
        )
        self._restored = True

    # -- trials -----------------------------------------------------------------------------------

    def _suggest(self, count: int) -> list[TrialRecord]:
        """Ask for ``count`` assignments: the new trials, in creation order, not yet stored
        (:meth:`_start_all` stores them, Running when they start at once). When fewer remain
        than asked, the algorithm is asked one at a time, and each is stored (Created) before
        the next request, which must see it; those return none here and start as waiting."""
        request = self._requests.encode(self.spec, count)
        algorithm = str((self.spec.get("algorithm") or {}).get("algorithmName", ""))
        try:
            with self.metrics.timed(self.metrics.suggestion_seconds, algorithm):
                reply = self.suggestions.get_suggestions_wire(request)
        except ServiceCallError as exc:
            waiting = exc.code is grpc.StatusCode.FAILED_PRECONDITION  # staged: not ready yet
            if exc.code is grpc.StatusCode.OUT_OF_RANGE or waiting:
                if count == 1:
                    if waiting and not self._active():  # nothing to wait for: never ready
                        self._fail(f"Suggestion has failed: {exc.details}")
                    if waiting:  # e.g. hyperband's next rung: ask again once trials finish
                        log.debug("suggestion not ready, will ask again: %s", exc.details)
                    else:
                        self._mark_suggestion_end(exc.details)
                    return []
                for _ in range(count):  # fewer than asked may remain: one at a time
                    self._refresh()
                    one = self._suggest(1)
                    if not one:
                        break
                    self._create(one)
                return []
            if isinstance(exc, ServiceUnavailableError):
                raise  # the outage outlasted its limit: stop here, resumable
            if exc.retryable:  # the client logs the outage and when it tries again
                log.debug("suggestion service unavailable, will retry: %s", exc.details)
                return []
            self._fail(f"Suggestion has failed: {exc.details}")
        assignments = list(reply.parameter_assignments)
        if len(assignments) < count:
            self._mark_suggestion_end(
                f"the algorithm returned {len(assignments)} of {count} requested assignments"
            )
        elif len(assignments) > count:
            self._fail(
                f"Suggestion has failed: the response contains unexpected trials "
                f"({len(assignments)} instead of {count})"
            )
        names: list[str] = []
        created = []
        for item in assignments:
            name = item.trial_name or self._new_trial_name(names)
            names.append(name)
            created.append(
                TrialRecord(
                    name=name,
                    experiment_name=self.name,
                    assignment={a.name: a.value for a in item.assignments},
                    labels={**dict(item.labels), EXPERIMENT_LABEL: self.name},
                    created_at=self.clock(),
                )
            )
        return created

    def _create(self, trials: Sequence[TrialRecord], *, with_outcomes: bool = False) -> None:
        """Store new trials (one transaction: all of them or none) and take them in; with
        ``with_outcomes``, the outcomes waiting to be written go into the same transaction."""
        if trials:
            if with_outcomes and (self._outcomes or self._rows):
                self._update_trials([], create=trials, handles=False)
            else:
                self.store.create_trials(trials)
            self.metrics.trial_created.labels(self.namespace).inc(len(trials))
            self._take(trials)

    def _mark_suggestion_end(self, message: str) -> None:
        log.info("suggestion end reached: %s", message)
        self._end_marked = True
        record = self.store.get_experiment(self.name)
        self.store.update_experiment(
            self.name, status={**record.status, "suggestionEndReached": message or True}
        )

    def _new_trial_name(self, taken: Sequence[str]) -> str:
        while True:
            suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(8))
            name = f"{self.name}-{suffix}"
            if name not in self._view and name not in taken:
                return name

    def _launch(self, trial: TrialRecord, gpus: Sequence[str]) -> TrialLaunch:
        template = self.spec["trialTemplate"]
        job_template = template["trialSpec"]
        meta = TrialMeta.of_template(trial.name, self.namespace, job_template)
        job = render_trial_job(
            job_template,
            template.get("trialParameters") or [],
            trial.assignment,
            meta,
            parameter_names={p["name"] for p in self.spec.get("parameters") or []},
        )
        log_path = paths.trial_log_path(self.logs_dir, self.name, trial.name)
        env = {
            "KATIB_TRIAL_NAME": trial.name,
            "TUNERY_TRIAL_NAME": trial.name,
            "TUNERY_EXPERIMENT_NAME": self.name,
            "TUNERY_METRICS_FILE": str(paths.push_metrics_path(log_path)),
            "PYTHONUNBUFFERED": "1",
        }
        private_files = self.runner.private_collector_files  # False in a pod: paths as given
        metrics_path = self._file_collector_path() if private_files else None
        if metrics_path:
            private = str(paths.local_metrics_path(log_path))
            _replace_in_container(
                primary_container(job, template["primaryContainerName"]), metrics_path, private
            )
            env["TUNERY_METRICS_PATH"] = private
        tfevents = tfevent_plan({"spec": self.spec}, log_path) if private_files else None
        if tfevents is not None and tfevents.replace is not None:
            _replace_in_container(
                primary_container(job, template["primaryContainerName"]), *tfevents.replace
            )
        return TrialLaunch(
            trial_name=trial.name,
            experiment_name=self.name,
            job=job,
            primary_container_name=template["primaryContainerName"],
            log_path=log_path,
            base_dir=self.base_dir,
            env=env,
            gpus=tuple(gpus),
            success_condition=template.get("successCondition", ""),
            failure_condition=template.get("failureCondition", ""),
            checkpoint=checkpoints.plan_for(self.spec, self.name, trial.name, trial.labels),
        )

    def _file_collector_path(self) -> str | None:
        """``fileSystemPath.path`` when the experiment uses the File collector."""
        spec = self.spec.get("metricsCollectorSpec") or {}
        if (spec.get("collector") or {}).get("kind") != "File":
            return None
        return ((spec.get("source") or {}).get("fileSystemPath") or {}).get("path") or None

    def _start_all(self, trials: Sequence[TrialRecord], new: Sequence[TrialRecord] = ()) -> int:
        """Start the waiting Created ``trials`` whose GPUs are free, and store the ``new``
        ones (from :meth:`_suggest`); returns how many started.

        Every trial is recorded as Running with its prepared handle before its job starts (a
        crash in between is recoverable): the new ones are stored that way in the one
        transaction that creates them (those that cannot start now are stored Created or
        Failed in it), the waiting ones are claimed in one transaction. The outcomes of the
        jobs that ended (:meth:`_conclude_all`) go into the creating transaction while other
        trials run (the driver is then what limits); else the jobs start first (concurrently
        on the pool's threads when there are several) and the outcomes are stored after, while
        the new trials run. Started handles are recorded in one transaction, or, with
        ``write_behind``, with the trial's outcome or once due (:meth:`flush`): a wave of
        trials is neither serialised behind process spawns nor behind writes.
        """
        now = self.clock()
        prepared: list[tuple[TrialRecord, TrialLaunch]] = []
        created = []
        for trial in new:
            launch = self._prepare_start(trial)
            if isinstance(launch, str):
                self.metrics.trial_ended(self.namespace, TrialCondition.FAILED)
                trial = dataclasses.replace(
                    trial,
                    condition=TrialCondition.FAILED,
                    reason="TrialFailed",
                    message=launch,
                    completion_time=now,
                )
            elif launch is not None:
                trial = dataclasses.replace(
                    trial,
                    condition=TrialCondition.RUNNING,
                    reason="TrialRunning",
                    message="Trial is running",
                    start_time=now,
                    runner_handle=self.runner.prepare_handle(launch),
                )
                prepared.append((trial, launch))
            created.append(trial)
        # while other trials run, the driver is what limits: the ended jobs' outcomes go into
        # the transaction that creates the new trials; when none runs, they wait until the new
        # ones have started and are written while those run (a trial waits for no write)
        self._create(created, with_outcomes=self._view.counts().running > 0)
        claims = []
        for trial in trials:
            if trial.condition is not TrialCondition.CREATED or trial.runner_handle:
                continue
            launch = self._prepare_start(trial)
            if isinstance(launch, str):
                self._finish_trial(trial.name, TrialCondition.FAILED, "TrialFailed", launch)
            elif launch is not None:
                claims.append((trial, launch))
        records = (
            self._update_trials(
                TrialUpdate(
                    trial.name,
                    condition=TrialCondition.RUNNING,
                    reason="TrialRunning",
                    message="Trial is running",
                    start_time=now,
                    runner_handle=self.runner.prepare_handle(launch),
                    expect_condition=(TrialCondition.CREATED,),
                )
                for trial, launch in claims
            )
            if claims
            else []
        )
        for (trial, launch), record in zip(claims, records, strict=True):
            if record.condition is TrialCondition.RUNNING and record.start_time == now:
                prepared.append((record, launch))
            else:  # changed meanwhile (stopped, deleted)
                self.allocator.release(trial.name)
        if not prepared:
            return 0
        # the jobs start (on the pool's threads when several); the ended jobs' outcomes not
        # stored with the creation are stored after, while the new trials run
        launches = [launch for _, launch in prepared]
        outcomes = self._concurrently("trial-start", self._spawn, launches)
        writes = []
        written: set[str] = set()  # started, their handles written now
        started = 0
        for (trial, _), outcome in zip(prepared, outcomes, strict=True):
            if isinstance(outcome, RunnerError):
                writes.append(self._start_outcome(trial, outcome))
            elif self.write_behind > 0:  # the prepared handle finds the job until it is written
                outcome = json.loads(json.dumps(outcome))  # as stored: compared once written
                self._pending_handles[trial.name] = outcome
                if self._behind_since is None:
                    self._behind_since = time.monotonic()
                self._take([dataclasses.replace(trial, runner_handle=outcome)])
                self._watch(self._view.get(trial.name), fresh=True)
                started += 1
            else:
                writes.append(TrialUpdate(trial.name, runner_handle=outcome))
                written.add(trial.name)
        for record in self._update_trials(writes) if writes else []:
            if record.name in written:
                self._watch(record, fresh=True)
                started += 1
        return started

    def _prepare_start(self, trial: TrialRecord) -> TrialLaunch | str | None:
        """Allocate GPUs and render the job; None when the trial cannot start now (it waits
        for a GPU), or why it cannot start at all (an invalid request or template)."""
        template = self.spec["trialTemplate"]
        try:
            container = primary_container(template["trialSpec"], template["primaryContainerName"])
            gpus = self.allocator.allocate(trial.name, gpu_request(container))
        except (TemplateError, GpuRequestError) as exc:
            return str(exc)
        if gpus is None:
            return None  # waits for a GPU; stays Created
        try:
            return self._launch(trial, gpus)
        except TemplateError as exc:
            self.allocator.release(trial.name)
            return str(exc)

    def _concurrently(self, pool: str, call: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``call`` on every item, at most 8 at a time on the named pool's threads, which stay
        for the next wave (until :meth:`close`); one item runs on this thread."""
        if len(items) <= 1:
            return [call(item) for item in items]
        return list(self._pool(pool).map(call, items))

    def _pool(self, name: str) -> ThreadPoolExecutor:
        executor = self._pools.get(name)
        if executor is None:
            executor = self._pools[name] = ThreadPoolExecutor(8, name)
        return executor

    def _spawn(self, launch: TrialLaunch) -> Handle | RunnerError:
        try:
            return self.runner.start(launch)
        except RunnerError as exc:
            return exc

    def _start_outcome(self, trial: TrialRecord, outcome: Handle | RunnerError) -> TrialUpdate:
        """What a start attempt's outcome writes: the handle; Failed when the job cannot
        start; Created again (retried next step) when the runner is unavailable."""
        if isinstance(outcome, LaunchError):
            self.allocator.release(trial.name)
            return TrialUpdate(
                trial.name,
                condition=TrialCondition.FAILED,
                reason="TrialFailed",
                message=f"Trial could not start: {outcome}",
                completion_time=self.clock(),
            )
        if isinstance(outcome, RunnerError):
            log.warning("runner unavailable for %s, will retry: %s", trial.name, outcome)
            self.allocator.release(trial.name)
            return TrialUpdate(
                trial.name,
                condition=TrialCondition.CREATED,
                reason="TrialCreated",
                message=str(outcome),
                runner_handle={},
            )
        return TrialUpdate(trial.name, runner_handle=outcome)

    def _write_outcomes(self, *, handles: bool = True) -> None:
        """Store the outcomes :meth:`_conclude_all` left for the step's next write (and the
        handles left behind, or, without ``handles``, those due)."""
        if self._outcomes or self._rows:
            self._update_trials([], handles=handles)

    def _update_trials(
        self,
        updates: Iterable[TrialUpdate],
        *,
        create: Sequence[TrialRecord] = (),
        handles: bool = True,
    ) -> list[TrialRecord]:
        """Write ``updates`` in one transaction, with what waits to be written before them
        (the outcomes of ended jobs, their last observations, the handles left behind:
        :meth:`flush`) and the new trials ``create`` (taken in by the caller), and take the
        records into the view; returns those of ``updates``. Without ``handles``, a handle
        left behind goes in only once due (else with its trial's own update, e.g. its
        outcome, or by :meth:`flush`): a statement fewer per trial."""
        pending = self._pending_handles
        due = self._behind_since is not None and (
            time.monotonic() - self._behind_since >= self.write_behind
        )
        outcomes = list(self._outcomes.values())
        self._outcomes = {}
        ahead = [update for update, _ in outcomes]
        updates = [*ahead, *updates]
        updates = [  # a trial's own update carries its handle (e.g. the outcome of its job)
            dataclasses.replace(u, runner_handle=pending[u.name])
            if u.name in pending and u.runner_handle is None
            else u
            for u in updates
        ]
        named = {u.name for u in updates}
        behind = [
            TrialUpdate(n, runner_handle=h)
            for n, h in pending.items()
            if n not in named and (handles or due)
        ]
        rows, self._rows = self._rows, {}
        if create:
            records = self.store.write_trials(create, [*behind, *updates], rows or None)
        elif rows:
            records = self.store.update_trials([*behind, *updates], rows)
        else:
            records = self.store.update_trials([*behind, *updates])
        for record in records:  # written; one whose compare-and-set failed waits further
            if record.runner_handle == pending.get(record.name):
                del pending[record.name]
        if not pending and self._pending_status is None:
            self._behind_since = None
        self._take(records)
        skip = len(behind) + len(ahead)
        self._settle(ahead, records[len(behind) : skip])
        return records[skip:]

    def _watch(self, trial: TrialRecord, *, fresh: bool = False) -> TrialWatcher:
        with self._lock:
            watcher = self._watchers.get(trial.name)
            if watcher is None:
                factory = self.stopper_factory

                def make_stop_check() -> StopCheck | None:
                    return factory(trial) if factory is not None else None

                watcher = self.watcher_factory(
                    trial,
                    self.objective,
                    make_stop_check,
                    lambda decision, name=trial.name: self._early_stop(name, decision),
                    fresh=fresh,
                )
                self._watchers[trial.name] = watcher
            return watcher

    def _early_stop(self, trial_name: str, decision: StopDecision) -> None:
        """Called from a watcher thread when the stopper says stop."""
        record = self.store.update_trial(
            trial_name,
            condition=TrialCondition.EARLY_STOPPED,
            reason=decision.reason or "TrialEarlyStopped",
            message=decision.message or "Trial is early stopped",
            expect_condition=[TrialCondition.RUNNING],
        )
        if record.condition is TrialCondition.EARLY_STOPPED:
            self.metrics.trial_ended(self.namespace, TrialCondition.EARLY_STOPPED)
            log.info("early stopping %s: %s", trial_name, decision.message)
            self.runner.stop(record.runner_handle, self.stop_grace_seconds)

    def _advance_all(self, trials: Sequence[TrialRecord]) -> int:
        """Poll running (and early-stopped, unfinished) trials; finish those whose job ended.

        The watchers of a wave of finished trials drain concurrently; returns how many
        trials changed state.
        """
        ended: list[tuple[TrialRecord, RunState]] = []
        for trial in trials:
            if _is_active(trial):
                self._watch(trial)
                try:
                    state = self.runner.poll(trial.runner_handle)
                    if state.reason == JOB_NOT_FOUND and self._recreate(trial):
                        continue
                except RunnerUnavailableError as exc:
                    log.warning("cannot poll %s: %s", trial.name, exc)
                    continue
                if state.finished:
                    ended.append((trial, state))
        if not ended:
            return 0
        with self._lock:
            watchers = [self._watchers.pop(trial.name) for trial, _ in ended]
        for (trial, state), watcher in zip(ended, watchers, strict=True):
            if state.reason == NOT_STARTED and trial.condition is TrialCondition.RUNNING:
                watcher.close()
                self.allocator.release(trial.name)
                self.store.update_trial(
                    trial.name,
                    condition=TrialCondition.CREATED,
                    reason="TrialCreated",
                    message="Trial is created (its start was interrupted)",
                    runner_handle={},
                    expect_condition=[TrialCondition.RUNNING],
                )
        done = [
            (trial, state, watcher)
            for (trial, state), watcher in zip(ended, watchers, strict=True)
            if not (state.reason == NOT_STARTED and trial.condition is TrialCondition.RUNNING)
        ]
        results = self._concurrently("trial-finish", lambda item: item[2].finish(), done)
        for trial, _, _ in done:
            self.allocator.release(trial.name)
        self._conclude_all(
            [
                (trial.name, state, result, trial.runner_handle.get("log"))
                for (trial, state, _), result in zip(done, results, strict=True)
            ],
            defer=True,
        )
        return len(ended)

    def _recreate(self, trial: TrialRecord) -> bool:
        """Whether the vanished job of a still-Running trial was created again (as Katib
        does for a Job deleted by hand); the runner bounds how often."""
        if self.store.get_trial(trial.name).condition is not TrialCondition.RUNNING:
            return False
        handle = self.runner.recreate(trial.runner_handle)
        if handle is None:
            return False
        log.warning("the job of %s vanished; created it again", trial.name)
        self.store.update_trial(trial.name, runner_handle=handle)
        return True

    def _conclude(
        self, name: str, state: RunState, result: CollectionResult, log_path: str | None = None
    ) -> None:
        self._conclude_all([(name, state, result, log_path)])

    def _conclude_all(
        self,
        ended: Sequence[tuple[str, RunState, CollectionResult, str | None]],
        *,
        defer: bool = False,
    ) -> None:
        """Record how each ended job went (one transaction): Succeeded, Failed or
        MetricsUnavailable; a trial early stopped or killed meanwhile keeps that condition and
        gets its observation and completion time (a second transaction, for those only).

        With ``defer``, the view takes the outcomes at once (the step decides and asks for
        suggestions with them) and the store with the step's next write of trials, after the
        next trials started (:meth:`_update_trials`; :meth:`_step` writes them before it ends).
        Nothing is lost if the controller dies first: the trial is still Running in the store,
        its observations are stored and its exit record is on disk, so the next controller
        finishes it again.
        """
        if not ended:
            return
        now = self.clock()
        updates = []
        for name, state, result, log_path in ended:
            if result.pending:
                self._rows.setdefault(name, []).extend(result.pending)
            observation = {"metrics": result.metrics}
            if state.phase is RunPhase.FAILED:
                message = failure_message(state.message, log_path)
                reason = (
                    f"TrialFailed. Job reason: {state.reason}" if state.reason else "TrialFailed"
                )
                condition = TrialCondition.FAILED
            elif not result.objective_available:
                condition, reason = TrialCondition.METRICS_UNAVAILABLE, "MetricsUnavailable"
                message = result.unavailable_message or "Metrics are not available"
            else:
                condition, reason, message = (
                    TrialCondition.SUCCEEDED,
                    "TrialSucceeded",
                    "Trial has succeeded",
                )
            updates.append(
                TrialUpdate(
                    name,
                    condition=condition,
                    reason=reason,
                    message=message,
                    observation=observation,
                    completion_time=now,
                    expect_condition=(TrialCondition.RUNNING,),
                )
            )
        for update in updates:
            assert update.condition is not None
            expected = dataclasses.replace(
                self._view.get(update.name),
                condition=update.condition,
                reason=update.reason,
                message=update.message,
                observation=update.observation,
                completion_time=now,
            )
            self._outcomes[update.name] = (update, expected)
        if defer:
            self._take([expected for _, expected in self._outcomes.values()])
        else:
            self._update_trials([])

    def _settle(self, outcomes: Sequence[TrialUpdate], records: Sequence[TrialRecord]) -> None:
        """After outcomes were written: count the trials that ended; a trial early stopped or
        killed meanwhile keeps that condition and gets its observation and completion time."""
        kept = []
        for update, record in zip(outcomes, records, strict=True):
            assert update.condition is not None
            if record.condition is update.condition and (
                record.completion_time == update.completion_time
            ):
                self.metrics.trial_ended(self.namespace, update.condition)  # once
            else:  # early stopped or killed meanwhile: keep that condition
                kept.append(
                    TrialUpdate(
                        update.name,
                        observation=update.observation,
                        completion_time=update.completion_time,
                    )
                )
        if kept:
            self._update_trials(kept)

    def _finish_trial(
        self, name: str, condition: TrialCondition, reason: str, message: str
    ) -> None:
        self._update_trials(
            [
                TrialUpdate(
                    name,
                    condition=condition,
                    reason=reason,
                    message=message,
                    completion_time=self.clock(),
                )
            ]
        )
        self.metrics.trial_ended(self.namespace, condition)

    def _stop_all(self, trials: Sequence[TrialRecord], why: str) -> None:
        """Stop every active trial and mark it Killed with ``why``."""
        for trial in trials:
            if not trial.condition.is_active:
                continue
            record = self.store.update_trial(
                trial.name,
                condition=TrialCondition.KILLED,
                reason="TrialKilled",
                message=f"Trial was stopped: {why}",
                expect_condition=[TrialCondition.CREATED, TrialCondition.RUNNING],
            )
            if record.condition is TrialCondition.KILLED:
                self.metrics.trial_ended(self.namespace, TrialCondition.KILLED)
                self._end_job(trial)

    def _end_job(self, trial: TrialRecord) -> None:
        """Stop ``trial``'s job (killed, or early stopped and still ending), collect what it
        reported and record its completion; its condition stays."""
        if trial.runner_handle:
            self.runner.stop(trial.runner_handle, self.stop_grace_seconds)
            state = self.runner.poll(trial.runner_handle)
            with self._lock:
                watcher = self._watchers.pop(trial.name, None)
            if watcher is None:
                watcher = self.watcher_factory(
                    trial, self.objective, lambda: None, lambda _decision: None
                )
            result = watcher.finish()
            self._conclude(trial.name, state, result, trial.runner_handle.get("log"))
        else:
            self.store.update_trial(trial.name, completion_time=self.clock())
        self.allocator.release(trial.name)

    def fail(self, message: str) -> StepResult:
        """Stop running trials (Killed) and mark the experiment Failed with ``message`` (a
        caller's rule gave up on it, e.g. the SDK's fail-fast)."""
        self._changed = []
        self._write_outcomes()
        self._refresh()
        self._stop_all(self._active(), f"experiment failed: {message}")
        if self._pending_handles:
            self._update_trials([])
        decision = ("Failed", status.ExperimentReason.FAILED, message)
        self._refresh()
        self._write_status(decision)
        return self._result(True, decision)

    def interrupt(
        self, why: str = "interrupted (Ctrl-C)", trials: Sequence[TrialRecord] | None = None
    ) -> None:
        """Stop the running trials, or those of ``trials`` (Killed); the experiment stays
        resumable. Enqueued trials not yet started stay queued."""
        self._write_outcomes()
        self._refresh()
        if trials is None:
            trials = [t for t in self._active() if not is_queued(t)]
        self._stop_all(trials, why)
        if self._pending_handles:
            self._update_trials([])
        self._refresh()
        self._write_status(None)

    def close(self) -> None:
        with self._lock:
            watchers = list(self._watchers.values())
            self._watchers.clear()
        for watcher in watchers:
            watcher.close()
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()


def _is_active(trial: TrialRecord) -> bool:
    """A trial :meth:`Reconciler._advance_all` polls (and may finish): running, or early
    stopped and not yet ended."""
    return trial.condition is TrialCondition.RUNNING or (
        trial.condition is TrialCondition.EARLY_STOPPED and trial.completion_time is None
    )
