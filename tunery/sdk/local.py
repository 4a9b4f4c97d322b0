"""The SDK's local backend: :class:`controller.local_backend.LocalBackend` in SDK terms.

Part of the SDK, used by :class:`tunery.Client` and ``tune()``. The controller's backend does
the work (store, submission, background drivers, deletion, logs); this adapter maps its errors
to the SDK's error tree and its records to :class:`~tunery.sdk.records.TrialInfo` and
:class:`~tunery.sdk.records.TuneResult`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from controller.local_backend import LocalBackend as _Engine
from tunery.sdk import records
from tunery.sdk.errors import (
    AlreadyExistsError,
    DriverExitedError,
    InvalidArgumentError,
    InvalidExperimentError,
    NotFoundError,
)
from tunery.sdk.experiments import load_document, objective_and_space, store_error
from tunery.sdk.records import TrialInfo, TuneResult
from tunery.store.base import ExperimentRecord, Store
from tunery.trials import Observation


class LocalBackend:
    """Experiments in the local store, run on this machine."""

    def __init__(self, db: str | None, store: Store | None, workdir: str | os.PathLike[str]):
        self.engine = _Engine(db, store, workdir)

    # -- plumbing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Map the controller's and the store's errors to the SDK's."""
        from controller.local import SubmitError
        from tunery.experiment import ExperimentError
        from tunery.store import errors

        try:
            yield
        except ExperimentError as exc:
            raise InvalidExperimentError(
                f"invalid Experiment ({len(exc.errors)} problem(s)):\n{exc}", exc.errors
            ) from None
        except errors.NotFoundError as exc:  # says which store was read, as the CLI does
            where = getattr(self.engine.store, "url", None)
            raise NotFoundError(f"{exc} (store: {where})" if where else str(exc)) from None
        except errors.AlreadyExistsError as exc:
            raise AlreadyExistsError(str(exc)) from None
        except SubmitError as exc:
            raise AlreadyExistsError(str(exc)) from None
        except errors.StoreError as exc:
            raise store_error(exc) from exc

    @property
    def store(self) -> Store:
        try:
            return self.engine.store
        except ValueError as exc:
            raise InvalidArgumentError(f"db: {exc}") from None
        except Exception as exc:
            raise store_error(exc) from exc

    def open(self) -> None:
        """Open the store now, so a bad URL or an unreachable database is an SDK error."""
        _ = self.store

    def open_for_reading(self, what: str) -> None:
        """Open the store for a read of ``what``: a SQLite store file that does not exist is
        not created.

        Raises:
            NotFoundError: no store file where the URL points (``what`` not found, the store
            named).
        """
        if not self.engine.opened:
            from tunery.store import resolve_db_url
            from tunery.store.engine import missing_sqlite_file

            if missing_sqlite_file(self.engine.db_url) is not None:
                raise NotFoundError(
                    f"{what} not found: nothing has run with this store yet (pass "
                    f"Client(db=...) or set TUNERY_DB_URL for another) "
                    f"(store: {resolve_db_url(self.engine.db_url)})"
                )
        self.open()

    @property
    def cwd(self) -> Path:
        return self.engine.cwd

    def experiment_dir(self, name: str) -> Path:
        return self.engine.experiment_dir(name)

    def close(self) -> None:
        self.engine.close()

    def settings(self) -> Any:
        self.endpoints()  # an invalid list: InvalidArgumentError now
        return self.engine.settings()

    def endpoints(self) -> dict[str, str]:
        from controller.local_backend import ENDPOINTS_ENV

        try:
            return self.engine.endpoints()
        except ValueError as exc:
            raise InvalidArgumentError(f"{ENDPOINTS_ENV}: {exc}") from None

    def validate(self, source: Any) -> Any:
        self.endpoints()
        return load_document(source, self.engine.validate)

    def record(self, name: str) -> ExperimentRecord:
        self.open_for_reading(f"experiment {name!r}")
        with self.errors():
            return self.engine.record(name)

    def exists(self, name: str) -> bool:
        self.open()
        with self.errors():
            return self.engine.exists(name)

    def submit(self, document: Mapping[str, Any], base_dir: Path) -> tuple[str, bool]:
        self.open()
        with self.errors():
            return self.engine.submit(document, base_dir)

    def driver_pid(self, name: str) -> int | None:
        return self.engine.driver_pid(name)

    def check_driver(self, name: str, document: Mapping[str, Any]) -> None:
        """Raise DriverExitedError when this experiment's background driver died early."""
        if self.engine.driver_died(name, document):
            raise DriverExitedError(
                f"the background process running experiment {name!r} exited before the "
                f"experiment completed (see {self.engine.driver_log(name)}); continue it with "
                f"Client().resume_experiment({name!r}) or `tunery resume {name}`"
            )

    # -- experiments -------------------------------------------------------------------------

    def get_experiment(self, name: str) -> dict[str, Any]:
        return self.engine.document(self.record(name))

    def list_experiments(self) -> list[dict[str, Any]]:
        try:
            self.open_for_reading("experiments")
        except NotFoundError:
            return []  # no store yet: no experiments (and none created by reading)
        with self.errors():
            return [self.engine.document(r) for r in self.engine.store.list_experiments()]

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
        with self.errors():
            return self.engine.create_experiment(experiment, base_dir)

    def resume_experiment(self, name: str) -> bool:
        self.record(name)
        with self.errors():
            return self.engine.resume_experiment(name)

    def edit_experiment_budget(self, name: str, budget: Mapping[str, int]) -> dict[str, Any]:
        self.record(name)
        with self.errors():
            return self.engine.edit_budget(name, budget)

    def delete_experiment(self, name: str) -> None:
        self.record(name)
        with self.errors():
            self.engine.delete_experiment(name)

    # -- warm start and enqueue ---------------------------------------------------------------

    def enqueue(self, name: str, points: Any) -> list[TrialInfo]:
        from tunery import seeding

        record = self.record(name)
        with self.errors(), _seed_errors():
            created = seeding.enqueue(self.engine.store, name, points)
        objective, space = objective_and_space(record.spec)
        return [records.from_record(t, objective, space) for t in created]

    def add_trials(
        self, name: str, results: Any, from_experiment: str | None
    ) -> tuple[list[TrialInfo], list[str]]:
        """Warm-start trials from ``results`` and/or experiment ``from_experiment``; returns
        the trials added and a warning per result skipped."""
        from tunery import seeding

        record = self.record(name)
        objective, space = objective_and_space(record.spec)
        items: list[seeding.Result] = []
        with self.errors(), _seed_errors():
            if from_experiment is not None:
                if from_experiment == name:
                    raise seeding.SeedError(
                        f"an experiment cannot warm start from itself ({name!r})"
                    )
                items += seeding.results_of(self.engine.store, from_experiment)
            if results is not None:
                items += seeding.results_from(results, objective.metric_name)
            report = seeding.warm_start(self.engine.store, name, items)
        added = [records.from_record(t, objective, space) for t in report.added]
        return added, report.warnings()

    # -- trials ------------------------------------------------------------------------------

    def trial_infos(self, name: str) -> list[TrialInfo]:
        record = self.record(name)
        objective, space = objective_and_space(record.spec)
        with self.errors():
            trials = self.engine.store.list_trials(name)
        return [records.from_record(t, objective, space) for t in trials]

    def get_trial(self, name: str) -> TrialInfo:
        self.open_for_reading(f"trial {name!r}")
        with self.errors():
            trial = self.engine.store.get_trial(name)
        objective, space = objective_and_space(self.record(trial.experiment_name).spec)
        return records.from_record(trial, objective, space)

    def get_trial_metrics(self, name: str) -> list[Observation]:
        self.open_for_reading(f"trial {name!r}")
        with self.errors():
            self.engine.store.get_trial(name)
            return self.engine.store.get_observations(name)

    def get_trial_logs(self, name: str, follow: bool, timeout: float) -> Iterator[str]:
        self.open_for_reading(f"trial {name!r}")
        with self.errors():
            lines = self.engine.log_lines(name, follow, timeout)
        return self._mapped(lines)

    def _mapped(self, lines: Iterator[str]) -> Iterator[str]:
        with self.errors():
            yield from lines

    def result(self, name: str) -> TuneResult:
        record = self.record(name)
        objective, space = objective_and_space(record.spec)
        with self.errors():
            trials = self.engine.store.list_trials(name)
        infos = [records.from_record(t, objective, space) for t in trials]
        return records.tune_result(name, record.status, infos, objective, space)


@contextlib.contextmanager
def _seed_errors() -> Iterator[None]:
    """A point or result that does not fit: the SDK's InvalidArgumentError."""
    from tunery.seeding import SeedError

    try:
        yield
    except SeedError as exc:
        raise InvalidArgumentError(str(exc)) from None
