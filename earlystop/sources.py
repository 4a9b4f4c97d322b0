"""Where the EarlyStopping service reads completed trials' observation logs from.

Called by ``earlystop.service``: a :class:`StoreObservationSource` when the service was built
with a tunery Store, otherwise a :class:`DBManagerObservationSource` for the one DBManager the
service was configured with (Katib's way of reading: ``DBManager.GetObservationLog``; unlike
Katib, never at an address a request names, so a request cannot make the service connect
anywhere).
:class:`CurveCache` keeps what was read, since completed trials never change.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import grpc

from earlystop.base import InvalidSettingsError, ObservationsUnavailableError
from earlystop.convert import observations_from_log
from tunery.api import api_pb2, api_pb2_grpc
from tunery.store.base import Store
from tunery.store.errors import NotFoundError, StoreUnavailableError
from tunery.tls import open_channel
from tunery.trials import Observation

log = logging.getLogger(__name__)

V = TypeVar("V")


def parse_address(address: str) -> str:
    """Check a ``host:port`` (or ``[ipv6]:port``) address, returning it stripped.

    Raises:
        InvalidSettingsError: not of that form, or the port is not in 1..65535.
    """
    text = address.strip()
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    ok = (
        bool(sep and host and port.isdigit())
        and 0 < int(port) < 65536
        and (bracketed or (":" not in host and "[" not in host and "]" not in host))
        and not any(c.isspace() for c in host)
    )
    if not ok:
        raise InvalidSettingsError(
            f"the DBManager address must be host:port (e.g. katib-db-manager.kubeflow:6789), "
            f"got {address!r}"
        )
    return text


class ObservationSource(abc.ABC):
    """Reads one trial's observations of one metric, in report order."""

    key: str
    """Identifies the source in cache keys."""

    @abc.abstractmethod
    def observations(self, trial_name: str, metric_name: str) -> list[Observation]:
        """Raises ObservationsUnavailableError when the source cannot be read (retryable)."""

    def close(self) -> None:
        """Release connections."""


class StoreObservationSource(ObservationSource):
    """Observations from a tunery Store; an unknown trial has none. The wire names a trial
    without its namespace: the trial's is found with :meth:`Store.for_trial`."""

    key = "store"

    def __init__(self, store: Store) -> None:
        self.store = store

    def observations(self, trial_name: str, metric_name: str) -> list[Observation]:
        try:
            return self.store.for_trial(trial_name).get_observations(trial_name, metric_name)
        except NotFoundError:
            return []
        except StoreUnavailableError as exc:
            raise ObservationsUnavailableError(
                f"cannot read observations of trial {trial_name}: {exc}"
            ) from exc


class DBManagerObservationSource(ObservationSource):
    """Observations from a Katib-compatible DBManager over gRPC, ``timeout`` s per call."""

    def __init__(self, address: str, *, timeout: float = 30.0) -> None:
        self.address = parse_address(address)
        self.key = f"dbmanager:{self.address}"
        self.timeout = timeout
        self._channel = open_channel(self.address)
        self._stub = api_pb2_grpc.DBManagerStub(self._channel)

    def observations(self, trial_name: str, metric_name: str) -> list[Observation]:
        request = api_pb2.GetObservationLogRequest(trial_name=trial_name, metric_name=metric_name)
        try:
            reply = self._stub.GetObservationLog(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise ObservationsUnavailableError(
                f"GetObservationLog for trial {trial_name} at DBManager {self.address} failed: "
                f"{code.name if code else 'error'}: {details}"
            ) from None
        return observations_from_log(reply.observation_log.metric_logs, metric_name)

    def close(self) -> None:
        self._channel.close()


class CurveCache:
    """A thread-safe LRU of immutable values (completed trials' observation tuples)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, object] = OrderedDict()
        self.loads = 0

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        """The cached value for ``key``, else ``load()`` (called outside the lock) cached."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]  # type: ignore[return-value]
        value = load()
        with self._lock:
            self.loads += 1
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
