"""Katib's own SDK (kubeflow-katib, pinned) driving an experiment; run by ``test_kopf_e2e.py``
with the virtualenv's Python, so it imports nothing from tunery.

Usage: ``python katib_sdk_script.py NAMESPACE EXPERIMENT.json DB_MANAGER`` with ``$KUBECONFIG``
set. It creates the experiment, waits for Succeeded, reads the optimal parameters, the trials
and the best trial's metrics (``get_trial_metrics`` from the DBManager at ``DB_MANAGER``),
raises the budget by one and waits again, then deletes it; prints one JSON document of what it
saw (the test checks it). ``python katib_sdk_script.py tune NAMESPACE NAME`` runs Katib's
``tune()`` of :func:`objective` instead and prints the optimal parameters and the trials.
"""

from __future__ import annotations

import json
import sys
import time

import kubeflow.katib as katib


def objective(parameters):
    import math

    lr = float(parameters["lr"])
    print(f"loss={(lr - 0.03) ** 2 + 0.001 * math.log(1 / lr):.6f}")


def tune(namespace: str, name: str) -> None:
    """Katib's tune(): trials run the objective's source from a bash here-document, the
    parameter values substituted into it."""
    client = katib.KatibClient(namespace=namespace)
    client.tune(
        name=name,
        objective=objective,
        parameters={"lr": katib.search.double(min=0.01, max=0.05)},
        objective_metric_name="loss",
        objective_type="minimize",
        max_trial_count=2,
        parallel_trial_count=1,
        base_image="python:3.11",
        namespace=namespace,
    )
    client.wait_for_experiment_condition(
        name, namespace, "Succeeded", timeout=90, polling_interval=1
    )
    best = client.get_optimal_hyperparameters(name, namespace)
    trials = client.list_trials(name, namespace)
    print(
        json.dumps(
            {
                "best_parameters": {p.name: p.value for p in best.parameter_assignments},
                "best_trial": best.best_trial_name,
                "trials": sorted(t.metadata.name for t in trials),
            }
        )
    )
    client.delete_experiment(name, namespace)


def main(namespace: str, path: str, db_manager_address: str) -> None:
    with open(path) as handle:
        document = json.load(handle)
    client = katib.KatibClient(namespace=namespace)
    experiment = katib.ApiClient()._ApiClient__deserialize(document, "V1beta1Experiment")
    name = document["metadata"]["name"]
    seen: dict[str, object] = {}
    client.create_experiment(experiment, namespace=namespace)
    deadline = time.monotonic() + 15  # the operator admits it within a pass
    while not client.is_experiment_created(name, namespace) and time.monotonic() < deadline:
        time.sleep(0.2)
    seen["created"] = client.is_experiment_created(name, namespace)
    client.wait_for_experiment_condition(
        name, namespace, "Succeeded", timeout=60, polling_interval=1
    )
    best = client.get_optimal_hyperparameters(name, namespace)
    seen["best_trial"] = best.best_trial_name
    seen["best_parameters"] = {p.name: p.value for p in best.parameter_assignments}
    seen["trials"] = sorted(t.metadata.name for t in client.list_trials(name, namespace))
    seen["success_trials"] = sorted(
        t["name"] for t in client.get_success_trial_details(name, namespace)
    )
    logs = client.get_trial_metrics(
        best.best_trial_name, namespace, db_manager_address=db_manager_address
    )
    seen["best_trial_metrics"] = sorted((m.metric.name, float(m.metric.value)) for m in logs)
    budget = len(seen["trials"]) + 1
    client.edit_experiment_budget(name, namespace, max_trial_count=budget)
    deadline = time.monotonic() + 60
    while len(client.list_trials(name, namespace)) < budget or not client.is_experiment_succeeded(
        name, namespace
    ):
        if time.monotonic() > deadline:
            raise SystemExit("the raised budget was never used")
        time.sleep(0.5)
    seen["trials_after_edit"] = len(client.list_trials(name, namespace))
    client.delete_experiment(name, namespace)
    seen["deleted"] = True
    print(json.dumps(seen))


if __name__ == "__main__":
    if sys.argv[1] == "tune":
        tune(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3])
