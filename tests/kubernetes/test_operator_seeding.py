"""The operator honours the seed annotations of an Experiment CR: enqueued points become the
first Trials and Jobs, before the algorithm is asked; the queue survives an operator restart."""

from __future__ import annotations

import json

from test_operator import (
    V1B1,
    experiment_body,
    get,
    jobs,
    loss_of,
    make_operator,
    play_job,
    step,
)


def lr_of(job: dict) -> str:
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    return next(a for a in command if a.startswith("--lr=")).split("=", 1)[1]


def test_enqueued_points_run_first_and_survive_a_restart(
    api, namespace, k8s_store, suggestions, algorithm
):
    body = experiment_body(namespace, parallelTrialCount=1, maxTrialCount=3)
    points = [{"lr": 0.2, "momentum": 0.6}, {"lr": "0.25", "momentum": "0.7"}]
    body["metadata"]["annotations"] = {"tunery.io/enqueue": json.dumps(points)}
    api.create(body)
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    (first,) = jobs(api, namespace)
    assert lr_of(first) == "0.2" and not algorithm.requests  # the queue is served first
    assert len(api.list(V1B1, "Trial", namespace)) == 2  # both points are Trials already
    play_job(api, k8s_store, first, loss=loss_of(first))
    restarted = make_operator(api, k8s_store, suggestions)  # a new operator: nothing twice
    step(restarted, api, namespace)
    (second,) = jobs(api, namespace)
    assert lr_of(second) == "0.25"
    play_job(api, k8s_store, second, loss=loss_of(second))
    step(restarted, api, namespace)
    (third,) = jobs(api, namespace)
    assert algorithm.requests and lr_of(third) == "0.03"  # then the algorithm
    play_job(api, k8s_store, third, loss=loss_of(third))
    step(restarted, api, namespace)
    step(restarted, api, namespace)
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert status["trials"] == status["trialsSucceeded"] == 3
