"""A fake TrialRunner for tests: a handler decides each trial's output and outcome.

Modelled on httpx's ``MockTransport``: ``FakeRunner(handler)`` calls ``handler(launch)`` at
start; the returned :class:`FakeOutcome` says what the "process" prints (written to the trial's
log file as if it ran), how long it takes, and its exit code. No process is started, so the
reconciler's logic runs at full speed and deterministically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.runners.base import Handle, RunPhase, RunState, TrialLaunch, TrialRunner


@dataclass(frozen=True)
class FakeOutcome:
    lines: Sequence[str] = ()
    exit_code: int = 0
    duration: float = 0.0


class FakeRunner(TrialRunner):
    def __init__(self, handler: Callable[[TrialLaunch], FakeOutcome]) -> None:
        self.handler = handler
        self.launches: list[TrialLaunch] = []
        self.stopped: list[str] = []
        self._jobs: dict[str, tuple[FakeOutcome, float]] = {}
        self._lock = threading.Lock()

    def start(self, launch: TrialLaunch) -> Handle:
        outcome = self.handler(launch)
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(launch.log_path, "a") as log:
            log.writelines(line + "\n" for line in outcome.lines)
        with self._lock:
            self.launches.append(launch)
            self._jobs[launch.trial_name] = (outcome, time.monotonic())
        return {"log": str(launch.log_path), "trial": launch.trial_name, "gpus": list(launch.gpus)}

    def poll(self, handle: Handle) -> RunState:
        with self._lock:
            job = self._jobs.get(handle["trial"])
        if job is None:
            return RunState(RunPhase.FAILED, "Lost", "unknown to this fake runner")
        outcome, started = job
        if handle["trial"] in self.stopped:
            return RunState(RunPhase.FAILED, "Error", "killed by signal SIGTERM", -15)
        if time.monotonic() - started < outcome.duration:
            return RunState(RunPhase.RUNNING)
        if outcome.exit_code == 0:
            return RunState(RunPhase.SUCCEEDED, "Completed", "exit code 0", 0)
        return RunState(
            RunPhase.FAILED, "Error", f"exit code {outcome.exit_code}", outcome.exit_code
        )

    def stop(self, handle: Handle, grace_seconds: float = 10.0) -> None:
        with self._lock:
            if handle.get("trial") and handle["trial"] not in self.stopped:
                self.stopped.append(handle["trial"])
