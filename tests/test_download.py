"""Image fetching against the fault server on 127.0.0.1 (tests/faultserver.py; no network needed)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time

import pytest
from PIL import Image

from faultserver import FAULTS, FaultServer, jpeg, truncated_jpeg
from visent import Dataset
from visent.ingest import ImageFetcher, ingest, sniff_image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (32, 24), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


JPEG = image_bytes()
PNG = image_bytes("PNG", color=(10, 120, 200))
BIG = 5_000


@pytest.fixture(scope="module")
def server():
    with FaultServer(slow_s=2.0, huge_bytes=BIG * 4) as httpd:
        yield httpd


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def url(server, path: str) -> str:
    return server.url(path)


@pytest.fixture
def fetcher():
    # a timeout far above a local answer's time, even on a busy machine, and far below /slow's wait
    with ImageFetcher(workers=4, timeout=0.8, retries=2, max_bytes=BIG, backoff=0.01) as f:
        yield f


def test_download_ok_keeps_bytes_as_served(server, fetcher):
    got = fetcher.fetch(url(server, "/ok/1.jpg?t=ok"))
    assert got.ok and got.data == jpeg(1) and got.ext == "jpg" and got.reason == ""


def test_format_comes_from_bytes_not_content_type(server, fetcher):
    got = fetcher.fetch(url(server, "/wrongtype/2.jpg?t=sniff"))
    assert got.ok and got.ext == "jpg" and got.data == jpeg(2)


def test_404_and_403_are_not_retried(server, fetcher):
    for path in ("/404?t=nr", "/403?t=nr"):
        got = fetcher.fetch(url(server, path))
        assert not got.ok and got.data is None
        assert got.reason == f"HTTP {path[1:4]}"
        assert server.hits[path] == 1


@pytest.mark.slow
def test_timeout_is_retried_then_reported(server, fetcher):
    start = time.monotonic()
    got = fetcher.fetch(url(server, "/slow?t=timeout"))
    assert not got.ok and got.reason == "timeout after 3 tries"
    assert server.hits["/slow?t=timeout"] == 3
    assert time.monotonic() - start < 5.0


def test_flaky_server_is_retried_until_it_answers(server, fetcher):
    got = fetcher.fetch(url(server, "/flaky/3?t=flaky"))
    assert got.ok and got.data == jpeg(3)
    assert server.hits["/flaky/3?t=flaky"] == 2


def test_5xx_reported_after_last_try(server):
    with ImageFetcher(timeout=0.8, retries=1, backoff=0.01) as f:
        got = f.fetch(url(server, "/500?t=giveup"))
    assert got.reason == "HTTP 500 after 2 tries"
    assert server.hits["/500?t=giveup"] == 2


def test_retry_after_is_honoured_when_small_and_ends_when_long(server, fetcher):
    start = time.monotonic()
    assert fetcher.fetch(url(server, "/429?t=ra")).reason == "HTTP 429 after 3 tries"
    assert server.hits["/429?t=ra"] == 3
    assert time.monotonic() - start < 1.0  # Retry-After: 0 is honoured over the backoff
    got = fetcher.fetch(url(server, "/429/long?t=ra"))
    assert got.reason == "HTTP 429 (asked to retry later than the 30 s the crawl allows)"
    assert server.hits["/429/long?t=ra"] == 1
    # an HTTP date gives the same reason, not a number of seconds that changes with the clock
    assert fetcher.fetch(url(server, "/429/date?t=ra")).reason == got.reason


def test_backoff_grows_between_tries(server):
    with ImageFetcher(timeout=0.8, retries=2, backoff=0.1) as f:
        start = time.monotonic()
        assert f.fetch(url(server, "/500?t=backoff")).reason == "HTTP 500 after 3 tries"
    assert time.monotonic() - start >= 0.1 + 0.2  # at least backoff, then twice backoff


def test_html_body_is_not_an_image(server, fetcher):
    assert fetcher.fetch(url(server, "/html?t=html")).reason == "not an image (HTML)"
    assert server.hits["/html?t=html"] == 1
    # an error page announced as a JPEG is named by its bytes, not by what the server claims
    assert fetcher.fetch(url(server, "/html?t=lie&type=image/jpeg")).reason == "not an image (HTML)"


@pytest.mark.parametrize("path", ["/huge", "/huge/streamed", "/endless/fast"])
def test_size_cap(server, fetcher, path):
    got = fetcher.fetch(url(server, path + "?t=big"))
    assert not got.ok and got.reason == f"larger than {BIG} bytes"
    assert server.hits[path + "?t=big"] == 1


@pytest.mark.slow
def test_endless_slow_body_ends_at_the_deadline(server):
    with ImageFetcher(timeout=0.25, retries=2, backoff=0.01) as f:  # 1 byte every 50 ms: each read in time
        start = time.monotonic()
        got = f.fetch(url(server, "/endless/slow?t=slowbody"))
    assert got.reason == "too slow (body not complete within 2.5 s)"
    assert 2.5 <= time.monotonic() - start < 4.5
    assert server.hits["/endless/slow?t=slowbody"] == 1


def test_truncated_image_is_refused(server, fetcher):
    with ImageFetcher(timeout=0.8, retries=0) as f:
        got = f.fetch(url(server, "/truncated.jpg?t=trunc"))
    assert not got.ok and got.reason == "truncated JPEG image"
    assert sniff_image(truncated_jpeg())[1] == got.reason


def test_broken_header_is_truncated():
    assert sniff_image(JPEG[:40]) == (None, "truncated image")  # cut inside the header: the format is not known


def test_a_server_s_content_type_names_what_the_bytes_do_not():
    assert sniff_image(b"\x00\x01binary\xff\xfe", "application/octet-stream") == (
        None, "not an image (served as application/octet-stream)")
    assert sniff_image(b"<html>rate limited</html>", "image/jpeg") == (None, "not an image (HTML)")


def test_bytes_served_as_an_image_are_named_by_what_they_are():
    import gzip
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as folder:
        folder.writestr("photo.jpg", JPEG)
    clip = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(64)  # an MP4's first box
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    for data, kind in ((archive.getvalue(), "ZIP"), (gzip.compress(JPEG), "gzip"), (clip, "video"),
                       (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "video"), (svg, "SVG"),
                       (b"<svg viewBox='0 0 1 1'></svg>", "SVG"), (b"%PDF-1.7\n%\xe2\xe3", "PDF")):
        assert sniff_image(data, "image/jpeg") == (None, f"not an image ({kind})"), kind
    heif = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"  # an image Pillow does not read: no guess
    assert sniff_image(heif, "image/heic") == (None, "not an image (served as image/heic)")


def test_redirect_is_followed_and_loops_end(server, fetcher):
    assert fetcher.fetch(url(server, "/redirect/4?t=redir")).data == jpeg(4)
    assert fetcher.fetch(url(server, "/loop?t=loop")).reason == "too many redirects"
    assert server.hits["/loop?t=loop"] == 1 and server.hits["/loop"] == 2  # 5 redirects, then it stops


def test_connection_reset_is_retried_then_reported(server, fetcher):
    got = fetcher.fetch(url(server, "/reset?t=reset"))
    assert got.reason == "connection closed by the server after 3 tries"
    assert server.hits["/reset?t=reset"] == 3


def test_connection_refused_is_reported():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ImageFetcher(timeout=0.5, retries=1, backoff=0.01) as f:
        got = f.fetch(f"http://127.0.0.1:{port}/ok/1.jpg")
    assert got.reason == "cannot connect after 2 tries"


def test_per_host_limit_holds_across_threads(tmp_path):
    """Two hosts, 8 threads, per_host=2: never more than 2 requests at one host, but both hosts busy."""
    with FaultServer() as a, FaultServer() as b, \
            ImageFetcher(workers=8, timeout=2.0, retries=0, per_host=2) as f:
        urls = [s.url(f"/ok/{n}.jpg?delay=0.05") for n in range(12) for s in (a, b)]
        threads = [threading.Thread(target=f.fetch, args=(u,)) for u in urls]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (a.max_active, b.max_active) == (2, 2)
        assert time.monotonic() - start < 12 * 0.05 + 0.5  # the hosts were served side by side
    with pytest.raises(ValueError, match="per_host"):
        ImageFetcher(per_host=0)


def test_local_files(tmp_path, fetcher):
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "notes.jpg").write_text("just text")
    (tmp_path / "huge.jpg").write_bytes(b"\xff" * (BIG + 1))
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert fetcher.fetch("a.png", tmp_path).ext == "png"
    assert fetcher.fetch(str(tmp_path / "a.png")).data == PNG
    assert fetcher.fetch((tmp_path / "a.png").as_uri()).ext == "png"
    assert fetcher.fetch("notes.jpg", tmp_path).reason == "not an image (text)"
    assert fetcher.fetch("huge.jpg", tmp_path).reason == f"larger than {BIG} bytes"
    assert fetcher.fetch("empty.jpg", tmp_path).reason == "empty file"
    assert fetcher.fetch("gone.jpg", tmp_path).reason == "image file not found (gone.jpg)"
    assert fetcher.fetch(".", tmp_path).reason == "not a file (.)"
    assert fetcher.fetch("ftp://example.org/a.jpg").reason == "unsupported URL scheme 'ftp'"


def test_sniff_image_formats():
    assert sniff_image(image_bytes("GIF")) == ("gif", "")
    assert sniff_image(image_bytes("WEBP")) == ("webp", "")
    assert sniff_image(b"\x00\x01binary\xff\xfe") == (None, "not an image")
    assert sniff_image(b'{"error": "rate limited"}') == (None, "not an image (JSON)")


CAP = 100_000  # above the truncated JPEG, below the huge bodies

# the reason each fault of the fault server must end with (retries=1, timeout=0.6, max_bytes=CAP)
EXPECTED = {
    "/redirect/{n}": ("ok", ""),
    "/flaky/{n}": ("ok", ""),
    "/wrongtype/{n}.jpg": ("ok", ""),
    "/slow": ("error", "timeout after 2 tries"),
    "/reset": ("error", "connection closed by the server after 2 tries"),
    "/404": ("error", "HTTP 404"),
    "/500": ("error", "HTTP 500 after 2 tries"),
    "/429": ("error", "HTTP 429 after 2 tries"),
    "/429/long": ("error", "HTTP 429 (asked to retry later than the 30 s the crawl allows)"),
    "/429/date": ("error", "HTTP 429 (asked to retry later than the 30 s the crawl allows)"),
    "/html": ("error", "not an image (HTML)"),
    "/truncated.jpg": ("error", "truncated JPEG image"),
    "/endless/fast": ("error", f"larger than {CAP} bytes"),
    "/endless/slow": ("error", "too slow (body not complete within 6 s)"),
    "/huge": ("error", f"larger than {CAP} bytes"),
    "/huge/streamed": ("error", f"larger than {CAP} bytes"),
    "/loop": ("error", "too many redirects"),
}


@pytest.mark.slow
def test_every_fault_in_one_crawl_ends_with_a_status_and_reason(tmp_path):
    assert set(EXPECTED) == set(FAULTS)
    with FaultServer(slow_s=1.5, huge_bytes=CAP * 4) as s:
        lines = []
        for n in range(60):  # every fault several times, between ok images
            fault = FAULTS[n % len(FAULTS)]
            lines.append({"id": f"p{n}", "text": fault, "image_url": s.url(fault.format(n=n) + f"?n={n}")})
            lines.append({"id": f"ok{n}", "text": "fine", "image_url": s.url(f"/ok/{n}.jpg?delay=0.01")})
        source = tmp_path / "posts.jsonl"
        source.write_text("".join(json.dumps(line) + "\n" for line in lines))
        start = time.monotonic()
        counts = ingest(source, tmp_path / "ds", workers=8, per_host=3, timeout=0.6, retries=1,
                        backoff=0.01, max_bytes=CAP, batch_size=25)
        assert time.monotonic() - start < 30
        assert 1 < s.max_active <= 3
    table = Dataset(tmp_path / "ds").read_table("posts")
    assert table.column("post_id").to_pylist() == [line["id"] for line in lines]  # each once, in order
    for row in table.to_pylist():
        if row["post_id"].startswith("ok"):
            assert (row["ingest_status"], row["ingest_reason"]) == ("ok", ""), row
            continue
        status, reason = EXPECTED[row["text"]]
        assert row["ingest_status"] == status and row["ingest_reason"].startswith(reason), row
        assert (row["image_sha256"] is None) == (status == "error")
    ok = sum(EXPECTED[line["text"]][0] == "ok" for line in lines if line["id"].startswith("p")) + 60
    assert counts["posts"] == 120 and counts["ok"] == ok and counts["error"] == 120 - ok


def test_ingest_downloads_urls_concurrently(server, tmp_path):
    lines = [
        {"id": "a", "text": "sunny day", "image_url": url(server, "/ok/9.jpg?t=ing")},
        {"id": "b", "text": "gone", "image_url": url(server, "/404?t=ing")},
        {"id": "c", "text": "flaky", "image_url": url(server, "/flaky/9?t=ing")},
        {"id": "d", "text": "web page", "image_url": url(server, "/html?t=ing")},
        {"id": "e", "text": "same bytes", "image_url": url(server, "/redirect/9?t=ing")},
    ]
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    counts = ingest(source, tmp_path / "ds", workers=4, timeout=2.0, retries=2, batch_size=2, backoff=0.01)
    assert counts == {"posts": 5, "ok": 3, "error": 2, "images": 1, "with_human_labels": 0}
    rows = {r["post_id"]: r for r in Dataset(tmp_path / "ds").read_table("posts").to_pylist()}
    assert list(rows) == ["a", "b", "c", "d", "e"]
    assert rows["b"]["ingest_reason"] == "HTTP 404"
    assert rows["d"]["ingest_reason"] == "not an image (HTML)"
    assert rows["a"]["image_sha256"] == rows["c"]["image_sha256"] == rows["e"]["image_sha256"]
    stored = Dataset(tmp_path / "ds").image_path(rows["a"]["image_file"])
    assert stored.read_bytes() == jpeg(9) and rows["a"]["image_ref"] == lines[0]["image_url"]


def test_a_slow_download_does_not_idle_the_workers(server, tmp_path):
    """One slow image in each of four batches: the batches download side by side, not one after another."""
    lines = [{"id": str(n), "text": "t", "image_url": url(server, f"/ok/{n}.jpg?delay={0.6 if n % 5 == 0 else 0}")}
             for n in range(20)]
    source = tmp_path / "posts.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    start = time.monotonic()
    counts = ingest(source, tmp_path / "ds", workers=8, timeout=2.0, batch_size=5)
    assert time.monotonic() - start < 1.5  # 4 × 0.6 s when each batch waits for the one before
    assert counts["ok"] == 20
    table = Dataset(tmp_path / "ds").read_table("posts")
    assert table.column("post_id").to_pylist() == [line["id"] for line in lines]
