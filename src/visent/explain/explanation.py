"""An :class:`Explanation`: a prediction for one image and its sentiment maps, drawn over the photo."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from visent.core.errors import UsageError
from visent.core.labels import CLASSES
from visent.explain.render import overlay, panel

__all__ = ["DISPLAY_SIZE", "Explanation", "to_png"]

DISPLAY_SIZE = 512  # longer side of the photo the maps are drawn on


@dataclass
class Explanation:
    """A prediction and its sentiment maps for one image."""

    image: Image.Image  # the photo as shown (RGB, longer side at most DISPLAY_SIZE)
    probabilities: dict[str, float]
    maps: np.ndarray  # (3, GRID, GRID) evidence per class (logit units), over the central square the model sees
    method: str  # "cam" or "gradcam"
    source: str = ""

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)  # type: ignore[arg-type]

    def overlay(self, cls: str | None = None) -> Image.Image:
        """The photo with the map of ``cls`` (default: the predicted class) over the square the model sees."""
        cls = cls or self.label
        if cls not in CLASSES:
            raise UsageError(f"unknown class {cls!r}; choose one of: {', '.join(CLASSES)}")
        return overlay(self.image, self.maps, CLASSES.index(cls))

    def panel(self) -> Image.Image:
        """The photo and the three class maps side by side, each captioned with its probability."""
        return panel(self.image, self.maps, self.probabilities)

    def save(self, directory: str | Path, stem: str) -> list[Path]:
        """Write ``<stem>.<class>.png`` for each class and ``<stem>.panel.png``; returns the paths."""
        from visent.core.store import atomic_write_bytes

        directory = Path(directory)
        written = []
        for cls in CLASSES:
            written.append(directory / f"{stem}.{cls}.png")
            atomic_write_bytes(written[-1], to_png(self.overlay(cls)))
        written.append(directory / f"{stem}.panel.png")
        atomic_write_bytes(written[-1], to_png(self.panel()))
        return written


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
