"""OCR signal: the text written inside an image (memes, screenshots, captions) and what the text teacher reads in it.

A tweet's photo often carries words of its own; their sentiment is a cue the backbone hardly sees. The OCR
engine is RapidOCR (PP-OCRv4 detection and recognition, ONNX models shipped inside the
``rapidocr-onnxruntime`` package, run with ONNX Runtime)::

    texts, status = ocr_texts(paths)                    # the text read in each image ("" when none)
    X, status = ocr_features(paths, teacher=load_teacher("vader"))    # (n, 5): OCR_FEATURES

For speed, each image is first shrunk so that its longer side is at most ``max_side`` pixels, text is
detected at that size (the engine's default would enlarge the shorter side to 736 pixels), the angle
classifier is skipped (tweets' text is nearly always upright), and recognition runs only on the boxes
found, so an image without text costs one detection pass. The texts are cached per image SHA-256 in a
:class:`~visent.embed.cache.FeatureCache` under a key of their own (:func:`ocr_key`); the teacher then
reads them afresh (it is fast), so one OCR pass serves any teacher.

:func:`cached_image_pass` is the machinery both image signals (this one and :mod:`visent.signals.faces`)
share: content hashing, cache look-up, decoding in threads, per-image error statuses.
"""

from __future__ import annotations

import threading
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from visent.core.errors import UsageError, VisentError
from visent.core.images import load_image
from visent.core.labels import CLASSES
from visent.core.progress import progress
from visent.core.version import package_version
from visent.embed.cache import FeatureCache
from visent.embed.features import FLUSH_EVERY, _try, describe_error, file_hashes, pending_images, prefetched
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
def cached_image_pass(paths: Sequence[Path | str | None], key: str, dim: int, *,
                      load: Callable[[Path], Any], infer: Callable[[Any], np.ndarray],
                      cache: FeatureCache | None, hashes: Sequence[str | None] | None = None,
                      workers: int = 2, batch_size: int = 16,
                      label: str = "signal") -> tuple[np.ndarray, list[str]]:
    """One float32 vector of ``dim`` per image, computed once per distinct image and cached by content.

    ``load(path)`` runs in ``workers`` threads (decoding) ahead of ``infer(loaded)``, which runs in the calling
    thread (the models are not thread-safe). Status is ``"ok"``, ``"cached"`` or ``"error: <file>: <reason>"``
    (row NaN) for a missing or unreadable file or an image the model cannot take; no image stops the run.
    """
    n = len(paths)
    rows = np.full((n, dim), np.nan, dtype=np.float32)
    digests, errors = file_hashes(paths, hashes, workers)
    status = [error or "" for error in errors]

    if cache is not None:
        found = cache.get_many(key, [d for d in digests if d is not None])
        for i, digest in enumerate(digests):
            if digest in found and found[digest].shape == (dim,):
                rows[i], status[i] = found[digest], "cached"

    rows_of, todo = pending_images(paths, digests, status)
    if not todo:
        return rows, status

    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    fresh: dict[str, np.ndarray] = {}
    try:
        with progress(label, len(todo)) as advance:
            for batch, loaded in zip(batches, prefetched(batches, lambda item: load(item[1]), workers)):
                for (digest, path), item in zip(batch, loaded):
                    result = item if isinstance(item, Exception) else _try(infer, item)
                    if isinstance(result, Exception):
                        for i in rows_of[digest]:
                            status[i] = describe_error(path, result)
                        continue
                    vector = np.asarray(result, dtype=np.float32).reshape(dim)
                    fresh[digest] = vector
                    for i in rows_of[digest]:
                        rows[i], status[i] = vector, "ok"
                if cache is not None and len(fresh) >= FLUSH_EVERY:
                    cache.put_many(key, fresh)
                    fresh = {}
                advance(len(batch))
    finally:
        if cache is not None:
            cache.put_many(key, fresh)  # keep finished work even when interrupted
    return rows, status


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
    """Cache key of the OCR texts: engine version, image size and recipe version."""
    return f"ocr|rapidocr-{_package_version()}|max_side={max_side}|det=max|cls=0|score={MIN_SCORE}|v{OCR_VERSION}"


_ENGINES: dict[int | None, Any] = {}
_ENGINES_LOCK = threading.Lock()
_READ_LOCK = threading.Lock()  # one image at a time through the engine, whichever thread calls


def _engine(threads: int | None) -> Any:
    """One RapidOCR engine per thread count (loading the three ONNX models takes about a second)."""
    _package_version()
    with _ENGINES_LOCK:
        if threads not in _ENGINES:
            import logging

            from rapidocr_onnxruntime import RapidOCR

            _ENGINES[threads] = RapidOCR(det_limit_type="max", use_cls=False, text_score=MIN_SCORE,
                                         intra_op_num_threads=threads or -1, inter_op_num_threads=1)
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        return _ENGINES[threads]


def read_text(engine: Any, image: Image.Image) -> tuple[str, int, float]:
    """(text, boxes, mean confidence) read in ``image``: the boxes' texts in reading order, joined by spaces.

    A box whose text has fewer than two letters or digits is dropped (stray marks read as "l", "D").
    """
    with _READ_LOCK:
        result, _ = engine(image)
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
              workers: int) -> tuple[np.ndarray, list[str]]:
    if max_side < 32:
        raise UsageError(f"max_side must be at least 32 pixels, got {max_side}")
    engine = _engine(threads)
    return cached_image_pass(paths, ocr_key(max_side), _HEADER + TEXT_CHARS,
                             load=lambda path: load_rgb(path, max_side),
                             infer=lambda image: _encode(*read_text(engine, image)),
                             cache=resolve_cache(cache), hashes=hashes, workers=workers, label="ocr")


def ocr_texts(paths: Sequence[Path | str | None], *, max_side: int = MAX_SIDE, cache: FeatureCache | bool = True,
              hashes: Sequence[str | None] | None = None, threads: int | None = None,
              workers: int = 2) -> tuple[list[str | None], list[str]]:
    """The text read in each image ("" when none; None for an unreadable file) and a status per image.

    Status is ``"ok"``, ``"cached"`` or ``"error: <file>: <reason>"``. Texts are cut at :data:`TEXT_CHARS`
    characters. ``max_side`` bounds the image's longer side before detection (smaller is faster, larger reads
    smaller print); ``threads`` is ONNX Runtime's thread count (default: every core); ``workers`` threads decode
    images meanwhile. ``cache``: a FeatureCache, True for the default one, False for none.
    """
    vectors, status = _ocr_pass(paths, max_side=max_side, cache=cache, hashes=hashes, threads=threads,
                                workers=workers)
    texts = [None if s.startswith("error") else _decode(v) for v, s in zip(vectors, status)]
    return texts, status


def ocr_features(paths: Sequence[Path | str | None], teacher: Teacher, *, max_side: int = MAX_SIDE,
                 cache: FeatureCache | bool = True, hashes: Sequence[str | None] | None = None,
                 threads: int | None = None, workers: int = 2) -> tuple[np.ndarray, list[str]]:
    """Per image the float32 vector :data:`OCR_FEATURES`, and a status per image (as :func:`ocr_texts`).

    ``[has_text, log1p(characters), P(negative), P(neutral), P(positive)]``: the probabilities are the text
    teacher's reading of the image's text (``teacher``: a :class:`visent.teach.Teacher`),
    uniform when the image has no text. Rows of unreadable files are NaN.
    """
    vectors, status = _ocr_pass(paths, max_side=max_side, cache=cache, hashes=hashes, threads=threads,
                                workers=workers)
    out = np.full((len(status), len(OCR_FEATURES)), np.nan, dtype=np.float32)
    good = [i for i, s in enumerate(status) if not s.startswith("error")]
    texts = {i: _decode(vectors[i]) for i in good}
    with_text = [i for i in good if texts[i].strip()]
    has_text = set(with_text)
    for i in good:
        out[i, :2] = (1.0 if i in has_text else 0.0, np.log1p(vectors[i, 1]))
        out[i, 2:] = 1.0 / len(CLASSES)
    if with_text:
        out[with_text, 2:] = teacher.predict_proba([texts[i] for i in with_text])
    return out, status
