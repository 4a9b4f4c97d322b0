"""The Python SDK: ``tune(objective, parameters)``, ``report_metrics`` and ``Client``.

The public face for Python users (``from tunery import tune, search, report_metrics, Client``).

- :func:`tune` builds a Katib Experiment around a Python function and runs it: locally, each
  trial is a separate process of this interpreter (GPUs confined by ``CUDA_VISIBLE_DEVICES``,
  crashes isolated), the objective cloudpickled so notebook functions, lambdas and closures
  work; on Kubernetes, the Experiment is built like Katib's ``tune`` and created through the
  ``kubeflow.org/v1beta1`` API. Parameters arrive as real Python types.
- :func:`report_metrics` reports metrics from inside a trial (also driving early stopping).
- :class:`Client` has Katib's ``KatibClient`` method names where they overlap, over the local
  store or a cluster.

Local experiments created with :meth:`Client.create_experiment` run in a background process
(``tunery resume <name>``, started detached, its output in
``<workdir>/experiments/<name>/driver.log``), the local counterpart of the cluster's
controller: the experiment keeps running when this Python process ends, and
:meth:`Client.wait_for_experiment_condition` polls the store as Katib's client polls the API.
``tune()`` instead runs the experiment in the calling process and returns when it is done.

Errors: every error raised here is a :class:`TuneryError` (see ``tunery._sdk_errors`` for the
tree); errors of the store, controller, collector and Kubernetes client are mapped at this
boundary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunery import _sdk_document as documents
from tunery import _sdk_records as records
from tunery._sdk_errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    DriverExitedError,
    ExperimentFailedError,
    InvalidArgumentError,
    InvalidExperimentError,
    NoResultError,
    NotFoundError,
    ObjectiveSerializationError,
    ReportMetricsError,
    TuneryError,
    UnsupportedError,
    WaitTimeoutError,
)
from tunery._sdk_records import OptimalTrial, TrialInfo, TuneResult
from tunery.search import SearchSpec
from tunery.trials import Objective, Observation

if TYPE_CHECKING:
    from tunery.space import SearchSpace
    from tunery.store.base import ExperimentRecord, Store

__all__ = [
    "AlreadyExistsError",
    "BackendUnavailableError",
    "Client",
    "DriverExitedError",
    "ExperimentFailedError",
    "InvalidArgumentError",
    "InvalidExperimentError",
    "NoResultError",
    "NotFoundError",
    "ObjectiveSerializationError",
    "OptimalTrial",
    "ReportMetricsError",
    "SearchSpec",
    "TrialInfo",
    "TuneResult",
    "TuneryError",
    "UnsupportedError",
    "WaitTimeoutError",
    "report_metrics",
    "tune",
]

Backend = Literal["local", "kubernetes"]
DEFAULT_WORKDIR = Path(".tunery")
DEFAULT_BASE_IMAGE = (
    f"docker.io/library/python:{sys.version_info.major}.{sys.version_info.minor}-slim"
)
_LOG_TAIL_LINES = 25
_INTERNAL_STATUS_KEYS = frozenset({"localBaseDir", "suggestionEndReached"})


# -- report_metrics -------------------------------------------------------------------------------


def report_metrics(
    metrics: Mapping[str, Any], step: int | None = None, *, timeout: float = 120.0
) -> None:
    """Report metrics of the current trial, e.g. once per epoch.

    Call it from the objective (or any training script run as a trial): locally the values go
    to the trial's metrics file, which the controller tails, so they drive early stopping as
    they arrive; on a cluster they go to the DBManager (as ``katib.report_metrics``).

    Args:
        metrics: metric names to numbers (ints, floats, numpy/torch scalars).
        step: the step (epoch) these values belong to; without one, each metric's reports
            are numbered in order. Early stopping compares trials at the same step.
        timeout: seconds to wait for a remote DBManager.

    Raises:
        InvalidArgumentError: an empty name, a value that is not a number, a bad step.
        ReportMetricsError: not running inside a trial, or the destination failed.
    """
    from metrics_collector import push
    from metrics_collector.errors import InvalidMetricError, PushError

    try:
        push.report_metrics(metrics, step, timeout=timeout)
    except InvalidMetricError as exc:
        raise InvalidArgumentError(str(exc)) from None
    except PushError as exc:
        raise ReportMetricsError(str(exc)) from None


# -- helpers shared by the backends ---------------------------------------------------------------


def _load(source: Any, loader: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``loader`` (default ``tunery.experiment.load_experiment``) with its errors as SDK
    errors."""
    from tunery.experiment import Experiment, ExperimentError, load_experiment

    if isinstance(source, Experiment):
        source = source.to_document()
    try:
        return (loader or load_experiment)(source, **options)
    except ExperimentError as exc:
        raise InvalidExperimentError(
            f"invalid Experiment ({len(exc.errors)} problem(s)):\n{exc}", exc.errors
        ) from None
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {source}: {exc.strerror}") from None
    except TypeError as exc:
        raise InvalidArgumentError(str(exc)) from None


def _model(document: Mapping[str, Any]) -> tuple[Objective, SearchSpace | None]:
    """The objective and typed search space of a stored or cluster document."""
    from tunery.experiment import ExperimentError, load_experiment

    try:
        experiment = load_experiment(document)
        return experiment.objective(), experiment.search_space()
    except ExperimentError:
        from tunery.trials import MetricStrategy, ObjectiveType

        o = (document.get("spec") or {}).get("objective") or {}
        objective = Objective(
            type=ObjectiveType(o.get("type", "maximize")),
            metric_name=str(o.get("objectiveMetricName", "")),
            additional_metric_names=tuple(o.get("additionalMetricNames") or ()),
            strategies={
                s["name"]: MetricStrategy(s["value"]) for s in o.get("metricStrategies") or []
            },
        )
        return objective, None


def _conditions(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(c) for c in (document.get("status") or {}).get("conditions") or []]


def _has_condition(document: Mapping[str, Any], condition: str) -> bool:
    return any(
        c.get("type") == condition and str(c.get("status")) == "True"
        for c in _conditions(document)
    )


def _is_completed(document: Mapping[str, Any]) -> bool:
    current = records.latest_condition(_conditions(document))
    return current is not None and current.get("type") in ("Succeeded", "Failed")


def _budget(
    max_trial_count: int | None,
    parallel_trial_count: int | None,
    max_failed_trial_count: int | None,
) -> dict[str, int]:
    budget = {}
    for key, value in (
        ("maxTrialCount", max_trial_count),
        ("parallelTrialCount", parallel_trial_count),
        ("maxFailedTrialCount", max_failed_trial_count),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgumentError(f"{key}: {value!r} must be an integer")
        budget[key] = value
    if not budget:
        raise InvalidArgumentError(
            "give at least one of max_trial_count, parallel_trial_count, max_failed_trial_count"
        )
    return budget


def _child_env(db_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    pythonpath = documents.child_pythonpath(env)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    if db_url:
        env["TUNERY_DB_URL"] = db_url
    return env


def _proc_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # exited, not yet reaped
        return None
    return int(fields[19])


# -- the local backend ----------------------------------------------------------------------------


class _LocalBackend:
    """Experiments in the local store, run on this machine."""

    def __init__(self, db: str | None, store: Store | None, workdir: str | os.PathLike[str]):
        self.db_url = db
        self.cwd = Path.cwd()
        self.workdir = Path(workdir).resolve()
        self._store = store
        self._owns_store = store is None
        self._drivers: dict[str, subprocess.Popen[bytes]] = {}

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            from tunery.store import open_store

            try:
                self._store = open_store(self.db_url)
            except ValueError as exc:
                raise InvalidArgumentError(f"db: {exc}") from None
            except Exception as exc:
                raise _store_error(exc) from exc
        return self._store

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from tunery.store import errors

        try:
            yield
        except errors.NotFoundError as exc:
            raise NotFoundError(str(exc)) from None
        except errors.AlreadyExistsError as exc:
            raise AlreadyExistsError(str(exc)) from None
        except errors.StoreError as exc:
            raise _store_error(exc) from exc

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    def experiment_dir(self, name: str) -> Path:
        return self.workdir / "experiments" / name

    def close(self) -> None:
        if self._store is not None and self._owns_store:
            self._store.close()
            self._store = None

    def settings(self) -> Any:
        from controller.local import LocalSettings

        return LocalSettings(logs_dir=self.logs_dir, endpoints=self.endpoints())

    def endpoints(self) -> dict[str, str]:
        from controller.clients import parse_endpoints

        try:
            return parse_endpoints(os.environ.get("TUNERY_SUGGESTION_ENDPOINTS", ""))
        except ValueError as exc:
            raise InvalidArgumentError(f"TUNERY_SUGGESTION_ENDPOINTS: {exc}") from None

    def validate(self, source: Any) -> Any:
        from controller.settings_check import load_checked

        return _load(source, load_checked, served_elsewhere=set(self.endpoints()))

    def record(self, name: str) -> ExperimentRecord:
        with self._errors():
            return self.store.get_experiment(name)

    def exists(self, name: str) -> bool:
        from tunery.store.errors import NotFoundError as StoreNotFoundError

        with self._errors():
            try:
                self.store.get_experiment(name)
            except StoreNotFoundError:
                return False
        return True

    def base_dir(self, record: ExperimentRecord) -> Path:
        """The folder the experiment's trials run in (recorded when it was submitted)."""
        from controller.local import BASE_DIR_KEY

        return Path(record.status.get(BASE_DIR_KEY) or self.cwd)

    def submit(self, document: Mapping[str, Any], base_dir: Path) -> tuple[str, bool]:
        from controller.local import SubmitError, submit

        with self._errors():
            try:
                return submit(self.store, document, base_dir)
            except SubmitError as exc:
                raise AlreadyExistsError(str(exc)) from None

    # -- the background driver -------------------------------------------------------------

    def _pidfile(self, name: str) -> Path:
        return self.experiment_dir(name) / "driver.pid"

    def driver_log(self, name: str) -> Path:
        return self.experiment_dir(name) / "driver.log"

    def driver_pid(self, name: str) -> int | None:
        """The pid of the experiment's background driver while it runs, else None."""
        proc = self._drivers.get(name)
        if proc is not None and proc.poll() is not None:
            self._drivers.pop(name, None)
        try:
            pid_text, ticks_text = self._pidfile(name).read_text().split()
            pid, ticks = int(pid_text), int(ticks_text)
        except (OSError, ValueError):
            return None
        return pid if _proc_start_ticks(pid) == ticks else None

    def start_driver(self, name: str) -> int:
        """Start ``tunery resume <name>`` detached (unless one runs); returns its pid."""
        running = self.driver_pid(name)
        if running is not None:
            return running
        folder = self.experiment_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "tunery.cli",
            "resume",
            name,
            "--logs-dir",
            str(self.logs_dir),
            "--output",
            "json",
        ]
        with open(self.driver_log(name), "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=_child_env(self.db_url),
                start_new_session=True,
                close_fds=True,
            )
        self._drivers[name] = proc
        ticks = _proc_start_ticks(proc.pid)
        self._pidfile(name).write_text(f"{proc.pid} {ticks if ticks is not None else -1}\n")
        return proc.pid

    def stop_driver(self, name: str, timeout: float = 30.0) -> None:
        """Interrupt the background driver (it stops the running trials) and wait for it."""
        pid = self.driver_pid(name)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while self.driver_pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.driver_pid(name) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        proc = self._drivers.pop(name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def check_driver(self, name: str, document: Mapping[str, Any]) -> None:
        """Raise DriverExitedError when this experiment's background driver died early."""
        if _is_completed(document) or not self._pidfile(name).exists():
            return
        if self.driver_pid(name) is None:
            raise DriverExitedError(
                f"the background process running experiment {name!r} exited before the "
                f"experiment completed (see {self.driver_log(name)}); continue it with "
                f"Client().resume_experiment({name!r}) or `tunery resume {name}`"
            )

    # -- experiments -------------------------------------------------------------------------

    def document(self, record: ExperimentRecord) -> dict[str, Any]:
        """The Katib-shaped document: the spec, a creation time, and Katib's status fields
        (the local controller's own bookkeeping left out, as the operator's mirror does)."""
        document = dict(record.spec)
        metadata = dict(document.get("metadata") or {})
        metadata.setdefault("creationTimestamp", record.created_at.isoformat())
        status = {k: v for k, v in record.status.items() if k not in _INTERNAL_STATUS_KEYS}
        return {**document, "metadata": metadata, "status": status}

    def get_experiment(self, name: str) -> dict[str, Any]:
        return self.document(self.record(name))

    def list_experiments(self) -> list[dict[str, Any]]:
        with self._errors():
            return [self.document(r) for r in self.store.list_experiments()]

    def create_experiment(self, source: Any) -> str:
        experiment = self.validate(source)
        is_path = isinstance(source, os.PathLike) or (
            isinstance(source, str) and "\n" not in source and Path(source).is_file()
        )
        base_dir = Path(source).resolve().parent if is_path else self.cwd
        if self.exists(experiment.name):
            raise AlreadyExistsError(
                f"experiment {experiment.name!r} already exists; use edit_experiment_budget, "
                "resume_experiment or delete_experiment"
            )
        name, _ = self.submit(experiment.to_document(), base_dir)
        self.start_driver(name)
        return name

    def resume_experiment(self, name: str) -> bool:
        record = self.record(name)
        if _is_completed({"status": record.status}):
            return False
        self.submit(record.spec, self.base_dir(record))
        self.start_driver(name)
        return True

    def _await_finishing_driver(self, name: str, record: ExperimentRecord) -> None:
        """A completed experiment's driver is only printing its summary: let it exit, so a
        restart gets a driver of its own."""
        if _is_completed({"status": record.status}):
            deadline = time.monotonic() + 15.0
            while self.driver_pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.05)

    def edit_experiment_budget(self, name: str, budget: Mapping[str, int]) -> dict[str, Any]:
        record = self.record(name)
        self._await_finishing_driver(name, record)
        document = {**record.spec, "spec": {**record.spec["spec"], **budget}}
        document = self.validate(document).to_document()
        self.submit(document, self.base_dir(record))
        updated = self.get_experiment(name)
        if not _is_completed(updated) and self._pidfile(name).exists():
            self.start_driver(name)
        return updated

    def delete_experiment(self, name: str) -> None:
        from controller.runners.local import LocalRunner

        self.record(name)
        self.stop_driver(name)
        runner = LocalRunner()
        with self._errors():
            for trial in self.store.list_trials(name):
                if trial.condition.is_active and trial.runner_handle.get("status_file"):
                    runner.stop(trial.runner_handle, grace_seconds=5.0)
            self.store.delete_experiment(name)
        shutil.rmtree(self.experiment_dir(name), ignore_errors=True)

    # -- trials ------------------------------------------------------------------------------

    def trial_infos(self, name: str) -> list[TrialInfo]:
        record = self.record(name)
        objective, space = _model(record.spec)
        with self._errors():
            trials = self.store.list_trials(name)
        return [records.from_record(t, objective, space) for t in trials]

    def get_trial(self, name: str) -> TrialInfo:
        with self._errors():
            trial = self.store.get_trial(name)
        objective, space = _model(self.record(trial.experiment_name).spec)
        return records.from_record(trial, objective, space)

    def get_trial_metrics(self, name: str) -> list[Observation]:
        with self._errors():
            self.store.get_trial(name)
            return self.store.get_observations(name)

    def get_trial_logs(self, name: str, follow: bool, timeout: float) -> Iterator[str]:
        with self._errors():
            trial = self.store.get_trial(name)  # NotFoundError now, not at the first line
        return self._log_lines(trial, follow, timeout)

    def _log_lines(self, trial: Any, follow: bool, timeout: float) -> Iterator[str]:
        name = trial.name
        deadline = time.monotonic() + timeout
        while not trial.runner_handle.get("log"):
            if not follow or trial.condition.is_terminal or time.monotonic() > deadline:
                return
            time.sleep(0.2)
            with self._errors():
                trial = self.store.get_trial(name)
        path = Path(trial.runner_handle["log"])
        while not path.exists():
            if not follow or time.monotonic() > deadline:
                return
            time.sleep(0.2)
        with open(path, "rb") as handle:
            pending = b""
            while True:
                chunk = handle.read(65536)
                if not chunk:
                    if follow and not self._trial_done(name):
                        time.sleep(0.2)
                        continue
                    chunk = handle.read()  # written before the trial was seen to end
                    if not chunk:
                        break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")

    def _trial_done(self, name: str) -> bool:
        with self._errors():
            trial = self.store.get_trial(name)
        return trial.condition.is_terminal and trial.completion_time is not None

    def result(self, name: str) -> TuneResult:
        record = self.record(name)
        objective, space = _model(record.spec)
        with self._errors():
            trials = self.store.list_trials(name)
        infos = [records.from_record(t, objective, space) for t in trials]
        return records.tune_result(name, record.status, infos, objective, space)


def _store_error(exc: BaseException) -> TuneryError:
    from tunery.store.errors import StoreUnavailableError

    if isinstance(exc, StoreUnavailableError):
        return BackendUnavailableError(f"the database is unavailable: {exc}")
    return TuneryError(f"store error: {exc}")


# -- the client -----------------------------------------------------------------------------------


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
            (``$TUNERY_DBMANAGER_ADDRESS``, else Katib's ``katib-db-manager.kubeflow:6789``).

        Raises:
            InvalidArgumentError: an unknown backend.
            BackendUnavailableError: the kube config cannot be loaded.
        """
        if backend == "local":
            self._local: _LocalBackend | None = _LocalBackend(
                db, store, workdir if workdir is not None else DEFAULT_WORKDIR
            )
            self._kube: Any = None
        elif backend == "kubernetes":
            from tunery._sdk_kubernetes import KubernetesBackend

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
        document = _load(experiment).to_document()
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
        return _conditions(self.get_experiment(name, namespace))

    def is_experiment_created(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment has the Created condition."""
        return _has_condition(self.get_experiment(name, namespace), "Created")

    def is_experiment_running(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment's Running condition is True."""
        return _has_condition(self.get_experiment(name, namespace), "Running")

    def is_experiment_restarting(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment's Restarting condition is True."""
        return _has_condition(self.get_experiment(name, namespace), "Restarting")

    def is_experiment_succeeded(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment succeeded."""
        return _has_condition(self.get_experiment(name, namespace), "Succeeded")

    def is_experiment_failed(self, name: str, namespace: str | None = None) -> bool:
        """Whether the experiment failed."""
        return _has_condition(self.get_experiment(name, namespace), "Failed")

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
            if expected_condition != "Failed" and _has_condition(document, "Failed"):
                current = records.latest_condition(_conditions(document)) or {}
                raise ExperimentFailedError(
                    f"experiment {name!r} failed: {current.get('reason', '')}: "
                    f"{current.get('message', '')}"
                )
            if _has_condition(document, expected_condition):
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
        budget = _budget(max_trial_count, parallel_trial_count, max_failed_trial_count)
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
        objective, space = _model(document)
        return records.optimal_trial(document.get("status") or {}, objective, space)

    def get_result(self, name: str, namespace: str | None = None) -> TuneResult:
        """What ``tune`` returns, for any experiment: the best trial and every trial."""
        if self._local is not None:
            return self._local.result(name)
        document = self.get_experiment(name, namespace)
        objective, space = _model(document)
        trials = self.list_trials(name, namespace)
        return records.tune_result(name, document.get("status") or {}, trials, objective, space)

    # -- trials ------------------------------------------------------------------------------

    def list_trials(self, experiment_name: str, namespace: str | None = None) -> list[TrialInfo]:
        """The experiment's trials, in creation order, with typed parameters.

        Raises:
            NotFoundError: no such experiment.
        """
        if self._local is not None:
            return self._local.trial_infos(experiment_name)
        document = self._kube.get_experiment(experiment_name, namespace)
        objective, space = _model(document)
        return [
            records.from_trial_resource(t, objective, space)
            for t in self._kube.list_trials(experiment_name, namespace)
        ]

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
        objective, space = _model(document) if document else (_trial_objective(resource), None)
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
    return _model({"spec": {"objective": (resource.get("spec") or {}).get("objective") or {}}})[0]


# -- tune -----------------------------------------------------------------------------------------


def tune(
    objective: Callable[[dict[str, Any]], Any],
    parameters: Mapping[str, Any],
    *,
    name: str | None = None,
    objective_metric_name: str = "objective",
    objective_type: Literal["maximize", "minimize"] = "maximize",
    objective_goal: float | None = None,
    additional_metric_names: Sequence[str] = (),
    algorithm_name: str = "tpe",
    algorithm_settings: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    early_stopping: str | Mapping[str, Any] | None = None,
    max_trial_count: int | None = 10,
    parallel_trial_count: int | None = None,
    max_failed_trial_count: int | None = None,
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
        additional_metric_names: other metrics to collect.
        algorithm_name, algorithm_settings: the suggestion algorithm (``tpe``, ``random``,
            ``grid``, ``bayesianoptimization``, ``cmaes``, ...) and its settings (a dict).
        early_stopping: ``"medianstop"`` or ``{"algorithm_name": "medianstop",
            "algorithm_settings": {"min_trials_required": 3, "start_step": 4}}``.
        max_trial_count: trials to run in total (None: until the algorithm is exhausted).
        parallel_trial_count: trials at a time (default 3, at most ``max_trial_count``).
        max_failed_trial_count: fail the experiment after this many failed trials.
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
    spec = documents.TuneSpec(
        name=documents.experiment_name(objective, name),
        parameters=parameters,
        objective_metric_name=objective_metric_name,
        objective_type=objective_type,
        objective_goal=objective_goal,
        additional_metric_names=tuple(additional_metric_names),
        algorithm_name=algorithm_name,
        algorithm_settings=algorithm_settings,
        early_stopping=early_stopping,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        resources_per_trial=resources_per_trial,
        env_per_trial=dict(env_per_trial or {}),
        namespace=None if active._local is not None else (namespace or active.namespace),
        retain_trials=retain_trials,
        trial_active_deadline_seconds=trial_active_deadline_seconds,
    )
    documents.check(spec)
    try:
        if active._local is not None:
            return _tune_local(active._local, spec, objective, verbose)
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
        )
    finally:
        if owned is not None:
            owned.close()


def _tune_local(
    backend: _LocalBackend, spec: documents.TuneSpec, objective: Callable[..., Any], verbose: bool
) -> TuneResult:
    from controller.local import run_until_done
    from controller.reconcile import ReconcileError
    from tunery.progress import ProgressView

    folder = backend.experiment_dir(spec.name)
    container = documents.local_container(spec, folder / "trial.json")
    document = documents.build_document(spec, container)
    document["spec"]["resumePolicy"] = "LongRunning"  # a larger max_trial_count continues it
    document = backend.validate(document).to_document()
    if backend.driver_pid(spec.name) is not None:
        raise AlreadyExistsError(
            f"experiment {spec.name!r} is running in a background process; wait for it with "
            "Client().wait_for_experiment_condition or delete it first"
        )
    files, _ = documents.local_payload(spec, objective, folder)  # pickling errors: now
    name, created = backend.submit(document, backend.cwd)  # another spec: before any write
    documents.write_files(files)
    view = ProgressView(name, enabled=verbose)
    if verbose and not created:
        print(f"tunery: resuming experiment {name!r}", file=sys.stderr)
    try:
        with view:
            run_until_done(backend.store, name, backend.settings(), on_progress=view.update)
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
            raise _store_error(exc) from exc
        if isinstance(exc, ServiceUnavailableError):
            raise BackendUnavailableError(str(exc)) from exc
        raise
    return _finish(backend.result(name), spec, verbose)


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
    document = _load(documents.build_document(spec, container)).to_document()
    name = client.create_experiment(document, spec.namespace)
    if not wait:
        return TuneResult(name, None, {}, None, {}, (), condition="Created")
    from tunery.progress import ProgressView

    deadline = None if timeout is None else time.monotonic() + timeout
    with ProgressView(name, enabled=verbose) as view:
        try:
            while True:
                experiment = client.get_experiment(name, spec.namespace)
                trials = client.list_trials(name, spec.namespace)
                current = records.latest_condition(_conditions(experiment)) or {}
                done = _is_completed(experiment)
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
        raise ExperimentFailedError(
            f"experiment {result.experiment_name!r} failed: {result.message}"
            f"{_explain(result, spec)}",
            result,
        )
    if result.best_trial is None:
        raise NoResultError(
            f"experiment {result.experiment_name!r} ended ({result.reason}) without any trial "
            f"reporting the objective metric {spec.objective_metric_name!r}"
            f"{_explain(result, spec)}",
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
        text += f"\n{shown.condition.value} trial {shown.name}: {shown.message}"
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
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_LOG_TAIL_LINES:])
