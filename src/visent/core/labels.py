"""The three sentiment classes and the label spellings visent accepts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

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


def digits_are_binary(labels: Iterable[object]) -> bool:
    """Whether the digit labels among ``labels`` follow the 0/1 = negative/positive convention: they do unless a
    digit other than 0 and 1 (a 2: XLM-T's 0/1/2) appears; False when there are no digit labels."""
    digits = {text for text in (str(label).strip() for label in labels) if text.isdigit()}
    return bool(digits) and digits <= {"0", "1"}


def read_labelled_images(path: str | Path) -> tuple[list[str], list[str], list[str]]:
    """A CSV of ``path,label`` rows (a header row naming ``path`` and ``label`` is optional; labels are names, or
    0/1 with 0 = negative unless a 2 appears, then 0/1/2 as XLM-T): the image paths (relative ones from the CSV's folder), their
    labels as class names, and the rows that could not be used, each with its reason."""
    import csv

    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [r for r in csv.reader(handle) if r and any(cell.strip() for cell in r)]
    if rows and normalise_label(rows[0][-1]) is None:
        header = [c.strip().lower() for c in rows[0]]
        rows = rows[1:]
        path_col = header.index("path") if "path" in header else 0
        label_col = header.index("label") if "label" in header else len(header) - 1
    else:
        path_col, label_col = 0, 1
    binary_digits = digits_are_binary(r[label_col] for r in rows if len(r) > label_col)
    paths, labels, skipped = [], [], []
    for number, row in enumerate(rows, start=1):
        if len(row) <= max(path_col, label_col):
            skipped.append(f"{path}: row {number}: expected path,label")
            continue
        label = normalise_label(row[label_col], binary_digits=binary_digits)
        if label is None:
            skipped.append(f"{path}: row {number}: unknown label {row[label_col]!r}")
            continue
        image = Path(row[path_col].strip())
        paths.append(str(image if image.is_absolute() else path.parent / image))
        labels.append(label)
    return paths, labels, skipped
