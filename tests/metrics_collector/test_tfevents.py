"""TFEventReader: Katib's tag/folder naming, values, steps, times, and files read as they grow."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util.tensor_util import make_tensor_proto

from metrics_collector.tfevents import TFEventReader, matches


def _event(step: int, wall_time: float = 1_700_000_000.5, **values: object) -> Event:
    summary = Summary()
    for tag, value in values.items():
        if isinstance(value, float):
            summary.value.add(tag=tag, simple_value=value)
        else:
            summary.value.add(tag=tag, tensor=make_tensor_proto(value))
    return Event(wall_time=wall_time, step=step, summary=summary)


def _write(folder: Path, *events: Event) -> EventFileWriter:
    writer = EventFileWriter(str(folder))
    for e in events:
        writer.add_event(e)
    writer.flush()
    return writer


@pytest.mark.parametrize(
    ("metric", "tag", "folder", "expected"),
    [
        ("accuracy", "accuracy", "/logs/test", True),
        ("accuracy", "accuracy_top5", "/logs", True),  # Katib's prefix match
        ("accuracy", "loss", "/logs", False),
        ("test/accuracy", "accuracy", "/logs/test", True),
        ("test/accuracy", "accuracy", "/logs/train", False),
        ("train/loss", "loss", "/logs/run1/train/", True),
    ],
)
def test_katib_naming(metric: str, tag: str, folder: str, expected: bool) -> None:
    assert matches(metric, tag, folder) is expected


def test_values_steps_and_times_from_both_summary_styles(tmp_path: Path) -> None:
    _write(tmp_path / "train", _event(0, accuracy=0.25, loss=2.0), _event(1, accuracy=0.5))
    _write(
        tmp_path / "test",
        _event(0, accuracy=0.125),  # old style: simple_value
        _event(1, accuracy=make_tensor_proto(0.75)),  # TF2 style: a scalar tensor
        _event(2, accuracy=make_tensor_proto([1.0, 2.0])),  # not a scalar: skipped
        _event(3, accuracy=make_tensor_proto("text")),  # not a number: skipped
    )
    reader = TFEventReader(tmp_path, ["test/accuracy", "loss"])
    got = sorted((o.metric_name, o.step, o.numeric) for o in reader.poll())
    assert got == [("loss", 0, 2.0), ("test/accuracy", 0, 0.125), ("test/accuracy", 1, 0.75)]
    stamp = reader_times(tmp_path)
    assert stamp == {dt.datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=dt.UTC)}
    assert reader.poll() == []  # nothing new


def reader_times(folder: Path) -> set[dt.datetime]:
    return {o.time for o in TFEventReader(folder, ["loss"]).poll()}


def test_files_are_read_as_they_grow_and_new_files_are_found(tmp_path: Path) -> None:
    reader = TFEventReader(tmp_path / "logs", ["accuracy"])
    assert reader.poll() == []  # the folder does not exist yet
    writer = _write(tmp_path / "logs", _event(0, accuracy=0.1))
    assert [o.step for o in reader.poll()] == [0]
    writer.add_event(_event(1, accuracy=0.2))
    writer.flush()
    writer.add_event(_event(2, accuracy=0.3))
    writer.flush()
    assert [o.step for o in reader.poll()] == [1, 2]
    time.sleep(1.1)  # the writer names files by the second
    _write(tmp_path / "logs" / "eval", _event(7, accuracy=0.9))
    assert [(o.step, o.numeric) for o in reader.poll()] == [(7, 0.9)]
    assert reader.files_read == 2


def test_a_record_half_written_is_read_once_complete(tmp_path: Path) -> None:
    writer = _write(tmp_path, _event(0, accuracy=0.1), _event(1, accuracy=0.2))
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # the last record cut short, as a writer mid-flush leaves it
    reader = TFEventReader(tmp_path, ["accuracy"])
    assert [o.step for o in reader.poll()] == [0]
    path.write_bytes(whole)
    assert [o.step for o in reader.poll()] == [1]


def test_files_last_written_before_the_trial_started_are_ignored(tmp_path: Path) -> None:
    _write(tmp_path, _event(0, accuracy=0.1)).close()  # an earlier trial's
    time.sleep(0.05)
    started = time.time()
    mine = _write(tmp_path / "mine", _event(5, accuracy=0.5))
    reader = TFEventReader(tmp_path, ["accuracy"], ignore_before=started)
    assert [o.step for o in reader.poll()] == [5]
    mine.add_event(_event(6, accuracy=0.6))
    mine.flush()
    # re-attached later (controller restart): the trial's own file is still read
    again = TFEventReader(tmp_path, ["accuracy"], ignore_before=started)
    assert [o.step for o in again.poll()] == [5, 6]


def test_other_files_are_not_opened(tmp_path: Path) -> None:
    (tmp_path / "checkpoint").write_bytes(b"\x00garbage")
    (tmp_path / "main.pid").write_text("12\n")
    reader = TFEventReader(tmp_path, ["accuracy"])
    assert reader.poll() == [] and reader.files_read == 0
