"""visent serve as a user meets it: the real command in a subprocess, spoken to over HTTP and through Chromium.

The server is started with ``python -m visent serve default`` on a free port and always stopped at the end.
The browser test drives the Debian Chromium (/usr/bin/chromium) with Playwright and skips when either is
missing; the plain HTTP tests need neither.
"""

from __future__ import annotations

import base64
import contextlib
import io
import socket
from pathlib import Path

import httpx
import pytest
from PIL import Image

from visent.core.labels import CLASSES, read_labelled_images
from visent.serve import background

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
UPLOAD_LIMIT_MB = 1

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the browser test skips
    sync_playwright = None


@contextlib.contextmanager
def watched_page(**options):
    """A page of headless Chromium, with the URLs it requests and the errors its scripts raise, as they come."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(**options)
            requested, page_errors = [], []
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            yield page, requested, page_errors
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a running ``visent serve default``; the process is stopped afterwards, whatever happens."""
    env = {"VISENT_CACHE": str(tmp_path_factory.mktemp("serve-cache"))}
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with background("default", options=["--max-upload-mb", str(UPLOAD_LIMIT_MB)], env=env, log=log,
                    timeout=90) as url:
        yield url


def photo_png(name: str = "astronaut", side: int = 160) -> bytes:
    skimage_data = pytest.importorskip("skimage.data")
    image = Image.fromarray(getattr(skimage_data, name)()).convert("RGB").resize((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_the_command_serves_health_and_predictions(server):
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok" and health["model"] == "default"
    assert health["limits"]["max_upload_bytes"] == UPLOAD_LIMIT_MB * 2**20  # --max-upload-mb reached the app
    response = httpx.post(server + "/predict", files=[("files", ("astronaut.png", photo_png(), "image/png"))], timeout=60)
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    assert prediction["file"] == "astronaut.png"
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_an_oversized_body_is_refused_before_it_is_sent(server):
    """Only the headers go out: the server answers 413 from Content-Length without waiting for the body."""
    port = int(server.rsplit(":", 1)[1])
    declared = 2 * UPLOAD_LIMIT_MB * 2**20
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Content-Type: multipart/form-data; boundary=x\r\n"
                      f"Content-Length: {declared}\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"larger than this server accepts" in answer


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium not found at {CHROMIUM}")
@pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed")
def test_the_page_shows_probabilities_and_the_map(server, tmp_path):
    image_path = tmp_path / "astronaut.png"
    image_path.write_bytes(photo_png())
    notes_path = tmp_path / "notes.png"
    notes_path.write_text("a shopping list, not a picture")
    expected = httpx.post(server + "/predict", files=[("files", ("astronaut.png", image_path.read_bytes(), "image/png"))],
                          timeout=60).json()["predictions"][0]["probabilities"]

    with watched_page(viewport={"width": 1200, "height": 900}) as (page, requested, page_errors):
        page.goto(server + "/")
        page.wait_for_function("() => document.getElementById('model-name').textContent === 'default'", timeout=10_000)

        # 1. the file input
        page.set_input_files("#file-input", [str(image_path)])
        card = page.locator("article.card", has_text="astronaut.png")
        page.wait_for_function("""() => {
            const card = document.querySelector('article.card');
            const map = card && card.querySelector('img.map');
            return card && card.dataset.state === 'done' && map.complete && map.naturalWidth > 0;
        }""", timeout=30_000)
        shown = [float(text) for text in card.locator(".prob-value").all_inner_texts()]
        assert len(shown) == 3
        assert sum(shown) == pytest.approx(1.0, abs=0.002)
        assert shown == pytest.approx([expected[c] for c in CLASSES], abs=0.0006)  # the server's numbers, rounded
        label = card.locator(".badge").inner_text().strip().lower()
        assert label == max(expected, key=expected.get)
        assert card.locator("img.map").evaluate("img => img.src.startsWith('blob:')")

        # 2. drag and drop onto the zone (a DataTransfer built in the page, as a drop from the desktop gives)
        page.evaluate("""async (data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
            const zone = document.getElementById('drop-zone');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""", base64.b64encode(photo_png("coffee")).decode())
        page.wait_for_function("""() => {
            const cards = [...document.querySelectorAll('article.card')];
            const dropped = cards.filter((c) => c.querySelector('.name').textContent === 'dropped.png');
            return cards.length === 2 && dropped.length === 1 && dropped[0].dataset.state === 'done'
                && dropped[0].querySelector('img.map').naturalWidth > 0;
        }""", timeout=30_000)

        # 3. a file that is not an image gets the server's reason on its card
        page.set_input_files("#file-input", [str(notes_path)])
        rejected = page.locator("article.card", has_text="notes.png")
        rejected.locator(".error-text").wait_for(state="visible", timeout=15_000)
        assert "'notes.png': not an image" in rejected.locator(".error-text").inner_text()
        summary = page.locator("#summary").inner_text()
        assert summary.startswith("3 images · ") and summary.endswith(" · 1 rejected")

        # 4. the person's own labels, downloaded as the CSV `visent adapt` reads
        assert page.locator("#download-labels").is_disabled()
        assert rejected.locator(".labels button").first.is_disabled()  # a rejected file cannot be labelled
        dropped = page.locator("article.card", has_text="dropped.png")
        card.locator(".labels button[data-label='positive']").click()
        dropped.locator(".labels button[data-label='neutral']").click()
        dropped.locator(".labels button[data-label='negative']").click()  # changed its mind
        assert dropped.locator(".labels button[aria-pressed='true']").inner_text() == "Negative"
        card.locator(".labels button[data-label='positive']").click()  # taken back ...
        assert card.locator(".labels button[aria-pressed='true']").count() == 0
        card.locator(".labels button[data-label='positive']").click()  # ... and given again
        assert page.locator("#summary").inner_text().endswith("2 labelled by you")
        with page.expect_download() as download_info:
            page.locator("#download-labels").click()
        download = download_info.value
        assert download.suggested_filename == "labels.csv"
        saved = tmp_path / "labels.csv"
        download.save_as(saved)
        assert saved.read_text().splitlines() == ["path,label", "astronaut.png,positive", "dropped.png,negative"]
        paths, labels, skipped = read_labelled_images(saved)  # what `visent adapt --labels` reads
        assert paths == [str(tmp_path / "astronaut.png"), str(tmp_path / "dropped.png")]
        assert labels == ["positive", "negative"] and skipped == []

        assert page_errors == []
        outside = [url for url in requested if not url.startswith((server, "blob:", "data:"))]
        assert outside == []  # the page loads nothing from elsewhere


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium not found at {CHROMIUM}")
@pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed")
def test_the_api_docs_render_without_a_network(server):
    """Swagger UI's scripts come from the server itself, so /docs works on a machine with no internet."""
    with watched_page() as (page, requested, _):
        page.goto(server + "/docs")
        page.locator(".opblock-summary-path", has_text="/predict").first.wait_for(timeout=20_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert {"/predict", "/explain", "/health"} <= {p.strip() for p in paths}
        assert [url for url in requested if not url.startswith((server, "data:", "blob:"))] == []


@pytest.fixture()
def labelling_server(tmp_path):
    """`visent serve default --label-pool POOL --labels-out labels.csv --label-n 4` as a process of its own, with a
    pool of four images to label; stopped afterwards."""
    from test_pipeline import make_image
    from visent.serve import background

    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(4):
        make_image(pool / f"img{i}.jpg", "positive" if i % 2 else "negative", seed=7 + i)
    labels = tmp_path / "labels.csv"
    with background("default", options=["--label-pool", str(pool), "--labels-out", str(labels), "--label-n", "4"],
                    env={"VISENT_CACHE": str(tmp_path / "cache")}, log=tmp_path / "serve.log") as url:
        yield url, pool, labels


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium not found at {CHROMIUM}")
@pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed")
def test_the_labelling_mode_saves_each_label_and_a_reload_continues(labelling_server):
    url, _, labels = labelling_server
    shown_image = """(rank) => {
        const card = document.getElementById('label-card');
        const image = document.getElementById('label-image');
        return !card.hidden && card.dataset.rank === String(rank) && image.complete && image.naturalWidth > 0;
    }"""
    with watched_page(viewport={"width": 1200, "height": 900}) as (page, requested, page_errors):
        page.goto(url + "/#label")
        page.wait_for_function(shown_image, arg=1, timeout=60_000)  # the pool is scored first
        assert page.locator("#predict-view").is_hidden() and page.locator("#modes").is_visible()
        assert page.locator("#label-count").inner_text() == "0 of 4 labelled"
        assert "1" in page.locator("[data-give='negative']").inner_text()  # the shortcut is on the button
        names = [page.locator("#label-name").inner_text()]

        page.keyboard.press("1")  # negative
        page.wait_for_function(shown_image, arg=2, timeout=15_000)
        assert page.locator("#label-count").inner_text() == "1 of 4 labelled"
        names.append(page.locator("#label-name").inner_text())
        page.keyboard.press("p")  # positive
        page.wait_for_function(shown_image, arg=3, timeout=15_000)
        assert page.locator("#label-count").inner_text() == "2 of 4 labelled"
        third = page.locator("#label-name").inner_text()

        # saved as given: the file holds both labels before the page is reloaded
        paths, given, skipped = read_labelled_images(labels)
        assert [Path(p).name for p in paths] == names and given == ["negative", "positive"] and skipped == []

        page.reload()
        page.wait_for_function(shown_image, arg=3, timeout=15_000)
        assert page.locator("#label-count").inner_text() == "2 of 4 labelled"
        assert page.locator("#label-name").inner_text() == third
        assert third not in names

        page.keyboard.press(" ")  # skip
        page.wait_for_function(shown_image, arg=4, timeout=15_000)
        assert page.locator("#label-count").inner_text() == "2 of 4 labelled"
        assert "1 skipped" in page.locator("#label-skipped").inner_text()
        assert read_labelled_images(labels)[1] == ["negative", "positive"]  # a skip writes nothing

        page.locator("a#mode-predict").click()  # the other mode is a click away
        page.locator("#drop-zone").wait_for(state="visible", timeout=5_000)
        assert page_errors == []
        assert [u for u in requested if not u.startswith((url, "blob:", "data:"))] == []
