"""visent serve: the HTTP service against the shipped model, with good uploads and every kind of bad one.

Every client here is a ``TestClient`` that re-raises server exceptions: a bad input answered by the last-resort
exception handler would fail its test instead of passing as a 4xx, so the 4xx statuses below come from
visent's validation. ``model_calls`` also shows that rejected uploads never reach the model.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import re
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import visent
from visent.core.labels import CLASSES
from visent.serve import app as serve_app
from visent.serve import create_app

skimage_data = pytest.importorskip("skimage.data")


# Images -------------------------------------------------------------------------------------------------
def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(name: str, side: int = 96) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)()).convert("RGB").resize((side, side))


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    """Real photos in each accepted format, named after what they show."""
    return {
        "astronaut.png": encode(photo("astronaut"), "PNG"),
        "coffee.jpg": encode(photo("coffee"), "JPEG", quality=90),
        "chelsea.webp": encode(photo("chelsea"), "WEBP"),
        "rocket.gif": encode(photo("rocket"), "GIF"),
        "camera.bmp": encode(Image.fromarray(skimage_data.camera()).resize((96, 96)), "BMP"),
    }


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR claims ``width`` x ``height`` (CRC fixed): its pixel data is far too short to decode."""
    data = encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG")
    assert data[12:16] == b"IHDR"
    chunk = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF) + data[33:]


def upload(*named: tuple[str, bytes], field: str = "files") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (name, data, "application/octet-stream")) for name, data in named]


# The app ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return visent.load("default")


@pytest.fixture(scope="module")
def client(model):
    return TestClient(create_app(model))


@pytest.fixture
def model_calls(model, monkeypatch):
    """Counts the images that reach the model (the real model still answers)."""
    calls = {"predict": 0, "explain": 0}
    import visent.explain

    predict, explain = model.predict, visent.explain.explain

    def counted_predict(images, *args, **kwargs):
        calls["predict"] += len(images)
        return predict(images, *args, **kwargs)

    def counted_explain(explained, image, *args, **kwargs):
        calls["explain"] += 1
        return explain(explained, image, *args, **kwargs)

    monkeypatch.setattr(model, "predict", counted_predict)
    monkeypatch.setattr(visent.explain, "explain", counted_explain)
    return calls


def probabilities(prediction: dict) -> np.ndarray:
    return np.array([prediction["probabilities"][c] for c in CLASSES])


# Good uploads -------------------------------------------------------------------------------------------
def test_health_names_the_model_version_classes_and_limits(model):
    client = TestClient(create_app(model, max_upload_bytes=123_456, max_pixels=7_000, max_files=3, formats=["png", "JPEG"]))
    response = client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["model"] == "default"
    assert health["model_dir"] == str(model.directory)
    assert health["visent_version"] == visent.__version__
    assert health["classes"] == list(CLASSES)
    assert health["limits"] == {"max_upload_bytes": 123_456, "max_pixels": 7_000, "max_files": 3, "formats": ["PNG", "JPEG"]}


def test_predict_one_png(client, photos, model_calls):
    response = client.post("/predict", files=upload(("astronaut.png", photos["astronaut.png"])))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "default" and body["classes"] == list(CLASSES)
    (prediction,) = body["predictions"]
    assert prediction["file"] == "astronaut.png"
    assert (prediction["format"], prediction["width"], prediction["height"]) == ("PNG", 96, 96)
    p = probabilities(prediction)
    assert np.all((p > 0) & (p < 1)) and p.sum() == pytest.approx(1.0, abs=1e-6)
    assert prediction["label"] == CLASSES[int(np.argmax(p))]
    assert model_calls["predict"] == 1


def test_predict_batch_keeps_order_and_names_and_matches_the_model(client, model, photos):
    names = list(photos)
    response = client.post("/predict", files=upload(*photos.items()))
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["file"] for p in predictions] == names
    assert [p["format"] for p in predictions] == ["PNG", "JPEG", "WEBP", "GIF", "BMP"]
    served = np.array([probabilities(p) for p in predictions])
    assert served.sum(axis=1) == pytest.approx(np.ones(len(names)), abs=1e-6)
    # the same numbers as the Python API on the same bytes, row by row: the order is the upload order
    table = model.predict(list(photos.values())).to_pylist()
    direct = np.array([[row[c] for c in CLASSES] for row in table])
    np.testing.assert_allclose(served, direct, atol=1e-6)
    assert np.abs(np.diff(served, axis=0)).max() > 1e-3  # the photos score differently, so a shuffle would show


def test_predict_sniffs_the_format_from_the_content_not_the_name(client, photos):
    jpeg_named_png = [("files", ("holiday.png", photos["coffee.jpg"], "image/png"))]
    response = client.post("/predict", files=jpeg_named_png)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["format"] == "JPEG"
    text_named_png = [("files", ("holiday.png", b"<html>not a picture</html>", "image/png"))]
    response = client.post("/predict", files=text_named_png)
    assert response.status_code == 415
    assert response.json()["detail"].startswith("'holiday.png': not an image (HTML); this server accepts")


def test_a_part_without_a_file_name_is_422(client, photos, model_calls):
    # without a filename a multipart part is a form value, not a file
    response = client.post("/predict", files=[("files", ("", photos["astronaut.png"], "image/png"))])
    assert response.status_code == 422
    assert "the field `files` holds a value without a file name" in response.json()["detail"]
    assert model_calls["predict"] == 0


@pytest.mark.parametrize("target", ["predicted", "negative", "neutral", "positive", "all"])
def test_explain_returns_a_png_for_each_target(client, photos, target):
    response = client.post("/explain", params={"target": target},
                           files=upload(("coffee.jpg", photos["coffee.jpg"]), field="file"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert image.mode == "RGB"
    if target == "all":
        assert image.width >= 3 * image.height  # the photo and its three maps side by side
    else:
        assert 64 <= image.width <= 1024 and 64 <= image.height <= 1024
        assert image.width == image.height  # the 96x96 photo, shown square
    probs = json.loads(response.headers["X-Visent-Probabilities"])
    assert list(probs) == list(CLASSES)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert response.headers["X-Visent-Label"] == max(probs, key=probs.get)
    assert response.headers["X-Visent-Method"] in ("cam", "gradcam")


def test_explain_draws_the_requested_class_and_agrees_with_predict(client, photos):
    files = upload(("astronaut.png", photos["astronaut.png"]), field="file")
    maps = {t: client.post("/explain", params={"target": t}, files=files) for t in ("predicted", *CLASSES)}
    assert all(r.status_code == 200 for r in maps.values())
    pixels = {t: np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.int16) for t, r in maps.items()}
    label = maps["predicted"].headers["X-Visent-Label"]
    assert np.array_equal(pixels["predicted"], pixels[label])
    others = [c for c in CLASSES if c != label]
    assert np.abs(pixels[others[0]] - pixels[label]).mean() > 1.0  # a different class draws a different map
    predicted = client.post("/predict", files=upload(("astronaut.png", photos["astronaut.png"]))).json()["predictions"][0]
    explained = json.loads(maps["predicted"].headers["X-Visent-Probabilities"])
    assert probabilities(predicted) == pytest.approx([explained[c] for c in CLASSES], abs=1e-6)
    assert predicted["label"] == label


def test_openapi_lists_the_routes_with_summaries(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "visent" and spec["info"]["version"] == visent.__version__
    assert set(spec["paths"]) >= {"/predict", "/explain", "/health"}
    for path, method in (("/predict", "post"), ("/explain", "post"), ("/health", "get")):
        operation = spec["paths"][path][method]
        assert len(operation["summary"]) > 15 and len(operation["description"]) > 40
    explain = spec["paths"]["/explain"]["post"]
    target = next(p for p in explain["parameters"] if p["name"] == "target")
    assert set(target["schema"]["enum"]) == {"predicted", "negative", "neutral", "positive", "all"}
    assert "image/png" in explain["responses"]["200"]["content"]
    assert "X-Visent-Probabilities" in explain["responses"]["200"]["headers"]
    assert {"413", "415", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        docs = client.get(page)
        assert docs.status_code == 200 and "/openapi.json" in docs.text
        # the docs' scripts come from this server (the machine may be offline), not from a CDN
        urls = re.findall(r'(?:src|href)="([^"]+)"', docs.text) + re.findall(r"url: '([^']+)'", docs.text)
        assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        local = next(u for u in urls if u.endswith(script))
        asset = client.get(local)
        assert asset.status_code == 200 and len(asset.content) > 100_000


def test_page_is_self_contained_with_a_drop_zone(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'id="drop-zone"' in html and 'id="file-input"' in html and "multiple" in html
    assert "<h1>" in html and "visent" in html
    for call in ('fetch("health")', 'fetch("predict"', 'fetch("explain?target='):
        assert call in html
    # nothing from elsewhere: no external scripts, styles, fonts or images, and the policy forbids them
    lowered = html.lower()
    for external in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import", "//cdn", "<iframe"):
        assert external not in lowered
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_page_is_put_together_from_its_package_resources(client):
    from importlib import resources

    folder = resources.files("visent") / "resources" / "serve"
    skeleton, css, js = ((folder / name).read_text(encoding="utf-8") for name in ("page.html", "page.css", "page.js"))
    html = client.get("/").text
    assert "$style" in skeleton and "$script" in skeleton and "$" not in html.replace(js, "")
    assert html == skeleton.replace("$style", css).replace("$script", js)
    assert f"<style>\n{css}</style>" in html and f"<script>\n{js}</script>" in html


# Bad uploads --------------------------------------------------------------------------------------------
def test_no_file_is_a_clear_422(client, model_calls):
    for path, field in (("/predict", "files"), ("/explain", "file")):
        response = client.post(path)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert "no image uploaded" in detail and f"`{field}`" in detail and "multipart/form-data" in detail
    assert model_calls == {"predict": 0, "explain": 0}


def test_wrong_field_name_is_a_clear_422(client, photos, model_calls):
    for path in ("/predict", "/explain"):
        response = client.post(path, files=upload(("astronaut.png", photos["astronaut.png"]), field="image"))
        assert response.status_code == 422
        assert "no image uploaded" in response.json()["detail"]
        assert "`files`" in response.json()["detail"] and "`file`" in response.json()["detail"]
    assert model_calls == {"predict": 0, "explain": 0}


def test_both_endpoints_take_the_fields_file_and_files(client, photos, model_calls):
    astronaut, coffee = ("astronaut.png", photos["astronaut.png"]), ("coffee.jpg", photos["coffee.jpg"])
    one = client.post("/predict", files=upload(astronaut, coffee, field="file"))
    assert one.status_code == 200, one.text
    assert [p["file"] for p in one.json()["predictions"]] == ["astronaut.png", "coffee.jpg"]
    assert one.json() == client.post("/predict", files=upload(astronaut, coffee, field="files")).json()
    explained = client.post("/explain", files=upload(astronaut, field="files"))
    assert explained.status_code == 200, explained.text
    assert explained.content == client.post("/explain", files=upload(astronaut, field="file")).content
    # parts spread over both fields would lose their order: refused, nothing scored
    mixed = client.post("/predict", files=[*upload(astronaut, field="file"), *upload(coffee, field="files")])
    assert mixed.status_code == 422
    assert "both fields `files` (1) and `file` (1)" in mixed.json()["detail"]
    assert model_calls == {"predict": 4, "explain": 2}


@pytest.mark.parametrize("field", ["file", "files"])
def test_explain_refuses_more_than_one_image(client, photos, model_calls, field):
    response = client.post("/explain", files=upload(("astronaut.png", photos["astronaut.png"]),
                                                    ("coffee.jpg", photos["coffee.jpg"]), field=field))
    assert response.status_code == 422
    assert response.json()["detail"] == ("2 files sent to /explain ('astronaut.png', 'coffee.jpg'), which explains one "
                                         "image per request: send them one at a time, or to /predict for their "
                                         "probabilities")
    assert model_calls == {"predict": 0, "explain": 0}


def test_malformed_multipart_body_is_a_clear_400(client, model_calls):
    response = client.post("/predict", content=b"--x\r\ngarbage without headers",
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("the request body is not valid multipart/form-data")
    assert "`files`" in detail
    assert model_calls["predict"] == 0


def test_a_file_name_too_long_for_the_parser_is_named_as_the_fault(client, photos, model_calls):
    png = photos["astronaut.png"]
    for path, field in (("/predict", "files"), ("/explain", "file")):
        response = client.post(path, files=upload(("x" * 5000 + ".png", png), field=field))
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert detail.startswith("the file name of an uploaded image is too long") and "not valid" not in detail
        assert detail.endswith("rename the file to a shorter name and upload again")
    assert model_calls == {"predict": 0, "explain": 0}
    long_but_fine = client.post("/predict", files=upload(("y" * 3000 + ".png", png)))
    assert long_but_fine.status_code == 200  # shown shortened
    assert long_but_fine.json()["predictions"][0]["file"] == "y" * 197 + "..."


def test_empty_file_is_422(client, model_calls):
    for path, field in (("/predict", "files"), ("/explain", "file")):
        response = client.post(path, files=upload(("blank.jpg", b""), field=field))
        assert response.status_code == 422
        assert response.json()["detail"].startswith("'blank.jpg': empty file; choose an image file")
    assert model_calls == {"predict": 0, "explain": 0}


def test_non_image_bytes_are_415(client, model_calls):
    response = client.post("/predict", files=upload(("notes.jpg", b"%PDF-1.7 this is a document, not a picture")))
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert detail.startswith("'notes.jpg': not an image (PDF); ") and "JPEG, PNG, GIF, WEBP or BMP" in detail
    assert model_calls["predict"] == 0


@pytest.mark.parametrize("name", ["astronaut.png", "coffee.jpg", "chelsea.webp", "rocket.gif"])
def test_truncated_image_is_422(client, photos, model_calls, name):
    data = photos[name]
    response = client.post("/predict", files=upload((name, data[: len(data) * 2 // 3])))
    assert response.status_code == 422
    detail = response.json()["detail"]
    fmt = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "gif": "GIF"}[name.rsplit(".", 1)[1]]
    assert re.match(rf"'{re.escape(name)}': (truncated ({fmt} )?image;|corrupt ({fmt} )?image \()", detail), detail
    assert detail.endswith("; re-export or re-download it and upload again")
    assert model_calls["predict"] == 0


def test_corrupt_png_data_is_422(client, photos, model_calls):
    data = bytearray(photos["astronaut.png"])
    start = data.index(b"IDAT") + 4
    data[start:start + 200] = bytes(200)  # zeroed compressed pixel data: the header reads, the pixels do not
    response = client.post("/explain", files=upload(("astronaut.png", bytes(data)), field="file"))
    assert response.status_code == 422
    assert response.json()["detail"].startswith("'astronaut.png': corrupt PNG image (")
    assert model_calls == {"predict": 0, "explain": 0}


def test_unsupported_format_is_415_and_names_it(model, photos, model_calls):
    client = TestClient(create_app(model))
    response = client.post("/predict", files=upload(("scan.tif", encode(photo("astronaut", 32), "TIFF"))))
    assert response.status_code == 415
    assert "'scan.tif' is a TIFF image" in response.json()["detail"]
    png_only = TestClient(create_app(model, formats=["PNG"]))
    response = png_only.post("/predict", files=upload(("coffee.jpg", photos["coffee.jpg"])))
    assert response.status_code == 415
    assert "'coffee.jpg' is a JPEG image; this server accepts PNG images" in response.json()["detail"]
    assert png_only.post("/predict", files=upload(("astronaut.png", photos["astronaut.png"]))).status_code == 200
    assert model_calls["predict"] == 1


def test_too_many_pixels_is_413_before_decoding(model, photos, model_calls):
    small = TestClient(create_app(model, max_pixels=5_000))
    response = small.post("/predict", files=upload(("astronaut.png", photos["astronaut.png"])))
    assert response.status_code == 413
    assert response.json()["detail"] == ("'astronaut.png': too many pixels (96 x 96 = 9,216 pixels, more than the "
                                         "limit 5,000); downscale it and upload again")
    # The header claims 6000 x 6000 but the pixel data is one pixel long: decoding it would fail (422). The
    # 413 shows the pixel count is checked from the header, before anything is decoded.
    client = TestClient(create_app(model, max_pixels=30_000_000))
    claiming = png_claiming(6000, 6000)
    response = client.post("/predict", files=upload(("poster.png", claiming)))
    assert response.status_code == 413
    assert response.json()["detail"].startswith("'poster.png': too many pixels (6000 x 6000 = 36,000,000 pixels, "
                                                "more than the limit 30,000,000)")
    # the same bytes under a limit they pass are decoded, and fail as truncated
    roomy = TestClient(create_app(model, max_pixels=40_000_000))
    response = roomy.post("/predict", files=upload(("poster.png", claiming)))
    assert response.status_code == 422
    assert response.json()["detail"].startswith(("'poster.png': truncated PNG image", "'poster.png': corrupt PNG image"))
    assert model_calls["predict"] == 0


def test_decompression_bombs_are_413(model, model_calls):
    # 100000 x 100000: above twice Pillow's limit, Pillow refuses it while reading the header
    client = TestClient(create_app(model))
    response = client.post("/explain", files=upload(("bomb.png", png_claiming(100_000, 100_000)), field="file"))
    assert response.status_code == 413
    assert response.json()["detail"].startswith("'bomb.png': too many pixels (100000 x 100000 = 10,000,000,000 "
                                                "pixels, more than the limit 25,000,000)")
    # 10000 x 10000 is under a generous max_pixels but above Pillow's warning threshold: refused too
    assert 10_000 * 10_000 > Image.MAX_IMAGE_PIXELS
    generous = TestClient(create_app(model, max_pixels=10**9))
    response = generous.post("/predict", files=upload(("big.png", png_claiming(10_000, 10_000))))
    assert response.status_code == 413
    assert response.json()["detail"].startswith(f"'big.png': too many pixels (10000 x 10000 = 100,000,000 pixels, "
                                                f"more than the limit {Image.MAX_IMAGE_PIXELS:,})")
    assert model_calls == {"predict": 0, "explain": 0}


def test_too_many_files_is_422(model, photos, model_calls):
    client = TestClient(create_app(model, max_files=2))
    response = client.post("/predict", files=upload(*list(photos.items())[:3]))
    assert response.status_code == 422
    assert response.json()["detail"] == "3 files in one request; this server accepts at most 2: split them over several requests"
    assert client.post("/predict", files=upload(*list(photos.items())[:2])).status_code == 200
    assert model_calls["predict"] == 2


def test_a_bad_file_rejects_the_whole_batch_and_every_problem_is_listed(client, photos, model_calls):
    files = upload(("astronaut.png", photos["astronaut.png"]), ("readme.txt", b"plain text"),
                   ("coffee.jpg", photos["coffee.jpg"]), ("empty.png", b""))
    response = client.post("/predict", files=files)
    assert response.status_code == 415  # the first problem's status
    body = response.json()
    assert body["detail"].startswith("2 of 4 files rejected, nothing was scored")
    assert "'readme.txt': not an image (text)" in body["detail"] and "'empty.png': empty file" in body["detail"]
    assert "astronaut.png" not in body["detail"] and "coffee.jpg" not in body["detail"]
    assert [(p["index"], p["file"], p["status"]) for p in body["problems"]] == [(1, "readme.txt", 415), (3, "empty.png", 422)]
    assert model_calls["predict"] == 0


def test_unknown_target_is_422(client, photos, model_calls):
    response = client.post("/explain", params={"target": "happy"},
                           files=upload(("astronaut.png", photos["astronaut.png"]), field="file"))
    assert response.status_code == 422
    assert response.json()["detail"] == "unknown target 'happy': use one of predicted, negative, neutral, positive, all"
    assert model_calls["explain"] == 0


def test_body_above_the_limit_is_413_from_its_content_length(model, photos, model_calls):
    client = TestClient(create_app(model, max_upload_bytes=20_000))
    big = encode(photo("astronaut", 256), "PNG")
    assert len(big) > 20_000
    response = client.post("/predict", files=upload(("astronaut.png", big)))
    assert response.request.headers["content-length"]
    assert response.status_code == 413
    assert "larger than this server accepts (20,000 bytes" in response.json()["detail"]
    assert client.post("/predict", files=upload(("small.png", photos["astronaut.png"]))).status_code == 200
    assert model_calls["predict"] == 1


def test_chunked_body_without_content_length_is_413(model, model_calls):
    client = TestClient(create_app(model, max_upload_bytes=50_000))
    boundary = "visentboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
               "Content-Type: image/png\r\n\r\n").encode()
        for _ in range(20):
            yield bytes(10_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/predict", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert "larger than this server accepts (50,000 bytes" in response.json()["detail"]
    assert model_calls["predict"] == 0


def test_body_limit_stops_reading_a_chunked_body_at_the_limit(model):
    """Driven at the ASGI level, chunk by chunk: an endless body is cut off just past the limit."""
    app = create_app(model, max_upload_bytes=100_000)
    pulled = {"chunks": 0}
    sent: list[dict] = []

    head = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="endless.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")

    async def receive():
        pulled["chunks"] += 1
        if pulled["chunks"] > 1000:
            raise AssertionError("the body was read far beyond the limit")
        chunk = bytes(16_384)
        return {"type": "http.request", "body": head + chunk[len(head):] if pulled["chunks"] == 1 else chunk,
                "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"testserver"), (b"content-type", b"multipart/form-data; boundary=x"),
                         (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [413]
    assert pulled["chunks"] == 100_000 // 16_384 + 1  # the first chunk past 100,000 bytes ends the reading
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert "larger than this server accepts" in json.loads(body)["detail"]


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).hits += 1
        data = encode(Image.new("RGB", (8, 8), (0, 200, 0)), "PNG")
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_url_instead_of_a_file_is_422_and_never_fetched(client, model_calls, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/photo.png"
    connections = []
    real_connect = socket.socket.connect

    def watched_connect(sock, address):
        connections.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", watched_connect)
    try:
        for path, field in (("/predict", "files"), ("/explain", "file")):
            response = client.post(path, data={field: url})
            assert response.status_code == 422
            detail = response.json()["detail"]
            assert f"the field `{field}` holds text ('{url}')" in detail and "never fetches URLs" in detail
        # a URL next to a real file is refused as well
        response = client.post("/predict", data={"files": url},
                               files=[("files", ("a.png", encode(Image.new("RGB", (8, 8)), "PNG"), "image/png"))])
        assert response.status_code == 422 and "never fetches URLs" in response.json()["detail"]
        time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
    assert _CountingHandler.hits == 0
    assert connections == []
    assert model_calls == {"predict": 0, "explain": 0}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_damaged_files_never_cause_a_server_error(model, fmt):
    """Cut and scrambled files of every format get a 4xx or a prediction, never a 500."""
    client = TestClient(create_app(model))
    data = encode(photo("chelsea", 32), fmt)
    rng = np.random.default_rng(7)
    variants = [data[:cut] for cut in np.linspace(1, len(data) - 1, 12).astype(int)]
    for _ in range(12):
        scrambled = bytearray(data)
        positions = rng.integers(0, min(len(data), 96), size=3)  # the header, where parsers are most fragile
        for position in positions:
            scrambled[position] = int(rng.integers(0, 256))
        variants.append(bytes(scrambled))
    statuses = set()
    for index, variant in enumerate(variants):
        response = client.post("/predict", files=upload((f"cat-{index}.{fmt.lower()}", variant)))
        statuses.add(response.status_code)
        assert response.status_code in (200, 413, 415, 422), response.text
        if response.status_code != 200:
            assert f"'cat-{index}.{fmt.lower()}'" in response.json()["detail"]
    assert statuses & {415, 422}


def test_the_safety_net_answers_json_500_for_a_fault_in_the_model(model, photos, monkeypatch):
    def broken(images, *args, **kwargs):
        raise RuntimeError("backbone exploded")

    monkeypatch.setattr(model, "predict", broken)
    client = TestClient(create_app(model), raise_server_exceptions=False)
    response = client.post("/predict", files=upload(("astronaut.png", photos["astronaut.png"])))
    assert response.status_code == 500
    assert response.json()["detail"] == "internal error in visent serve (RuntimeError); the server log has the details"
    assert "backbone exploded" not in response.text  # internals stay in the server log


def test_one_inference_at_a_time(model, photos, monkeypatch):
    state = {"active": 0, "most": 0}
    guard = threading.Lock()
    predict = model.predict

    def watched(images, *args, **kwargs):
        with guard:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
        time.sleep(0.15)
        try:
            return predict(images, *args, **kwargs)
        finally:
            with guard:
                state["active"] -= 1

    monkeypatch.setattr(model, "predict", watched)
    app = create_app(model)
    statuses = []

    def call():
        statuses.append(TestClient(app).post("/predict", files=upload(("astronaut.png", photos["astronaut.png"]))).status_code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200, 200, 200]
    assert state["most"] == 1


def test_create_app_checks_its_limits(model):
    with pytest.raises(ValueError, match="unknown image formats"):
        create_app(model, formats=["PNG", "HEIC-ISH"])
    with pytest.raises(ValueError, match="max_files must be at least 1"):
        create_app(model, max_files=0)


# The command line ---------------------------------------------------------------------------------------
def test_cli_serve_help_states_the_app_defaults():
    from visent.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for option in ("--host", "--port", "--max-upload-mb", "--max-pixels", "--max-files"):
        assert option in text
    assert f"(default {serve_app.DEFAULT_MAX_UPLOAD_BYTES // 2**20})" in text
    assert f"(default {serve_app.DEFAULT_MAX_PIXELS})" in text
    assert f"(default {serve_app.DEFAULT_MAX_FILES})" in text


def test_cli_serve_unknown_model_fails_clearly(tmp_path):
    from visent.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path / "no-model")])
    assert result.exit_code == 1
    assert "no visent model here" in " ".join(result.output.split())


@pytest.mark.slow
def test_cli_serve_on_a_port_in_use_says_so_before_announcing_itself():
    """A busy port is one line naming it and the --port way out, exit 1, and no address announced (it would not
    answer): not uvicorn's [Errno 98] after the URL."""
    import subprocess
    import sys

    from visent.serve import ServerError, bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=rf"port {port} on 127.0.0.1 is already in use .* --port \d+"):
            bind("127.0.0.1", port)
        result = subprocess.run([sys.executable, "-m", "visent", "serve", "default", "--port", str(port)],
                                capture_output=True, text=True, timeout=120, check=False)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, output
    assert "error:" in output and f"serve: port {port} on 127.0.0.1 is already in use" in output
    assert "choose another port with --port" in output
    assert "http://" not in output and "Errno" not in output and "Traceback" not in output
    with bind("127.0.0.1", port) as sock:  # free again: the same call binds it
        assert sock.getsockname()[1] == port
