"""Clients for the Suggestion and EarlyStopping services: in-process or over gRPC.

Called by the reconciler. Both forms speak the same Katib messages: the in-process form calls
the servicer's RPC methods directly with a local call context (no network, no serialisation),
the gRPC form reaches any Katib-compatible server (a custom algorithm in any language). Either
way a failed call raises :class:`ServiceCallError` carrying the gRPC status code and the
server's message, so the reconciler handles both paths identically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from tunery.api import api_pb2, api_pb2_grpc
from tunery.tls import open_channel

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


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


def _call_remote(service: str, method: Callable[..., Any], request: Any, timeout: float) -> Any:
    try:
        return method(request, timeout=timeout, wait_for_ready=True)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        raise ServiceCallError(service, code, details or "") from None


class SuggestionClient(Protocol):
    def get_suggestions(
        self, request: api_pb2.GetSuggestionsRequest
    ) -> api_pb2.GetSuggestionsReply: ...

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

    def validate_algorithm_settings(
        self, request: api_pb2.ValidateAlgorithmSettingsRequest
    ) -> None:
        _call_local("Suggestion", self.servicer.ValidateAlgorithmSettings, request)

    def close(self) -> None:
        pass


class GrpcSuggestionClient:
    """Talks to a Katib-compatible Suggestion server at ``address`` (``host:port``)."""

    def __init__(self, address: str, *, timeout: float = 600.0) -> None:
        self.address = address
        self._channel = open_channel(address)
        self._stub = api_pb2_grpc.SuggestionStub(self._channel)
        self._timeout = timeout

    def get_suggestions(
        self, request: api_pb2.GetSuggestionsRequest
    ) -> api_pb2.GetSuggestionsReply:
        reply: api_pb2.GetSuggestionsReply = _call_remote(
            f"Suggestion at {self.address}", self._stub.GetSuggestions, request, self._timeout
        )
        return reply

    def validate_algorithm_settings(
        self, request: api_pb2.ValidateAlgorithmSettingsRequest
    ) -> None:
        try:
            _call_remote(
                f"Suggestion at {self.address}",
                self._stub.ValidateAlgorithmSettings,
                request,
                self._timeout,
            )
        except ServiceCallError as exc:
            if exc.code is not grpc.StatusCode.UNIMPLEMENTED:  # Katib: unimplemented = valid
                raise

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


def suggestion_client(algorithm_name: str, endpoints: Mapping[str, str]) -> SuggestionClient:
    """gRPC client when ``algorithm_name`` is mapped to an endpoint, else in-process."""
    if algorithm_name in endpoints:
        return GrpcSuggestionClient(endpoints[algorithm_name])
    from suggestion.service import SuggestionServicer

    return InProcessSuggestionClient(SuggestionServicer())
