"""TensorFlowEvent source: scalar summaries from TensorBoard event files, read as they grow.

Called by the local controller's collector wiring (:mod:`controller.collecting`) and by the
Kubernetes sidecar (:mod:`metrics_collector.sidecar`); both poll :meth:`TFEventReader.poll`
through :class:`metrics_collector.polling.Poller` and hand what it returns to a
:class:`~metrics_collector.collector.TrialCollector`.

Files are read with the ``tensorboard`` package's event file loader (no TensorFlow needed;
``pip install 'tunery[tfevents]'``), one loader per file, kept open so each poll reads only
the records written since the last one; a record still being written is read on a later poll.

Which values become which metric (Katib's ``tfevent_loader``):

- a metric name without ``/`` (``accuracy``) takes every scalar whose tag starts with it, in
  any event file under the directory;
- a metric name ``<dir>/<tag>`` (``test/accuracy``, ``train/loss``) takes the scalars whose tag
  starts with ``<tag>`` in event files whose folder ends with ``<dir>``: TensorFlow's summary
  writers put train and test summaries in ``train/`` and ``test/`` subfolders with the same
  tags;
- the value is the summary's float (old-style ``simple_value`` or a one-element tensor, as
  TF2's ``tf.summary.scalar`` and ``torch.utils.tensorboard`` write), the step the event's
  step, the time its wall time. Tensors of more than one element (histograms, images) and
  non-numeric tensors are skipped.

Event files are those whose name contains ``tfevents`` (TensorFlow, PyTorch, tensorboardX
name them ``events.out.tfevents.<time>.<host>...``); other files are not opened.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from metrics_collector.errors import MissingDependencyError
from tunery.trials import Observation

log = logging.getLogger(__name__)

EVENT_FILE_MARK = "tfevents"
_DT_FLOAT, _DT_DOUBLE = 1, 2  # tensorflow.DataType values in TensorProto.dtype


def _loader_class() -> Any:
    """tensorboard's ``RawEventFileLoader`` (records as bytes; the values are read here, without
    the conversion of old-style scalars to tensors that ``EventFileLoader`` does, which costs a
    third of the time); MissingDependencyError when tensorboard is absent."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    except ImportError as e:
        raise MissingDependencyError(
            "the TensorFlowEvent collector needs the tensorboard package: "
            "pip install 'tunery[tfevents]'"
        ) from e
    return RawEventFileLoader


def require_tensorboard() -> None:
    """Raise MissingDependencyError now, rather than when the first trial starts."""
    _loader_class()


def matches(metric_name: str, tag: str, event_dir: str) -> bool:
    """Katib's rule: does the summary ``tag`` of a file in ``event_dir`` report ``metric_name``?

    >>> matches("accuracy", "accuracy", "/logs/test"), matches("test/accuracy", "accuracy",
    ...     "/logs/train"), matches("test/accuracy", "accuracy", "/logs/test")
    (True, False, True)
    """
    folder, _, leaf = metric_name.rpartition("/")
    if not tag.startswith(leaf):
        return False
    return not folder or event_dir.rstrip("/").endswith(folder)


def scalar_value(value: Any) -> str | None:
    """The number of a ``Summary.Value`` as text: ``simple_value`` or a one-element numeric
    tensor. A 32-bit float is written as the shortest text that reads back as the same
    float32 (``0.9``, not ``0.8999999761581421``)."""
    import numpy as np

    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return str(np.float32(value.simple_value))
    if kind != "tensor":
        return None
    tensor = value.tensor
    if not tensor.tensor_shape.dim and not tensor.tensor_content:  # a scalar: the fast path
        if tensor.dtype == _DT_FLOAT and len(tensor.float_val) == 1:
            return str(np.float32(tensor.float_val[0]))
        if tensor.dtype == _DT_DOUBLE and len(tensor.double_val) == 1:
            return repr(float(tensor.double_val[0]))
    from tensorboard.util import tensor_util

    try:
        array = tensor_util.make_ndarray(value.tensor)
    except (TypeError, ValueError):
        return None
    if array.size != 1 or array.dtype.kind not in "biuf":
        return None
    number = array.reshape(())[()]
    return str(number) if array.dtype.kind == "f" else str(int(number))


class TFEventReader:
    """Reads new scalar summaries of ``metric_names`` from event files under ``directory``.

    Not thread-safe: one poller at a time. ``ignore_before`` (seconds since the epoch): an
    event file last written before then belongs to someone else (an earlier trial writing into
    a shared folder) and is never read.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        metric_names: Sequence[str],
        *,
        ignore_before: float | None = None,
    ) -> None:
        self._loader = _loader_class()
        self.directory = Path(directory)
        self.metric_names = tuple(dict.fromkeys(metric_names))
        self._loaders: dict[Path, Any] = {}
        self.ignore_before = ignore_before
        self._ignored: set[Path] = set()
        self.files_read = 0

    def _event_files(self) -> Iterable[Path]:
        for root, _dirs, files in os.walk(self.directory):
            for name in sorted(files):
                if EVENT_FILE_MARK in name:
                    yield Path(root) / name

    def poll(self) -> list[Observation]:
        """Every matching scalar written since the last poll, file by file."""
        out: list[Observation] = []
        for path in self._event_files():
            if path in self._ignored:
                continue
            loader = self._loaders.get(path)
            if loader is None:
                if self._older(path):
                    self._ignored.add(path)
                    continue
                log.info("reading TensorFlow events from %s", path)
                loader = self._loaders[path] = self._loader(str(path))
                self.files_read += 1
            try:
                for record in loader.Load():
                    out.extend(self._observations(record, str(path.parent)))
            except OSError as e:  # removed while read: what was read is kept
                log.warning("cannot read %s: %s", path, e)
        return out

    def _older(self, path: Path) -> bool:
        if self.ignore_before is None:
            return False
        try:
            return path.stat().st_mtime < self.ignore_before
        except OSError:
            return True

    def _observations(self, record: bytes, event_dir: str) -> list[Observation]:
        from tensorboard.compat.proto.event_pb2 import Event

        try:
            event = Event.FromString(record)
        except Exception as e:  # protobuf's DecodeError; the record's CRC was checked
            log.warning("unreadable event in %s: %s", event_dir, e)
            return []
        if not event.HasField("summary"):
            return []
        time = dt.datetime.fromtimestamp(event.wall_time, dt.UTC)
        out = []
        for value in event.summary.value:
            wanted = [m for m in self.metric_names if matches(m, value.tag, event_dir)]
            if not wanted:
                continue
            text = scalar_value(value)
            if text is None:
                continue
            out.extend(Observation.of(m, text, int(event.step), time) for m in wanted)
        return out
