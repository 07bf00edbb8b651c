"""``visent serve``: a model over HTTP, with a web page to drop images on.

``create_app(model, ...)`` builds the FastAPI app (``POST /predict``, ``POST /explain``, ``GET /health``,
``GET /`` the page, ``/docs``; with a pool of images to label, ``GET /label/next``, ``GET /label/image/{rank}`` and
``POST /label``: :mod:`visent.serve.labelling`); ``serve(model, host, port, ...)`` runs it with uvicorn on the socket of
``bind(host, port)`` (a port in use is a clear error before anything is announced); ``background(model)`` runs
the ``visent serve`` command in a process of its own for as long as a ``with`` block (tests, benchmarks, scripts).

Before it listens, ``serve`` scores a small grey image through the very path /predict takes
(``VisentModel.check``): a damaged model directory is a one-line :class:`visent.model.ModelError`, never a service
whose ``/health`` says ok and whose every /predict fails. Slow and idle clients are held to a header timeout, an
idle timeout and a connection limit sized to the process's descriptors (:mod:`visent.serve.connections`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from visent.core.errors import VisentError
from visent.serve.app import DEFAULT_MAX_FILES, AdmissionMiddleware, create_app
from visent.serve.connections import (DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_KEEP_ALIVE,
                                      DEFAULT_MAX_CONNECTIONS, MAX_HEADER_BYTES, connection_budget, guarded_protocol)

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


@contextlib.contextmanager
def background(model: str, *, host: str = "127.0.0.1", port: int | None = None, options: Sequence[str] = (),
               env: dict[str, str] | None = None, log: str | os.PathLike[str] | None = None,
               timeout: float = 120.0, max_open_files: int | None = None) -> Iterator[str]:
    """Run ``visent serve MODEL`` as a process of its own (as a user would) and yield its base URL once ``/health``
    answers; the process is stopped on leaving, whatever happened. ``port`` defaults to a free one; ``options`` are
    further command-line options (``["--max-files", "4"]``); the output goes to ``log`` (default: discarded).
    ``max_open_files`` sets the process's descriptor limit (``ulimit -n``), as a small server's would be."""
    import httpx

    port = port or _free_port(host)
    command = [sys.executable, "-m", "visent", "serve", str(model), "--host", host, "--port", str(port), *options]
    with open(log, "wb") if log else open(os.devnull, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})},
                                   preexec_fn=None if max_open_files is None else _file_limit(max_open_files))
    url = f"http://{host}:{port}"

    def failure(what: str) -> ServerError:
        text = Path(log).read_text(errors="replace")[-4000:] if log else "(give log=PATH to keep its output)"
        return ServerError(f"visent serve {what}:\n{text}")

    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise failure(f"exited with {process.returncode}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise failure(f"did not answer /health within {timeout:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _file_limit(files: int) -> Any:
    """What runs in a child process before ``visent serve`` starts: its descriptor limit set to ``files``."""
    def limit() -> None:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files if hard == resource.RLIM_INFINITY else min(files, hard)))

    return limit


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _free_port_near(host: str, port: int, tries: int = 20) -> int | None:
    """The first of the ports after ``port`` that can be bound on ``host`` now, to suggest instead."""
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        try:
            bind(host, candidate).close()
        except ServerError:
            continue
        return candidate
    return None


__all__ = ["DEFAULT_HEADER_TIMEOUT", "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "ServerError", "background",
           "bind", "create_app", "serve"]
