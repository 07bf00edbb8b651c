"""The registry of image signals (:data:`SIGNALS`) and :func:`signal_features`, which computes a model's signals
side by side, as training and prediction do."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visent.core.errors import UnknownName
from visent.core.registry import Registry
from visent.core.status import OK, ImageStatus, first_error
from visent.teach.base import Teacher

SignalFunction = Callable[..., tuple[np.ndarray, list[ImageStatus]]]
SIGNALS: Registry[SignalFunction] = Registry("signal")


@SIGNALS.register("ocr", "text inside the image (RapidOCR), scored by the text teacher: has_text, log1p(chars), "
                         "P(neg, neu, pos) (5 values)")
def _ocr() -> SignalFunction:
    from visent.signals.ocr import ocr_features

    return ocr_features


@SIGNALS.register("faces", "faces (CenterFace) and their expressions (FER): log1p(faces), largest face area, "
                           "7 expression probabilities (9 values)")
def _faces() -> SignalFunction:
    from visent.signals.faces import face_features

    def faces(paths: Sequence[Path | None], teacher: Any = None,
              **kwargs: Any) -> tuple[np.ndarray, list[ImageStatus]]:
        return face_features(paths, **kwargs)

    return faces


def check_signals(names: Sequence[str]) -> list[str]:
    """``names`` as a list, each a registered signal (else a ValueError that lists them)."""
    unknown = [name for name in names if name not in SIGNALS]
    if unknown:
        raise UnknownName(f"unknown signal {unknown[0]!r}; choose from: {', '.join(SIGNALS)}")
    return list(names)


def signal_features(names: Sequence[str], paths: Sequence[Path | None], hashes: Sequence[str | None] | None = None,
                    *, cache: bool = True,
                    teacher: Teacher | None = None) -> tuple[np.ndarray, list[ImageStatus]]:
    """The signals ``names`` side by side, float32 (n, total width), and a status per image: the first
    error any signal gave for it, else ok. Rows of images a signal could not read are NaN."""
    n = len(paths)
    blocks = [np.zeros((n, 0), np.float32)]
    status = [OK] * n
    for name in check_signals(names):
        values, statuses = SIGNALS.create(name)(paths, teacher=teacher, cache=cache, hashes=hashes)
        blocks.append(np.asarray(values, dtype=np.float32))
        status = first_error(status, statuses)
    return np.hstack(blocks), status
