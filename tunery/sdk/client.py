"""``Client``: experiments and trials, locally or on a cluster, with Katib's method names.

Part of the SDK (exported as ``tunery.Client``). Local experiments created with
:meth:`Client.create_experiment` run in a background process (``tunery resume <name>``,
started detached, its output in ``<workdir>/experiments/<name>/driver.log``), the local
counterpart of the cluster's controller: the experiment keeps running when this Python
process ends, and :meth:`Client.wait_for_experiment_condition` polls the store as Katib's
client polls the API. The local backend is :mod:`tunery.sdk.local` (over the controller's),
the cluster backend :mod:`tunery.sdk.kubernetes`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunery.sdk import records
from tunery.sdk.errors import (
    AlreadyExistsError,
    ExperimentFailedError,
    InvalidArgumentError,
    UnsupportedError,
    WaitTimeoutError,
)
from tunery.sdk.experiments import (
    budget_fields,
    conditions,
    has_condition,
    load_document,
    objective_and_space,
)
from tunery.sdk.local import LocalBackend
from tunery.sdk.records import OptimalTrial, TrialInfo, TuneResult
from tunery.trials import Objective, Observation

if TYPE_CHECKING:
    from tunery.store.base import Store

Backend = Literal["local", "kubernetes"]
DEFAULT_WORKDIR = Path(".tunery")


class Client:
    """Experiments and trials, locally or on a cluster, with Katib's method names.

    ``Client()`` (or ``Client("local", db=...)``) works on the local store: SQLite at
    ``.tunery/tunery.db`` unless ``db`` (a SQLAlchemy URL) or ``$TUNERY_DB_URL`` says
    otherwise. ``Client("kubernetes", namespace=..., config_file=..., context=...)`` works on
    a cluster running tunery's operator or Katib. The ``namespace`` argument of each method is
    used by the cluster backend and ignored locally (local experiments have none).

    Use as a context manager, or call :meth:`close`, to release the database connection.
    """

    def __init__(
        self,
        backend: Backend = "local",
        *,
        db: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        store: Store | None = None,
        namespace: str | None = None,
        config_file: str | None = None,
        context: str | None = None,
        client_configuration: Any = None,
        custom_objects_api: Any = None,
        core_api: Any = None,
        db_manager_address: str | None = None,
    ) -> None:
        """Args:
        backend: ``"local"`` or ``"kubernetes"``.
        db: local: SQLAlchemy URL of the store.
        workdir: local: folder for trial logs and experiment files (default ``.tunery``).
        store: local: an open :class:`tunery.store.Store` to use instead of ``db``.
        namespace: kubernetes: default namespace (the service account's, the kube context's,
            else ``default``).
        config_file, context, client_configuration: kubernetes: which cluster (kube config).
        custom_objects_api, core_api: kubernetes: API objects to use instead (tests).
        db_manager_address: kubernetes: the DBManager for trial metrics
            (``$TUNERY_DB_MANAGER_ADDRESS``, else Katib's ``katib-db-manager.kubeflow:6789``).

        Raises:
            InvalidArgumentError: an unknown backend.
            BackendUnavailableError: the kube config cannot be loaded.
        """
        if backend == "local":
            self._local: LocalBackend | None = LocalBackend(
                db, store, workdir if workdir is not None else DEFAULT_WORKDIR
            )
            self._kube: Any = None
        elif backend == "kubernetes":
            from tunery.sdk.kubernetes import KubernetesBackend

            self._local = None
            self._kube = KubernetesBackend(
                namespace=namespace,
                config_file=config_file,
                context=context,
                client_configuration=client_configuration,
                custom_objects_api=custom_objects_api,
                core_api=core_api,
                db_manager_address=db_manager_address,
            )
        else:
            raise InvalidArgumentError(f"backend must be 'local' or 'kubernetes', got {backend!r}")
        self.backend: Backend = backend

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the local database connection (a no-op on Kubernetes)."""
        if self._local is not None:
            self._local.close()

    @property
    def namespace(self) -> str | None:
        """The default namespace (None locally)."""
        return None if self._kube is None else str(self._kube.namespace)

    # -- experiments -------------------------------------------------------------------------

    def create_experiment(
        self, experiment: Mapping[str, Any] | str | os.PathLike[str], namespace: str | None = None
    ) -> str:
        """Create an Experiment from a dict, YAML text or a YAML file; returns its name.

        Locally the experiment starts running at once in a background process (see the
        module docstring); on a cluster the controller runs it.

        Raises:
            InvalidExperimentError: the document is invalid (``.errors`` lists every problem).
            AlreadyExistsError: an experiment with that name exists.
            BackendUnavailableError: the store or the cluster cannot be reached.
        """
        if self._local is not None:
            return self._local.create_experiment(experiment)
        document = load_document(experiment).to_document()
        return str(self._kube.create_experiment(document, namespace))

    def get_experiment(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The Experiment document with its ``status`` (Katib's status fields).

        Raises:
            NotFoundError: no such experiment.
        """
        if self._local is not None:
            return self._local.get_experiment(name)
        return dict(self._kube.get_experiment(name, namespace))

    def list_experiments(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every Experiment document (oldest first locally)."""
        if self._local is not None:
            return self._local.list_experiments()
        return list(self._kube.list_experiments(namespace))

    def get_experiment_conditions(
        self, name: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The experiment's ``status.conditions`` (type, status, reason, message, times)."""
        return conditions(self.get_experiment(name, namespace))

    def is_experiment_created(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment has the Created condition."""
        return has_condition(self.get_experiment(name, namespace), "Created")

    def is_experiment_running(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment's Running condition is True."""
        return has_condition(self.get_experiment(name, namespace), "Running")

    def is_experiment_restarting(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment's Restarting condition is True."""
        return has_condition(self.get_experiment(name, namespace), "Restarting")

    def is_experiment_succeeded(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment succeeded."""
        return has_condition(self.get_experiment(name, namespace), "Succeeded")

    def is_experiment_failed(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment failed."""
        return has_condition(self.get_experiment(name, namespace), "Failed")

    def wait_for_experiment_condition(
        self,
        name: str,
        namespace: str | None = None,
        expected_condition: str = "Succeeded",
        timeout: float = 600,
        polling_interval: float = 15,
    ) -> dict[str, Any]:
        """Poll until the experiment has ``expected_condition`` and return its document.

        Raises:
            ExperimentFailedError: (a RuntimeError) the experiment Failed, unless waiting for
                ``"Failed"``.
            WaitTimeoutError: (a TimeoutError) ``timeout`` seconds passed.
            DriverExitedError: locally, the background process running it exited early.
            NotFoundError: no such experiment.
        """
        valid = ("Created", "Running", "Restarting", "Succeeded", "Failed")
        if expected_condition not in valid:
            raise InvalidArgumentError(
                f"expected_condition must be one of {', '.join(valid)}, got {expected_condition!r}"
            )
        if polling_interval <= 0:
            raise InvalidArgumentError(f"polling_interval must be > 0, got {polling_interval}")
        deadline = time.monotonic() + timeout
        while True:
            document = self.get_experiment(name, namespace)
            if expected_condition != "Failed" and has_condition(document, "Failed"):
                current = records.latest_condition(conditions(document)) or {}
                raise ExperimentFailedError(
                    f"experiment {name!r} failed: {current.get('reason', '')}: "
                    f"{current.get('message', '')}"
                )
            if has_condition(document, expected_condition):
                return document
            if self._local is not None:
                self._local.check_driver(name, document)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"timed out after {timeout}s waiting for experiment {name!r} to be "
                    f"{expected_condition}"
                )
            time.sleep(min(polling_interval, remaining))

    def edit_experiment_budget(
        self,
        name: str,
        namespace: str | None = None,
        max_trial_count: int | None = None,
        parallel_trial_count: int | None = None,
        max_failed_trial_count: int | None = None,
    ) -> dict[str, Any]:
        """Change the experiment's budget; returns the updated document.

        Raising ``max_trial_count`` of an experiment that ended with
        ExperimentMaxTrialsReached restarts it when its resumePolicy is LongRunning or
        FromVolume (``tune()`` sets LongRunning locally). Locally, a restarted experiment
        created by :meth:`create_experiment` continues in the background; a local experiment
        whose process is running now applies the new budget when it is next resumed.

        Raises:
            InvalidArgumentError: no budget given, or a budget Katib rejects (the message
                says which), or the experiment cannot be restarted.
            NotFoundError: no such experiment.
        """
        budget = budget_fields(max_trial_count, parallel_trial_count, max_failed_trial_count)
        if self._local is not None:
            try:
                return self._local.edit_experiment_budget(name, budget)
            except AlreadyExistsError as exc:  # the controller's SubmitError
                raise InvalidArgumentError(str(exc)) from None
        return dict(self._kube.edit_experiment_budget(name, namespace, budget))

    def resume_experiment(self, name: str, namespace: str | None = None) -> bool:
        """Locally: continue an unfinished experiment (after Ctrl-C or a crash) in the
        background. Returns False when it has already completed.

        Raises:
            UnsupportedError: on Kubernetes, where the controller never stops
                (use :meth:`edit_experiment_budget` to extend an experiment).
        """
        if self._local is None:
            raise UnsupportedError(
                "resume_experiment is for local experiments; on a cluster the controller runs "
                "them (raise maxTrialCount with edit_experiment_budget to extend one)"
            )
        return self._local.resume_experiment(name)

    def delete_experiment(self, name: str, namespace: str | None = None) -> None:
        """Delete the experiment, its trials and their metrics (locally also stopping its
        background process and running trials; trial logs stay in ``<workdir>/logs``).

        Raises:
            NotFoundError: no such experiment.
        """
        if self._local is not None:
            self._local.delete_experiment(name)
        else:
            self._kube.delete_experiment(name, namespace)

    def get_optimal_hyperparameters(
        self, name: str, namespace: str | None = None
    ) -> OptimalTrial | None:
        """The best trial so far with typed parameter values; None before any trial
        reported the objective metric.

        Raises:
            NotFoundError: no such experiment.
        """
        document = self.get_experiment(name, namespace)
        objective, space = objective_and_space(document)
        return records.optimal_trial(document.get("status") or {}, objective, space)

    def get_result(self, name: str, namespace: str | None = None) -> TuneResult:
        """What ``tune`` returns, for any experiment: the best trial and every trial."""
        if self._local is not None:
            return self._local.result(name)
        document = self.get_experiment(name, namespace)
        objective, space = objective_and_space(document)
        trials = self.list_trials(name, namespace)
        return records.tune_result(name, document.get("status") or {}, trials, objective, space)

    # -- warm start and enqueue -------------------------------------------------------------

    def enqueue(
        self, name: str, points: Sequence[Mapping[str, Any]], namespace: str | None = None
    ) -> list[TrialInfo]:
        """Add known points to experiment ``name``'s queue: they run before the algorithm is
        asked for more, oldest first, within parallelTrialCount, and count toward
        maxTrialCount. Each point maps every tuned parameter to a value (typed, or its
        string). Points already enqueued are not added again. The queue is in the store, so
        a running experiment (even in another process), ``tunery resume`` and the operator
        see it. Returns the trials created (condition Created).

        Raises:
            InvalidArgumentError: a point does not fit the space (the message names the
                point, the parameter and the value); nothing is enqueued.
            NotFoundError: no such experiment.
            UnsupportedError: on Kubernetes.
        """
        return self._seeding().enqueue(name, points)

    def add_trials(
        self,
        name: str,
        results: Iterable[Any] | None = None,
        *,
        from_experiment: str | None = None,
        namespace: str | None = None,
    ) -> list[TrialInfo]:
        """Warm start experiment ``name`` with known results, which feed the algorithm's
        model without being run: ``results`` as ``{"parameters": {...}, "value": v}``,
        ``{"parameters": {...}, "metrics": {...}}`` or ``(parameters, value)``, and/or the
        completed trials of experiment ``from_experiment``. They are stored as Succeeded trials
        with reason ``WarmStart`` (``TrialInfo.is_warm_start``), do not count toward
        maxTrialCount, and may be the best trial. Results outside this experiment's space, or
        without a finite objective value, are skipped with a ``UserWarning`` naming them;
        results already imported (same parameters) are not added again. Returns the trials
        added.

        Raises:
            InvalidArgumentError: a result is not of these forms.
            NotFoundError: no such experiment (``name`` or ``from_experiment``).
            UnsupportedError: on Kubernetes.
        """
        import warnings

        added, skipped = self._seeding().add_trials(name, results, from_experiment)
        for line in skipped:
            warnings.warn(line, UserWarning, stacklevel=2)
        return added

    def _seeding(self) -> LocalBackend:
        if self._local is None:
            raise UnsupportedError(
                "enqueue and add_trials work on the store: use Client('local', db=URL) with the "
                "database the operator uses"
            )
        return self._local

    # -- trials ------------------------------------------------------------------------------

    def list_trials(self, experiment_name: str, namespace: str | None = None) -> list[TrialInfo]:
        """The experiment's trials, in creation order, with typed parameters.

        Raises:
            NotFoundError: no such experiment.
        """
        if self._local is not None:
            return self._local.trial_infos(experiment_name)
        document = self._kube.get_experiment(experiment_name, namespace)
        objective, space = objective_and_space(document)
        return [
            records.from_trial_resource(t, objective, space)
            for t in self._kube.list_trials(experiment_name, namespace)
        ]

    def trials_dataframe(self, experiment_name: str, namespace: str | None = None) -> Any:
        """The experiment's trials as a pandas DataFrame, one row per trial in creation
        order (columns as :meth:`TuneResult.to_dataframe`). Needs pandas
        (``pip install 'tunery[pandas]'``).

        Raises:
            NotFoundError: no such experiment.
            MissingDependencyError: pandas is not installed.
        """
        from tunery.sdk.export import to_dataframe

        return to_dataframe(self.list_trials(experiment_name, namespace))

    def get_trial(self, name: str, namespace: str | None = None) -> TrialInfo:
        """One trial.

        Raises:
            NotFoundError: no such trial.
        """
        if self._local is not None:
            return self._local.get_trial(name)
        resource = self._kube.get_trial(name, namespace)
        experiment = ((resource.get("metadata") or {}).get("labels") or {}).get(
            "katib.kubeflow.org/experiment"
        )
        document = self._kube.get_experiment(experiment, namespace) if experiment else {}
        objective, space = (
            objective_and_space(document) if document else (_trial_objective(resource), None)
        )
        return records.from_trial_resource(resource, objective, space)

    def get_trial_metrics(self, name: str, namespace: str | None = None) -> list[Observation]:
        """Every metric the trial reported, in time order (Katib's observation log).

        Each :class:`~tunery.trials.Observation` has ``metric_name``, ``value`` (the reported
        text), ``numeric`` (its float or None), ``step`` and ``time``.

        Raises:
            NotFoundError: no such trial.
            BackendUnavailableError: the store or the DBManager cannot be reached.
        """
        if self._local is not None:
            return self._local.get_trial_metrics(name)
        return list(self._kube.get_trial_metrics(name, namespace))

    def get_trial_logs(
        self,
        name: str,
        namespace: str | None = None,
        follow: bool = False,
        timeout: float = 600.0,
    ) -> Iterator[str]:
        """The trial's output, line by line. With ``follow``, keep yielding lines as the
        trial writes them until it ends (waiting up to ``timeout`` seconds for it to start).

        Raises:
            NotFoundError: no such trial (or, on a cluster, no pod for it).
        """
        if self._local is not None:
            return self._local.get_trial_logs(name, follow, timeout)
        return self._kube.get_trial_logs(name, namespace, follow=follow, timeout=timeout)  # type: ignore[no-any-return]


def _trial_objective(resource: Mapping[str, Any]) -> Objective:
    return objective_and_space(
        {"spec": {"objective": (resource.get("spec") or {}).get("objective") or {}}}
    )[0]
