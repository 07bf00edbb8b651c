"""Image fetching against a local HTTP server on 127.0.0.1 (no network needed)."""

from __future__ import annotations

import collections
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from visent import Dataset
from visent.ingest import ImageFetcher, ingest, sniff_image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (32, 24), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


JPEG = image_bytes()
NOISY = Image.effect_noise((64, 64), 80).convert("RGB")
PNG = image_bytes("PNG", color=(10, 120, 200))
BIG = 5_000


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", ctype: str = "image/jpeg", length: bool = True,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        hits = self.server.hits
        hits[self.path] += 1
        route = self.path.split("?")[0]
        if route == "/ok.jpg":
            self._send(200, JPEG)
        elif route == "/photo.png":
            self._send(200, PNG, ctype="image/jpeg")  # wrong content type: bytes decide
        elif route == "/missing":
            self._send(404, b"not found", ctype="text/plain")
        elif route == "/forbidden":
            self._send(403, b"no", ctype="text/plain")
        elif route == "/slow":
            time.sleep(1.0)
            self._send(200, JPEG)
        elif route == "/flaky":
            if hits[self.path] <= 2:
                self._send(503, b"busy", ctype="text/plain")
            else:
                self._send(200, JPEG)
        elif route == "/ratelimit":
            if hits[self.path] == 1:
                self._send(429, b"slow down", ctype="text/plain", headers={"Retry-After": "0"})
            else:
                self._send(200, JPEG)
        elif route == "/ratelimit-long":
            self._send(429, b"slow down", ctype="text/plain", headers={"Retry-After": "3600"})
        elif route == "/page.html":
            self._send(200, b"<!doctype html><html><body>hi</body></html>", ctype="text/html; charset=utf-8")
        elif route == "/big-declared":
            self._send(200, b"\xff" * (BIG + 1))
        elif route == "/big-streamed":
            self._send(200, b"\xff" * (BIG * 4), length=False)  # no Content-Length: cut while streaming
        elif route == "/truncated.jpg":
            buffer = io.BytesIO()
            NOISY.save(buffer, "JPEG")
            self._send(200, buffer.getvalue()[: buffer.tell() * 2 // 3])
        elif route == "/redirect":
            self._send(302, b"", headers={"Location": "/ok.jpg"})
        else:
            self._send(404, b"", ctype="text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that gave up is expected
        pass


@pytest.fixture(scope="module")
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.hits = collections.Counter()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.fixture
def fetcher():
    with ImageFetcher(workers=4, timeout=0.3, retries=2, max_bytes=BIG, backoff=0.01) as f:
        yield f


def test_download_ok_keeps_bytes_as_served(server, fetcher):
    got = fetcher.fetch(url(server, "/ok.jpg?t=ok"))
    assert got.ok and got.data == JPEG and got.ext == "jpg" and got.reason == ""


def test_format_comes_from_bytes_not_content_type(server, fetcher):
    got = fetcher.fetch(url(server, "/photo.png?t=sniff"))
    assert got.ok and got.ext == "png" and got.data == PNG


def test_404_and_403_are_not_retried(server, fetcher):
    for path in ("/missing?t=nr", "/forbidden?t=nr"):
        got = fetcher.fetch(url(server, path))
        assert not got.ok and got.data is None
        assert got.reason == f"HTTP {404 if 'missing' in path else 403}"
        assert server.hits[path] == 1


def test_timeout_is_retried_then_reported(server, fetcher):
    start = time.monotonic()
    got = fetcher.fetch(url(server, "/slow?t=timeout"))
    assert not got.ok and got.reason == "timeout after 3 tries"
    assert server.hits["/slow?t=timeout"] == 3
    assert time.monotonic() - start < 3.0


def test_flaky_server_is_retried_until_it_answers(server, fetcher):
    got = fetcher.fetch(url(server, "/flaky?t=flaky"))
    assert got.ok and got.data == JPEG
    assert server.hits["/flaky?t=flaky"] == 3


def test_5xx_reported_after_last_try(server):
    with ImageFetcher(timeout=0.3, retries=1, backoff=0.01) as f:
        got = f.fetch(url(server, "/flaky?t=giveup"))
    assert got.reason == "HTTP 503 after 2 tries"


def test_retry_after_is_honoured_when_small_and_ends_when_long(server, fetcher):
    assert fetcher.fetch(url(server, "/ratelimit?t=ra")).ok
    assert server.hits["/ratelimit?t=ra"] == 2
    got = fetcher.fetch(url(server, "/ratelimit-long?t=ra"))
    assert got.reason == "HTTP 429 (asked to retry after 3600 s)"
    assert server.hits["/ratelimit-long?t=ra"] == 1


def test_html_body_is_not_an_image(server, fetcher):
    assert fetcher.fetch(url(server, "/page.html?t=html")).reason == "not an image (text/html)"


@pytest.mark.parametrize("path", ["/big-declared", "/big-streamed"])
def test_size_cap(server, fetcher, path):
    got = fetcher.fetch(url(server, path + "?t=big"))
    assert not got.ok and got.reason == f"larger than {BIG} bytes"


def test_truncated_image_is_corrupt(server, fetcher):
    got = fetcher.fetch(url(server, "/truncated.jpg?t=trunc"))
    assert not got.ok and got.reason.startswith("corrupt JPEG image (image file is truncated")


def test_broken_header_is_corrupt():
    assert sniff_image(JPEG[:40]) == (None, "corrupt image (Truncated File Read)")


def test_redirect_is_followed(server, fetcher):
    assert fetcher.fetch(url(server, "/redirect?t=redir")).data == JPEG


def test_connection_refused_is_reported():
    with _Server(("127.0.0.1", 0), _Handler) as closed:
        port = closed.server_address[1]
    with ImageFetcher(timeout=0.5, retries=1, backoff=0.01) as f:
        got = f.fetch(f"http://127.0.0.1:{port}/ok.jpg")
    assert got.reason == "connection failed (ConnectError) after 2 tries"


def test_local_files(tmp_path, fetcher):
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "notes.jpg").write_text("just text")
    (tmp_path / "huge.jpg").write_bytes(b"\xff" * (BIG + 1))
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert fetcher.fetch("a.png", tmp_path).ext == "png"
    assert fetcher.fetch(str(tmp_path / "a.png")).data == PNG
    assert fetcher.fetch((tmp_path / "a.png").as_uri()).ext == "png"
    assert fetcher.fetch("notes.jpg", tmp_path).reason == "not an image (text/plain)"
    assert fetcher.fetch("huge.jpg", tmp_path).reason == f"larger than {BIG} bytes"
    assert fetcher.fetch("empty.jpg", tmp_path).reason == "empty file"
    assert fetcher.fetch("gone.jpg", tmp_path).reason == "image file not found (gone.jpg)"
    assert fetcher.fetch(".", tmp_path).reason == "not a file (.)"
    assert fetcher.fetch("ftp://example.org/a.jpg").reason == "unsupported URL scheme 'ftp'"


def test_sniff_image_formats():
    assert sniff_image(image_bytes("GIF")) == ("gif", "")
    assert sniff_image(image_bytes("WEBP")) == ("webp", "")
    assert sniff_image(b"\x00\x01binary\xff\xfe") == (None, "not an image (unknown binary data)")


def test_ingest_downloads_urls_concurrently(server, tmp_path):
    lines = [
        {"id": "a", "text": "sunny day", "image_url": url(server, "/ok.jpg?t=ing")},
        {"id": "b", "text": "gone", "image_url": url(server, "/missing?t=ing")},
        {"id": "c", "text": "rate limited", "image_url": url(server, "/ratelimit?t=ing")},
        {"id": "d", "text": "web page", "image_url": url(server, "/page.html?t=ing")},
        {"id": "e", "text": "same bytes", "image_url": url(server, "/redirect?t=ing")},
    ]
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    counts = ingest(source, tmp_path / "ds", workers=4, timeout=2.0, retries=2, batch_size=2)
    assert counts == {"posts": 5, "ok": 3, "error": 2, "images": 1, "with_human_labels": 0}
    rows = {r["post_id"]: r for r in Dataset(tmp_path / "ds").read_table("posts").to_pylist()}
    assert list(rows) == ["a", "b", "c", "d", "e"]
    assert rows["b"]["ingest_reason"] == "HTTP 404"
    assert rows["d"]["ingest_reason"] == "not an image (text/html)"
    assert rows["a"]["image_sha256"] == rows["c"]["image_sha256"] == rows["e"]["image_sha256"]
    stored = Dataset(tmp_path / "ds").image_path(rows["a"]["image_file"])
    assert stored.read_bytes() == JPEG and rows["a"]["image_ref"] == lines[0]["image_url"]
