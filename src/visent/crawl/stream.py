"""Sources of Bluesky events over WebSocket, and the loop that keeps one connected for days.

A :class:`Source` knows its wire: the URL to ask with a cursor, how to parse a frame into
:class:`~visent.crawl.events.Event` records, and where to resume after a position. :func:`frames` yields the frames
of a source for as long as it is asked, reconnecting on every failure (a dropped connection, a timeout, a server
error, a handshake refused) with exponential backoff and jitter, moving to the next endpoint each time, from the
cursor the caller gives at that moment. Nothing a server does ends the loop: it is counted and the loop goes on.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import urlencode, urlsplit

from visent.crawl.events import POST, Event, FrameError, parse_jetstream, parse_subscribe_events

# Bluesky's public Jetstream instances (docs.bsky.app, "Jetstream"); their v1 cursors are timestamps, so a crawl
# moves between them without a gap
JETSTREAM_HOSTS = (
    "wss://jetstream1.us-east.bsky.network/subscribe",
    "wss://jetstream2.us-east.bsky.network/subscribe",
    "wss://jetstream1.us-west.bsky.network/subscribe",
    "wss://jetstream2.us-west.bsky.network/subscribe",
)
SUBSCRIBE_EVENTS = "network.bsky.jetstream.subscribeEvents"
# A v1 resume asks for the stream from 0.1 s before the latest event handled: live events arrive a few ms out of
# time_us order (3 ms in the captured window); what comes again is recognised and dropped
REPLAY_US = 100_000
MAX_FRAME = 4 * 1024 * 1024  # larger frames close the connection (a post record is a few kB)


@dataclass
class Source:
    """A stream of events: its ``name`` (as ``--source`` says it), its endpoints, and its wire."""

    name: str
    endpoints: tuple[str, ...]
    parse: Callable[[str | bytes], list[Event]]
    url: Callable[[str, int | None], str]
    resume: Callable[[int], int]  # the cursor to ask for once the event at this position has been handled


def with_query(endpoint: str, params: list[tuple[str, Any]]) -> str:
    """``endpoint`` with ``params`` added to its query string."""
    joiner = "&" if urlsplit(endpoint).query else "?"
    return f"{endpoint}{joiner}{urlencode(params)}"


def jetstream(endpoints: tuple[str, ...] = JETSTREAM_HOSTS) -> Source:
    """Jetstream: the v1 ``/subscribe`` JSON stream (cursor: ``time_us``), or the ``subscribeEvents`` JSON frames
    (cursor: ``seq``, inclusive) when an endpoint's path names ``network.bsky.jetstream.subscribeEvents``. Only
    ``app.bsky.feed.post`` commits are asked for."""
    xrpc = [SUBSCRIBE_EVENTS in urlsplit(e).path for e in endpoints]
    if any(xrpc) and not all(xrpc):
        raise ValueError("endpoints mix Jetstream's v1 /subscribe and subscribeEvents: their cursors differ")
    if all(xrpc):
        return Source(
            "jetstream", endpoints, lambda frame: [parse_subscribe_events(frame)],
            lambda e, c: with_query(e, [("collections", POST), ("kinds", "commit")]
                                     + ([("cursor", c)] if c is not None else [])),
            lambda position: position)
    return Source(
        "jetstream", endpoints, lambda frame: [parse_jetstream(frame)],
        lambda e, c: with_query(e, [("wantedCollections", POST)] + ([("cursor", c)] if c is not None else [])),
        lambda position: max(0, position - REPLAY_US))


@dataclass
class Connection:
    """What :func:`frames` did, for the crawl's summary: connections made, failures by kind, the last one."""

    connects: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    last_failure: str = ""
    endpoint: str = ""

    def fail(self, kind: str, detail: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self.last_failure = f"{kind}: {detail}"[:300]


class Reconnect(Exception):
    """Raised by the frame consumer to drop the connection and connect again (e.g. after a server error frame)."""


def _failure(exc: BaseException) -> tuple[str, str]:
    """A stable kind and a detail for a connection failure."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}", (exc.response.body or b"")[:200].decode("utf-8", "replace")
    if isinstance(exc, InvalidHandshake):
        return "handshake refused", str(exc)
    if isinstance(exc, ConnectionClosed):
        return "connection closed", str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", str(exc) or "no frame in time"
    if isinstance(exc, Reconnect):
        return "server error", str(exc)
    return type(exc).__name__, str(exc)


def frames(source: Source, cursor: Callable[[], int | None], *, state: Connection, idle_timeout: float = 60.0,
           open_timeout: float = 15.0, backoff: float = 0.5, max_backoff: float = 60.0,
           deadline: float | None = None, rng: random.Random | None = None) -> Iterator[str | bytes]:
    """The frames of ``source`` until the caller stops asking (or ``deadline``, a ``time.monotonic()`` value,
    passes): connects to its endpoints in turn, from ``cursor()`` as it is at each connection, and reconnects after
    any failure with backoff (``backoff`` × 2^failures, at most ``max_backoff``, jittered ±50%). A connection that
    delivered frames resets the backoff. The consumer may throw :class:`Reconnect` into the generator."""
    from websockets.sync.client import connect

    rng = rng or random.Random()
    failures = 0
    turn = 0
    while deadline is None or time.monotonic() < deadline:
        endpoint = source.endpoints[turn % len(source.endpoints)]
        state.endpoint = endpoint
        delivered = False
        try:
            with connect(source.url(endpoint, cursor()), open_timeout=open_timeout, close_timeout=1,
                         max_size=MAX_FRAME, user_agent_header="visent-crawl") as ws:
                state.connects += 1
                while True:
                    wait = idle_timeout if deadline is None else max(0.01, min(idle_timeout,
                                                                               deadline - time.monotonic()))
                    try:
                        frame = ws.recv(timeout=wait)
                    except TimeoutError:
                        if deadline is not None and time.monotonic() >= deadline:
                            return
                        raise
                    delivered = True
                    failures = 0
                    yield frame
        except Exception as exc:  # noqa: BLE001 - every failure reconnects (Ctrl-C and close() are not Exceptions)
            state.fail(*_failure(exc))
        failures = 0 if delivered else failures + 1
        turn += 1
        delay = min(max_backoff, backoff * (2 ** min(failures, 16))) * rng.uniform(0.5, 1.5) if failures else 0.0
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - time.monotonic()))
        time.sleep(delay)


def parse_frame(source: Source, frame: str | bytes) -> list[Event]:
    """The events of a frame; raises :class:`FrameError` for a frame that is not one."""
    try:
        return source.parse(frame)
    except FrameError:
        raise
    except Exception as exc:  # noqa: BLE001 - a hostile frame must not end the crawl
        raise FrameError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
