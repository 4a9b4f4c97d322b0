"""Snapshots of experiments shared by the dashboard's requests, re-read when they may be stale.

Used by :mod:`tunery.dashboard.api`. A page load fires a dozen API calls at once; they share
one :class:`~tunery.visualization.data.Snapshot` (one read of the trials) and its memoised
series. A completed experiment's snapshot stays until its record changes (one cheap row read
per request); a running one's is re-read at most every ``max_age`` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from tunery.store.base import ExperimentRecord, Store
from tunery.visualization.data import Snapshot, load_snapshot

DEFAULT_MAX_AGE_S = 2.0


@dataclass(frozen=True)
class _Entry:
    snapshot: Snapshot
    read_at: float


class SnapshotCache:
    """Snapshots by experiment name; thread-safe, one reader per experiment at a time."""

    def __init__(self, store: Store, max_age: float = DEFAULT_MAX_AGE_S) -> None:
        self.store = store
        self.max_age = max_age
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._list: tuple[float, list[ExperimentRecord]] | None = None

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def get(self, name: str) -> Snapshot:
        """A snapshot of ``name`` no older than ``max_age`` (or unchanged since read).

        Raises:
            NotFoundError: no such experiment. StoreError: the database failed.
        """
        with self._lock(name):
            entry = self._entries.get(name)
            now = time.monotonic()
            if entry is not None and now - entry.read_at < self.max_age:
                return entry.snapshot
            if entry is not None and entry.snapshot.completed:
                record = self.store.get_experiment(name)
                if record.updated_at == entry.snapshot.record.updated_at:
                    self._entries[name] = _Entry(entry.snapshot, now)
                    return entry.snapshot
            snapshot = load_snapshot(self.store, name)
            if entry is not None:
                snapshot.inherit(entry.snapshot)
            self._entries[name] = _Entry(snapshot, time.monotonic())
            return snapshot

    def experiments(self) -> list[ExperimentRecord]:
        """Every experiment record, re-read at most every second."""
        with self._guard:
            cached = self._list
        if cached is not None and time.monotonic() - cached[0] < 1.0:
            return cached[1]
        records = self.store.list_experiments()
        with self._guard:
            self._list = (time.monotonic(), records)
        return records

    def forget(self, name: str) -> None:
        """Drop what is cached of ``name`` (after an action changed it)."""
        with self._guard:
            self._entries.pop(name, None)
            self._list = None
