"""The three sentiment classes and the label spellings visent accepts."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("negative", "neutral", "positive")
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# Serra et al.'s per-class confidence thresholds for keeping a teacher's label: what the clean stage applies when
# the teacher declared none of its own (a teacher's confidences have a scale of their own).
SERRA_THRESHOLDS: dict[str, float] = {"negative": 0.7, "neutral": 0.9, "positive": 0.9}

_ALIASES = {
    "negative": "negative", "neg": "negative", "-1": "negative",
    "neutral": "neutral", "neu": "neutral",
    "positive": "positive", "pos": "positive", "+1": "positive",
}


def normalise_label(value: object, *, binary_digits: bool = False) -> str | None:
    """Map a label spelling to one of CLASSES, or None when it is not a sentiment label.

    With ``binary_digits`` the digits follow the Twitter n-agree files (0 = negative, 1 = positive);
    otherwise 0/1/2 follow the XLM-T convention (0 = negative, 1 = neutral, 2 = positive).
    """
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in _ALIASES:
        return _ALIASES[text]
    if binary_digits:
        return {"0": "negative", "1": "positive"}.get(text)
    return {"0": "negative", "1": "neutral", "2": "positive"}.get(text)
