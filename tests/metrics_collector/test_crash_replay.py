"""kill -9 of a collector mid-stream, then replay: no observation lost, none doubled."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metrics_collector.collector import TrialCollector
from metrics_collector.parsers import TextParser
from tunery.trials import Objective, ObjectiveType

ROOT = Path(__file__).resolve().parents[2]
OBJECTIVE = Objective(ObjectiveType.MINIMIZE, "loss", None, ("accuracy",))

TRAINER = """
import sys, time
for i in range(4000):
    sys.stdout.write(f"step {i} loss={i}.5 accuracy=0.{i}\\nnoise line {i}\\n")
    if i % 50 == 0:
        sys.stdout.flush()
        time.sleep(0.005)
sys.stdout.write("loss=-1")  # no newline at the end
"""

# The local controller's shape: the trial writes its log file, the collector tails it.
TAILING_COLLECTOR = """
import sys
from metrics_collector.collector import TrialCollector
from metrics_collector.parsers import TextParser
from metrics_collector.sources import FileTailer
from tunery.store import open_store
from tunery.trials import Objective, ObjectiveType
store = open_store(sys.argv[1])
objective = Objective(ObjectiveType.MINIMIZE, "loss", None, ("accuracy",))
collector = TrialCollector(store, "t", objective, TextParser(["loss", "accuracy"]),
                           flush_interval=0.05, batch_size=100)
FileTailer(sys.argv[2], collector.feed, poll_interval=0.005).run()
"""

# The pipe-attached shape: the collector reads the child's stdout, logs it, parses it.
PIPE_COLLECTOR = """
import subprocess, sys
from metrics_collector.collector import TrialCollector
from metrics_collector.parsers import TextParser
from metrics_collector.sources import PipeReader
from tunery.store import open_store
from tunery.trials import Objective, ObjectiveType
store = open_store(sys.argv[1])
objective = Objective(ObjectiveType.MINIMIZE, "loss", None, ("accuracy",))
collector = TrialCollector(store, "t", objective, TextParser(["loss", "accuracy"]),
                           flush_interval=0.05, batch_size=100)
child = subprocess.Popen([sys.executable, "-u", "-c", sys.argv[3]], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
PipeReader(child.stdout, sys.argv[2], collector.feed).run()
collector.close()
"""


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, **kwargs)


def stored_rows(store) -> collections.Counter:
    return collections.Counter(
        (o.metric_name, o.value, o.step) for o in store.get_observations("t")
    )


def parsed_rows(log: Path) -> collections.Counter:
    parsed = TextParser(["loss", "accuracy"]).parse(log.read_bytes())
    return collections.Counter((o.metric_name, o.value, o.step) for o in parsed)


def kill_when_some_rows_are_stored(collector: subprocess.Popen, store, at_least: int) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = sum(store.observation_counts("t").values())
        if count >= at_least:
            collector.send_signal(signal.SIGKILL)
            collector.wait()
            return count
        assert collector.poll() is None, "collector ended before it was killed"
        time.sleep(0.01)
    raise AssertionError("no rows stored within 60 s")


def replay(store, log: Path) -> int:
    collector = TrialCollector(store, "t", OBJECTIVE, TextParser(["loss", "accuracy"]))
    try:
        return collector.replay(log)
    finally:
        collector.close()


@pytest.fixture
def url_store(db_url: str):
    from tunery.store import open_store

    store = open_store(db_url)
    yield db_url, store
    store.close()


@pytest.mark.slow
def test_tailing_collector_killed_then_replayed(tmp_path: Path, url_store) -> None:
    url, store = url_store
    log = tmp_path / "trial.log"
    log.touch()
    with log.open("ab") as out:
        trainer = python(TRAINER, stdout=out, stderr=out)
    collector = python(TAILING_COLLECTOR, url, str(log))
    kill_when_some_rows_are_stored(collector, store, 500)
    assert trainer.wait(60) == 0  # the trial does not notice the collector's death
    expected = parsed_rows(log)
    assert sum(expected.values()) == 8001
    stored_before = sum(store.observation_counts("t").values())
    assert 500 <= stored_before < 8001
    assert replay(store, log) == 8001 - stored_before
    assert stored_rows(store) == expected  # nothing lost, nothing doubled
    assert replay(store, log) == 0  # idempotent
    assert stored_rows(store) == expected


@pytest.mark.slow
def test_pipe_collector_killed_then_replayed(tmp_path: Path) -> None:
    from tunery.store import open_store

    url = f"sqlite:///{tmp_path / 'pipe.db'}"
    store = open_store(url)
    try:
        log = tmp_path / "trial.log"
        collector = python(PIPE_COLLECTOR, url, str(log), TRAINER)
        kill_when_some_rows_are_stored(collector, store, 500)
        time.sleep(0.5)  # the orphaned trainer dies writing to the closed pipe
        expected = parsed_rows(log)  # the log holds every byte the collector read
        stored_before = sum(store.observation_counts("t").values())
        assert 500 <= stored_before <= sum(expected.values())
        assert replay(store, log) == sum(expected.values()) - stored_before
        assert stored_rows(store) == expected
        assert replay(store, log) == 0
    finally:
        store.close()
