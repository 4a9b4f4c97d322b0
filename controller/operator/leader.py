"""Leader election for operator replicas: one coordination.k8s.io/v1 Lease, one holder.

Called by :func:`controller.operator.run_operator` before kopf starts: a replica waits in
:meth:`LeaderElector.acquire` until it holds the Lease, then renews it from a thread
(:meth:`LeaderElector.keep`) while it reconciles; if it cannot renew within the renew deadline
it reports the loss, and the operator stops (the process exits, its pod restarts and waits
again), so two replicas never reconcile at once. On a clean stop it releases the Lease, so a
waiting replica takes over at once; a killed one is replaced once its Lease has not been renewed
for ``leaseDurationSeconds``.

The rules are client-go's (``tools/leaderelection``): the Lease is free when it has no holder,
or when its record has not changed for the lease duration *as observed locally* (so clocks of
different nodes never matter); every write carries the read ``resourceVersion``, so of two
replicas racing for a free Lease exactly one wins (the other gets 409 Conflict).
"""

from __future__ import annotations

import datetime as dt
import http.server
import logging
import os
import random
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from controller.runners.kubernetes import KubeApi, KubeError

log = logging.getLogger(__name__)

API_VERSION = "coordination.k8s.io/v1"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_identity() -> str:
    """``<hostname>_<random>``: the pod name in a cluster, unique per process."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def default_namespace() -> str:
    """The operator's own namespace in a cluster (service account), else ``default``."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


@dataclass(frozen=True)
class LeaseSettings:
    """Where the Lease is and its timing (client-go's defaults: 15 s, 10 s, 2 s).

    ``TUNERY_LEADER_ELECTION=false`` turns election off (one replica only);
    ``TUNERY_LEASE_NAME``/``TUNERY_LEASE_NAMESPACE`` place the Lease;
    ``TUNERY_LEASE_DURATION``/``TUNERY_LEASE_RENEW_DEADLINE``/``TUNERY_LEASE_RETRY_PERIOD``
    time it (seconds).
    """

    enabled: bool = True
    name: str = "tunery-operator"
    namespace: str = "default"
    identity: str = field(default_factory=default_identity)
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                "lease timing: need 0 < retry period < renew deadline < duration, got "
                f"{self.retry_period:g} / {self.renew_deadline:g} / {self.duration:g} s"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LeaseSettings:
        """Settings from ``TUNERY_LEADER_ELECTION`` and ``TUNERY_LEASE_*``.

        Raises:
            ValueError: a malformed number or inconsistent timing (named).
        """
        env = os.environ if environ is None else environ
        defaults = cls(identity="-")

        def seconds(key: str, default: float) -> float:
            text = env.get(key)
            if not text:
                return default
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{key}: {text!r} is not a number of seconds") from None

        return cls(
            enabled=env.get("TUNERY_LEADER_ELECTION", "true").lower() not in ("0", "false", "no"),
            name=env.get("TUNERY_LEASE_NAME") or defaults.name,
            namespace=env.get("TUNERY_LEASE_NAMESPACE") or default_namespace(),
            identity=env.get("TUNERY_LEASE_IDENTITY") or default_identity(),
            duration=seconds("TUNERY_LEASE_DURATION", defaults.duration),
            renew_deadline=seconds("TUNERY_LEASE_RENEW_DEADLINE", defaults.renew_deadline),
            retry_period=seconds("TUNERY_LEASE_RETRY_PERIOD", defaults.retry_period),
        )


def micro_time(when: dt.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires, renews and releases the Lease of :class:`LeaseSettings` for one replica."""

    def __init__(
        self,
        api: KubeApi,
        settings: LeaseSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.api = api
        self.settings = settings
        self._monotonic = monotonic
        self._now = now
        self._observed: tuple[Any, ...] | None = None  # the other holder's record, as last read
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # when this replica last wrote the Lease
        self._waiting_logged = False

    @property
    def identity(self) -> str:
        return self.settings.identity

    def _lease(self) -> dict[str, Any] | None:
        try:
            return self.api.get(API_VERSION, "Lease", self.settings.namespace, self.settings.name)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    def _patch(self, patch: Mapping[str, Any]) -> None:
        self.api.patch(API_VERSION, "Lease", self.settings.namespace, self.settings.name, patch)

    def _spec(self, transitions: int, acquired: dt.datetime | None) -> dict[str, Any]:
        now = self._now()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.settings.duration)),
            "acquireTime": micro_time(acquired or now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt: whether this replica holds the Lease afterwards.

        Raises:
            KubeError: the API server refused for another reason than a lost race.
        """
        lease = self._lease()
        if lease is None:
            body = {
                "apiVersion": API_VERSION,
                "kind": "Lease",
                "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
                "spec": self._spec(0, None),
            }
            try:
                self.api.create(body)
            except KubeError as exc:
                if exc.conflict:  # another replica created it first
                    return False
                raise
            return self._won(acquired=True)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if holder and holder != self.identity:
            if record != self._observed:  # it changed: the holder is alive as of now
                self._observed, self._observed_at = record, self._monotonic()
            duration = float(spec.get("leaseDurationSeconds") or self.settings.duration)
            if self._monotonic() - self._observed_at < duration:
                if not self._waiting_logged:
                    where = f"{self.settings.namespace}/{self.settings.name}"
                    log.warning("standing by: the Lease %s is held by %s", where, holder)
                    self._waiting_logged = True
                return False
        ours = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        acquired = _parse_time(spec.get("acquireTime")) if ours else None
        patch = {
            "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
            "spec": self._spec(transitions, acquired),
        }
        try:
            self._patch(patch)
        except KubeError as exc:
            if exc.conflict:  # someone wrote it since our read: re-read next time
                return False
            raise
        return self._won(acquired=not ours)

    def _won(self, *, acquired: bool) -> bool:
        self._renewed_at = self._monotonic()
        if acquired:
            log.warning("became the leader (Lease %s/%s, identity %s)", self.settings.namespace,
                        self.settings.name, self.identity)  # fmt: skip
        return True

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except KubeError as exc:  # transient or refused: logged, tried again
            log.warning("Lease %s/%s: %s", self.settings.namespace, self.settings.name, exc)
            return False

    def _pause(self, stop: threading.Event) -> bool:
        """Wait a jittered retry period; True when ``stop`` was set meanwhile."""
        return stop.wait(self.settings.retry_period * random.uniform(1.0, 1.2))

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica holds the Lease (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if self._attempt():
                return True
            if self._pause(stop):
                break
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew every retry period from a daemon thread until ``stop``; if no renewal
        succeeds for the renew deadline, call ``on_lost`` once and stop renewing."""

        def renew() -> None:
            while not self._pause(stop):
                if self._attempt():
                    continue
                held_for = self._monotonic() - (self._renewed_at or 0.0)
                if held_for >= self.settings.renew_deadline:
                    log.error("lost the Lease %s/%s (not renewed for %.1f s); stopping",
                              self.settings.namespace, self.settings.name, held_for)  # fmt: skip
                    self._renewed_at = None
                    on_lost()
                    return

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up if this replica still holds it (a clean stop): a waiting replica
        takes over at its next attempt instead of after the lease duration."""
        try:
            lease = self._lease()
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            now = micro_time(self._now())
            patch = {
                "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                "spec": {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": now},
            }
            self._patch(patch)
            log.info("released the Lease %s/%s", self.settings.namespace, self.settings.name)
        except KubeError as exc:
            log.warning("cannot release the Lease %s/%s: %s", self.settings.namespace,
                        self.settings.name, exc)  # fmt: skip


def _parse_time(text: Any) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


@contextmanager
def standby_liveness(endpoint: str | None) -> Iterator[None]:
    """While a replica waits for the Lease, answer 200 at kopf's liveness ``endpoint`` (e.g.
    ``http://0.0.0.0:8080/healthz``) so the kubelet does not restart a healthy standby; the
    port is freed on exit, before kopf serves it."""
    if not endpoint:
        yield
        return
    url = urllib.parse.urlsplit(endpoint)
    path = url.path or "/"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = urllib.parse.urlsplit(self.path).path == path
            body = b'{"standby": true}' if ok else b"not found"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json" if ok else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), Handler)
    thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
