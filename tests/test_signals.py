"""Image signals: OCR text (RapidOCR + the text teacher) and faces (CenterFace + FER expressions).

Fixtures are made here: a word rendered with Pillow's bundled font, text-free images, scikit-image's astronaut
photo (one smiling face) and files that are not images. The tests of each signal skip when its optional packages
are missing; the shared machinery and the pure helpers are tested without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from visent.core.labels import CLASSES
from visent.core.status import ImageStatus
from visent.embed.cache import FeatureCache
from visent.embed.cached import cached_image_pass, per_image
from visent.signals.faces import EMOTIONS, FACE_FEATURES, _resize_bilinear, decode_centerface, fer_face_crops
from visent.signals.ocr import OCR_FEATURES, load_rgb
from visent.teach import load_teacher


def _word(path: Path, word: str, size: tuple[int, int] = (640, 240), font_size: int = 96) -> Path:
    image = Image.new("RGB", size, "white")
    font = ImageFont.load_default(size=font_size)  # Pillow's bundled TrueType font
    ImageDraw.Draw(image).text((size[0] // 16, size[1] // 3), word, fill="black", font=font)
    image.save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    plain = tmp_path / "plain.png"
    Image.new("RGB", (320, 240), (90, 140, 200)).save(plain)
    gradient = tmp_path / "gradient.jpg"
    ramp = np.linspace(0, 255, 400, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (300, 1))] * 3, axis=-1)).save(gradient)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a JPEG")
    return {"plain": plain, "gradient": gradient, "broken": broken, "missing": tmp_path / "missing.jpg"}


# --------------------------------------------------------------------------- shared machinery (no optional packages)
def test_cached_image_pass_statuses_errors_and_cache(tmp_path: Path, images: dict[str, Path]) -> None:
    calls: list[Path] = []

    def load(path: Path) -> Image.Image:
        calls.append(path)
        return load_rgb(path, 64)

    def infer(image: Image.Image) -> np.ndarray:
        if np.asarray(image).std(axis=(0, 1)).max() == 0:  # plain.png: pretend the model rejects a uniform image
            raise ValueError("model cannot take this image")
        return np.array([image.width, image.height], dtype=np.float32)

    cache = FeatureCache(tmp_path / "cache")
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(images["gradient"].read_bytes())
    paths = [images["gradient"], copy, images["plain"], images["broken"], images["missing"], None]
    rows, status = cached_image_pass(paths, "test|v1", 2, load=load, compute=per_image(infer), cache=cache,
                                     workers=2)
    assert [s.state for s in status[:2]] == ["ok", "ok"] and rows[0].tolist() == [64, 48] and rows[1].tolist() == [64, 48]
    assert len(calls) == 3  # the identical copy was decoded once
    assert status[2] == ImageStatus("error", "ValueError: model cannot take this image", str(images["plain"]))
    assert status[2].message == f"{images['plain']}: ValueError: model cannot take this image"
    assert status[3].failed and status[3].file == str(images["broken"])
    assert status[4].failed and status[4].file == str(images["missing"])
    assert status[5] == ImageStatus("error", "no image file")
    assert np.isnan(rows[2:]).all()

    rows2, status2 = cached_image_pass(paths[:2], "test|v1", 2, load=load, compute=per_image(infer), cache=cache)
    assert [s.state for s in status2] == ["cached", "cached"] and np.array_equal(rows2, rows[:2]) and len(calls) == 3


def test_load_rgb_bounds_the_longer_side(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (2000, 500), 128).save(path)
    image = load_rgb(path, 768)
    assert image.mode == "RGB" and image.size == (768, 192)


def test_centerface_decoding_and_nms() -> None:
    heat = np.zeros((20, 30), dtype=np.float32)
    heat[5, 10], heat[5, 11], heat[15, 25] = 0.9, 0.6, 0.7  # two overlapping peaks and one apart
    scale = np.full((2, 20, 30), np.log(40 / 4), dtype=np.float32)  # 40 x 40 pixel boxes
    offset = np.zeros((2, 20, 30), dtype=np.float32)
    boxes = decode_centerface(heat, scale, offset, width=120, height=80, threshold=0.5)
    assert boxes.shape == (2, 5)
    np.testing.assert_allclose(boxes[0], [22, 2, 62, 42, 0.9], rtol=1e-6)  # centre (42, 22), strongest first
    np.testing.assert_allclose(boxes[1, :4], [82, 42, 120, 80])  # clipped to the image
    assert decode_centerface(heat, scale, offset, 120, 80, threshold=0.95).shape == (0, 5)


def test_fer_crop_is_square_scaled_and_resized_like_opencv() -> None:
    gray = np.tile(np.arange(200, dtype=np.uint8), (100, 1))  # brightness = x
    faces = fer_face_crops(gray, np.array([[60.0, 20.0, 100.0, 80.0, 0.9]]))  # 40 wide, 60 tall
    assert faces.shape == (1, 64, 64) and faces.dtype == np.float32
    assert -1.0 <= faces.min() and faces.max() <= 1.0
    # square of side 60 about the box centre (x 50..110), widened by 10 pixels a side: x 40..120
    row = (faces[0, 32] / 2 + 0.5) * 255
    assert row[0] == pytest.approx(40 + 80 / 64 / 2 - 0.5, abs=1e-3) and row[-1] == pytest.approx(118.875, abs=1e-3)
    # bilinear with half-pixel centres: a 2x upscale of [0, 10] gives [0, 2.5, 7.5, 10]
    np.testing.assert_allclose(_resize_bilinear(np.array([[0.0, 10.0]] * 2), 4)[0], [0, 2.5, 7.5, 10])


# --------------------------------------------------------------------------- OCR
@pytest.fixture
def ocr():
    pytest.importorskip("rapidocr_onnxruntime", reason="OCR needs `pip install rapidocr-onnxruntime`")
    from visent.signals import ocr

    return ocr


class _FixedTeacher:
    name = "fixed"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict_proba(self, texts):
        self.seen.extend(texts)
        return np.tile([0.1, 0.2, 0.7], (len(texts), 1))


def test_ocr_reads_a_rendered_word_and_nothing_in_plain_images(ocr, tmp_path: Path, images) -> None:
    word = _word(tmp_path / "word.png", "SUNSHINE")
    big = _word(tmp_path / "big.png", "GOAL", size=(2400, 1000), font_size=320)  # shrunk to 768 px first
    paths = [word, big, images["plain"], images["gradient"], images["broken"], None]
    texts, status = ocr.ocr_texts(paths, threads=1)
    assert texts[0].replace(" ", "").upper() == "SUNSHINE"
    assert texts[1].replace(" ", "").upper() == "GOAL"
    assert texts[2:4] == ["", ""] and [s.state for s in status[:4]] == ["ok"] * 4
    assert texts[4] is None and status[4].failed and status[4].file == str(images["broken"])
    assert texts[5] is None and status[5] == ImageStatus("error", "no image file")

    teacher = _FixedTeacher()
    X, status = ocr.ocr_features(paths, teacher=teacher, threads=1)
    assert X.shape == (6, len(OCR_FEATURES)) and [s.state for s in status[:4]] == ["cached"] * 4  # the texts came from the cache
    assert [t.replace(" ", "").upper() for t in teacher.seen] == ["SUNSHINE", "GOAL"]  # only images with text
    np.testing.assert_allclose(X[0], [1, np.log1p(8), 0.1, 0.2, 0.7], rtol=1e-6)
    np.testing.assert_allclose(X[2], [0, 0, 1 / 3, 1 / 3, 1 / 3], rtol=1e-6)  # no text: uniform
    np.testing.assert_allclose(X[3], X[2])
    assert np.isnan(X[4:]).all()


def test_ocr_features_use_the_text_teacher(ocr, tmp_path: Path) -> None:
    happy, sad = _word(tmp_path / "happy.png", "HAPPY"), _word(tmp_path / "sad.png", "TERRIBLE")
    X, status = ocr.ocr_features([happy, sad], teacher=load_teacher("vader"), threads=1, cache=False)
    assert [s.state for s in status] == ["ok", "ok"]
    np.testing.assert_allclose(X[:, 2:].sum(axis=1), 1, rtol=1e-5)
    positive, negative = CLASSES.index("positive"), CLASSES.index("negative")
    assert X[0, 2 + positive] > X[0, 2 + negative] and X[1, 2 + negative] > X[1, 2 + positive]


# --------------------------------------------------------------------------- faces
@pytest.fixture
def faces():
    pytest.importorskip("onnxruntime", reason="the face detector needs `pip install onnx onnxruntime`")
    pytest.importorskip("onnx", reason="the face detector needs `pip install onnx onnxruntime`")
    pytest.importorskip("ai_edge_litert", reason="the expression model needs `pip install ai-edge-litert`")
    from visent.signals import faces
    from visent.signals.ocr import SignalNotAvailable

    try:
        faces.detector_path(), faces.expression_model_path()
    except SignalNotAvailable as exc:
        pytest.skip(str(exc))
    return faces


def test_faces_finds_the_astronaut_smiling(faces, tmp_path: Path, images) -> None:
    data = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo, quality=95)
    paths = [photo, images["plain"], images["gradient"], images["broken"], images["missing"], None]
    X, status = faces.face_features(paths)
    assert X.shape == (6, len(FACE_FEATURES)) and [s.state for s in status[:3]] == ["ok"] * 3
    assert round(float(np.expm1(X[0, 0]))) == 1  # one face
    assert 0.02 < X[0, 1] < 0.2  # the face covers a few per cent of the 512 x 512 photo
    expression = X[0, 2:]
    assert expression.sum() == pytest.approx(1.0, abs=1e-5) and (expression >= 0).all()
    assert EMOTIONS[int(expression.argmax())] == "happy"
    assert not X[1:3].any()  # no face: zeros
    assert all(s.failed for s in status[3:]) and np.isnan(X[3:]).all()

    X2, status2 = faces.face_features(paths[:3])
    assert [s.state for s in status2] == ["cached"] * 3 and np.array_equal(X2, X[:3])


def test_faces_ignores_faces_below_the_minimum_size(faces, tmp_path: Path) -> None:
    data = pytest.importorskip("skimage.data")
    tiny = tmp_path / "tiny.png"  # the astronaut at 1/8 scale: her face is about 12 pixels wide
    Image.fromarray(data.astronaut()).resize((64, 64), Image.Resampling.LANCZOS).save(tiny)
    X, status = faces.face_features([tiny], cache=False)
    assert [s.state for s in status] == ["ok"] and not X.any()
