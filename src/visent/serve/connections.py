"""How ``visent serve`` keeps slow and idle clients from taking it down.

uvicorn closes a connection that stays silent after a response (``timeout_keep_alive``) but not one that never
completes a request: a client that connects and sends nothing, or half a request line, or a header a byte at a
time, holds its connection, and its file descriptor, for as long as it likes. A thousand of them use up a process's
descriptors (often limited to 1024) and nobody else gets an answer. The HTTP protocol of :func:`guarded_protocol`
adds what servers such as nginx and Apache (``client_header_timeout``, ``mod_reqtimeout``) have:

* a **header timeout**: a request's headers must be complete within ``header_timeout`` seconds of the connection
  (or of the previous response); trickling bytes does not extend it. A client that sent part of a request gets a
  408, one that sent nothing is closed;
* an **idle timeout**: a client sending a request body, or reading a response, that moves no byte for
  ``idle_timeout`` seconds is closed;
* a **connection limit** below the descriptors the process may open: a new connection beyond it closes the
  connection that has waited longest for its request's headers (idle ones go first: a client that is being answered
  is never cut off); when every connection is busy, the new one gets a prompt 503 with ``Retry-After`` and is closed.

:func:`connection_budget` sizes the limit from ``RLIMIT_NOFILE``, keeping descriptors in reserve for what a request
opens (uploads spooled to disk, images written for the model) and for accepting new connections, so that the
server can always take a new connection and answer ``/health``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("visent.serve")

DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HEADER_TIMEOUT = 10.0  # seconds for a request's headers to arrive
DEFAULT_IDLE_TIMEOUT = 30.0  # seconds without a byte while a body is sent or a response read
DEFAULT_KEEP_ALIVE = 5  # seconds a connection may stay silent after a response (uvicorn's timeout_keep_alive)
MAX_HEADER_BYTES = 64 * 1024  # the request line and headers together (h11_max_incomplete_event_size)
RETRY_AFTER = 2  # seconds, in the 503 of a full server


@dataclass(frozen=True)
class ConnectionBudget:
    """How many connections ``visent serve`` holds at once (``max_connections``), and the listen ``backlog`` (also
    how many connections one pass of the event loop accepts), from the descriptors the process may open."""

    max_connections: int
    backlog: int
    descriptor_limit: int | None
    descriptors_in_use: int


def open_descriptors() -> int:
    """How many file descriptors this process has open now (0 where the platform does not say)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 0


def connection_budget(max_connections: int | None = None, requests: int = 16, per_request: int = 16) -> ConnectionBudget:
    """The connections ``visent serve`` may hold: ``max_connections`` (default 1000), at most what the descriptor
    limit leaves once the descriptors open now, those a burst of accepted connections holds before the longest
    waiting ones are closed (twice the backlog: the event loop accepts up to a backlog at a time), ``per_request``
    for each of the ``requests`` in progress at once (uploads spooled to disk, images written for the model) and a
    few more are set aside."""
    wanted = DEFAULT_MAX_CONNECTIONS if max_connections is None else int(max_connections)
    if wanted < 1:
        from visent.core.errors import UsageError

        raise UsageError(f"max_connections must be at least 1 (got {max_connections})")
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = None if soft == resource.RLIM_INFINITY else int(soft)
    except (ImportError, OSError, ValueError):  # pragma: no cover - Windows
        limit = None
    used = open_descriptors()
    if limit is None:
        return ConnectionBudget(wanted, 2048, None, used)
    free = max(0, limit - used)
    backlog = max(16, min(2048, free // 8))  # a short listen queue makes a burst of clients wait for SYN retries
    room = free - 2 * backlog - requests * per_request - 32
    return ConnectionBudget(max(8, min(wanted, room)), backlog, limit, used)


@dataclass
class _Guard:
    """What the connections of one server share: the limits, the open connections and those waiting for a request's
    headers, longest waiting first."""

    max_connections: int
    header_timeout: float
    idle_timeout: float
    open: set = field(default_factory=set)
    waiting: "OrderedDict[Any, None]" = field(default_factory=OrderedDict)
    refused: int = 0
    evicted: int = 0
    timed_out: int = 0

    def evict(self, newcomer: Any) -> bool:
        """Close the connection that has waited longest for a request (not ``newcomer``); False when none waits."""
        for victim in self.waiting:
            if victim is not newcomer:
                self.evicted += 1
                victim.drop()
                return True
        return False


def _raw_response(status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, written to the socket as it is: for a client that
    has not (completely) sent a request, where the HTTP parser has nothing to answer."""
    body = json.dumps({"detail": detail}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
             "connection: close", *[f"{k}: {v}" for k, v in (headers or {}).items()]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def guarded_protocol(max_connections: int, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                     idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> type:
    """uvicorn's h11 HTTP protocol with a header timeout, an idle timeout and a connection limit (see the module);
    pass it as ``uvicorn.Config(http=...)``. Each call makes a class of its own: its connections share one limit."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    if header_timeout <= 0 or idle_timeout <= 0:
        from visent.core.errors import UsageError

        raise UsageError(f"the header and idle timeouts must be above 0 s (got {header_timeout}, {idle_timeout})")
    guard = _Guard(int(max_connections), float(header_timeout), float(idle_timeout))

    class GuardedH11Protocol(H11Protocol):
        __doc__ = guarded_protocol.__doc__
        limits = guard

        # connection ------------------------------------------------------------------------------------
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            self._timer: Any = None
            self._request: Any = None  # the request being answered (uvicorn's cycle), None while waiting for one
            self._partial = False  # bytes of a request arrived since it began waiting
            self._last_io = self.loop.time()
            self._write_paused_at: float | None = None
            super().connection_made(transport)
            guard.open.add(self)
            if len(guard.open) > guard.max_connections and not guard.evict(self):
                guard.refused += 1
                guard.open.discard(self)
                log.warning("visent serve: %d connections open, every one busy: a new one gets 503",
                            guard.max_connections)
                transport.write(_raw_response(
                    503, "Service Unavailable",
                    f"visent serve is answering {guard.max_connections} connections, its limit: retry in a few "
                    "seconds", {"retry-after": str(RETRY_AFTER)}))
                transport.close()
                return
            self._wait_for_request()

        def connection_lost(self, exc: Exception | None) -> None:
            self._forget()
            super().connection_lost(exc)

        def drop(self) -> None:
            """Close this connection now (it is idle: evicted, or past a timeout)."""
            self._forget()
            if not self.transport.is_closing():
                self.transport.close()

        def _forget(self) -> None:
            guard.open.discard(self)
            guard.waiting.pop(self, None)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _arm(self, delay: float, callback: Any) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(max(0.0, delay), callback)

        # waiting for a request's headers ---------------------------------------------------------------
        def _wait_for_request(self) -> None:
            self._request, self._partial = None, False
            guard.waiting.pop(self, None)
            guard.waiting[self] = None  # the longest waiting first
            self._arm(guard.header_timeout, self._headers_late)

        def _headers_late(self) -> None:
            self._timer = None
            if self.transport.is_closing() or self._request is not None:
                return
            guard.timed_out += 1
            if self._partial:
                self.transport.write(_raw_response(
                    408, "Request Timeout", f"the request's headers did not arrive within {guard.header_timeout:g} s: "
                                            "send the whole request at once"))
            self.drop()

        def _started(self) -> None:
            """A request's headers are complete: it is answered now, and only the idle timeout applies."""
            self._request = self.cycle
            guard.waiting.pop(self, None)
            self._arm(guard.idle_timeout, self._idle_check)

        def _check_started(self, before: Any) -> None:
            if self.cycle is not None and self.cycle is not before and not self.transport.is_closing():
                self._started()

        def data_received(self, data: bytes) -> None:
            self._last_io = self.loop.time()
            if self._request is None:
                self._partial = True
            before = self.cycle
            super().data_received(data)
            self._check_started(before)

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if self.cycle is not before:  # a pipelined request, already parsed
                self._started()
            else:
                self._wait_for_request()

        # a request in progress -------------------------------------------------------------------------
        def pause_writing(self) -> None:
            self._write_paused_at = self.loop.time()
            super().pause_writing()

        def resume_writing(self) -> None:
            self._write_paused_at = None
            self._last_io = self.loop.time()
            super().resume_writing()

        def _idle_check(self) -> None:
            """Close a client that moves no byte for ``idle_timeout`` while it sends its body or reads the answer;
            the time the model takes does not count."""
            self._timer = None
            cycle = self._request
            if self.transport.is_closing() or cycle is None or cycle is not self.cycle or cycle.response_complete:
                return
            now = self.loop.time()
            stalled = None
            if cycle.more_body:
                stalled = now - self._last_io
            elif self._write_paused_at is not None:
                stalled = now - self._write_paused_at
            if stalled is not None and stalled >= guard.idle_timeout:
                guard.timed_out += 1
                log.info("visent serve: closed a connection idle for %.0f s in the middle of a request", stalled)
                self.drop()
                return
            self._arm(guard.idle_timeout - (stalled or 0.0), self._idle_check)

    return GuardedH11Protocol
