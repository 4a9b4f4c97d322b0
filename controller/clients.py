"""Clients for the Suggestion and EarlyStopping services: in-process or over gRPC.

Called by the reconciler. Both forms speak the same Katib messages: the in-process form calls
the servicer's RPC methods directly with a local call context (no network, no serialisation),
the gRPC form reaches any Katib-compatible server (a custom algorithm in any language). Either
way a failed call raises :class:`ServiceCallError` carrying the gRPC status code and the
server's message, so the reconciler handles both paths identically.

A gRPC Suggestion server that is down is waited for, not fatal: the first contact waits up to
:data:`FIRST_CONTACT_LIMIT_S` (or the outage limit, if shorter) for the server to answer;
after that an UNAVAILABLE (or timed-out) call starts an outage that is retried with backoff
(:class:`tunery.retry.RetryPolicy`) without blocking the caller: until the next try is due,
calls fail at once with a retryable :class:`ServiceCallError`, so the reconciler keeps
finishing running trials meanwhile. Past either limit the client raises
:class:`ServiceUnavailableError` naming the endpoint (``tunery run`` exits 3). So does an
endpoint that answers HTTP/2 but not gRPC (a web server, a proxy's 404): its address is wrong.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from tunery.api import api_pb2, api_pb2_grpc
from tunery.retry import Outage, RetryPolicy
from tunery.tls import ClientTls, open_channel

log = logging.getLogger(__name__)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_SUGGESTION_SERVICE = api_pb2.DESCRIPTOR.services_by_name["Suggestion"].full_name

_HTTP_ANSWER = "Received http2 header with status"
"""gRPC's details when the peer answered HTTP/2 without gRPC (a status such as 404): the
endpoint is wrong, which no retry mends and which must not fail the experiment."""

_HANDSHAKE = re.compile(r"handshake|SSL_ERROR|certificate", re.IGNORECASE)
"""In gRPC's connection error: the peer was reached but TLS was refused (plaintext against
TLS, an untrusted certificate, a missing client certificate)."""

_CLOSED = "Socket closed"
"""In gRPC's connection error: the peer accepted and then closed the connection."""

FIRST_CONTACT_LIMIT_S = 20.0
"""How long the first call waits for a gRPC server that has never answered."""

CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),  # gRPC's default, 120 s, outlasts short outages
)


class ServiceCallError(Exception):
    """A Suggestion/EarlyStopping call failed with ``code``; ``details`` is the server's text."""

    def __init__(self, service: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{service}: {code.name}: {details}")
        self.service = service
        self.code = code
        self.details = details

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class ServiceUnavailableError(ServiceCallError):
    """A gRPC service never answered, or stayed unavailable past the outage limit; the
    message names the endpoint. Not retried by the reconciler: the run stops (exit 3) and the
    experiment stays resumable."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(service, grpc.StatusCode.UNAVAILABLE, message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.details

    @property
    def retryable(self) -> bool:
        return False


class _LocalContext:
    """The slice of ``grpc.ServicerContext`` servicers use, for direct in-process calls."""

    def __init__(self, service: str) -> None:
        self._service = service
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise ServiceCallError(self._service, code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "in-process"


def _call_local(service: str, method: Callable[[Any, Any], Any], request: Any) -> Any:
    context = _LocalContext(service)
    reply = method(request, context)
    if context.code is not None and context.code is not grpc.StatusCode.OK:
        raise ServiceCallError(service, context.code, context.details)
    return reply


def _call_remote(
    service: str,
    method: Callable[..., Any],
    request: Any,
    timeout: float,
    *,
    wait_for_ready: bool = True,
) -> Any:
    try:
        return method(request, timeout=timeout, wait_for_ready=wait_for_ready)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        raise ServiceCallError(service, code, details or "") from None


class SuggestionClient(Protocol):
    def get_suggestions(
        self, request: api_pb2.GetSuggestionsRequest
    ) -> api_pb2.GetSuggestionsReply: ...

    def get_suggestions_wire(self, data: bytes) -> api_pb2.GetSuggestionsReply:
        """``GetSuggestions`` with the request already serialised (the reconciler encodes
        each trial once and reuses it: :class:`controller.protos.SuggestionRequestEncoder`)."""

    def validate_algorithm_settings(
        self, request: api_pb2.ValidateAlgorithmSettingsRequest
    ) -> None: ...

    def close(self) -> None: ...


class EarlyStoppingClient(Protocol):
    def get_early_stopping_rules(
        self, request: api_pb2.GetEarlyStoppingRulesRequest
    ) -> api_pb2.GetEarlyStoppingRulesReply: ...

    def validate_early_stopping_settings(
        self, request: api_pb2.ValidateEarlyStoppingSettingsRequest
    ) -> None: ...

    def close(self) -> None: ...


@dataclass
class InProcessSuggestionClient:
    """Calls a ``SuggestionServicer`` in this process."""

    servicer: Any

    def get_suggestions(
        self, request: api_pb2.GetSuggestionsRequest
    ) -> api_pb2.GetSuggestionsReply:
        reply: api_pb2.GetSuggestionsReply = _call_local(
            "Suggestion", self.servicer.GetSuggestions, request
        )
        return reply

    def get_suggestions_wire(self, data: bytes) -> api_pb2.GetSuggestionsReply:
        """Hands the bytes to a servicer that decodes only what changed since the previous
        request (``get_suggestions_wire``); decodes them here for any other servicer."""
        wire = getattr(self.servicer, "get_suggestions_wire", None)
        if wire is None:
            return self.get_suggestions(api_pb2.GetSuggestionsRequest.FromString(data))
        reply: api_pb2.GetSuggestionsReply = _call_local("Suggestion", wire, data)
        return reply

    def validate_algorithm_settings(
        self, request: api_pb2.ValidateAlgorithmSettingsRequest
    ) -> None:
        _call_local("Suggestion", self.servicer.ValidateAlgorithmSettings, request)

    def close(self) -> None:
        pass


def _tls_hint() -> str:
    """What to check when a server closes the connection, given this client's TLS settings."""
    tls = ClientTls.from_env()
    if tls is None:
        return "if it requires TLS, set TUNERY_TLS_CA (see docs/security.md)"
    if tls.cert is None:
        return (
            "if it requires mutual TLS, set TUNERY_TLS_CERT and TUNERY_TLS_KEY "
            "(see docs/security.md)"
        )
    return "check that it trusts this client's certificate (TUNERY_TLS_CERT)"


def _last_connection_error(channel: grpc.Channel, tries: int = 4) -> str:
    """gRPC's last error connecting ``channel`` ('' if none): a health check that does not
    wait for the channel fails at once with it. gRPC reports only the last address tried (for
    ``localhost``, ::1 may refuse while 127.0.0.1 refuses TLS), so a few tries are made and
    the most telling reason kept: a TLS failure, then a closed connection, then any."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None
    )
    reasons: list[str] = []
    for _ in range(tries):
        try:
            check(b"", timeout=2.0, wait_for_ready=False)
            return ""
        except grpc.RpcError as exc:
            details = str(exc.details() or "")  # type: ignore[attr-defined]
            reasons.append(details.split("last error: ", 1)[-1].strip())
        if _HANDSHAKE.search(reasons[-1]):
            break
        time.sleep(0.3)  # let the channel try again (its next address)
    return max(reasons, key=lambda r: (bool(_HANDSHAKE.search(r)), _CLOSED in r))


class GrpcSuggestionClient:
    """Talks to a Katib-compatible Suggestion server at ``address`` (``host:port``), waiting
    out outages as the module docstring says. ``timeout`` bounds one call to a server that is
    up (an algorithm may think for minutes); ``name`` is the algorithm, for messages."""

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        timeout: float = 600.0,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.policy = policy or RetryPolicy.from_env()
        self._what = f"Suggestion service {name + ' ' if name else ''}at {address}"
        self._channel = open_channel(address, options=CHANNEL_OPTIONS)
        self._stub = api_pb2_grpc.SuggestionStub(self._channel)
        self._get_suggestions_wire = self._channel.unary_unary(
            f"/{_SUGGESTION_SERVICE}/GetSuggestions",
            request_serializer=None,  # already serialised
            response_deserializer=api_pb2.GetSuggestionsReply.FromString,
        )
        self._timeout = timeout
        self._clock = clock
        self._contacted = False
        self._outage: Outage | None = None
        self._next_try = 0.0

    def get_suggestions(
        self, request: api_pb2.GetSuggestionsRequest
    ) -> api_pb2.GetSuggestionsReply:
        reply: api_pb2.GetSuggestionsReply = self._call(self._stub.GetSuggestions, request)
        return reply

    def get_suggestions_wire(self, data: bytes) -> api_pb2.GetSuggestionsReply:
        """Sends the serialised request as it is (no encoding per call)."""
        reply: api_pb2.GetSuggestionsReply = self._call(self._get_suggestions_wire, data)
        return reply

    def validate_algorithm_settings(
        self, request: api_pb2.ValidateAlgorithmSettingsRequest
    ) -> None:
        try:
            self._call(self._stub.ValidateAlgorithmSettings, request, block=True)
        except ServiceCallError as exc:
            if exc.code is not grpc.StatusCode.UNIMPLEMENTED:  # Katib: unimplemented = valid
                raise

    def _call(self, method: Callable[..., Any], request: Any, *, block: bool = False) -> Any:
        """One call. During an outage, ``block`` waits for each next try (validation, before
        anything runs); otherwise a call before the next try is due fails at once."""
        while True:
            try:
                return self._try(method, request)
            except ServiceUnavailableError:
                raise
            except ServiceCallError as exc:
                if not (block and exc.retryable):
                    raise
                time.sleep(max(0.0, self._next_try - self._clock()))

    def _try(self, method: Callable[..., Any], request: Any) -> Any:
        if not self._contacted:
            self._first_contact()
        if self._outage is not None and self._clock() < self._next_try:
            raise ServiceCallError(
                self._what, grpc.StatusCode.UNAVAILABLE, "waiting to retry (see the log)"
            )
        try:
            reply = _call_remote(self._what, method, request, self._timeout, wait_for_ready=False)
        except ServiceCallError as exc:
            if exc.retryable:
                self._failed(exc)
            elif exc.details.startswith(_HTTP_ANSWER):  # e.g. a web server or a proxy's 404
                raise ServiceUnavailableError(
                    self._what,
                    f"{self._what} answered as an HTTP server, not a gRPC Suggestion service "
                    f"({exc.details}): is the endpoint right?",
                ) from None
            raise
        if self._outage is not None:
            log.warning("%s available again after %.1f s", self._what, self._outage.elapsed)
            self._outage = None
        return reply

    def _first_contact(self) -> None:
        """Wait until the server accepts a connection, up to the first-contact limit."""
        limit = min(FIRST_CONTACT_LIMIT_S, self.policy.limit)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=limit)
        except grpc.FutureTimeoutError:
            raise ServiceUnavailableError(self._what, self._no_contact(limit)) from None
        self._contacted = True

    def _no_contact(self, limit: float) -> str:
        """The message for a server never reached: gRPC's last connection error (from calls
        that fail at once, :func:`_last_connection_error`) says whether nothing listens, the
        TLS handshake failed, or the server closed the connection."""
        message = f"{self._what} did not answer within {limit:g} s"
        reason = _last_connection_error(self._channel)
        if reason and _HANDSHAKE.search(reason):
            return (
                f"{message}: the TLS handshake failed ({reason}): the server and this client "
                "disagree on TLS (TUNERY_TLS_CA, TUNERY_TLS_CERT, TUNERY_TLS_KEY; see "
                "docs/security.md)"
            )
        if reason:
            message += f" ({reason})"
        if _CLOSED in reason:  # a TLS server closes a refused client's connection unexplained
            return f"{message}: the server closed the connection; {_tls_hint()}"
        return f"{message}: is the server running and is the endpoint right?"

    def _failed(self, exc: ServiceCallError) -> None:
        """Start or continue the outage; raise ServiceUnavailableError past its limit."""
        if self._outage is None:
            self._outage = Outage(self.policy, self._what, clock=self._clock)
        delay = self._outage.next_delay()
        if delay is None:
            raise ServiceUnavailableError(self._what, self._outage.gave_up(exc.details)) from None
        level = logging.WARNING if self._outage.worth_logging() else logging.DEBUG
        log.log(level, "%s", self._outage.describe(delay, f"{exc.code.name}: {exc.details}"))
        self._next_try = self._clock() + delay

    def close(self) -> None:
        self._channel.close()


@dataclass
class InProcessEarlyStoppingClient:
    servicer: Any

    def get_early_stopping_rules(
        self, request: api_pb2.GetEarlyStoppingRulesRequest
    ) -> api_pb2.GetEarlyStoppingRulesReply:
        reply: api_pb2.GetEarlyStoppingRulesReply = _call_local(
            "EarlyStopping", self.servicer.GetEarlyStoppingRules, request
        )
        return reply

    def validate_early_stopping_settings(
        self, request: api_pb2.ValidateEarlyStoppingSettingsRequest
    ) -> None:
        _call_local("EarlyStopping", self.servicer.ValidateEarlyStoppingSettings, request)

    def close(self) -> None:
        pass


class GrpcEarlyStoppingClient:
    def __init__(self, address: str, *, timeout: float = 120.0) -> None:
        self.address = address
        self._channel = open_channel(address)
        self._stub = api_pb2_grpc.EarlyStoppingStub(self._channel)
        self._timeout = timeout

    def get_early_stopping_rules(
        self, request: api_pb2.GetEarlyStoppingRulesRequest
    ) -> api_pb2.GetEarlyStoppingRulesReply:
        reply: api_pb2.GetEarlyStoppingRulesReply = _call_remote(
            f"EarlyStopping at {self.address}",
            self._stub.GetEarlyStoppingRules,
            request,
            self._timeout,
        )
        return reply

    def validate_early_stopping_settings(
        self, request: api_pb2.ValidateEarlyStoppingSettingsRequest
    ) -> None:
        try:
            _call_remote(
                f"EarlyStopping at {self.address}",
                self._stub.ValidateEarlyStoppingSettings,
                request,
                self._timeout,
            )
        except ServiceCallError as exc:
            if exc.code is not grpc.StatusCode.UNIMPLEMENTED:
                raise

    def close(self) -> None:
        self._channel.close()


_ENDPOINT = re.compile(r"^(?P<name>[^=\s]+)=(?P<address>[^\s]+:\d+)$")


def parse_endpoints(entries: list[str] | tuple[str, ...] | str | None) -> dict[str, str]:
    """``["tpe=localhost:6789", ...]`` or ``"a=h:1,b=h:2"`` -> ``{"tpe": "localhost:6789"}``.

    Raises:
        ValueError: an entry is not ``NAME=HOST:PORT``.
    """
    if entries is None:
        return {}
    items = entries.split(",") if isinstance(entries, str) else list(entries)
    out = {}
    for raw in items:
        raw = raw.strip()
        if not raw:
            continue
        match = _ENDPOINT.match(raw)
        if match is None:
            raise ValueError(f"endpoint {raw!r} is not NAME=HOST:PORT (e.g. tpe=localhost:6789)")
        out[match["name"]] = match["address"]
    return out


def suggestion_client(
    algorithm_name: str, endpoints: Mapping[str, str], policy: RetryPolicy | None = None
) -> SuggestionClient:
    """gRPC client when ``algorithm_name`` is mapped to an endpoint, else in-process."""
    if algorithm_name in endpoints:
        return GrpcSuggestionClient(endpoints[algorithm_name], name=algorithm_name, policy=policy)
    from suggestion.service import SuggestionServicer

    return InProcessSuggestionClient(SuggestionServicer())
