"""Worker processes for the store's multi-process tests (importable by spawned children)."""

from __future__ import annotations

import datetime as dt
import traceback
from typing import Any

from tunery.store import open_store
from tunery.trials import Observation

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def append_observations(
    url: str, tag: str, trial_names: list[str], count: int, batch: int, barrier: Any, results: Any
) -> None:
    """Open the store together with the other workers (so a fresh database is migrated
    concurrently), then append ``count`` observations of metric ``tag`` to every trial in
    batches, interleaving trials. Puts ``(tag, None)`` or ``(tag, traceback)`` on results."""
    try:
        barrier.wait(timeout=60)
        store = open_store(url)
        try:
            barrier.wait(timeout=60)
            for start in range(0, count, batch):
                for name in trial_names:
                    rows = [
                        Observation(tag, f"{tag}-{i}", i, T0 + dt.timedelta(microseconds=i))
                        for i in range(start, min(start + batch, count))
                    ]
                    assert store.add_observations(name, rows) == len(rows)
        finally:
            store.close()
        results.put((tag, None))
    except BaseException:
        results.put((tag, traceback.format_exc()))
