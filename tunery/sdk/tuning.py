"""``tune(objective, parameters)``: tune a Python function and return the best parameters.

Part of the SDK (exported as ``tunery.tune``). Builds a Katib Experiment around the function
(:mod:`tunery.sdk.document`) and runs it: locally in this process through the controller
(each trial a separate process of this interpreter, GPUs confined by
``CUDA_VISIBLE_DEVICES``, crashes isolated, the objective cloudpickled so notebook functions,
lambdas and closures work); on Kubernetes it is created through the ``kubeflow.org/v1beta1``
API like Katib's ``tune`` and waited for.
"""

from __future__ import annotations

import os
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from tunery.sdk import document as documents
from tunery.sdk import records
from tunery.sdk.client import Backend, Client
from tunery.sdk.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    ExperimentFailedError,
    InvalidArgumentError,
    NoResultError,
    WaitTimeoutError,
)
from tunery.sdk.experiments import (
    conditions,
    is_completed,
    load_document,
    objective_and_space,
    store_error,
)
from tunery.sdk.local import LocalBackend
from tunery.sdk.records import TuneResult
from tunery.store.base import TrialRecord
from tunery.trials import TrialCondition

DEFAULT_BASE_IMAGE = (
    f"docker.io/library/python:{sys.version_info.major}.{sys.version_info.minor}-slim"
)
_LOG_TAIL_LINES = 25


def tune(
    objective: Callable[[dict[str, Any]], Any],
    parameters: Mapping[str, Any],
    *,
    name: str | None = None,
    objective_metric_name: str = "objective",
    objective_type: Literal["maximize", "minimize"] = "maximize",
    objective_goal: float | None = None,
    additional_metric_names: Sequence[str] = (),
    constraints: Sequence[str] = (),
    objectives: Mapping[str, Literal["maximize", "minimize"]] | None = None,
    algorithm_name: str | None = None,
    algorithm_settings: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    seed: int | None = None,
    early_stopping: str | Mapping[str, Any] | None = None,
    max_trial_count: int | None = 10,
    parallel_trial_count: int | None = None,
    max_failed_trial_count: int | None = None,
    fail_fast: bool | int = True,
    resources_per_trial: Mapping[str, Any] | None = None,
    env_per_trial: Mapping[str, str] | None = None,
    backend: Backend = "local",
    db: str | None = None,
    workdir: str | os.PathLike[str] | None = None,
    client: Client | None = None,
    verbose: bool = True,
    namespace: str | None = None,
    base_image: str | None = None,
    packages_to_install: Sequence[str] | None = None,
    pip_index_urls: Sequence[str] = ("https://pypi.org/simple",),
    retain_trials: bool = False,
    trial_active_deadline_seconds: int | None = None,
    wait: bool = True,
    timeout: float | None = None,
    polling_interval: float = 5.0,
    enqueue: Sequence[Mapping[str, Any]] = (),
    warm_start: str | Sequence[Any] | None = None,
) -> TuneResult:
    """Tune ``objective`` over ``parameters`` and return the best parameters.

    ``objective`` takes one dict: the tuned values (real Python types: ``int``, ``float``,
    ``str``) plus the constants of ``parameters``. It reports by returning a number (the value
    of ``objective_metric_name``) or a dict of metric names to numbers, and/or during the run
    with :func:`report_metrics` (which also drives early stopping) or by printing
    ``name=value``. It runs in a separate process per trial, so it may be a notebook function,
    a lambda or a closure; it must be picklable with cloudpickle.

    Calling ``tune`` again with the same ``name`` resumes that experiment (after Ctrl-C), and
    with a larger ``max_trial_count`` continues a finished one.

    Args:
        objective: the function to tune.
        parameters: names to ``search.*`` specs (tuned) or other values (constants).
        name: the experiment name (default ``tune-<function>-<random>``).
        objective_metric_name: the metric to optimise (the name a returned number gets).
        objective_type: ``"maximize"`` (Katib's default) or ``"minimize"``.
        objective_goal: stop once the best value reaches it.
        objectives: several objectives, e.g. ``{"loss": "minimize", "latency_ms":
            "minimize"}`` (multi-objective, docs/multi-objective.md): the first is the
            objective metric (``objective_metric_name``/``objective_type`` are ignored), the
            goal applies to it, and the result's ``pareto_front`` lists the non-dominated
            trials. The default algorithm becomes ``motpe``.
        additional_metric_names: other metrics to collect.
        constraints: metrics a trial must keep ``<= 0`` to be feasible (a tunery extension;
            the objective reports them like any metric, e.g. in its returned dict). TPE and
            GP use them; an infeasible trial is never the best.
        algorithm_name, algorithm_settings: the suggestion algorithm (``tpe``, ``random``,
            ``grid``, ``bayesianoptimization``, ``cmaes``, ...) and its settings (a dict).
        seed: the algorithm's seed (its ``random_state`` setting). The same seed gives the
            same trials at ``parallel_trial_count=1``, and the same startup-phase trials at
            any parallelism (see docs/sdk.md, "Reproducibility"). Unset: derived from the
            experiment name, which is random unless ``name`` is given.
        early_stopping: ``"medianstop"`` or ``{"algorithm_name": "medianstop",
            "algorithm_settings": {"min_trials_required": 3, "start_step": 4}}``.
        max_trial_count: trials to run in total (None: until the algorithm is exhausted).
        parallel_trial_count: trials at a time (default 3, at most ``max_trial_count``).
        max_failed_trial_count: fail the experiment after this many failed trials.
        fail_fast: locally, stop as soon as the first trials all failed (Failed or
            MetricsUnavailable) with none succeeded, and raise ExperimentFailedError with the
            first failure's traceback. ``True``: after ``max(3, parallel_trial_count)``
            failures; a number: after that many; ``False``: run every trial.
        resources_per_trial: ``{"gpu": 1, "cpu": 2, "memory": "4Gi"}``; locally GPUs are
            assigned through ``CUDA_VISIBLE_DEVICES``.
        env_per_trial: environment variables of every trial.
        backend: ``"local"`` or ``"kubernetes"``.
        db, workdir: local: the store URL and the folder for logs and experiment files
            (default ``.tunery``).
        client: a configured :class:`Client` to use (its backend wins over ``backend``).
        verbose: show live progress and a summary on stderr.
        namespace, base_image, packages_to_install, pip_index_urls, retain_trials,
            trial_active_deadline_seconds: kubernetes, as Katib's ``tune``. ``base_image``
            needs Python; ``report_metrics`` inside the objective needs tunery in it.
        wait, timeout, polling_interval: kubernetes: whether to wait for the experiment to
            finish (at most ``timeout`` seconds), and how often to poll.
        enqueue: points to evaluate first (each maps every tuned parameter to a
            value), in order, before the algorithm proposes any; they count toward
            ``max_trial_count`` (see :meth:`Client.enqueue`).
        warm_start: known results that feed the algorithm without being run: the name of
            another experiment in the same store (its completed trials), or (locally) a list
            of ``{"parameters": {...}, "value": v}`` / ``(parameters, value)`` items (see
            :meth:`Client.add_trials`). They do not count toward ``max_trial_count``; those
            outside the space are skipped with a warning. On Kubernetes both travel as the
            Experiment's ``tunery.io/enqueue`` / ``tunery.io/warm-start`` annotations.

    Returns:
        The best parameters and value, every trial, and the experiment name.

    Raises:
        InvalidArgumentError: a bad argument; InvalidExperimentError when the built
            Experiment is invalid (``.errors`` lists the problems).
        ObjectiveSerializationError: the objective cannot be pickled.
        AlreadyExistsError: ``name`` exists with a different spec.
        ExperimentFailedError: the experiment failed (e.g. ``max_failed_trial_count``
            trials failed); ``.result`` holds its trials, the message the first failure.
        NoResultError: no trial reported the objective metric; ``.result`` holds the trials.
        WaitTimeoutError: kubernetes: ``timeout`` passed (the experiment keeps running).
        KeyboardInterrupt: locally, after stopping the running trials; the experiment stays
            resumable.
    """
    if not callable(objective):
        raise InvalidArgumentError(f"objective must be callable, got {objective!r}")
    if client is None:
        if backend not in ("local", "kubernetes"):
            raise InvalidArgumentError(f"backend must be 'local' or 'kubernetes', got {backend!r}")
        owned = (
            Client("local", db=db, workdir=workdir)
            if backend == "local"
            else Client("kubernetes", namespace=namespace)
        )
    else:
        owned = None
    active = client or owned
    assert active is not None
    if parallel_trial_count is None:
        parallel_trial_count = 3 if max_trial_count is None else max(1, min(3, max_trial_count))
    give_up = fail_fast_rule(fail_fast, parallel_trial_count)
    if objectives is not None and isinstance(objectives, Mapping) and objectives:
        first, *rest = list(objectives)
        objective_metric_name, objective_type = first, objectives[first]
        additional_metric_names = [
            *rest,
            *(m for m in additional_metric_names if m not in objectives),
        ]
    if algorithm_name is None:
        algorithm_name = "motpe" if objectives else "tpe"
    spec = documents.TuneSpec(
        name=documents.experiment_name(objective, name),
        parameters=parameters,
        objective_metric_name=objective_metric_name,
        objective_type=objective_type,
        objective_goal=objective_goal,
        additional_metric_names=tuple(additional_metric_names),
        constraints=tuple(constraints) if not isinstance(constraints, str) else constraints,
        algorithm_name=algorithm_name,
        algorithm_settings=algorithm_settings,
        seed=seed,
        early_stopping=early_stopping,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        resources_per_trial=resources_per_trial,
        env_per_trial=dict(env_per_trial or {}),
        namespace=None if active._local is not None else (namespace or active.namespace),
        retain_trials=retain_trials,
        trial_active_deadline_seconds=trial_active_deadline_seconds,
        objectives=None if objectives is None else dict(objectives),
    )
    documents.check(spec)
    seeds = _Seeds(list(enqueue), warm_start)
    try:
        if active._local is not None:
            return _tune_local(active._local, spec, objective, verbose, give_up, seeds)
        return _tune_kubernetes(
            active,
            spec,
            objective,
            base_image=base_image or DEFAULT_BASE_IMAGE,
            packages_to_install=list(packages_to_install or ()),
            pip_index_urls=list(pip_index_urls),
            verbose=verbose,
            wait=wait,
            timeout=timeout,
            polling_interval=polling_interval,
            seeds=seeds,
        )
    finally:
        if owned is not None:
            owned.close()


def fail_fast_rule(
    fail_fast: bool | int, parallel: int
) -> Callable[[Sequence[TrialRecord]], str | None] | None:
    """The controller's give-up rule for ``fail_fast`` (None: never give up).

    It gives up once ``threshold`` trials ended Failed or MetricsUnavailable while none
    Succeeded or was EarlyStopped (which both mean the objective produced metrics).

    Raises:
        InvalidArgumentError: ``fail_fast`` is neither a bool nor a positive integer.
    """
    if isinstance(fail_fast, bool):
        if not fail_fast:
            return None
        threshold = max(3, parallel)
    elif isinstance(fail_fast, int) and fail_fast >= 1:
        threshold = fail_fast
    else:
        raise InvalidArgumentError(
            f"fail_fast must be True, False or a positive number of failed trials, got "
            f"{fail_fast!r}"
        )
    ok = (TrialCondition.SUCCEEDED, TrialCondition.EARLY_STOPPED)
    bad = (TrialCondition.FAILED, TrialCondition.METRICS_UNAVAILABLE)

    def give_up(trials: Sequence[TrialRecord]) -> str | None:
        trials = [t for t in trials if t.reason != "WarmStart"]  # imported, not run here
        if any(t.condition in ok for t in trials):
            return None
        failed = sum(t.condition in bad for t in trials)
        if failed < threshold:
            return None
        first = "the first trial" if failed == 1 else f"the first {failed} trials"
        return (
            f"{first} failed and none succeeded, so tune() stopped early "
            "(fail_fast=False runs every trial)"
        )

    return give_up


def _tune_local(
    backend: LocalBackend,
    spec: documents.TuneSpec,
    objective: Callable[..., Any],
    verbose: bool,
    give_up: Callable[[Sequence[TrialRecord]], str | None] | None,
    seeds: _Seeds | None = None,
) -> TuneResult:
    from controller.reconcile import ReconcileError
    from tunery.sdk.progress import ProgressView

    folder = backend.experiment_dir(spec.name)
    container = documents.local_container(spec, folder / "trial.json")
    document = documents.build_document(spec, container)
    document["spec"]["resumePolicy"] = "LongRunning"  # a larger max_trial_count continues it
    experiment = backend.validate(document)
    document = experiment.to_document()
    if seeds:
        seeds.check(experiment.search_space(), spec.objective_metric_name)
    if backend.driver_pid(spec.name) is not None:
        raise AlreadyExistsError(
            f"experiment {spec.name!r} is running in a background process; wait for it with "
            "Client().wait_for_experiment_condition or delete it first"
        )
    files, _ = documents.local_payload(spec, objective, folder)  # pickling errors: now
    try:
        name, created = backend.submit(document, backend.cwd)  # another spec: before any write
    except AlreadyExistsError as exc:
        raise AlreadyExistsError(
            f"{exc}: pass another name= to tune(), or Client().delete_experiment({spec.name!r})"
        ) from None
    documents.write_files(files)
    if seeds:
        seeds.apply(backend, name, verbose)
    view = ProgressView.of_experiment(backend.store, name, enabled=verbose)
    if verbose and not created:
        print(f"tunery: resuming experiment {name!r}", file=sys.stderr)
    try:
        with view:
            backend.engine.drive(
                name, backend.settings(), on_progress=view.update, give_up=give_up
            )
    except KeyboardInterrupt:
        if verbose:
            print(
                f"\ntunery: interrupted; the running trials were stopped. Experiment {name!r} "
                f"is resumable: call tune(..., name={name!r}) again or run `tunery resume "
                f"{name}`",
                file=sys.stderr,
            )
        raise
    except ReconcileError as exc:
        raise ExperimentFailedError(
            f"experiment {name!r} failed: {exc}", backend.result(name)
        ) from None
    except Exception as exc:
        from controller.clients import ServiceUnavailableError
        from tunery.store.errors import StoreError

        if isinstance(exc, StoreError):
            raise store_error(exc) from exc
        if isinstance(exc, ServiceUnavailableError):
            raise BackendUnavailableError(str(exc)) from exc
        raise
    return _finish(backend.result(name), spec, verbose)


class _Seeds:
    """``tune``'s ``enqueue`` and ``warm_start``: checked before the experiment is stored,
    written to the store before it runs (nothing already there is added twice, so calling
    ``tune`` again to resume is safe)."""

    def __init__(self, enqueue: list[Mapping[str, Any]], warm_start: str | Sequence[Any] | None):
        self.enqueue = enqueue
        self.warm_start = warm_start

    def __bool__(self) -> bool:
        return bool(self.enqueue) or self.warm_start is not None

    def check(self, space: Any, metric_name: str) -> None:
        from tunery import seeding

        try:
            for i, point in enumerate(self.enqueue):
                seeding.check_point(space, point, f"enqueue[{i}]")
            if self.warm_start is not None and not isinstance(self.warm_start, str):
                seeding.results_from(self.warm_start, metric_name)
        except seeding.SeedError as exc:
            raise InvalidArgumentError(str(exc)) from None

    def annotations(self) -> dict[str, str]:
        """On Kubernetes: the Experiment annotations tunery's operator applies
        (``tunery.io/enqueue``, ``tunery.io/warm-start``); Katib ignores them."""
        import json

        from tunery import seeding

        out = {}
        if self.enqueue:
            out[seeding.ENQUEUE_ANNOTATION] = json.dumps(list(self.enqueue), default=str)
        if self.warm_start is not None:
            if not isinstance(self.warm_start, str):
                raise InvalidArgumentError(
                    "on Kubernetes warm_start takes the name of an experiment the operator "
                    "has stored, not a list of results"
                )
            out[seeding.WARM_START_ANNOTATION] = self.warm_start
        return out

    def apply(self, backend: LocalBackend, name: str, verbose: bool) -> None:
        import warnings

        if self.warm_start is not None:
            source = self.warm_start if isinstance(self.warm_start, str) else None
            results = None if isinstance(self.warm_start, str) else self.warm_start
            added, skipped = backend.add_trials(name, results, source)
            for line in skipped:
                warnings.warn(line, UserWarning, stacklevel=4)
            if verbose and added:
                print(f"tunery: warm start: {len(added)} result(s) added", file=sys.stderr)
        if self.enqueue:
            budget = backend.record(name).spec["spec"].get("maxTrialCount")
            if budget is not None and len(self.enqueue) > int(budget):
                warnings.warn(
                    f"{len(self.enqueue)} points enqueued but max_trial_count is {budget}: the "
                    "points beyond it will not run",
                    UserWarning,
                    stacklevel=4,
                )
            queued = backend.enqueue(name, self.enqueue)
            if verbose and queued:
                print(f"tunery: {len(queued)} point(s) enqueued", file=sys.stderr)


def _tune_kubernetes(
    client: Client,
    spec: documents.TuneSpec,
    objective: Callable[..., Any],
    *,
    base_image: str,
    packages_to_install: list[str],
    pip_index_urls: list[str],
    verbose: bool,
    wait: bool,
    timeout: float | None,
    polling_interval: float,
    seeds: _Seeds | None = None,
) -> TuneResult:
    container, mode = documents.kubernetes_container(
        spec,
        objective,
        base_image=base_image,
        packages_to_install=packages_to_install,
        pip_index_urls=pip_index_urls,
    )
    if mode == "pickle" and verbose:
        print(
            "tunery: the objective is not self-contained (it uses globals or a closure), so it "
            f"is sent pickled: {base_image} needs cloudpickle and Python "
            f"{sys.version_info.major}.{sys.version_info.minor}",
            file=sys.stderr,
        )
    document = documents.build_document(spec, container)
    if seeds:
        document["metadata"].setdefault("annotations", {}).update(seeds.annotations())
    experiment = load_document(document)
    if seeds:
        seeds.check(experiment.search_space(), spec.objective_metric_name)
    document = experiment.to_document()
    name = client.create_experiment(document, spec.namespace)
    if not wait:
        return TuneResult(name, None, {}, None, {}, (), condition="Created")
    from tunery.sdk.progress import ProgressView

    deadline = None if timeout is None else time.monotonic() + timeout
    objective_spec, _ = objective_and_space(document)
    view = ProgressView(
        name, objective=objective_spec, max_trials=spec.max_trial_count, enabled=verbose
    )
    with view:
        try:
            while True:
                experiment = client.get_experiment(name, spec.namespace)
                trials = client.list_trials(name, spec.namespace)
                current = records.latest_condition(conditions(experiment)) or {}
                done = is_completed(experiment)
                step = types.SimpleNamespace(
                    done=done,
                    condition=current.get("type", "Created"),
                    reason=current.get("reason", ""),
                    message=current.get("message", ""),
                )
                view.update(step, [records.trial_record(t, name) for t in trials])
                if done:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeoutError(
                        f"timed out after {timeout}s waiting for experiment {name!r}; it keeps "
                        "running on the cluster"
                    )
                time.sleep(polling_interval)
        except KeyboardInterrupt:
            if verbose:
                print(
                    f"\ntunery: stopped waiting; experiment {name!r} keeps running on the "
                    f"cluster (Client('kubernetes').delete_experiment({name!r}) stops it)",
                    file=sys.stderr,
                )
            raise
    return _finish(client.get_result(name, spec.namespace), spec, verbose, client=client)


def _finish(
    result: TuneResult,
    spec: documents.TuneSpec,
    verbose: bool,
    client: Client | None = None,
) -> TuneResult:
    if result.condition == "Failed":
        again = (
            f"\nTo run it again after a fix: pass another name= to tune(), or "
            f"Client().delete_experiment({result.experiment_name!r}) first"
            if client is None
            else ""
        )
        raise ExperimentFailedError(
            f"experiment {result.experiment_name!r} failed: {result.message}"
            f"{_explain(result, spec)}{again}",
            result,
        )
    if result.best_trial is None:
        raise NoResultError(
            f"experiment {result.experiment_name!r} ended ({result.reason}) with no successful "
            f"trial: none reported the objective metric {spec.objective_metric_name!r} "
            f"without failing{_explain(result, spec)}",
            result,
        )
    if verbose:
        params = ", ".join(f"{k}={v!r}" for k, v in result.best_parameters.items())
        print(
            f"tunery: best trial {result.best_trial}: {spec.objective_metric_name}="
            f"{result.best_value} with {params}",
            file=sys.stderr,
        )
    return result


def _explain(result: TuneResult, spec: documents.TuneSpec) -> str:
    """Counts of the trials by condition, and the first failure with its log tail."""
    counts: dict[str, int] = {}
    for t in result.trials:
        counts[t.condition.value] = counts.get(t.condition.value, 0) + 1
    text = "\ntrials: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none")
    failed = next((t for t in result.trials if t.condition == "Failed"), None)
    unavailable = next((t for t in result.trials if t.condition == "MetricsUnavailable"), None)
    shown = failed or unavailable
    if shown is not None:
        first_line = shown.message.splitlines()[0] if shown.message else ""
        text += f"\n{shown.condition.value} trial {shown.name}: {first_line}"
        tail = _log_tail(shown.log_path)
        if tail:
            text += f"\n--- last lines of its log ({shown.log_path}) ---\n{tail}"
    if failed is None and unavailable is not None:
        text += (
            f"\nReport {spec.objective_metric_name!r} by returning a number or a dict from the "
            f"objective, calling tunery.report_metrics({{{spec.objective_metric_name!r}: "
            f"value}}), or printing '{spec.objective_metric_name}=<value>'."
        )
    return text


def _log_tail(path: str | None) -> str:
    from controller.trial_logs import log_tail

    return log_tail(path, _LOG_TAIL_LINES)
