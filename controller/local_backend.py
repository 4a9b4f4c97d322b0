"""The local backend: experiments in a local store, run on this machine.

Called by both public faces: the SDK (``tune()`` and ``Client``) and the CLI (``tunery run``,
``resume``, ``delete``, ``logs``). It owns what running an experiment locally needs beyond the
reconcile loop in :mod:`controller.local`: opening the store, validating and submitting
documents, the folders under the work directory, the background *driver* processes that run
an experiment detached (``tunery resume <name>``, as the cluster's operator would), stopping
an experiment's trials and deleting it, and reading a trial's log.

Errors are the packages' own: :class:`~tunery.experiment.ExperimentError` for an invalid
document, :class:`~controller.local.SubmitError` for a refused (re)submission, the store's
errors (``NotFoundError``, ``StoreError``...), and ``ValueError`` for a bad store URL or
endpoint list. Each face maps them once, at its boundary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from controller import status
from controller.local import (
    BASE_DIR_KEY,
    GiveUpRule,
    LocalSettings,
    ProgressCallback,
    run_until_done,
    submit,
)
from controller.reconcile import StepResult
from controller.runners.proctree import proc_info
from tunery.experiment import Experiment
from tunery.files import is_private_file, open_private, private_dir, write_private
from tunery.store.base import ExperimentRecord, Store, TrialRecord

DEFAULT_WORKDIR = Path(".tunery")
INTERNAL_STATUS_KEYS = frozenset({BASE_DIR_KEY, "suggestionEndReached"})
ENDPOINTS_ENV = "TUNERY_SUGGESTION_ENDPOINTS"
_POLL_S = 0.2


def is_completed(document: Mapping[str, Any]) -> bool:
    """Whether the experiment document's status is Succeeded or Failed."""
    return status.is_completed(document.get("status") or {})


class LocalBackend:
    """Experiments in the local store (``db`` URL, default SQLite under ``workdir``)."""

    def __init__(
        self,
        db: str | None = None,
        store: Store | None = None,
        workdir: str | os.PathLike[str] = DEFAULT_WORKDIR,
    ) -> None:
        self.db_url = db
        self.cwd = Path.cwd()
        self.workdir = Path(workdir).resolve()
        self._store = store
        self._owns_store = store is None
        self._drivers: dict[str, subprocess.Popen[bytes]] = {}

    # -- plumbing --------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store, opened on first use.

        Raises:
            ValueError: a malformed store URL. StoreError: the database cannot be opened.
        """
        if self._store is None:
            from tunery.store import open_store

            self._store = open_store(self.db_url)
        return self._store

    @property
    def opened(self) -> bool:
        """Whether the store is open (given, or opened by an earlier use)."""
        return self._store is not None

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    def experiment_dir(self, name: str) -> Path:
        return self.workdir / "experiments" / name

    def close(self) -> None:
        if self._store is not None and self._owns_store:
            self._store.close()
            self._store = None

    def endpoints(self) -> dict[str, str]:
        """Algorithm names served by gRPC endpoints (``$TUNERY_SUGGESTION_ENDPOINTS``)."""
        from controller.clients import parse_endpoints

        return parse_endpoints(os.environ.get(ENDPOINTS_ENV, ""))

    def settings(self) -> LocalSettings:
        return LocalSettings(logs_dir=self.logs_dir, endpoints=self.endpoints())

    def validate(self, source: Any) -> Experiment:
        """The valid Experiment, algorithm settings included (``ExperimentError`` if not)."""
        from controller.settings_check import load_checked

        if isinstance(source, Experiment):
            source = source.to_document()
        return load_checked(source, served_elsewhere=set(self.endpoints()))

    def record(self, name: str) -> ExperimentRecord:
        return self.store.get_experiment(name)

    def exists(self, name: str) -> bool:
        from tunery.store.errors import NotFoundError

        try:
            self.store.get_experiment(name)
        except NotFoundError:
            return False
        return True

    def base_dir(self, record: ExperimentRecord) -> Path:
        """The folder the experiment's trials run in (recorded when it was submitted)."""
        return Path(record.status.get(BASE_DIR_KEY) or self.cwd)

    def submit(self, document: Mapping[str, Any], base_dir: Path) -> tuple[str, bool]:
        """Create the experiment or accept a re-submission (:func:`controller.local.submit`)."""
        return submit(self.store, document, base_dir)

    def document(self, record: ExperimentRecord) -> dict[str, Any]:
        """The Katib-shaped document: the spec, a creation time, and Katib's status fields
        (the local controller's own bookkeeping left out, as the operator's mirror does)."""
        document = dict(record.spec)
        metadata = dict(document.get("metadata") or {})
        metadata.setdefault("creationTimestamp", record.created_at.isoformat())
        state = {k: v for k, v in record.status.items() if k not in INTERNAL_STATUS_KEYS}
        return {**document, "metadata": metadata, "status": state}

    # -- the background driver -------------------------------------------------------------

    def _pidfile(self, name: str) -> Path:
        return self.experiment_dir(name) / "driver.pid"

    def driver_log(self, name: str) -> Path:
        return self.experiment_dir(name) / "driver.log"

    def has_driver_record(self, name: str) -> bool:
        """Whether a background driver was ever started for this experiment."""
        return self._pidfile(name).exists()

    def driver_pid(self, name: str) -> int | None:
        """The pid of the experiment's background driver while it runs, else None.

        The pid file is believed only when nobody else could have written it (owner-only,
        ours) and the process still has the start time recorded beside its pid, so a stop never
        signals a process the file merely names."""
        proc = self._drivers.get(name)
        if proc is not None and proc.poll() is not None:
            self._drivers.pop(name, None)
        pidfile = self._pidfile(name)
        if not is_private_file(pidfile):  # someone else could have written it: not ours
            return None
        try:
            pid_text, ticks_text = pidfile.read_text().split()
            pid, ticks = int(pid_text), int(ticks_text)
        except (OSError, ValueError):
            return None
        return pid if _proc_start_ticks(pid) == ticks else None

    def start_driver(self, name: str) -> int:
        """Start ``tunery resume <name>`` detached (unless one runs); returns its pid."""
        running = self.driver_pid(name)
        if running is not None:
            return running
        private_dir(self.experiment_dir(name))
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
        log_fd = open_private(self.driver_log(name), os.O_WRONLY | os.O_APPEND)
        with open(log_fd, "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self._driver_env(),
                start_new_session=True,
                close_fds=True,
            )
        self._drivers[name] = proc
        ticks = _proc_start_ticks(proc.pid)
        write_private(
            self._pidfile(name), f"{proc.pid} {ticks if ticks is not None else -1}\n".encode()
        )
        return proc.pid

    def _driver_env(self) -> dict[str, str]:
        from tunery.pythonpath import child_pythonpath

        env = dict(os.environ)
        pythonpath = child_pythonpath(env)
        if pythonpath is not None:
            env["PYTHONPATH"] = pythonpath
        if self.db_url:
            env["TUNERY_DB_URL"] = self.db_url
        return env

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

    def driver_died(self, name: str, document: Mapping[str, Any]) -> bool:
        """Whether this experiment's background driver exited before it completed."""
        if is_completed(document) or not self.has_driver_record(name):
            return False
        return self.driver_pid(name) is None

    def await_finishing_driver(self, name: str, record: ExperimentRecord) -> None:
        """A completed experiment's driver is only printing its summary: let it exit, so a
        restart gets a driver of its own."""
        if status.is_completed(record.status):
            deadline = time.monotonic() + 15.0
            while self.driver_pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.05)

    # -- experiments -----------------------------------------------------------------------

    def drive(
        self,
        name: str,
        settings: LocalSettings | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        give_up: GiveUpRule | None = None,
    ) -> StepResult:
        """Run the experiment in this process until it completes (``give_up``: see
        :func:`controller.local.run_until_done`).

        Raises:
            KeyboardInterrupt: after stopping the running trials (the experiment is resumable).
            ReconcileError: the experiment failed validation or its suggestion service failed.
        """
        return run_until_done(
            self.store, name, settings or self.settings(), on_progress=on_progress, give_up=give_up
        )

    def create_experiment(self, experiment: Experiment, base_dir: Path) -> str:
        """Submit a new experiment and start its background driver."""
        name, _ = self.submit(experiment.to_document(), base_dir)
        self.start_driver(name)
        return name

    def resume_experiment(self, name: str) -> bool:
        """Start the driver of an unfinished experiment; False if it had completed."""
        record = self.record(name)
        if status.is_completed(record.status):
            return False
        self.submit(record.spec, self.base_dir(record))
        self.start_driver(name)
        return True

    def edit_budget(self, name: str, budget: Mapping[str, int]) -> dict[str, Any]:
        """Change the budget fields; restart a finished experiment the change reopens."""
        record = self.record(name)
        self.await_finishing_driver(name, record)
        document = {**record.spec, "spec": {**record.spec["spec"], **budget}}
        document = self.validate(document).to_document()
        self.submit(document, self.base_dir(record))
        updated = self.document(self.record(name))
        if not is_completed(updated) and self.has_driver_record(name):
            self.start_driver(name)
        return updated

    def delete_experiment(self, name: str) -> None:
        """Stop the driver and any running trial, then delete the experiment and its files."""
        from controller.runners.local import LocalRunner

        self.record(name)
        self.stop_driver(name)
        runner = LocalRunner()
        for trial in self.store.list_trials(name):
            if trial.condition.is_active and trial.runner_handle.get("status_file"):
                runner.stop(trial.runner_handle, grace_seconds=5.0)
        self.store.delete_experiment(name)
        shutil.rmtree(self.experiment_dir(name), ignore_errors=True)

    # -- trials ----------------------------------------------------------------------------

    def log_path(self, trial: TrialRecord) -> str | None:
        """The trial's log file if it exists (None before the trial started)."""
        path = trial.runner_handle.get("log")
        return path if path and Path(path).exists() else None

    def log_lines(self, name: str, follow: bool, timeout: float) -> Iterator[str]:
        """The lines of trial ``name``'s log; with ``follow``, until the trial ends (or
        ``timeout`` passes while it has no log). NotFoundError now, not at the first line."""
        trial = self.store.get_trial(name)
        return self._log_lines(trial, follow, timeout)

    def _log_lines(self, trial: TrialRecord, follow: bool, timeout: float) -> Iterator[str]:
        name = trial.name
        deadline = time.monotonic() + timeout
        while not trial.runner_handle.get("log"):
            if not follow or trial.condition.is_terminal or time.monotonic() > deadline:
                return
            time.sleep(_POLL_S)
            trial = self.store.get_trial(name)
        path = Path(trial.runner_handle["log"])
        while not path.exists():
            if not follow or time.monotonic() > deadline:
                return
            time.sleep(_POLL_S)
        with open(path, "rb") as handle:
            pending = b""
            while True:
                chunk = handle.read(65536)
                if not chunk:
                    if follow and not self.trial_done(name):
                        time.sleep(_POLL_S)
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

    def trial_done(self, name: str) -> bool:
        trial = self.store.get_trial(name)
        return trial.condition.is_terminal and trial.completion_time is not None


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks, None if it is gone (or a zombie)."""
    info = proc_info(pid)
    return None if info is None or info.zombie else info.start_ticks
