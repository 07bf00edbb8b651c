"""``visent serve`` in a process of its own for as long as a ``with`` block: :func:`background` (tests,
benchmarks, scripts)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from visent.serve.server import ServerError

__all__ = ["background"]


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
        soft_and_hard = (files, files if hard == resource.RLIM_INFINITY else min(files, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, soft_and_hard)

    return limit


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
