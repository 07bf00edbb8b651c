"""The teacher contract and the registry of named teachers."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from visent.registry import Registry


@runtime_checkable
class Teacher(Protocol):
    """Reads post texts and gives sentiment probabilities.

    ``predict_proba`` takes raw post texts (the teacher does its own normalisation) and returns
    an ``(n, 3)`` float array whose columns follow :data:`visent.labels.CLASSES` and whose rows
    sum to 1.
    """

    name: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


TEACHERS: Registry[Teacher] = Registry("teacher")

# Per-class confidence thresholds measured for a teacher (its confidences have their own scale).
# Teachers without an entry get the cleaning stage's defaults, those of Serra et al.
TEACHER_THRESHOLDS: dict[str, dict[str, float]] = {}


def load_teacher(name: str = "default", **kw: Any) -> Teacher:
    """Build the teacher registered as ``name`` (see ``TEACHERS.describe()``), or load a teacher
    directory made by ``visent teacher train`` when ``name`` is its path; ``kw`` go to the factory."""
    if name not in TEACHERS:
        from pathlib import Path

        from visent.teach.ensemble import TEACHER_FILE, TrainedTeacher

        if (Path(name) / TEACHER_FILE).is_file():
            return TrainedTeacher(name, **kw)
    return TEACHERS.create(name, **kw)
