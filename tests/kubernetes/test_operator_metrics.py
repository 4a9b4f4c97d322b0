"""The operator's Katib counters, scraped over HTTP pass by pass (fake API server, real client):
they move with each transition, once, however many passes run; an invalid Experiment counts as
failed once; deletion counts the experiment and its trials."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_operator import V1B1, experiment_body, get, jobs, loss_of, play_job, step

from controller.metrics import ControllerMetrics, store_gauges
from controller.operator import ExperimentOperator, OperatorSettings
from tunery.telemetry import serve_metrics


def scraper(registry: CollectorRegistry) -> Any:
    server, port = serve_metrics(0, registry=registry)

    def scrape(name: str, namespace: str, **labels: str) -> float:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        wanted = {"namespace": namespace, **labels}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and s.labels == wanted:
                    return s.value
        return 0.0

    scrape.server = server  # type: ignore[attr-defined]
    return scrape


def test_counters_follow_the_transitions_pass_by_pass(api, namespace, k8s_store, suggestions):
    registry = CollectorRegistry()
    registry.register(store_gauges(k8s_store))
    scrape = scraper(registry)
    op = ExperimentOperator(
        api, k8s_store, OperatorSettings(collector_image="tunery:test"),
        suggestion_factory=suggestions, metrics=ControllerMetrics(registry),
    )  # fmt: skip
    try:
        api.create(
            experiment_body(
                namespace, maxTrialCount=4, parallelTrialCount=2, maxFailedTrialCount=4
            )
        )
        step(op, api, namespace)
        assert scrape("katib_experiment_created_total", namespace) == 1
        assert scrape("katib_trial_created_total", namespace) == 2
        assert scrape("katib_trials_current", namespace, status="Running") == 2
        assert scrape("katib_experiments_current", namespace, status="Running") == 1
        for _ in range(3):  # passes while the jobs run: nothing moves
            step(op, api, namespace)
        assert scrape("katib_trial_created_total", namespace) == 2
        assert scrape("katib_trial_succeeded_total", namespace) == 0

        first, second = jobs(api, namespace)
        play_job(api, k8s_store, first, loss=loss_of(first))
        play_job(api, k8s_store, second, loss=None, failed=True)
        step(op, api, namespace)  # one succeeds, one fails, two more start
        assert scrape("katib_trial_succeeded_total", namespace) == 1
        assert scrape("katib_trial_failed_total", namespace) == 1
        assert scrape("katib_trial_created_total", namespace) == 4
        for job in jobs(api, namespace):
            play_job(api, k8s_store, job, loss=None)  # exits 0 without the objective
        for _ in range(3):
            step(op, api, namespace)
        assert scrape("katib_trial_metrics_unavailable_total", namespace) == 2
        assert scrape("katib_experiment_succeeded_total", namespace) == 1
        assert scrape("katib_experiments_current", namespace, status="Succeeded") == 1
        assert scrape("katib_trials_current", namespace, status="MetricsUnavailable") == 2
        assert scrape("tunery_reconcile_duration_seconds_count", namespace) >= 5
        assert scrape("katib_trial_created_total", namespace) == 4  # no more after the end

        op.delete(get(api, "Experiment", namespace, "quick"))
        assert scrape("katib_experiment_deleted_total", namespace) == 1
        assert scrape("katib_trial_deleted_total", namespace) == 4
        assert scrape("katib_experiments_current", namespace, status="Succeeded") == 0

        # an invalid Experiment is refused once, and counted failed once however often it is
        # seen again
        bad = experiment_body(namespace, name="bad", maxTrialCount=0)
        api.create(bad)
        for _ in range(3):
            op.reconcile(api.get(V1B1, "Experiment", namespace, "bad"))
        assert scrape("katib_experiment_failed_total", namespace) == 1
        assert scrape("katib_experiment_created_total", namespace) == 1
    finally:
        scrape.server.shutdown()
