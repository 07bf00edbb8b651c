"""``visent serve``: a model over HTTP, with a web page to drop images on.

``create_app(model, ...)`` builds the FastAPI app (``POST /predict``, ``POST /explain``, ``GET /health``,
``GET /`` the page, ``/docs``); ``serve(model, host, port, ...)`` runs it with uvicorn; ``background(model)`` runs
the ``visent serve`` command in a process of its own for as long as a ``with`` block (tests, benchmarks, scripts).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from visent.core.errors import VisentError
from visent.serve.app import create_app


def serve(model: Any, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> None:
    """Serve ``model`` (a loaded model, a model directory or ``"default"``) until interrupted.

    ``limits`` are ``create_app``'s: ``max_upload_bytes``, ``max_pixels``, ``max_files``, ``formats``.
    """
    import os

    import uvicorn

    os.environ.setdefault("VISENT_PROGRESS", "0")  # a service logs its requests, not progress bars
    uvicorn.run(create_app(model, **limits), host=host, port=port, log_level="info")


class ServerError(VisentError, RuntimeError):
    """``visent serve`` in the background exited or did not answer in time; the message holds its log."""


@contextlib.contextmanager
def background(model: str, *, host: str = "127.0.0.1", port: int | None = None, options: Sequence[str] = (),
               env: dict[str, str] | None = None, log: str | os.PathLike[str] | None = None,
               timeout: float = 120.0) -> Iterator[str]:
    """Run ``visent serve MODEL`` as a process of its own (as a user would) and yield its base URL once ``/health``
    answers; the process is stopped on leaving, whatever happened. ``port`` defaults to a free one; ``options`` are
    further command-line options (``["--max-files", "4"]``); the output goes to ``log`` (default: discarded)."""
    import httpx

    port = port or _free_port(host)
    command = [sys.executable, "-m", "visent", "serve", str(model), "--host", host, "--port", str(port), *options]
    with open(log, "wb") if log else open(os.devnull, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
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


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


__all__ = ["ServerError", "background", "create_app", "serve"]
