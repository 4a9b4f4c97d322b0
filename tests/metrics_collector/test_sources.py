"""Sources: a child's pipe (log file + echo + collector) and tailing a growing file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

from metrics_collector.collector import TrialCollector
from metrics_collector.parsers import TextParser
from metrics_collector.sources import FileTailer, PipeReader, Step

PRINTER = """
import sys, time
for i in range(200):
    print(f"step {i} loss={i}", flush=(i % 7 == 0))
    if i == 100:
        time.sleep(0.05)
print("tail without newline", end="")
"""


class Chunks:
    """A thread-safe sink that remembers every chunk."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.parts: list[bytes] = []
        self.resets = 0

    def __call__(self, chunk: bytes) -> None:
        with self._lock:
            self.parts.append(chunk)

    def reset(self) -> None:
        self.resets += 1

    @property
    def data(self) -> bytes:
        with self._lock:
            return b"".join(self.parts)


def test_pipe_reader_logs_echoes_and_feeds(tmp_path: Path, memory_store, minimize_loss) -> None:
    log = tmp_path / "logs" / "trial.log"
    collector = TrialCollector(memory_store, "t", minimize_loss, TextParser(["loss"]))
    echo = io.BytesIO()
    proc = subprocess.Popen(
        [sys.executable, "-c", PRINTER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    reader = PipeReader(proc.stdout, log, collector.feed, echo=echo).start()
    assert reader.join(20)
    assert proc.wait(5) == 0
    summary = collector.finish()
    output = log.read_bytes()
    assert output.endswith(b"step 199 loss=199\ntail without newline")
    assert echo.getvalue() == output
    assert reader.bytes_read == len(output)
    assert [o.value for o in memory_store.get_observations("t")] == [str(i) for i in range(200)]
    assert summary.last_lines[-1] == "tail without newline"


def test_pipe_reader_keeps_draining_when_the_sink_fails(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()

    def broken(chunk: bytes) -> None:
        raise RuntimeError("bug in a collector")

    reader = PipeReader(read_fd, tmp_path / "t.log", broken).start()
    payload = b"x" * 300_000  # more than a pipe buffer: a stalled reader would block us
    os.write(write_fd, payload)
    os.close(write_fd)
    assert reader.join(10)
    os.close(read_fd)
    assert (tmp_path / "t.log").read_bytes() == payload


def test_tailer_waits_for_the_file_and_follows_it(tmp_path: Path, until) -> None:
    path = tmp_path / "out.log"
    sink = Chunks()
    done = threading.Event()
    tailer = FileTailer(path, sink, is_done=done.is_set, poll_interval=0.01).start()
    until(lambda: tailer.offset == 0)
    with path.open("ab") as f:
        for i in range(20):
            f.write(b"line %d\n" % i)
            f.flush()
        until(lambda: sink.data.count(b"\n") == 20)
        f.write(b"last, written just before the process ends")
        f.flush()
        done.set()
    assert tailer.join(5)
    assert sink.data.endswith(b"line 19\nlast, written just before the process ends")


def test_tailer_handles_truncation(tmp_path: Path, until) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(b"old line 1\nold line 2\n")
    sink = Chunks()
    tailer = FileTailer(path, sink, on_reset=sink.reset, poll_interval=0.01).start()
    until(lambda: sink.data == b"old line 1\nold line 2\n")
    with path.open("r+b") as f:  # copytruncate
        f.truncate(0)
    until(lambda: tailer.truncations == 1)
    with path.open("ab") as f:
        f.write(b"new\n")
    until(lambda: sink.data.endswith(b"new\n"))
    tailer.stop()
    assert tailer.join(5)
    assert sink.resets == 1
    assert sink.data == b"old line 1\nold line 2\nnew\n"


def test_tailer_handles_rotation(tmp_path: Path, until) -> None:
    path = tmp_path / "out.log"
    sink = Chunks()
    path.write_bytes(b"a1\n")
    tailer = FileTailer(path, sink, on_reset=sink.reset, poll_interval=0.01).start()
    until(lambda: sink.data == b"a1\n")
    with path.open("ab") as old:
        path.rename(tmp_path / "out.log.1")  # logrotate: move away, then create anew
        old.write(b"a2 written to the old file before the new one exists\n")
    (tmp_path / "tmp").write_bytes(b"b1\n")
    (tmp_path / "tmp").rename(path)
    until(lambda: tailer.rotations == 1 and sink.data.endswith(b"b1\n"))
    tailer.stop()
    assert tailer.join(5)
    assert sink.data == b"a1\na2 written to the old file before the new one exists\nb1\n"
    assert sink.resets == 1


def test_tailer_stop_without_drain(tmp_path: Path) -> None:
    path = tmp_path / "never.log"
    tailer = FileTailer(path, Chunks(), poll_interval=0.01).start()
    tailer.stop(drain=False)
    assert tailer.join(5)


def test_tailer_finishes_when_the_file_never_appears(tmp_path: Path) -> None:
    tailer = FileTailer(tmp_path / "never.log", Chunks(), is_done=lambda: True)
    tailer.run()  # returns at once


def test_tailer_feeds_a_collector_from_a_writing_process(
    tmp_path: Path, memory_store, minimize_loss, until
) -> None:
    path = tmp_path / "trial.log"
    collector = TrialCollector(memory_store, "t", minimize_loss, TextParser(["loss"]))
    with path.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", PRINTER], stdout=out, stderr=out)
    tailer = FileTailer(
        path, collector.feed, is_done=lambda: proc.poll() is not None, poll_interval=0.01
    )
    tailer.run()
    collector.close()
    assert len(memory_store.get_observations("t")) == 200


def test_tailer_stepped_by_its_owner_follows_truncation_and_drains(tmp_path: Path) -> None:
    """Driven with step()/drain() from the owner's thread (the local controller's one loop for
    all trials): no thread of its own, same semantics as run()."""
    path = tmp_path / "out.log"
    chunks: list[bytes] = []
    resets: list[int] = []
    tailer = FileTailer(path, chunks.append, on_reset=lambda: resets.append(1))
    assert tailer.step() is Step.IDLE  # not there yet
    path.write_bytes(b"a=1\n")
    assert tailer.step() is Step.AGAIN and chunks == [b"a=1\n"]
    assert tailer.step() is Step.IDLE
    with path.open("ab") as f:
        f.write(b"a=2\n")
    assert tailer.step() is Step.AGAIN and chunks[-1] == b"a=2\n"
    path.write_bytes(b"b\n")  # truncated and rewritten, shorter than what was read
    while tailer.step() is Step.AGAIN:
        pass
    assert resets == [1] and chunks[-1] == b"b\n"
    with path.open("ab") as f:
        f.write(b"tail")
    tailer.drain()
    assert chunks[-1] == b"tail" and tailer._fd is None
    assert tailer._thread is None  # never started one
