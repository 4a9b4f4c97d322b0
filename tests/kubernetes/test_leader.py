"""Leader election on a coordination.k8s.io/v1 Lease, against the fake API server: one holder,
takeover only after the lease duration (observed locally) or a release, exactly one winner of a
race, and a holder that cannot renew gives up."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from controller.operator.leader import API_VERSION, LeaderElector, LeaseSettings
from controller.runners.kubernetes import KubeApi


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api: KubeApi, namespace: str, identity: str, clock: Clock | None = None):
    settings = LeaseSettings(
        namespace=namespace, identity=identity, duration=15, renew_deadline=10, retry_period=2
    )
    return LeaderElector(api, settings, monotonic=clock or time.monotonic)


def lease(api: KubeApi, namespace: str) -> dict:
    return api.get(API_VERSION, "Lease", namespace, "tunery-operator")["spec"]


def test_one_holder_and_a_takeover_after_the_lease_duration(api: KubeApi, namespace: str) -> None:
    clock_a, clock_b = Clock(), Clock()
    a, b = elector(api, namespace, "a", clock_a), elector(api, namespace, "b", clock_b)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    spec = lease(api, namespace)
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 15

    # a renews: b sees the record change, so the 15 s count again from its own observation
    clock_b.now += 10
    assert a.try_acquire_or_renew()
    clock_b.now += 10
    assert not b.try_acquire_or_renew()
    # a stops renewing (killed): 15 s after b last saw a change, b takes over
    clock_b.now += 14
    assert not b.try_acquire_or_renew()
    clock_b.now += 2
    assert b.try_acquire_or_renew()
    spec = lease(api, namespace)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()  # a (if it comes back) sees b's fresh record
    assert b.try_acquire_or_renew()  # b renews: no new transition
    assert lease(api, namespace)["leaseTransitions"] == 1


def test_a_released_lease_is_taken_at_once(api: KubeApi, namespace: str) -> None:
    a, b = elector(api, namespace, "a", Clock()), elector(api, namespace, "b", Clock())
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert "holderIdentity" not in lease(api, namespace)
    assert b.try_acquire_or_renew()
    assert lease(api, namespace)["holderIdentity"] == "b"
    a.release()  # not the holder: leaves b's lease alone
    assert lease(api, namespace)["holderIdentity"] == "b"


@pytest.mark.parametrize("exists", [False, True])
def test_of_replicas_racing_for_a_free_lease_exactly_one_wins(
    api: KubeApi, namespace: str, exists: bool
) -> None:
    if exists:  # a released lease: every racer reads it free and patches with its version
        first = elector(api, namespace, "first", Clock())
        assert first.try_acquire_or_renew()
        first.release()
    racers = [elector(api, namespace, f"r{i}", Clock()) for i in range(8)]
    barrier = threading.Barrier(len(racers))

    def race(e: LeaderElector) -> bool:
        barrier.wait()
        return e.try_acquire_or_renew()

    with ThreadPoolExecutor(len(racers)) as pool:
        won = list(pool.map(race, racers))
    assert won.count(True) == 1
    winner = racers[won.index(True)].identity
    assert lease(api, namespace)["holderIdentity"] == winner


def test_a_holder_that_cannot_renew_gives_up(api: KubeApi, namespace: str) -> None:
    settings = LeaseSettings(
        namespace=namespace, identity="a", duration=1.0, renew_deadline=0.4, retry_period=0.05
    )
    a = LeaderElector(api, settings)
    stop, lost = threading.Event(), threading.Event()
    assert a.acquire(stop)
    a.keep(stop, lost.set)
    time.sleep(0.3)
    assert not lost.is_set()  # renewing fine
    current = api.get(API_VERSION, "Lease", namespace, "tunery-operator")
    api.patch(  # someone else holds it now (an admin, or a partition healed the other way)
        API_VERSION, "Lease", namespace, "tunery-operator",
        {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
         "spec": {"holderIdentity": "b", "renewTime": "2026-01-01T00:00:00.000000Z"}},
    )  # fmt: skip
    assert lost.wait(3), "the holder did not notice it lost the lease"
    stop.set()
    assert lease(api, namespace)["holderIdentity"] == "b"  # it did not write over b


def test_acquire_waits_until_stopped(api: KubeApi, namespace: str) -> None:
    assert elector(api, namespace, "a").try_acquire_or_renew()
    b = LeaderElector(
        api,
        LeaseSettings(
            namespace=namespace, identity="b", duration=15, renew_deadline=10, retry_period=0.05
        ),
    )
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert not b.acquire(stop)
    assert 0.25 < time.monotonic() - started < 3


def test_settings_from_the_environment() -> None:
    settings = LeaseSettings.from_env(
        {"TUNERY_LEASE_NAMESPACE": "ops", "TUNERY_LEASE_DURATION": "30",
         "TUNERY_LEASE_RENEW_DEADLINE": "20", "TUNERY_LEASE_RETRY_PERIOD": "4"}
    )  # fmt: skip
    assert (settings.namespace, settings.duration, settings.renew_deadline) == ("ops", 30, 20)
    assert settings.enabled and settings.identity
    assert not LeaseSettings.from_env({"TUNERY_LEADER_ELECTION": "false"}).enabled
    with pytest.raises(ValueError, match="TUNERY_LEASE_DURATION: 'soon'"):
        LeaseSettings.from_env({"TUNERY_LEASE_DURATION": "soon"})
    with pytest.raises(ValueError, match="renew deadline < duration"):
        LeaseSettings.from_env({"TUNERY_LEASE_DURATION": "5"})


def test_a_standby_answers_the_liveness_probe_and_frees_the_port() -> None:
    import socket
    import urllib.error
    import urllib.request

    from controller.operator.leader import standby_liveness

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with standby_liveness(f"http://127.0.0.1:{port}/healthz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            assert reply.status == 200
        with pytest.raises(urllib.error.HTTPError) as other:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert other.value.code == 404
    with socket.socket() as sock:  # kopf can bind it now
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    with standby_liveness(None):
        pass
