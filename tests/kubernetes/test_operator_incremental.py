"""The operator mirrors only what changed after its first pass, and loses nothing doing so.

A pass after the first mirrors the trials the reconcile step saw change (issue 17: a pass at
10,000 trials costs what one at 1,000 does; measured by ``bench/operator_scale.py``). What a
failed pass left unmirrored (a job that could not be deleted) is done by a later pass, and a
new operator (a restart, another leader) mirrors every trial once.
"""

from __future__ import annotations

from typing import Any

from test_operator import (
    V1B1,
    condition_types,
    experiment_body,
    get,
    jobs,
    loss_of,
    make_operator,
    play_job,
    step,
)

from controller.operator import mirror
from controller.runners.kubernetes import KubeApi, KubeError


class FlakyDeletes(KubeApi):
    """A KubeApi whose job deletions fail while ``failing`` is set, counting Trial lists."""

    def __init__(self, api: KubeApi) -> None:
        self.__dict__.update(api.__dict__)
        self.failing = False
        self.trial_lists = 0

    def delete(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "Job" and self.failing:
            raise KubeError(503, "ServiceUnavailable", "try again")
        return super().delete(api_version, kind, *args, **kwargs)

    def list(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "Trial":
            self.trial_lists += 1
        return super().list(api_version, kind, *args, **kwargs)


def test_later_passes_do_not_list_the_trials_and_a_failed_deletion_is_retried(
    api, namespace, k8s_store, suggestions
):
    flaky = FlakyDeletes(api)
    api.create(experiment_body(namespace))
    op = make_operator(flaky, k8s_store, suggestions)
    step(op, api, namespace)
    assert flaky.trial_lists == 1  # the first pass mirrors every trial
    first = jobs(api, namespace)
    for job in first:
        play_job(api, k8s_store, job, loss=loss_of(job))

    flaky.failing = True
    step(op, api, namespace)  # finishes the two, cannot delete their jobs, starts two more
    names = {j["metadata"]["name"] for j in first}
    assert names <= {j["metadata"]["name"] for j in jobs(api, namespace)}
    for name in names:  # the trials are mirrored even though their jobs remain
        assert condition_types(get(api, "Trial", namespace, name)["status"])[-1] == "Succeeded"

    flaky.failing = False
    step(op, api, namespace)  # nothing changed in the store: the jobs are deleted anyway
    assert not names & {j["metadata"]["name"] for j in jobs(api, namespace)}
    assert flaky.trial_lists == 1
    for name in names:
        assert k8s_store.in_namespace(namespace).get_trial(name).runner_handle["deleted"]


def test_a_new_operator_mirrors_every_trial_once(api, namespace, k8s_store, suggestions):
    api.create(experiment_body(namespace))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    name = jobs(api, namespace)[0]["metadata"]["name"]
    # the Trial resource lost its status (edited by hand, restored from a backup...)
    api.patch(V1B1, "Trial", namespace, name, {"status": None}, subresource="status")
    step(op, api, namespace)  # the trial did not change: this operator does not look again
    assert not get(api, "Trial", namespace, name).get("status")

    restarted = make_operator(api, k8s_store, suggestions)
    step(restarted, api, namespace)
    status = get(api, "Trial", namespace, name)["status"]
    assert condition_types(status) == ["Created", "Running"]
    suggestion = get(api, "Suggestion", namespace, "quick")["status"]
    assert [s["name"] for s in suggestion["suggestions"]] == [
        t.name for t in k8s_store.in_namespace(namespace).list_trials("quick")
    ]
    assert len(suggestion["suggestions"]) <= mirror.SUGGESTION_LIMIT
