"""Why a trained student is likely of no use: too few posts in a class, no better than chance against its teacher,
a flattened calibration; said in its metrics and as a :class:`WeakModelWarning`."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from visent.core.numeric import LOG_TEMPERATURE_BOUNDS
from visent.core.store import Dataset

__all__ = ["MIN_CLASS_POSTS", "WeakModelWarning", "warn_weak", "weak_model_notes"]

# A class with fewer training posts leaves fewer than 4 in the 20% validation split: too few to learn it from, and
# too few to measure it (its recall moves in steps of 25 points or more).
MIN_CLASS_POSTS = 20


class WeakModelWarning(UserWarning):
    """The student trained, but it is likely of no use: a class has too few posts, or it does no better than
    chance against its teacher's validation labels."""


def weak_model_notes(class_counts: dict[str, int], selection: dict[str, Any],
                     calibration: dict[str, Any] | None) -> list[str]:
    """Why a trained student is likely of no use, one sentence each (none for a healthy one): a class with
    training posts but fewer than :data:`MIN_CLASS_POSTS`; a validation balanced accuracy against the teacher
    within two standard errors of chance (1 / the classes of the validation split); a calibration temperature at
    its upper bound (the head's scores carry nothing the validation split confirms: every probability is flattened
    towards 1 / 3)."""
    notes = []
    few = {name: n for name, n in class_counts.items() if 0 < n < MIN_CLASS_POSTS}
    if few:
        notes.append(f"too few training posts in {', '.join(f'{name} ({n})' for name, n in few.items())}: a class "
                     f"needs {MIN_CLASS_POSTS} or more")
    accuracy = selection.get("chosen", {}).get("val_balanced_accuracy")
    val_counts = [n for n in (selection.get("val_class_counts") or {}).values() if n > 0]
    if accuracy is not None and len(val_counts) >= 2:
        # Balanced accuracy is the mean recall of the k classes; a student at chance has recall 1/k in each class,
        # with the binomial spread of its n_c validation posts.
        k = len(val_counts)
        chance = 1.0 / k
        noise = 2.0 * math.sqrt(sum(chance * (1.0 - chance) / n for n in val_counts)) / k
        if accuracy <= chance + noise:
            notes.append(f"its balanced accuracy against the teacher's labels of {sum(val_counts)} validation posts, "
                         f"{accuracy:.3f}, is within noise of chance (chance {chance:.3f}, two standard errors "
                         f"{noise:.3f})")
    temperature = (calibration or {}).get("temperature")
    if temperature is not None and math.log(temperature) >= LOG_TEMPERATURE_BOUNDS[1] - 0.01:
        notes.append(f"its calibration temperature is at the upper bound ({temperature:.1f}): its probabilities "
                     "are flattened to about the same for every class")
    return notes


def warn_weak(out: Path, dataset: Dataset, notes: list[str]) -> None:
    if notes:
        warnings.warn(f"{out}: the model trained on {dataset.root} is likely of no use: {'; '.join(notes)}. Train it "
                      "on more posts (ingest more, or loosen the thresholds, `visent clean --help`) and check it on "
                      "human labels with `visent evaluate`", WeakModelWarning, stacklevel=3)
