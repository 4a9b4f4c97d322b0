"""The TrialRunner interface: start, poll, stop and locate the logs of one trial's job.

Implemented by ``controller.runners.local`` (processes), ``controller.runners.kubernetes``
(Jobs and other kinds) and ``controller.runners.fake`` (tests). The reconciler is the only
caller. A runner keeps no state the reconciler cannot rebuild: :meth:`TrialRunner.start`
returns a JSON-serialisable handle that the reconciler stores with the trial, and every other
method takes that handle, so a restarted controller re-attaches to jobs still running.

Errors::

    RunnerError(Exception)
     ├── LaunchError(RunnerError, ValueError)   the job cannot be started as rendered (permanent)
     └── RunnerUnavailableError(RunnerError)    backend unreachable (temporary; retry later)
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.checkpoints import CheckpointPlan

Handle = Mapping[str, Any]


class RunnerError(Exception):
    """Root of the runners' errors."""


class LaunchError(RunnerError, ValueError):
    """The trial's job cannot be started as rendered; the trial fails with this message."""


class RunnerUnavailableError(RunnerError):
    """The backend cannot be reached now; the reconciler retries on its next pass."""


NOT_STARTED = "NotStarted"
"""RunState reason for a job that was recorded but never started (the controller died in
between): the reconciler starts the trial again, which cannot run it twice."""


JOB_NOT_FOUND = "JobNotFound"
"""RunState reason for a job that was created (its creation confirmed) and has vanished before
it finished (deleted by hand): the reconciler asks :meth:`TrialRunner.recreate` for a new one
while the trial is Running, and fails the trial only when the runner gives up."""


class RunPhase(enum.StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class RunState:
    """What a runner observed of a job. ``reason``/``message`` explain a terminal phase."""

    phase: RunPhase
    reason: str = ""
    message: str = ""
    exit_code: int | None = None

    @property
    def finished(self) -> bool:
        return self.phase is not RunPhase.RUNNING


@dataclass(frozen=True)
class TrialLaunch:
    """Everything a runner needs to start one trial.

    ``job`` is the rendered trial job (trialTemplate with parameters substituted); ``env`` the
    variables tunery adds to the primary container (trial name, metrics destination);
    ``gpus`` the local devices allocated to it; ``log_path`` where its output goes; and
    ``base_dir`` the folder relative paths in the job resolve against (the YAML's folder).
    """

    trial_name: str
    experiment_name: str
    job: Mapping[str, Any]
    primary_container_name: str
    log_path: Path
    base_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()
    success_condition: str = ""
    failure_condition: str = ""
    checkpoint: CheckpointPlan | None = None
    """The trial's checkpoint folder (``suggestion_trial_dir``): :mod:`controller.checkpoints`."""


class TrialRunner(abc.ABC):
    """Runs trial jobs somewhere. Thread-safe."""

    private_collector_files = True
    """Trials share this machine's file system, so the reconciler points each trial's File
    and TensorFlowEvent collector paths at private copies beside its log. False where each
    trial has its own file system (a pod) and its collector reads the configured paths."""

    @abc.abstractmethod
    def start(self, launch: TrialLaunch) -> Handle:
        """Start the job and return its handle.

        Raises:
            LaunchError: the job cannot run as rendered (message names what is wrong).
            RunnerUnavailableError: retry later.
        """

    @abc.abstractmethod
    def poll(self, handle: Handle) -> RunState:
        """The job's current phase (enforcing deadlines where the runner owns them)."""

    @abc.abstractmethod
    def stop(self, handle: Handle, grace_seconds: float = 10.0) -> None:
        """Stop the job: politely, then forcibly after ``grace_seconds``. Idempotent."""

    def recreate(self, handle: Handle) -> Handle | None:
        """Create again the vanished job of ``handle`` (state :data:`JOB_NOT_FOUND`); the new
        handle to record, or None when this runner cannot (or will not again): the trial fails.

        Raises:
            RunnerUnavailableError: retry later.
        """
        return None

    def prepare_handle(self, launch: TrialLaunch) -> Handle:
        """The handle to record BEFORE :meth:`start`, so a crash in between is recoverable."""
        return {"log": str(launch.log_path)}

    def close(self) -> None:
        """Release the runner's resources (not the jobs: they keep running)."""
