"""Where a trial's output comes from: a child process's pipe, or a file that grows.

Called by the local controller and by the Kubernetes sidecar; both hand the bytes to a
:class:`metrics_collector.collector.TrialCollector` (``sink=collector.feed``).

- :class:`PipeReader` reads a child's stdout (stderr merged into it, as ``2>&1``), appends
  every byte to the trial's log file (created 0600) *before* the collector parses it (so the
  log file is the collector's write-ahead log), optionally echoes it, and feeds the collector.
- :class:`FileTailer` follows a file while a writer appends to it (Katib's File collector; the
  sidecar; the local runner's log file; the ``TUNERY_METRICS_FILE`` of ``report_metrics``).
  It waits for the file to appear, survives truncation (``copytruncate``) and rotation (the
  path replaced by a new file: the old one is read to its end first), and stops when told or
  once the watched process is done and everything it wrote has been read. It runs in a thread
  of its own (:meth:`FileTailer.start`), or is stepped by an owner that follows many files
  from one thread (:meth:`FileTailer.step`, :meth:`FileTailer.drain`; the local controller's
  :class:`controller.collecting.CollectLoop`).
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from metrics_collector.background import BackgroundLoop
from tunery.files import open_private

log = logging.getLogger(__name__)

Sink = Callable[[bytes], object]
READ_SIZE = 1 << 16


class PipeReader:
    """Reads a pipe to its end: log file first, then echo, then ``sink``.

    ``stream`` is a binary file object or a file descriptor (e.g. ``proc.stdout``); ``echo``
    a binary stream (e.g. ``sys.stdout.buffer``) or None. A failing sink or echo is logged and
    skipped, never stops the draining: a child blocked on a full pipe would hang the trial.
    """

    def __init__(
        self,
        stream: BinaryIO | int,
        log_path: str | os.PathLike[str],
        sink: Sink | None = None,
        *,
        echo: BinaryIO | None = None,
        read_size: int = READ_SIZE,
    ) -> None:
        self.fd = stream if isinstance(stream, int) else stream.fileno()
        self.log_path = Path(log_path)
        self.sink = sink
        self.echo = echo
        self.read_size = read_size
        self.bytes_read = 0
        self._thread: threading.Thread | None = None

    def start(self) -> PipeReader:
        self._thread = threading.Thread(target=self.run, name="pipe-reader", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the end of the pipe; True when it was reached."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run(self) -> None:
        """Read until end of file (the child closed its output)."""
        log_fd = open_private(self.log_path, os.O_WRONLY | os.O_APPEND)
        sink_failed = False
        try:
            while True:
                try:
                    data = os.read(self.fd, self.read_size)
                except InterruptedError:
                    continue
                if not data:
                    return
                self.bytes_read += len(data)
                _write_all(log_fd, data)
                if self.echo is not None:
                    try:
                        self.echo.write(data)
                        self.echo.flush()
                    except (OSError, ValueError) as e:
                        log.warning("echo of %s stopped: %s", self.log_path, e)
                        self.echo = None
                if self.sink is not None:
                    try:
                        self.sink(data)
                    except Exception:
                        if not sink_failed:
                            log.exception(
                                "collector of %s failed; output still logged", self.log_path
                            )
                        sink_failed = True
        finally:
            os.close(log_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Step(enum.Enum):
    """What :meth:`FileTailer.step` did."""

    AGAIN = "again"
    IDLE = "idle"
    DONE = "done"


class FileTailer(BackgroundLoop):
    """Follows ``path`` from ``offset`` and passes each new chunk to ``sink``.

    Args:
        path: the file; it may not exist yet.
        sink: receives every new chunk, in order (e.g. ``collector.feed``).
        is_done: polled when the end of the file is reached; once it returns True, the file
            is read to its end one last time and the tailer stops (e.g. "the trial's process
            exited").
        on_reset: called when the file was truncated or replaced, before reading the new
            content (e.g. ``collector.end_of_input`` to end a partial line).
        poll_interval: sleep between checks at the end of the file.
        end_offset: where the writer's output ended, once known (None before): asked after
            each read, so bytes are fed only when they lie before the end or were read
            while the end was not known yet; nothing beyond it is ever fed (e.g. output a
            trial's leftover processes wrote after the trial ended).
    """

    thread_name = "file-tailer"

    def __init__(
        self,
        path: str | os.PathLike[str],
        sink: Sink,
        *,
        is_done: Callable[[], bool] | None = None,
        on_reset: Callable[[], object] | None = None,
        poll_interval: float = 0.05,
        read_size: int = 1 << 20,
        offset: int = 0,
        end_offset: Callable[[], int | None] | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.sink = sink
        self.is_done = is_done
        self.on_reset = on_reset
        self.poll_interval = poll_interval
        self.read_size = read_size
        self.offset = offset
        self.end_offset = end_offset
        self._end: int | None = None
        self.rotations = 0
        self.truncations = 0
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._finishing = False

    def run(self) -> None:
        """Follow the file until stopped (or done), then return."""
        try:
            while True:
                if self._stop.is_set() and not self._drain:
                    return
                state = self.step()
                if state is Step.DONE:
                    return
                if state is Step.IDLE:
                    self._stop.wait(self.poll_interval)
        finally:
            self.close_file()

    def step(self) -> Step:
        """One read (or check) of the file, for an owner that drives the tailer itself
        instead of :meth:`start`: AGAIN (call again at once), IDLE (at the end of the file:
        call again later) or DONE (stopped or finished; the file is closed)."""
        if self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                if self._finishing:
                    return Step.DONE
                self._finishing = self._should_finish()
                return Step.AGAIN if self._finishing else Step.IDLE
            self._fd = fd
            st = os.fstat(fd)
            self._identity = (st.st_dev, st.st_ino)
            if st.st_size < self.offset:  # shrank while nobody watched
                self._reset("truncated")
        fd = self._fd
        data = os.pread(fd, self.read_size, self.offset)
        if data and self.end_offset is not None:
            end = self._known_end()
            if end is not None:
                data = data[: max(0, end - self.offset)]
                if not data:
                    self.close_file()
                    return Step.DONE  # everything up to the writer's end was fed
        if data:
            self.offset += len(data)
            self.sink(data)
            return Step.AGAIN
        # At the end of the file: was it replaced or truncated?
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if current != self._identity:
            if current is None and self._finishing:
                self.close_file()
                return Step.DONE
            if current is not None:  # rotated: the old file was read to its end
                self.close_file()
                self.rotations += 1
                self._reset("replaced")
                return Step.AGAIN
        elif os.fstat(fd).st_size < self.offset:
            self.truncations += 1
            self._reset("truncated")
            return Step.AGAIN
        if self._finishing:
            self.close_file()
            return Step.DONE
        if self._should_finish():
            self._finishing = True  # one more pass reads what was written meanwhile
            return Step.AGAIN
        return Step.IDLE

    def drain(self) -> None:
        """Stop following and read the file to its end (or the writer's end) in this thread;
        for an owner that drives the tailer with :meth:`step`."""
        self.stop(drain=True)
        try:
            while self.step() is not Step.DONE:
                pass
        finally:
            self.close_file()

    def close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _known_end(self) -> int | None:
        if self._end is None and self.end_offset is not None:
            try:
                self._end = self.end_offset()
            except Exception:
                log.exception("end_offset check of %s failed", self.path)
        return self._end

    def _should_finish(self) -> bool:
        if self._stop.is_set():
            return True
        if self.is_done is None:
            return False
        try:
            return bool(self.is_done())
        except Exception:
            log.exception("is_done check of %s failed", self.path)
            return False

    def _reset(self, why: str) -> None:
        log.info("%s was %s; reading it from the start", self.path, why)
        self.offset = 0
        if self.on_reset is not None:
            self.on_reset()
