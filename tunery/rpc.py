"""Bounds on every call a tunery gRPC server handles: short error details, and handlers that
stop when their client is gone.

Installed by :func:`tunery.serving.create_server` as a server interceptor
(:class:`BoundaryInterceptor`) on the Suggestion, EarlyStopping and DBManager servers, so the
services' own code needs neither:

- Error details are cut to :data:`MAX_DETAILS_CHARS` (the status travels in a header; a 10 MB
  parameter name quoted in an INVALID_ARGUMENT would otherwise exceed the client's header limit
  and arrive as RESOURCE_EXHAUSTED "Stream removed").
- With ``interrupt=True`` (the Suggestion server: its handlers are pure computation), a unary
  handler whose call ends early (client deadline, client cancel, server stop after its grace)
  is interrupted: :class:`CallInterrupted` is raised in the handler's thread at its next Python
  bytecode, so it stops within milliseconds instead of computing an answer nobody reads. A call
  whose client is already gone when a worker picks it up is not started at all. Work inside
  one C call (a numpy operation, protobuf parsing) finishes first; the request limits keep
  those short.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)

MAX_DETAILS_CHARS = 1024
"""Longest status details a server sends; longer ones are cut, saying how long they were."""


def truncate_details(details: str | None) -> str | None:
    """``details`` cut to :data:`MAX_DETAILS_CHARS` characters (None stays None)."""
    if details is None or len(details) <= MAX_DETAILS_CHARS:
        return details
    note = f"... [{len(details)} characters, truncated]"
    return details[: MAX_DETAILS_CHARS - len(note)] + note


class CallInterrupted(BaseException):
    """Raised inside a handler whose call has ended. A BaseException, so that the handler's
    own ``except Exception`` clauses do not swallow it."""


class _BoundedContext:
    """A servicer context whose ``abort``/``set_details`` truncate the details."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._context.abort(code, truncate_details(details) or "")

    def set_details(self, details: str) -> None:
        self._context.set_details(truncate_details(details))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class _Interruptor:
    """Raises :class:`CallInterrupted` in one thread while it runs a handler, and only then."""

    def __init__(self, thread_id: int) -> None:
        self._thread_id = thread_id
        self._lock = threading.Lock()
        self._running = True
        self.fired = False

    def fire(self) -> None:
        """The call ended (gRPC runs this from its own thread): interrupt the handler."""
        with self._lock:
            if self._running and not self.fired:
                self.fired = True
                _set_async_exc(self._thread_id, CallInterrupted)

    def finish(self) -> None:
        """The handler is done: no interruption from now on, and none left pending."""
        while True:
            try:
                with self._lock:
                    self._running = False
                    if self.fired:
                        _set_async_exc(self._thread_id, None)  # drop one not delivered yet
                return
            except CallInterrupted:  # delivered while finishing: finish again
                continue


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    obj = ctypes.py_object(exc) if exc is not None else None  # None clears (NULL)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), obj)


Behavior = Callable[[Any, Any], Any]


def bounded(behavior: Behavior, *, interrupt: bool, method: str = "") -> Behavior:
    """``behavior`` (a unary handler) with truncated details and, if ``interrupt``, stopped
    when its call ends (see the module docstring)."""

    def plain(request: Any, context: grpc.ServicerContext) -> Any:
        return behavior(request, _BoundedContext(context))

    if not interrupt:
        return plain

    def interruptible(request: Any, context: grpc.ServicerContext) -> Any:
        interruptor = _Interruptor(threading.get_ident())
        try:
            if not context.add_callback(interruptor.fire):  # the call already ended
                interruptor.fired = True
                raise CallInterrupted
            return behavior(request, _BoundedContext(context))
        except CallInterrupted:
            interruptor.finish()
            log.info("%s: the call ended (deadline, cancel or shutdown); stopped", method)
            context.abort(grpc.StatusCode.CANCELLED, "the call ended before it was answered")
        finally:
            interruptor.finish()

    return interruptible


class BoundaryInterceptor(grpc.ServerInterceptor):
    """Wraps every unary-unary handler with :func:`bounded` (streams pass through: they are
    health ``Watch`` and reflection, which do no work of ours)."""

    def __init__(self, *, interrupt: bool) -> None:
        self.interrupt = interrupt

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = bounded(
            handler.unary_unary, interrupt=self.interrupt, method=handler_call_details.method
        )
        return handler._replace(unary_unary=wrapped)  # type: ignore[attr-defined]
