"""``visent serve``'s server: :func:`serve` runs the app with uvicorn on the socket of :func:`bind`.

Before it listens, :func:`serve` scores a small grey image through the very path /predict takes
(``VisentModel.check``): a damaged model directory is a one-line :class:`visent.model.ModelError`, never a service
whose ``/health`` says ok and whose every /predict fails. Slow and idle clients are held to a header timeout, an
idle timeout and a connection limit sized to the process's descriptors (:mod:`visent.serve.connections`).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path
from typing import Any

from visent.core.errors import VisentError
from visent.serve.app import DEFAULT_MAX_FILES, AdmissionMiddleware, create_app
from visent.serve.connections import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KEEP_ALIVE,
    DEFAULT_MAX_CONNECTIONS,
    MAX_HEADER_BYTES,
    connection_budget,
    guarded_protocol,
)

__all__ = ["ServerError", "bind", "serve"]

log = logging.getLogger("visent.serve")


def serve(model: Any, host: str = "127.0.0.1", port: int = 8000, *, sock: socket.socket | None = None,
          max_connections: int | None = None, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
          idle_timeout: float = DEFAULT_IDLE_TIMEOUT, check: bool = True, **limits: Any) -> None:
    """Serve ``model`` (a loaded model, a model directory or ``"default"``) until interrupted, on ``sock`` (from
    :func:`bind`; by default bound here to ``host`` and ``port``).

    With ``check`` the model first scores a small grey image as /predict would (``VisentModel.check``): a model
    that cannot is a :class:`visent.model.ModelError` and nothing listens. ``max_connections`` (default 1000, and
    never more than the descriptor limit allows), ``header_timeout`` and ``idle_timeout`` (seconds) hold slow and
    idle clients (:mod:`visent.serve.connections`). ``limits`` are ``create_app``'s: ``max_upload_bytes``,
    ``max_pixels``, ``max_files``, ``formats``, ``max_concurrent``, ``max_queued``; and for the labelling mode
    ``label_pool``, ``labels_file``, ``label_strategy``, ``label_n`` and ``seed``.
    """
    import uvicorn

    os.environ.setdefault("VISENT_PROGRESS", "0")  # a service logs its requests, not progress bars
    if isinstance(model, (str, Path)):
        from visent.model import VisentModel

        model = VisentModel.load(model)
    if check and hasattr(model, "check"):
        model.check()
    app = create_app(model, **limits)
    admitted = next(m.kwargs["limit"] for m in app.user_middleware if m.cls is AdmissionMiddleware)
    budget = connection_budget(max_connections, requests=admitted,
                               per_request=2 * int(limits.get("max_files") or DEFAULT_MAX_FILES) + 2)
    if budget.max_connections < int(max_connections or DEFAULT_MAX_CONNECTIONS):
        log.warning("visent serve: at most %d connections at once, as the process may open %s files; raise "
                    "`ulimit -n` for more", budget.max_connections, budget.descriptor_limit)
    sock = sock or bind(host, port)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info",
        http=guarded_protocol(budget.max_connections, header_timeout, idle_timeout),
        timeout_keep_alive=DEFAULT_KEEP_ALIVE, backlog=budget.backlog,
        # the guarded protocol keeps the connections under the limit; uvicorn's own 503 is the backstop
        limit_concurrency=budget.max_connections + 2 * budget.backlog + 1,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    uvicorn.Server(config).run(sockets=[sock])


class ServerError(VisentError, RuntimeError):
    """``visent serve`` cannot listen where it was asked to, or in the background it exited or did not answer in
    time (the message holds its log)."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host`` and ``port`` for :func:`serve` (uvicorn listens on it). A port in use, one that
    needs privileges or a host that is not this machine's is a :class:`ServerError` naming the port and what to do,
    raised before the service is announced."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ServerError(f"--host {host}: no such address ({exc.strerror}); use 127.0.0.1 (this machine only) or "
                          "0.0.0.0 (every interface)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port just freed is free
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            free = _free_port_near(host, port)
            another = f"--port {free}" if free else "--port"
            raise ServerError(f"port {port} on {host} is already in use (another visent serve or another server): "
                              f"stop that, or choose another port with {another}") from None
        if exc.errno == errno.EACCES:
            raise ServerError(f"port {port} on {host} needs administrator rights: choose a port above 1023 with "
                              "--port, e.g. --port 8000") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ServerError(f"--host {host}: not an address of this machine; use 127.0.0.1 (this machine only) or "
                              "0.0.0.0 (every interface)") from None
        raise ServerError(f"cannot listen on {host} port {port} ({exc.strerror or exc}): choose another --host or "
                          "--port") from None
    return sock


def _free_port_near(host: str, port: int, tries: int = 20) -> int | None:
    """The first of the ports after ``port`` that can be bound on ``host`` now, to suggest instead."""
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        try:
            bind(host, candidate).close()
        except ServerError:
            continue
        return candidate
    return None
