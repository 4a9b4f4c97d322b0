"""tune() on this machine: a trial's leftover processes end with it, nothing they print after
its end is collected, and no database password reaches a trial (issue 14, points 2 and 8)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tunery import search, tune

pytestmark = pytest.mark.usefixtures("isolated_cwd")


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _recorded(path: str) -> int:
    try:
        with open(path) as f:
            return len(f.read().split())
    except OSError:
        return 0


def double_forking(p: dict) -> float:
    """Leaves a child in its own process group and a setsid daemon behind; both print
    loss=-99 (better than anything the trial returns) once the trial's process is gone."""
    main, pids = os.getpid(), f"pids-{p['x']}"
    with open(f"env-{p['x']}.json", "w") as f:
        json.dump(dict(os.environ), f)

    def linger(mark: str) -> None:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        while _running(main):
            time.sleep(0.02)
        time.sleep(0.2)
        while True:
            print(f"loss=-99 {mark}", flush=True)
            time.sleep(0.01)

    if os.fork() == 0:
        os.setpgid(0, 0)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                linger("daemon")
            os._exit(0)
        linger("child")
    while _recorded(pids) < 2:
        time.sleep(0.01)
    return float(p["x"])


def _pids(folder: Path) -> list[int]:
    return [int(pid) for path in folder.glob("pids-*") for pid in path.read_text().split()]


def test_leftovers_end_with_the_trial_and_no_password_reaches_it(
    isolated_cwd: Path, password_db_url: str
) -> None:
    password = make_url(password_db_url).password
    assert password
    try:
        result = tune(
            double_forking,
            {"x": search.discrete([3, 5])},
            db=password_db_url,
            objective_type="minimize",
            algorithm_name="grid",
            max_trial_count=2,
            verbose=False,
        )
        time.sleep(0.4)  # a survivor would have printed by now
        pids = _pids(isolated_cwd)
        assert len(pids) == 4
        assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]  # zombies too
    finally:
        for pid in _pids(isolated_cwd):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert result.best_value == 3.0
    assert sorted(t.value for t in result.trials) == [3.0, 5.0]
    for path in isolated_cwd.glob("env-*.json"):
        env = json.loads(path.read_text())
        assert "TUNERY_DB_URL" not in env and password not in path.read_text()
        assert env["PATH"] and env["TUNERY_TRIAL_NAME"] and env["TUNERY_METRICS_FILE"]
    logs = list((isolated_cwd / ".tunery" / "logs").rglob("*.log"))
    assert len(logs) == 2
    for log in logs:
        assert password not in log.read_text() and "loss=-99" not in log.read_text()


def test_tune_files_are_owner_only_under_umask_000(isolated_cwd: Path) -> None:
    old = os.umask(0)
    try:
        result = tune(
            lambda p: p["x"],
            {"x": search.discrete([1, 2])},
            objective_type="minimize",
            algorithm_name="grid",
            max_trial_count=2,
            verbose=False,
        )
    finally:
        os.umask(old)
    assert result.best_value == 1.0
    state = isolated_cwd / ".tunery"
    modes = {
        str(path.relative_to(state)): stat.S_IMODE(path.stat().st_mode)
        for path in [state, *state.rglob("*")]
    }
    assert modes["experiments"] == 0o700
    assert modes[f"experiments/{result.experiment_name}/objective.pkl"] == 0o600
    assert {m for p, m in modes.items() if (state / p).is_dir()} == {0o700}
    assert {m for p, m in modes.items() if (state / p).is_file()} == {0o600}
