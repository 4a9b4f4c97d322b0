"""tune() through the warm fork server (issue 17, deliverable 3): the user's module is imported
once per experiment, yet every trial is its own process with its own environment, and a crash
or a leak in one trial does not reach the others or the driver."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tunery import search, tune

pytestmark = pytest.mark.usefixtures("isolated_cwd")

MODULE = """
import os, signal

with open({imports!r}, "a") as f:
    f.write(f"{{os.getpid()}}\\n")

LEAK = []


def objective(p):
    LEAK.append(p["x"])  # a leak: visible to later trials if they shared a process
    x = p["x"]
    if x == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == "exit":
        os._exit(7)
    environ = open("/proc/self/environ", "rb").read().split(b"\\0")
    tag = os.environ["TUNERY_TRIAL_TAG"]
    with open(f"trial-{{x}}.txt", "w") as f:
        print(os.getpid(), os.getppid(), os.environ["TUNERY_TRIAL_NAME"], tag,
              f"TUNERY_TRIAL_TAG={{tag}}".encode() in environ, "TUNERY_DB_URL" in os.environ,
              file=f)
    return float(len(LEAK))
"""


@pytest.fixture
def user_module(tmp_path: Path):
    folder = tmp_path / "src"
    folder.mkdir()
    imports = tmp_path / "imports.txt"
    (folder / "warm_user_module.py").write_text(
        textwrap.dedent(MODULE.format(imports=str(imports)))
    )
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("warm_user_module")
        yield module, imports
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("warm_user_module", None)


def _children_running(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        alive = fields[0] not in ("Z", "X")  # a zombie is reaped by the next Popen
        if alive and int(fields[1]) == os.getpid() and name.encode() in cmdline:
            found.append(int(entry))
    return found


def test_module_imported_once_trials_isolated(user_module, isolated_cwd: Path) -> None:
    module, imports = user_module
    values = ["a", "b", "c", "d", "segfault", "exit"]
    result = tune(
        module.objective,
        {"x": search.categorical(values)},
        algorithm_name="grid",
        max_trial_count=len(values),
        parallel_trial_count=2,
        fail_fast=False,
        verbose=False,
    )
    by_x = {t.parameters["x"]: t for t in result.trials}
    # imported by this test, then once more by the fork server: never per trial
    pids = [int(line) for line in imports.read_text().split()]
    assert pids[0] == os.getpid() and len(pids) == 2
    server = pids[1]
    seen = {}
    for x in "abcd":
        assert by_x[x].condition == "Succeeded"
        assert by_x[x].value == 1.0  # the previous trials' LEAK never reached this one
        pid, ppid, trial_name, tag, tag_in_proc, has_db = (
            (isolated_cwd / f"trial-{x}.txt").read_text().split()
        )
        assert int(ppid) == server and int(pid) != server
        assert trial_name == by_x[x].name and tag_in_proc == "True" and has_db == "False"
        seen[x] = (int(pid), tag)
    assert len({pid for pid, _ in seen.values()}) == 4
    assert len({tag for _, tag in seen.values()}) == 4
    segfault, exited = by_x["segfault"], by_x["exit"]
    assert segfault.condition == "Failed" and "SIGSEGV" in segfault.message
    assert exited.condition == "Failed" and "exit code 7" in exited.message
    # the driver's own copy of the module is untouched, and the server is gone
    assert module.LEAK == []
    deadline = time.monotonic() + 15
    while server in _children_running("forkserver") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server not in _children_running("forkserver")


def _slow(p: dict) -> float:
    import time as t

    t.sleep(float(p["x"]))
    return 1.0


def test_trial_records_and_logs_as_before(isolated_cwd: Path) -> None:
    result = tune(
        _slow,
        {"x": search.categorical(["0.1", "0.2"])},
        algorithm_name="grid",
        max_trial_count=2,
        verbose=False,
        name="warm-records",
    )
    assert all(t.condition == "Succeeded" for t in result.trials)
    logs = isolated_cwd / ".tunery" / "logs" / "warm-records"
    for trial in result.trials:
        exit_file = logs / f"{trial.name}.exit"
        status, end = exit_file.read_text().split()
        log = (logs / f"{trial.name}.log").read_bytes()
        assert status == "0" and int(end) == len(log) and b"objective=1.0" in log
        for path in (exit_file, logs / f"{trial.name}.exit.pid", logs / f"{trial.name}.log"):
            assert path.stat().st_mode & 0o077 == 0
