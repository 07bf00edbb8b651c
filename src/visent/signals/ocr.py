"""OCR signal: the text written inside an image (memes, screenshots, captions) and what the text teacher reads in it.

A tweet's photo often carries words of its own; their sentiment is a cue the backbone hardly sees. The text
reader is RapidOCR (PP-OCRv4 detection and recognition, ONNX models shipped inside the
``rapidocr-onnxruntime`` package, run with ONNX Runtime)::

    texts, status = ocr_texts(paths)                    # the text read in each image ("" when none)
    X, status = ocr_features(paths, teacher=load_teacher("vader"))    # (n, 5): OCR_FEATURES

For speed, each image is first shrunk so that its longer side is at most ``max_side`` pixels, text is
detected at that size (RapidOCR's default would enlarge the shorter side to 736 pixels), the angle
classifier is skipped (tweets' text is nearly always upright), and recognition runs only on the boxes
found, so an image without text costs one detection pass. The texts are cached per image SHA-256 in a
:class:`~visent.embed.cache.FeatureCache` under a key of their own (:func:`ocr_key`); the teacher then
reads them afresh (it is fast), so one OCR pass serves any teacher.

:func:`visent.embed.cached.cached_image_pass` does the rest for both image signals (this one and
:mod:`visent.signals.faces`), as for the backbones: content hashing, cache look-up, decoding in threads, a status
per image.
"""

from __future__ import annotations

import functools
import threading
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from visent.core.errors import UsageError, VisentError
from visent.core.images import load_image
from visent.core.labels import CLASSES
from visent.core.status import ImageStatus
from visent.core.version import package_version
from visent.embed.cache import FeatureCache
from visent.embed.cached import cached_image_pass, per_image
from visent.teach.base import Teacher

OCR_VERSION = 1  # bump when the recipe below changes, so cached texts are recomputed
MAX_SIDE = 768  # longer side (pixels) at which text is detected and read
TEXT_CHARS = 1024  # characters of recognised text kept (and returned) per image
MIN_SCORE = 0.5  # recognition confidence below which a box's text is dropped
OCR_FEATURES: tuple[str, ...] = ("has_text", "log1p_chars") + tuple(f"text_{c}" for c in CLASSES)
"""Columns of :func:`ocr_features`, in order."""

_HEADER = 4  # cached vector: [length, non-space characters, boxes, mean confidence, code points (TEXT_CHARS)]


class SignalNotAvailable(VisentError, ImportError):
    """An optional package an image signal needs is not installed (the message says which to install)."""


# --------------------------------------------------------------------------- shared by the image signals
def resolve_cache(cache: FeatureCache | bool | None) -> FeatureCache | None:
    """``True`` → the default cache (``$VISENT_CACHE/features``), ``False``/``None`` → no cache."""
    if isinstance(cache, FeatureCache):
        return cache
    return FeatureCache() if cache else None


def load_rgb(path: Path, max_side: int) -> Image.Image:
    """``path`` as RGB (EXIF-oriented), shrunk so that its longer side is at most ``max_side`` pixels."""
    image = load_image(path, max_side)
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return image


# --------------------------------------------------------------------------- OCR
def _package_version() -> str:
    try:
        return package_version("rapidocr-onnxruntime", default=None)
    except PackageNotFoundError as exc:
        raise SignalNotAvailable("the OCR signal needs RapidOCR: `pip install rapidocr-onnxruntime`") from exc


def ocr_key(max_side: int = MAX_SIDE) -> str:
    """Cache key of the OCR texts: RapidOCR version, image size and recipe version."""
    return f"ocr|rapidocr-{_package_version()}|max_side={max_side}|det=max|cls=0|score={MIN_SCORE}|v{OCR_VERSION}"


_READ_LOCK = threading.Lock()  # one image at a time through the reader, whichever thread calls


@functools.lru_cache(maxsize=None)
def _reader(threads: int | None) -> Any:
    """One RapidOCR reader per thread count, made on first use (loading the three ONNX models takes about a
    second)."""
    _package_version()
    import logging

    from rapidocr_onnxruntime import RapidOCR

    reader = RapidOCR(det_limit_type="max", use_cls=False, text_score=MIN_SCORE,
                      intra_op_num_threads=threads or -1, inter_op_num_threads=1)
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return reader


def read_text(reader: Any, image: Image.Image) -> tuple[str, int, float]:
    """(text, boxes, mean confidence) read in ``image``: the boxes' texts in reading order, joined by spaces.

    A box whose text has fewer than two letters or digits is dropped (stray marks read as "l", "D").
    """
    with _READ_LOCK:
        result, _ = reader(image)
    kept = [(str(text).strip(), float(score)) for _, text, score in (result or [])
            if sum(ch.isalnum() for ch in str(text)) >= 2]
    if not kept:
        return "", 0, 0.0
    return " ".join(t for t, _ in kept), len(kept), float(np.mean([s for _, s in kept]))


def _encode(text: str, boxes: int, score: float) -> np.ndarray:
    codes = np.zeros(_HEADER + TEXT_CHARS, dtype=np.float32)  # float32 holds every code point (< 2**24) exactly
    codes[:_HEADER] = (len(text), sum(not ch.isspace() for ch in text), boxes, score)
    head = [ord(ch) for ch in text[:TEXT_CHARS]]
    codes[_HEADER:_HEADER + len(head)] = head
    return codes


def _decode(vector: np.ndarray) -> str:
    n = int(min(vector[0], TEXT_CHARS))
    return "".join(chr(int(c)) for c in vector[_HEADER:_HEADER + n])


def _ocr_pass(paths: Sequence[Path | str | None], *, max_side: int, cache: FeatureCache | bool | None,
              hashes: Sequence[str | None] | None, threads: int | None,
              workers: int) -> tuple[np.ndarray, list[ImageStatus]]:
    if max_side < 32:
        raise UsageError(f"max_side must be at least 32 pixels, got {max_side}")
    reader = _reader(threads)
    return cached_image_pass(paths, ocr_key(max_side), _HEADER + TEXT_CHARS,
                             load=lambda path: load_rgb(path, max_side),
                             compute=per_image(lambda image: _encode(*read_text(reader, image))),
                             cache=resolve_cache(cache), hashes=hashes, workers=workers, label="ocr")


def ocr_texts(paths: Sequence[Path | str | None], *, max_side: int = MAX_SIDE, cache: FeatureCache | bool = True,
              hashes: Sequence[str | None] | None = None, threads: int | None = None,
              workers: int = 2) -> tuple[list[str | None], list[ImageStatus]]:
    """The text read in each image ("" when none; None for an unreadable file) and a status per image.

    Status is an :class:`~visent.core.status.ImageStatus`: ok, cached or an error. Texts are cut at :data:`TEXT_CHARS`
    characters. ``max_side`` bounds the image's longer side before detection (smaller is faster, larger reads
    smaller print); ``threads`` is ONNX Runtime's thread count (default: every core); ``workers`` threads decode
    images meanwhile. ``cache``: a FeatureCache, True for the default one, False for none.
    """
    vectors, status = _ocr_pass(paths, max_side=max_side, cache=cache, hashes=hashes, threads=threads,
                                workers=workers)
    texts = [_decode(v) if s.ok else None for v, s in zip(vectors, status)]
    return texts, status


def ocr_features(paths: Sequence[Path | str | None], teacher: Teacher, *, max_side: int = MAX_SIDE,
                 cache: FeatureCache | bool = True, hashes: Sequence[str | None] | None = None,
                 threads: int | None = None, workers: int = 2) -> tuple[np.ndarray, list[ImageStatus]]:
    """Per image the float32 vector :data:`OCR_FEATURES`, and a status per image (as :func:`ocr_texts`).

    ``[has_text, log1p(characters), P(negative), P(neutral), P(positive)]``: the probabilities are the text
    teacher's reading of the image's text (``teacher``: a :class:`visent.teach.Teacher`),
    uniform when the image has no text. Rows of unreadable files are NaN.
    """
    vectors, status = _ocr_pass(paths, max_side=max_side, cache=cache, hashes=hashes, threads=threads,
                                workers=workers)
    out = np.full((len(status), len(OCR_FEATURES)), np.nan, dtype=np.float32)
    good = [i for i, s in enumerate(status) if s.ok]
    texts = {i: _decode(vectors[i]) for i in good}
    with_text = [i for i in good if texts[i].strip()]
    has_text = set(with_text)
    for i in good:
        out[i, :2] = (1.0 if i in has_text else 0.0, np.log1p(vectors[i, 1]))
        out[i, 2:] = 1.0 / len(CLASSES)
    if with_text:
        out[with_text, 2:] = teacher.predict_proba([texts[i] for i in with_text])
    return out, status
