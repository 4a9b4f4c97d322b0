"""Follow a container's log through the Kubernetes API: the StdOut source of a trial whose
primary container has no ``command``.

Used by the Kubernetes sidecar (:mod:`metrics_collector.sidecar`, ``--follow-container``) when
the operator could not wrap the trial's command (the image's entrypoint is unknown without a
registry), so no ``tee`` writes a metrics file: the collector reads
``GET /api/v1/namespaces/<ns>/pods/<pod>/log?container=<c>&follow=true&timestamps=true`` with
the pod's service-account token (projected into the collector only) and feeds each line to the
collector, as the file tailer would. Standard library only (``http.client``, ``ssl``): the
collector image needs no Kubernetes client.

- The pod and namespace come from ``POD_NAME``/``POD_NAMESPACE`` (downward API), the API
  server from ``KUBERNETES_SERVICE_HOST``/``_PORT`` (set in every pod) unless ``api_server``
  is given, the token and CA from ``<token_dir>/token`` and ``ca.crt`` (read on every
  connection: the kubelet rotates the token).
- A stream that ends (API server restart, idle timeout) is opened again from the last line's
  second (``sinceTime``), skipping lines whose timestamps were already fed; the follower is
  done once the container is terminated (or the pod is gone) and its stream ended.
- Refusals are logged with what to do: 403 names the RoleBinding the pod's service account
  needs (``get`` on ``pods/log`` and ``pods`` in its namespace: deploy/rbac.yaml's ClusterRole
  ``tunery-trial-log-reader``); the follower keeps trying, and a trial that ends without its
  objective is marked MetricsUnavailable by the sidecar as usual.

Errors: :class:`PodLogError` (a :class:`~metrics_collector.errors.CollectorError`) for a missing
setting at construction.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import queue
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metrics_collector.background import BackgroundLoop
from metrics_collector.errors import CollectorError

log = logging.getLogger(__name__)

DEFAULT_TOKEN_DIR = "/var/run/secrets/tunery/serviceaccount"
LOG_READER_ROLE = "tunery-trial-log-reader"


class PodLogError(CollectorError):
    """The pod log cannot be followed as configured (the message says what is missing)."""


class ApiRefusal(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


Timestamp = tuple[int, int]
"""(seconds since the epoch, nanoseconds): a log line's timestamp, comparable."""


def parse_timestamp(text: str) -> Timestamp | None:
    """``2026-01-02T03:04:05.123456789Z`` (RFC 3339, any fraction) -> (seconds, nanoseconds)."""
    body = text.strip()
    if not body.endswith("Z"):
        return None
    whole, _, fraction = body[:-1].partition(".")
    try:
        moment = dt.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
    except ValueError:
        return None
    return int(moment.timestamp()), nanos


def _since(ts: Timestamp) -> str:
    return dt.datetime.fromtimestamp(ts[0], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PodApi:
    """The few calls the follower makes, for one pod (``api_server``: ``https://host:port``)."""

    api_server: str
    namespace: str
    pod: str
    token_dir: Path = Path(DEFAULT_TOKEN_DIR)
    timeout: float = 30.0

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        api_server: str = "",
        token_dir: str | os.PathLike[str] = DEFAULT_TOKEN_DIR,
    ) -> PodApi:
        """From the pod's environment.

        Raises:
            PodLogError: the pod, its namespace or the API server is unknown.
        """
        env = os.environ if environ is None else environ
        missing = [k for k in ("POD_NAME", "POD_NAMESPACE") if not env.get(k)]
        if not api_server:
            host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
            if not host:
                missing.append("KUBERNETES_SERVICE_HOST")
            else:
                host = f"[{host}]" if ":" in host else host
                api_server = f"https://{host}:{port or 443}"
        if missing:
            raise PodLogError(
                f"cannot follow the trial's log: {', '.join(missing)} not set (the operator "
                "sets POD_NAME and POD_NAMESPACE from the downward API)"
            )
        return cls(api_server, env["POD_NAMESPACE"], env["POD_NAME"], Path(token_dir))

    @property
    def subject(self) -> str:
        return f"the service account of pod {self.namespace}/{self.pod}"

    def _connection(self) -> http.client.HTTPConnection:
        url = urllib.parse.urlsplit(self.api_server)
        if url.scheme == "http":
            return http.client.HTTPConnection(url.netloc, timeout=self.timeout)
        ca = self.token_dir / "ca.crt"
        context = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)
        return http.client.HTTPSConnection(url.netloc, timeout=self.timeout, context=context)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "*/*"}
        token = self.token_dir / "token"
        if token.exists():
            headers["Authorization"] = f"Bearer {token.read_text().strip()}"
        return headers

    def _path(self, suffix: str = "", query: Mapping[str, str] | None = None) -> str:
        ns, pod = (urllib.parse.quote(x, safe="") for x in (self.namespace, self.pod))
        path = f"/api/v1/namespaces/{ns}/pods/{pod}{suffix}"
        return f"{path}?{urllib.parse.urlencode(query)}" if query else path

    @staticmethod
    def _refusal(response: http.client.HTTPResponse) -> ApiRefusal:
        body = response.read().decode("utf-8", "replace")
        try:
            message = str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            message = body
        return ApiRefusal(response.status, message.strip())

    def pod_status(self) -> dict[str, Any] | None:
        """The pod's status, or None when the pod is gone."""
        conn = self._connection()
        try:
            conn.request("GET", self._path(), headers=self._headers())
            response = conn.getresponse()
            if response.status == 404:
                return None
            if response.status != 200:
                raise self._refusal(response)
            return dict(json.loads(response.read()).get("status") or {})
        finally:
            conn.close()

    def stream_log(self, container: str, since: Timestamp | None) -> Iterator[bytes]:
        """The container's log lines (with their timestamps), following it."""
        query = {"container": container, "follow": "true", "timestamps": "true"}
        if since is not None:
            query["sinceTime"] = _since(since)
        conn = self._connection()
        conn.timeout = None  # a quiet trial is no error: the stream ends with the container
        try:
            conn.request("GET", self._path("/log", query), headers=self._headers())
            response = conn.getresponse()
            if response.status != 200:
                raise self._refusal(response)
            while line := response.readline():
                yield line
        finally:
            conn.close()


def container_terminated(status: Mapping[str, Any] | None, container: str) -> bool:
    """Whether ``container`` has ended for good (the pod is gone or finished, or the container
    is terminated)."""
    if status is None or status.get("phase") in ("Succeeded", "Failed"):
        return True
    for key in ("containerStatuses", "initContainerStatuses"):
        for c in status.get(key) or []:
            if c.get("name") == container:
                return "terminated" in (c.get("state") or {})
    return False


Sink = Callable[[bytes], object]
_END = object()


class PodLogFollower(BackgroundLoop):
    """Feeds every line of ``container``'s log to ``sink`` (without its timestamp) until the
    container has ended, or until stopped (then waits ``drain_timeout`` for the stream's end)."""

    thread_name = "pod-log-follower"

    def __init__(
        self,
        api: PodApi,
        container: str,
        sink: Sink,
        *,
        retry_interval: float = 1.0,
        drain_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.api = api
        self.container = container
        self.sink = sink
        self.retry_interval = retry_interval
        self.drain_timeout = drain_timeout
        self.last: Timestamp | None = None
        self.connections = 0
        self._lines: queue.Queue[object] = queue.Queue()

    def run(self) -> None:
        reader = threading.Thread(target=self._read_all, name="pod-log-reader", daemon=True)
        reader.start()
        deadline: float | None = None
        while True:
            if self._stop.is_set() and deadline is None:
                if not self._drain:
                    return
                deadline = time.monotonic() + self.drain_timeout
            wait = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._lines.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                continue
            if item is _END:
                return
            self._feed(item)  # type: ignore[arg-type]

    def _feed(self, line: bytes) -> None:
        stamp, _, text = line.partition(b" ")
        ts = parse_timestamp(stamp.decode("ascii", "replace"))
        if ts is None:  # not a timestamped line: pass it on whole
            self.sink(line)
            return
        if self.last is not None and ts <= self.last:
            return  # already fed before the stream was opened again
        self.last = ts
        self.sink(text)

    def _read_all(self) -> None:
        """The reader thread: open the stream again until the container has ended."""
        delay = self.retry_interval
        while not (self._stop.is_set() and not self._drain):
            try:
                self.connections += 1
                for line in self.api.stream_log(self.container, self.last):
                    self._lines.put(line)
                    delay = self.retry_interval
                if container_terminated(self.api.pod_status(), self.container):
                    break
            except ApiRefusal as e:
                self._explain(e)
                if e.status in (401, 403):  # waits for a RoleBinding: back off
                    delay = min(delay * 2, 30.0)
            except (OSError, http.client.HTTPException) as e:
                log.warning("reading the log of %s failed: %s; retrying", self.container, e)
            self._stop.wait(delay)
        self._lines.put(_END)

    def _explain(self, e: ApiRefusal) -> None:
        if e.status in (401, 403):
            log.error(
                "the API server refused to show the log of container %s (%s): grant %s get "
                "on pods/log and pods, e.g. kubectl -n %s create rolebinding %s "
                "--clusterrole=%s --serviceaccount=%s:<the pod's serviceAccountName>",
                self.container,
                e,
                self.api.subject,
                self.api.namespace,
                LOG_READER_ROLE,
                LOG_READER_ROLE,
                self.api.namespace,
            )
        else:  # e.g. 400 while the container is still waiting to start
            log.info("log of container %s not readable yet: %s", self.container, e)
