"""controller.local_backend: the background driver's files are owner-only and a pid file that
someone else could have written is never acted on."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.local_backend import LocalBackend, _proc_start_ticks


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    b = LocalBackend(f"sqlite:///{tmp_path}/t.db", workdir=tmp_path / ".tunery")
    yield b
    b.close()


def _pidfile_of(backend: LocalBackend, name: str, proc: subprocess.Popen[bytes]) -> Path:
    folder = backend.experiment_dir(name)
    folder.mkdir(parents=True)
    pidfile = folder / "driver.pid"
    pidfile.write_text(f"{proc.pid} {_proc_start_ticks(proc.pid)}\n")
    return pidfile


def test_a_pid_file_others_could_write_is_not_believed(backend: LocalBackend) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile = _pidfile_of(backend, "exp", victim)
        pidfile.chmod(0o600)
        assert backend.driver_pid("exp") == victim.pid  # the control: a private file is read
        pidfile.chmod(0o666)
        assert backend.driver_pid("exp") is None
        backend.stop_driver("exp", timeout=1)
        time.sleep(0.2)
        assert victim.poll() is None  # never signalled
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


def test_driver_files_are_owner_only_whatever_the_umask(backend: LocalBackend) -> None:
    old = os.umask(0)
    try:
        backend.start_driver("missing")  # `tunery resume missing` exits at once: not found
    finally:
        os.umask(old)
    deadline = time.monotonic() + 30
    while backend.driver_pid("missing") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    folder = backend.experiment_dir("missing")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in (folder / "driver.pid", folder / "driver.log"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (
        "Error:" in (folder / "driver.log").read_text()
    )  # the driver ran and said why it stopped
