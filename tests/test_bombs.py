"""Cheap files that would cost minutes or gigabytes to decode: visent refuses them from their bytes and headers,
before decoding, and bounds what the images decoded at once in a process take together."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, WebPImagePlugin

from visent.core import images
from visent.core.images import (DecodeBudget, ImageError, decode, jpeg_scans, jpeg_segments, load_image,
                                open_image)


def progressive_jpeg(size: int = 256, **options) -> bytes:
    buffer = io.BytesIO()
    gradient = Image.linear_gradient("L").resize((size, size))
    Image.merge("RGB", (gradient, gradient.rotate(90), gradient.rotate(180))).save(
        buffer, "JPEG", progressive=True, quality=90, **options)
    return buffer.getvalue()


def scan_bomb(copies: int, size: int = 256) -> bytes:
    """A progressive JPEG whose smallest AC scan is repeated ``copies`` more times (libjpeg decodes every one)."""
    data = progressive_jpeg(size)
    # a scan whose first coefficient is > 0 is an AC scan
    ac = [(end - start, start, end) for code, start, end in jpeg_segments(data)
          if code == 0xDA and data[start + 5 + 2 * data[start + 4]] > 0]
    _, start, end = min(ac)
    return data[:end] + data[start:end] * copies + data[end:]


def webp_header_bomb(side: int = 9000) -> bytes:
    """A lossless WebP of a few dozen bytes whose header declares ``side`` x ``side`` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, "WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    at = data.find(b"VP8L") + 8
    assert data[at] == 0x2F
    bits = int.from_bytes(data[at + 1:at + 5], "little") & ~((1 << 28) - 1)
    data[at + 1:at + 5] = (bits | (side - 1) | ((side - 1) << 14)).to_bytes(4, "little")
    return bytes(data)


def png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (20, 120, 220)).save(buffer, "PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- scans
def test_scans_are_counted_from_the_bytes():
    data = progressive_jpeg()
    assert jpeg_scans(data)[0] == 10  # libjpeg's progressive script for a colour image
    baseline = io.BytesIO()
    Image.new("RGB", (64, 64)).save(baseline, "JPEG")
    assert jpeg_scans(baseline.getvalue())[0] == 1
    # restart markers inside the entropy-coded data and a segment full of 0xFFDA bytes are not scans
    assert jpeg_scans(progressive_jpeg(restart_marker_blocks=1))[0] == 10
    comment = b"\xff\xfe" + (2 + 600).to_bytes(2, "big") + b"\xff\xda" * 300
    assert jpeg_scans(data[:2] + comment + data[2:])[0] == 10
    assert jpeg_scans(scan_bomb(50))[0] == 60


def test_a_progressive_jpeg_within_the_limit_decodes(tmp_path):
    for data in (progressive_jpeg(), scan_bomb(50)):  # 10 scans, as Pillow writes; 60, still under the limit
        path = tmp_path / "photo.jpg"
        path.write_bytes(data)
        assert load_image(path, 64).size == (64, 64)  # decoded at a quarter of its size
        assert load_image(path, 256).size == (256, 256)
        with open_image(data) as image:
            assert decode(image).size == (256, 256)


def test_a_repeated_scan_is_refused_from_the_bytes_at_once(tmp_path):
    data = scan_bomb(5000)
    assert len(data) < 2_000_000
    path = tmp_path / "bomb.jpg"
    path.write_bytes(data)
    for source in (data, path):
        started = time.perf_counter()
        with pytest.raises(ImageError) as caught:
            open_image(source)
        assert time.perf_counter() - started < 1.0
        assert caught.value.fault == "too_costly"
        assert caught.value.reason == "too many progressive scans (5,010 scans, more than the limit 100)"
        with pytest.raises(ImageError, match="too many progressive scans"):
            load_image(source, 224)


def test_a_large_scan_bomb_is_counted_in_well_under_a_second():
    data = scan_bomb(1_500_000, size=64)  # about 18 MB, near the upload cap
    started = time.perf_counter()
    scans, _ = jpeg_scans(data, images.MAX_JPEG_SCANS)
    assert time.perf_counter() - started < 0.5
    assert scans == 1_500_010


def test_too_many_markers_is_refused():
    data = progressive_jpeg(64)
    comments = (b"\xff\xfe\x00\x02") * (images.MAX_JPEG_MARKERS + 1)
    with pytest.raises(ImageError, match=r"too many JPEG markers \(more than 10,000\)"):
        open_image(data[:2] + comments + data[2:])


def test_the_stages_record_the_refusal_and_go_on(tmp_path):
    """ingest's sniffing, the clean stage's check and visent predict name the bomb's fault in the same words;
    the other images go through."""
    from visent.clean.checks import analyse_image
    from visent.ingest.download import sniff_image
    from visent.predict import predict

    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "bomb.jpg").write_bytes(scan_bomb(5000))
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i}.jpg", progressive=True)
    reason = "too many progressive scans (5,010 scans, more than the limit 100)"
    assert sniff_image((folder / "bomb.jpg").read_bytes()) == (None, reason)
    assert analyse_image(folder / "bomb.jpg")[0].reason == reason
    started = time.perf_counter()
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in predict("default", [str(folder)], cache=False)}
    assert time.perf_counter() - started < 30  # the model's start; the bomb itself costs nothing
    assert rows["bomb.jpg"]["status"] == "error"
    assert rows["bomb.jpg"]["error"] == f"{folder / 'bomb.jpg'}: {reason}"
    assert rows["0.jpg"]["status"] == rows["1.jpg"]["status"] == "ok"


# --------------------------------------------------------------------------- memory
def test_a_webp_that_would_take_gigabytes_is_refused_before_decoding(monkeypatch, tmp_path):
    def never(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", never)
    data = webp_header_bomb(9000)
    assert len(data) < 100
    path = tmp_path / "bomb.webp"
    path.write_bytes(data)
    for call in (lambda: load_image(path, 224), lambda: decode(open_image(data), draft=("RGB", (64, 64)))):
        with pytest.raises(ImageError) as caught:
            call()
        assert caught.value.fault == "too_costly"
        # 81 million pixels: the image and libwebp's own two buffers, 16 bytes a pixel
        assert caught.value.reason == "would need 1,236 MB to decode (more than the limit 768 MB)"


def test_the_limit_follows_the_environment(monkeypatch):
    data = png(1000)  # 4 MB decoded
    assert load_image(data, 64).size == (1000, 1000)
    monkeypatch.setenv("VISENT_MAX_DECODE_MB", "2")
    with pytest.raises(ImageError, match=r"^would need 4 MB to decode \(more than the limit 2 MB\)$"):
        load_image(data, 64)
    monkeypatch.setenv("VISENT_MAX_DECODE_MB", "0")  # no limit of its own: the process budget still is one
    assert images.decode_limit() == images.DECODE_BUDGET_MB * 2**20
    monkeypatch.setenv("VISENT_DECODE_BUDGET_MB", "none")
    assert images.decode_limit() is None
    assert load_image(data, 64).size == (1000, 1000)


def test_a_real_lossless_webp_is_measured_as_it_decodes(monkeypatch):
    buffer = io.BytesIO()
    Image.new("RGB", (1500, 1500)).save(buffer, "WEBP", lossless=True)
    data = buffer.getvalue()
    with open_image(data) as image:
        assert images.decode_estimate(image) == 1500 * 1500 * 16
    assert load_image(data, 64).size == (1500, 1500)
    monkeypatch.setenv("VISENT_MAX_DECODE_MB", "32")
    with pytest.raises(ImageError, match="would need 35 MB to decode"):
        load_image(data, 64)


def test_a_large_jpeg_is_estimated_at_its_reduced_size():
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(buffer, "JPEG")
    with open_image(buffer.getvalue()) as image:
        full = image.size
        assert images.decode_estimate(image) == 4000 * 3000 * 4
        image.draft("RGB", (224, 224))
        assert images.decode_estimate(image, full) == 500 * 375 * 4
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(buffer, "JPEG", progressive=True)  # 4:2:0
    with open_image(buffer.getvalue()) as image:
        full = image.size
        image.draft("RGB", (224, 224))
        assert images.decode_estimate(image, full) == 500 * 375 * 4 + 4000 * 3000 * 3  # with its coefficients


# --------------------------------------------------------------------------- the process budget
def test_concurrent_decodes_wait_for_each_other(monkeypatch):
    budget = DecodeBudget(total_mb=10)
    monkeypatch.setattr(images, "DECODE_BUDGET", budget)
    active, most = [0], [0]
    lock = threading.Lock()
    original = PngImagePlugin.PngImageFile.load

    def slow_load(self):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        try:
            return original(self)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", slow_load)
    data = png(1000)  # 4 MB each: two fit in 10 MB at once, three do not
    results, errors = [], []

    def work():
        try:
            results.append(load_image(data, 64).size)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors and results == [(1000, 1000)] * 8
    assert most[0] == 2 and budget.peak <= 10 * 2**20 and budget.used == 0


def test_an_image_over_the_whole_budget_is_refused_not_kept_waiting(monkeypatch):
    budget = DecodeBudget(total_mb=10)
    monkeypatch.setattr(images, "DECODE_BUDGET", budget)
    with budget.hold(8 * 2**20):  # another thread's decode
        started = time.perf_counter()
        with pytest.raises(ImageError, match=r"would need 16 MB to decode \(more than the limit 10 MB\)"):
            load_image(png(2000), 64)
        assert time.perf_counter() - started < 1.0
    assert budget.used == 0
    assert load_image(png(1000), 64).size == (1000, 1000)


def test_a_failed_decode_gives_its_share_back(monkeypatch):
    budget = DecodeBudget(total_mb=10)
    monkeypatch.setattr(images, "DECODE_BUDGET", budget)
    truncated = progressive_jpeg()[:-200]
    with pytest.raises(ImageError, match="truncated"):
        load_image(truncated, 64)
    assert budget.used == 0

