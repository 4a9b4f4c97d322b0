"""What finding a trial's namespace costs the DBManager (issue 16 point 8).

Katib's ``ReportObservationLog`` names a trial without its namespace, so tunery's DBManager
looks the namespace up (one indexed query on ``trials``) unless the caller sends it in the gRPC
metadata key ``tunery-namespace``. This measures, in one run and on one store, the servicer's
``ReportObservationLog`` (called directly, no network) for a trial named alone against the same
call with the namespace given: the ratio is the lookup's cost. The store holds two namespaces
with ``--trials`` trials each (an experiment ``mnist`` in both); each report carries one
observation. Medians of 5 rounds, the two modes interleaved.

Run: ``python -m bench.namespaces [--trials 5000] [--reports 500] [--backend sqlite|postgresql]``
(SQLite: a temporary file; PostgreSQL at 127.0.0.1:5432 db ``test``: a scratch schema dropped
afterwards, as ``bench.store`` does).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.store import database
from metrics_collector.dbmanager import NAMESPACE_METADATA_KEY, DBManagerServicer
from tunery.api import api_pb2
from tunery.store import TrialRecord, open_store


class _Context:
    """The part of a gRPC ServicerContext the servicer reads."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def abort(self, code: Any, message: str) -> None:
        raise RuntimeError(f"{code}: {message}")


def _request(trial: str, step: int) -> api_pb2.ReportObservationLogRequest:
    log = api_pb2.MetricLog(
        time_stamp=f"2026-12-06T00:00:{step % 60:02d}Z",
        metric=api_pb2.Metric(name="loss", value=str(1 / (step + 1))),
    )
    return api_pb2.ReportObservationLogRequest(
        trial_name=trial, observation_log=api_pb2.ObservationLog(metric_logs=[log])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000, help="trials per namespace")
    parser.add_argument("--reports", type=int, default=500, help="reports per round and mode")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with database(args.backend) as url:
        store = open_store(url)
        try:
            for namespace in ("team-a", "team-b"):
                view = store.in_namespace(namespace)
                view.create_experiment("mnist", {})
                view.create_trials(
                    [TrialRecord(f"{namespace}-t{i}", "mnist", {}) for i in range(args.trials)]
                )
            servicer = DBManagerServicer(store)
            modes = {
                "named alone (namespace looked up)": _Context(()),
                "namespace in metadata": _Context(((NAMESPACE_METADATA_KEY, "team-a"),)),
            }
            times: dict[str, list[float]] = {mode: [] for mode in modes}
            for round_ in range(5):
                for mode, context in modes.items():
                    started = time.perf_counter()
                    for i in range(args.reports):
                        trial = f"team-a-t{(round_ * args.reports + i) % args.trials}"
                        servicer.ReportObservationLog(_request(trial, i), context)
                    times[mode].append((time.perf_counter() - started) / args.reports)
        finally:
            store.close()
    base = statistics.median(times["namespace in metadata"])
    print(
        f"DBManager ReportObservationLog, {args.backend}, {args.trials} trials x 2 namespaces, "
        f"median of 5 x {args.reports} reports"
    )
    print("| mode | ms per report | ratio |")
    print("| --- | --- | --- |")
    for mode, values in times.items():
        median = statistics.median(values)
        print(f"| {mode} | {median * 1000:.2f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
