"""The teacher contract: what the teach stage, the image signals and ``visent teacher predict`` rely on."""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from visent.core.errors import UnknownName, VisentError
from visent.core.labels import SERRA_THRESHOLDS

__all__ = ["SERRA_THRESHOLDS", "Teacher", "TeacherError", "TeacherNotFound", "UnknownTeacher"]


class TeacherError(VisentError, ValueError):
    """A teacher cannot be loaded: a teacher directory that is broken or was not made by ``visent teacher train``,
    or weights that do not fit its encoder."""


class TeacherNotFound(TeacherError, FileNotFoundError):
    """A teacher directory, or a file it or ``visent teacher train`` needs, does not exist."""


class UnknownTeacher(TeacherError, UnknownName):
    """A teacher name that is not registered (the message lists the registered ones)."""


@runtime_checkable
class Teacher(Protocol):
    """Reads post texts and gives sentiment probabilities.

    ``predict_proba`` takes raw post texts (the teacher does its own normalisation) and returns an ``(n, 3)``
    float array whose columns follow :data:`visent.core.labels.CLASSES` and whose rows sum to 1; a teacher whose
    ``accepts_languages`` is true also takes ``languages=`` (the posts' ISO 639-1 codes, None where unknown).
    ``fingerprint`` names the weights and options, so that a changed teacher re-runs the teach stage;
    ``thresholds`` are the per-class confidences the clean stage keeps a label from (its confidences have a
    scale of their own), :data:`SERRA_THRESHOLDS` where nothing was measured.
    """

    name: str
    fingerprint: str
    thresholds: Mapping[str, float]
    accepts_languages: bool

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...
