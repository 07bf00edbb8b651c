"""The model a user loads: :class:`VisentModel` with everything built on it, ``visent.load(...)``'s type.

The model layer knows nothing of sentiment maps or training; this class joins them for the Python API, so that
``visent.load("default").explain("photo.jpg")`` works while the layers below stay one-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visent.explain import Explanation, explain
from visent.model import DEFAULT_MODEL, VisentModel

__all__ = ["Model", "load"]


class Model(VisentModel):
    """A trained student: ``predict``, ``predict_proba`` (see :class:`VisentModel`) and ``explain``."""

    def explain(self, image: Any, *, method: str = "auto") -> Explanation:
        """The prediction for one image (a path, PIL image, array or file bytes) with its sentiment maps (see
        :mod:`visent.explain`); raises ``visent.explain.ExplainError`` when the image cannot be read."""
        return explain(self, image, method=method)


def load(model: str | Path = DEFAULT_MODEL) -> Model:
    """A trained student: a model directory, or the name of a model shipped with visent (``"default"``)."""
    return Model.load(model)
