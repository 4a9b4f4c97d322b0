"""Body of a worker process for ``test_store_concurrency``.

Run in a spawned child by ``runpy.run_path(this file, init_globals={"ARGS": {...}},
run_name=RUN_NAME)``, so the child needs no importable test package (pytest's importlib
import mode gives test modules names a child process cannot import).
"""

from __future__ import annotations

import datetime as dt
import traceback
from typing import Any

from tunery.store import open_store
from tunery.trials import Observation

RUN_NAME = "__tunery_store_worker__"
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


if __name__ == RUN_NAME:
    append_observations(**globals()["ARGS"])
