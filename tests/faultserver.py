"""A fault-injecting HTTP server on 127.0.0.1 for download tests and benchmarks.

Every path names the fault it serves::

    /ok/<n>.jpg          a valid JPEG, the same bytes for the same n (``?delay=S`` waits S s first)
    /redirect/<n>        302 to /ok/<n>.jpg
    /flaky/<n>           500 on the first request for that path (and query), then /ok/<n>.jpg's bytes
    /wrongtype/<n>.jpg   /ok/<n>.jpg's bytes announced as text/html
    /slow                waits ``slow_s`` seconds before answering (past a client's timeout)
    /reset               reads the request, then resets the connection (SO_LINGER 0)
    /403, /404, /500     that status, a short text body
    /429                 429 with ``Retry-After: 0``; /429/long says ``Retry-After: 3600``, /429/date an HTTP date a year ahead
    /html                an HTML page as text/html (``?type=image/jpeg``: announced as that type)
    /truncated.jpg       the first two thirds of a JPEG
    /endless/fast        a body with no length that never ends (until the client hangs up)
    /endless/slow        a body with no length that trickles one byte every 50 ms, forever
    /huge                announces a Content-Length of 1 TB
    /huge/streamed       a body with no length of ``huge_bytes`` bytes
    /loop                a redirect loop: /loop → /loop/next → /loop → ...

Use it as a context manager (it stops, and its threads end, with the block)::

    with FaultServer() as server:
        fetch(server.url("/reset"))
        server.hits["/reset"], server.max_active

or run ``python tests/faultserver.py [--images N --kind photo]`` to serve in a process of its
own: it prints its base URL on the first line of stdout and serves until it is terminated.
Nothing here reaches beyond 127.0.0.1, and every endless answer is bounded in time and bytes.
"""

from __future__ import annotations

import argparse
import collections
import email.utils
import functools
import io
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

ENDLESS_LIMIT_S = 30.0       # an "endless" body stops after this long ...
ENDLESS_LIMIT_BYTES = 1 << 28  # ... or this many bytes, whichever comes first

# answers whose server side outlives a client that gave up: left out of ``max_active``
LINGERING = ("/slow", "/endless/", "/huge/streamed")

FAULTS = ("/redirect/{n}", "/flaky/{n}", "/wrongtype/{n}.jpg", "/slow", "/reset", "/404", "/500", "/429",
          "/429/long", "/429/date", "/html", "/truncated.jpg", "/endless/fast", "/endless/slow", "/huge", "/huge/streamed",
          "/loop")


@functools.lru_cache(maxsize=4096)
def jpeg(n: int, kind: str = "small") -> bytes:
    """The JPEG served as /ok/<n>.jpg: deterministic per ``n``.

    ``small`` is a 32×24 flat image of a few hundred bytes; ``photo`` is a 320×240 image with
    smooth gradients and grain, 30-100 KB like a web photo.
    """
    rng = np.random.default_rng(n)
    if kind == "small":
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        image = Image.new("RGB", (32, 24), color)
        quality = 90
    elif kind == "photo":
        h, w = 240, 320
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        a, b, c = rng.uniform(0.01, 0.06, 3)
        base = np.stack([np.sin(x * a + n), np.cos(y * b), np.sin((x + y) * c)], axis=-1) * 90 + 128
        grain = rng.normal(0, rng.uniform(12, 30), (h, w, 3))
        image = Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), "RGB")
        quality = 88
    else:
        raise ValueError(f"unknown image kind {kind!r}; choose small or photo")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = jpeg(7, "photo")
    return data[: len(data) * 2 // 3]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for the answers that have a length
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (delayed ACK)
    server: _Server

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain",
              headers: dict[str, str] | None = None, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, chunk: bytes, pause: float) -> None:
        """A body without a length, sent until the client hangs up or the bounds are reached."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        sent, end = 0, time.monotonic() + ENDLESS_LIMIT_S
        try:
            while sent < ENDLESS_LIMIT_BYTES and time.monotonic() < end and not self.server.stopping.is_set():
                self.wfile.write(chunk)
                self.wfile.flush()
                sent += len(chunk)
                if pause:
                    time.sleep(pause)
        except OSError:  # the client gave up, as it should
            pass

    def do_GET(self) -> None:
        server = self.server
        path = urlsplit(self.path).path
        query = parse_qs(urlsplit(self.path).query)
        counted = not path.startswith(LINGERING)
        with server.lock:  # counted by the whole request path, query included
            server.hits[self.path] += 1
            hits = server.hits[self.path]
            if counted:
                server.active += 1
                server.max_active = max(server.max_active, server.active)
        try:
            self._route(path, query, hits)
        finally:
            if counted:
                with server.lock:
                    server.active -= 1

    def _route(self, path: str, query: dict[str, list[str]], hits: int) -> None:
        server = self.server
        parts = path.strip("/").split("/")
        head, tail = parts[0], parts[1:]
        number = _number(tail[0]) if tail else None
        if head == "ok" and number is not None:
            delay = float(query.get("delay", ["0"])[0])
            if delay:
                time.sleep(min(delay, 5.0))
            self._send(200, server.image(number), "image/jpeg")
        elif head == "redirect" and number is not None:
            self._send(302, headers={"Location": f"/ok/{number}.jpg"})
        elif head == "flaky" and number is not None:
            if hits == 1:
                self._send(500, b"try again")
            else:
                self._send(200, server.image(number), "image/jpeg")
        elif head == "wrongtype" and number is not None:
            self._send(200, server.image(number), "text/html; charset=utf-8")
        elif path == "/slow":
            server.stopping.wait(server.slow_s)
            self._send(200, server.image(0), "image/jpeg")
        elif path == "/reset":
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif path in ("/403", "/404", "/500"):
            self._send(int(path[1:]), b"fault server: " + path[1:].encode())
        elif path == "/429":
            self._send(429, b"slow down", headers={"Retry-After": "0"})
        elif path == "/429/long":
            self._send(429, b"slow down", headers={"Retry-After": "3600"})
        elif path == "/429/date":  # an HTTP date a year from now: the wait it asks changes with the clock
            self._send(429, b"slow down", headers={"Retry-After": email.utils.formatdate(time.time() + 365 * 86400,
                                                                                       usegmt=True)})
        elif path == "/html":
            self._send(200, b"<!doctype html><html><body>not a photo</body></html>",
                       query.get("type", ["text/html; charset=utf-8"])[0])
        elif path == "/truncated.jpg":
            self._send(200, truncated_jpeg(), "image/jpeg")
        elif path == "/endless/fast":
            self._stream(b"\xff" * 65536, 0.0)
        elif path == "/endless/slow":
            self._stream(b"\xff", 0.05)
        elif path == "/huge":
            self.close_connection = True
            self._send(200, b"\xff\xd8", "image/jpeg", length=10**12)
        elif path == "/huge/streamed":
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(server.huge_bytes // 65536 + 1):
                    self.wfile.write(b"\xff" * 65536)
            except OSError:
                pass
        elif path == "/loop":
            self._send(302, headers={"Location": "/loop/next"})
        elif path == "/loop/next":
            self._send(302, headers={"Location": "/loop"})
        else:
            self._send(404, b"fault server: no such path")


def _number(text: str) -> int | None:
    stem = text.split(".")[0]
    return int(stem) if stem.isdigit() else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: object, client_address: object) -> None:  # clients that give up are expected
        pass


class FaultServer:
    """The fault server on 127.0.0.1 at a free port; a context manager.

    ``slow_s``: how long /slow waits; ``huge_bytes``: the size of /huge/streamed; ``kind``: the
    images of /ok/<n>.jpg (see :func:`jpeg`). ``hits`` counts requests per path with its query
    (``?t=...`` keeps one test's counts apart from another's), ``max_active`` is
    the most requests that were ever in progress at once (not counting the answers of
    :data:`LINGERING`, which go on after the client hung up) (``reset_counts`` starts both afresh).
    """

    def __init__(self, *, slow_s: float = 2.0, huge_bytes: int = 64 << 20, kind: str = "small"):
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd = self._httpd
        httpd.lock = threading.Lock()
        httpd.hits = collections.Counter()
        httpd.active = 0
        httpd.max_active = 0
        httpd.slow_s = slow_s
        httpd.huge_bytes = huge_bytes
        httpd.stopping = threading.Event()
        httpd.image = functools.partial(jpeg, kind=kind)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def hits(self) -> collections.Counter:
        return self._httpd.hits

    @property
    def max_active(self) -> int:
        return self._httpd.max_active

    def reset_counts(self) -> None:
        with self._httpd.lock:
            self._httpd.hits.clear()
            self._httpd.max_active = self._httpd.active

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fault server in this process until terminated.")
    parser.add_argument("--kind", default="small", choices=["small", "photo"])
    parser.add_argument("--images", type=int, default=0, help="make /ok/0..N-1 before serving")
    parser.add_argument("--slow", type=float, default=2.0)
    args = parser.parse_args(argv)
    server = FaultServer(slow_s=args.slow, kind=args.kind)
    for n in range(args.images):
        server._httpd.image(n)
    print(server.base, flush=True)
    try:
        server._httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()


if __name__ == "__main__":
    main(sys.argv[1:])
