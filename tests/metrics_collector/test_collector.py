"""TrialCollector: visibility, batching, outages, replay, early stopping, summaries."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from metrics_collector.collector import (
    CollectionSummary,
    TrialCollector,
    collect_file,
    metrics_unavailable_message,
)
from metrics_collector.errors import CollectorError, FlushError
from metrics_collector.parsers import JsonLinesParser, TextParser
from metrics_collector.tail import read_last_lines
from tunery.trials import MetricStrategy, Objective, ObjectiveType, Observation, StopDecision

TRIAL = "trial-1"


def lines(n: int, start: int = 0) -> bytes:
    return b"".join(
        b"epoch %d loss=%d accuracy=0.%d\nnoise\n" % (i, i, i) for i in range(start, n)
    )


def stored(store, trial: str = TRIAL) -> list[tuple[str, str, int]]:
    return [(o.metric_name, o.value, o.step) for o in store.get_observations(trial)]


def test_observations_are_visible_within_a_second(memory_store, minimize_loss, until) -> None:
    collector = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))
    try:
        for i in range(5):
            collector.feed(b"loss=%d\n" % i)
            waited = until(lambda i=i: len(memory_store.get_observations(TRIAL)) == i + 1)
            assert waited < 1.0
    finally:
        collector.close()


def test_writes_are_batched(memory_store, minimize_loss) -> None:
    collector = TrialCollector(
        memory_store, TRIAL, minimize_loss, TextParser(["loss", "accuracy"]), batch_size=500
    )
    for i in range(0, 5000, 100):
        collector.feed(lines(i + 100, i))
    collector.close()
    assert len(memory_store.get_observations(TRIAL)) == 10_000
    assert max(memory_store.add_calls) <= 500
    assert len(memory_store.add_calls) < 60  # 10,000 rows in batches, not row by row


def test_close_parses_the_last_line_and_flushes(memory_store, minimize_loss) -> None:
    collector = TrialCollector(
        memory_store, TRIAL, minimize_loss, TextParser(["loss"]), flush_interval=60
    )
    collector.feed(b"loss=1\nloss=2")  # no trailing newline
    collector.close()
    assert stored(memory_store) == [("loss", "1", 0), ("loss", "2", 1)]
    collector.close()  # idempotent
    with pytest.raises(CollectorError, match="closed"):
        collector.feed(b"loss=3\n")


def test_store_outage_is_retried_without_loss(memory_store, minimize_loss, until) -> None:
    collector = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))
    memory_store.down = True
    collector.feed(lines(50))
    time.sleep(0.3)
    assert collector.pending == 50
    memory_store.down = False
    until(lambda: collector.pending == 0)
    collector.close()
    assert [v for _, v, _ in stored(memory_store)] == [str(i) for i in range(50)]


def test_close_with_the_store_down_raises_and_replay_recovers(
    tmp_path: Path, memory_store, minimize_loss
) -> None:
    log = tmp_path / "trial.log"
    data = lines(30)
    log.write_bytes(data)
    collector = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))
    collector.feed(data[:200])
    collector.flush()
    written = len(memory_store.get_observations(TRIAL))
    assert 0 < written < 30
    memory_store.down = True
    collector.feed(data[200:])
    with pytest.raises(FlushError, match="replay") as info:
        collector.close(timeout=0.3)
    assert info.value.pending == 30 - written
    memory_store.down = False
    again = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))
    assert again.replay(log) == 30 - written
    again.close()
    assert [v for _, v, _ in stored(memory_store)] == [str(i) for i in range(30)]


def test_replay_adds_exactly_what_is_missing_and_is_idempotent(
    tmp_path: Path, memory_store, minimize_loss
) -> None:
    log = tmp_path / "trial.log"
    log.write_bytes(lines(40) + b"loss=99")  # the crash cut the last line short
    expected = TextParser(["loss", "accuracy"]).parse(log.read_bytes())
    # Before the crash: a prefix of each metric was written, plus a row of another source.
    memory_store.add_observations(
        TRIAL, [o for o in expected if o.step < 25 and o.metric_name == "loss"]
    )
    memory_store.add_observations(
        TRIAL, [o for o in expected if o.step < 10 and o.metric_name == "accuracy"]
    )
    memory_store.add_observations(TRIAL, [Observation.of("loss", "0.5", 0)])  # pushed
    for expected_added in (41 - 25 + 40 - 10, 0, 0):
        collector = TrialCollector(
            memory_store, TRIAL, minimize_loss, TextParser(["loss", "accuracy"])
        )
        assert collector.replay(log) == expected_added
        collector.close()
    rows = collections.Counter(stored(memory_store))
    assert rows == collections.Counter(
        [(o.metric_name, o.value, o.step) for o in expected] + [("loss", "0.5", 0)]
    )


def test_replay_of_a_missing_log_adds_nothing(tmp_path: Path, memory_store, minimize_loss) -> None:
    collector = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))
    assert collector.replay(tmp_path / "nope.log") == 0
    with pytest.raises(CollectorError, match="before the first feed"):
        collector.resume()
    collector.close()


def test_resume_then_feed_skips_stored_rows(memory_store, minimize_loss) -> None:
    data = lines(20)
    first = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))
    first.feed(data[:150])
    first.close()
    count = len(memory_store.get_observations(TRIAL))
    second = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))
    assert second.resume() == count
    for i in range(0, len(data), 7):  # the restarted tailer reads from the start again
        second.feed(data[i : i + 7])
    second.close()
    assert [v for _, v, _ in stored(memory_store)] == [str(i) for i in range(20)]


@pytest.mark.parametrize("one_chunk", [False, True])
def test_resume_stops_matching_after_the_existing_output(
    memory_store, minimize_loss, one_chunk: bool
) -> None:
    old = b"loss=1\nloss=2\n"
    memory_store.add_observations(TRIAL, TextParser(["loss"]).parse(old))
    # Another source (pushed metrics) stored a row that new output will repeat exactly.
    memory_store.add_observations(TRIAL, [Observation.of("loss", "3", 2)])
    collector = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))
    assert collector.resume(len(old)) == 3
    new = b"loss=3\n"  # printed after the restart: new, although it looks stored
    for chunk in [old + new] if one_chunk else [old, new]:
        collector.feed(chunk)
    collector.close()
    assert sorted(v for _, v, _ in stored(memory_store)) == ["1", "2", "3", "3"]


class RecordingStopper:
    """Stops once the objective has been reported ``after`` times."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls: list[tuple[Observation, ...]] = []

    def __call__(self, observations: Sequence[Observation]) -> StopDecision:
        self.calls.append(tuple(observations))
        if len(observations) >= self.after:
            return StopDecision(True, "TrialEarlyStopped", f"stopped after {len(observations)}")
        return StopDecision(False)


def test_early_stop_callback(memory_store, minimize_loss) -> None:
    stopper = RecordingStopper(after=3)
    decisions: list[StopDecision] = []
    seen_at_stop: list[int] = []

    def on_stop(decision: StopDecision) -> None:
        seen_at_stop.append(len(memory_store.get_observations(TRIAL)))
        decisions.append(decision)

    collector = TrialCollector(
        memory_store,
        TRIAL,
        minimize_loss,
        TextParser(["loss", "accuracy"]),
        stop_check=stopper,
        on_stop=on_stop,
        flush_interval=60,
    )
    for i in range(5):
        collector.feed(b"loss=%d accuracy=0.%d\n" % (i, i))
    collector.close()
    # The check saw every objective observation so far, and nothing else.
    assert [len(c) for c in stopper.calls] == [1, 2, 3]
    assert all(o.metric_name == "loss" for c in stopper.calls for o in c)
    assert [d.message for d in decisions] == ["stopped after 3"]
    assert seen_at_stop == [6]  # what was collected was stored before on_stop
    assert collector.stop_decision == decisions[0]
    assert len(memory_store.get_observations(TRIAL)) == 10  # collection went on
    assert collector.summarize().stop_decision == decisions[0]


def test_on_stop_may_close_the_collector(memory_store, minimize_loss) -> None:
    holder: list[TrialCollector] = []
    closed = threading.Event()

    def on_stop(decision: StopDecision) -> None:
        holder[0].close()
        closed.set()

    collector = TrialCollector(
        memory_store,
        TRIAL,
        minimize_loss,
        TextParser(["loss"]),
        stop_check=RecordingStopper(after=1),
        on_stop=on_stop,
    )
    holder.append(collector)
    done = threading.Thread(target=collector.feed, args=(b"loss=1\n",), daemon=True)
    done.start()
    done.join(5)
    assert closed.is_set() and not done.is_alive()


def test_a_failing_stop_check_does_not_stop_collection(memory_store, minimize_loss) -> None:
    def broken(observations: Sequence[Observation]) -> StopDecision:
        raise RuntimeError("early stopping service down")

    collector = TrialCollector(
        memory_store, TRIAL, minimize_loss, TextParser(["loss"]), stop_check=broken
    )
    collector.feed(lines(3))
    collector.close()
    assert len(memory_store.get_observations(TRIAL)) == 3


def finish(memory_store, objective: Objective, data: bytes, parser=None) -> CollectionSummary:
    collector = TrialCollector(
        memory_store, TRIAL, objective, parser or TextParser(objective.metric_names)
    )
    collector.feed(data)
    return collector.finish()


def test_summary_uses_the_metric_strategies(memory_store) -> None:
    objective = Objective(
        ObjectiveType.MINIMIZE,
        "loss",
        None,
        ("accuracy",),
        {"loss": MetricStrategy.LATEST, "accuracy": MetricStrategy.MAX},
    )
    output = b"loss=3 accuracy=0.5\nloss=1 accuracy=0.9\nloss=2 accuracy=0.7\n"
    summary = finish(memory_store, objective, output)
    assert summary.objective_value == 2.0  # latest, not min
    assert not summary.objective_missing
    assert summary.observation == {
        "metrics": [
            {"name": "loss", "min": "1", "max": "3", "latest": "2"},
            {"name": "accuracy", "min": "0.5", "max": "0.9", "latest": "0.7"},
        ]
    }
    assert summary.written == 6


def test_summary_when_the_objective_was_never_reported(memory_store, minimize_loss) -> None:
    output = b"".join(b"line %d\n" % i for i in range(30)) + b"accuracy=0.5\nTraceback: boom"
    summary = finish(memory_store, minimize_loss, output)
    assert summary.objective_missing
    message = summary.unavailable_message()
    assert message.startswith(
        "Metrics are not available: objective metric 'loss' was not reported"
    )
    assert "no output line reported it; expected lines like 'loss=0.25'" in message
    assert "Last 20 lines of output:" in message
    assert message.endswith("    accuracy=0.5\n    Traceback: boom")
    assert "    line 12\n" in message and "line 11\n" not in message


def test_summary_when_the_objective_was_not_a_number(memory_store, minimize_loss) -> None:
    summary = finish(memory_store, minimize_loss, b"loss=nan-ish\nloss=\n")
    assert summary.objective_missing
    assert "values that are not numbers were ignored (loss: 2; e.g. loss=''" in (
        summary.unavailable_message()
    )


def test_summary_when_the_chosen_value_is_nan(memory_store) -> None:
    objective = Objective(ObjectiveType.MAXIMIZE, "acc", None, (), {"acc": MetricStrategy.LATEST})
    summary = finish(
        memory_store, objective, b'{"acc": 0.5}\n{"acc": NaN}\n', JsonLinesParser(["acc"])
    )
    assert summary.objective_missing
    assert "its latest value 'NaN' is not a finite number" in summary.unavailable_message()
    best = finish(
        memory_store, Objective(ObjectiveType.MAXIMIZE, "acc"), b"", JsonLinesParser(["acc"])
    )
    assert best.objective_value == 0.5  # NaN is stored but never chosen as the best


def test_message_builder() -> None:
    assert metrics_unavailable_message("loss", []) == (
        "Metrics are not available: objective metric 'loss' was not reported.\n"
        "The trial wrote no output."
    )
    text = metrics_unavailable_message("loss", ["a", "b"], detail="why")
    assert text == (
        "Metrics are not available: objective metric 'loss' was not reported (why).\n"
        "Last 2 lines of output:\n    a\n    b"
    )


def test_last_lines_render_like_a_terminal(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_bytes(b"x" * 100_000 + b"\nfirst\n\x1b[31mred\x1b[0m\r\nbar 10%\rbar 100%\nlast")
    assert read_last_lines(log, 4) == ["first", "red", "bar 100%", "last"]
    assert read_last_lines(tmp_path / "missing.log") == []


def test_collect_file_for_a_finished_trial(tmp_path: Path, memory_store, minimize_loss) -> None:
    log = tmp_path / "t.log"
    log.write_bytes(lines(4))
    summary = collect_file(memory_store, TRIAL, minimize_loss, TextParser(["loss"]), log)
    assert summary.objective_value == 0.0
    assert summary.written == 4


def test_invalid_settings(memory_store, minimize_loss) -> None:
    with pytest.raises(ValueError, match="flush_interval"):
        TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]), flush_interval=0)


def test_concurrent_feeders_lose_nothing(memory_store, minimize_loss) -> None:
    collector = TrialCollector(memory_store, TRIAL, minimize_loss, TextParser(["loss"]))

    def feed(offset: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(200):
                collector.feed(b"loss=%d\n" % (offset + i))

        return run

    threads = [threading.Thread(target=feed(k * 1000)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    collector.close()
    values = sorted(int(v) for _, v, _ in stored(memory_store))
    assert values == sorted(k * 1000 + i for k in range(4) for i in range(200))
    assert sorted(s for _, _, s in stored(memory_store)) == list(range(800))
