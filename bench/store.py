"""Store at scale: an experiment of 10,000 trials x 100 observations (shared/benchmarks.md §4).

For each backend (SQLite file; PostgreSQL at 127.0.0.1:5432 db ``test``, in a scratch schema
dropped afterwards), through the public Store API only: seed the experiment, then time
``list_trials`` (all 10,000), ``get_observations`` of one trial (100 rows among 1,000,000),
the best trial (``controller.status.optimal_trial`` over the listed trials, as the reconciler
computes it each pass), and ``add_observations`` throughput in batches of 1,000.

Run: ``python -m bench.store [--trials 10000] [--observations 100] [--backends sqlite,postgresql]
[--markdown]``. Medians of 5 repeats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from controller.reconcile import objective_from_spec
from controller.status import optimal_trial
from tunery.store import open_store
from tunery.store.base import Store, TrialRecord
from tunery.trials import Observation, TrialCondition

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SPEC = {
    "spec": {
        "objective": {
            "type": "minimize",
            "objectiveMetricName": "loss",
            "metricStrategies": [{"name": "loss", "value": "min"}],
        }
    }
}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = sa.engine.make_url(POSTGRES_ADMIN_URL).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def seed(store: Store, trials: int, observations: int) -> None:
    store.create_experiment("big", SPEC)
    for i in range(trials):
        curve = [
            Observation.of(
                "loss", 1.0 / (step + 1) + (i % 997) / 1000, step, T0 + dt.timedelta(seconds=step)
            )
            for step in range(observations)
        ]
        store.create_trial(
            TrialRecord(
                f"big-{i}",
                "big",
                {"lr": repr(1e-4 * (i + 1))},
                condition=TrialCondition.SUCCEEDED,
                observation={
                    "metrics": [
                        {
                            "name": "loss",
                            "min": curve[-1].value,
                            "max": curve[0].value,
                            "latest": curve[-1].value,
                        }
                    ]
                },
            )
        )
        store.add_observations(f"big-{i}", curve)


def timed(fn: Callable[[], object], repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run(backend: str, trials: int, observations: int) -> dict[str, str]:
    with database(backend) as url:
        store = open_store(url)
        started = time.perf_counter()
        seed(store, trials, observations)
        seeded = time.perf_counter() - started
        objective = objective_from_spec(SPEC["spec"])
        listed = store.list_trials("big")
        batch = [Observation.of("x", float(i), i, T0) for i in range(1000)]
        counter = iter(range(10**6))

        def list_all() -> object:
            return store.list_trials("big")

        def fetch_one() -> object:
            return store.get_observations("big-4242", "loss")

        def best() -> object:
            return optimal_trial(store.list_trials("big"), objective)

        def append() -> object:
            return store.add_observations(f"w-{next(counter)}", batch)

        results = {
            "backend": backend,
            "seed (create + add)": f"{seeded:.1f} s",
            f"list_trials ({len(listed)})": f"{1000 * timed(list_all):.0f} ms",
            f"get_observations ({observations} rows)": f"{1000 * timed(fetch_one):.2f} ms",
            "best trial (list + optimal_trial)": f"{1000 * timed(best):.0f} ms",
            "add_observations (1000/batch)": f"{1000 / timed(append):,.0f} rows/s",
        }
        store.close()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--observations", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = [run(b, args.trials, args.observations) for b in args.backends.split(",")]
    print(
        f"# store at scale: {args.trials} trials x {args.observations} observations — "
        f"{platform.machine()}, Python {platform.python_version()}"
    )
    header = list(rows[0])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    for row in rows:
        values = [row.get(h, "") for h in header]
        print(("| " + " | ".join(values) + " |") if args.markdown else "  ".join(values))


if __name__ == "__main__":
    main()
