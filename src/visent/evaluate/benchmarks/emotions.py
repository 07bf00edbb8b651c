"""The ``fi`` (You et al., AAAI 2016) and ``emotionroi`` (Peng et al., 2016) benchmarks: one folder per emotion or
a CSV ``path,emotion``; emotions map to polarity as the literature maps them (:data:`EMOTION_POLARITY`). T4SA
2.0's copies (``path,class`` with ``emotion/<file>`` paths under ``images/`` beside the CSV) read the emotion
from the path. Detected by their emotion folders, or by the emotions of a CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from visent.core.images import IMAGE_SUFFIXES
from visent.evaluate.benchmarks.registry import Benchmark, register_benchmark

# Emotion categories to polarity, as the image-sentiment literature maps them (FI: Mikels' eight emotions, You et
# al. 2016; EmotionROI: Ekman's six, Peng et al. 2016, with joy and surprise positive)
FI_POLARITY = {"amusement": "positive", "awe": "positive", "contentment": "positive", "excitement": "positive",
               "anger": "negative", "disgust": "negative", "fear": "negative", "sadness": "negative"}
EMOTIONROI_POLARITY = {"joy": "positive", "surprise": "positive", "anger": "negative", "disgust": "negative",
                       "fear": "negative", "sadness": "negative"}
EMOTION_POLARITY = {"fi": FI_POLARITY, "emotionroi": EMOTIONROI_POLARITY}


def _emotion_reader(kind: str):
    polarity = EMOTION_POLARITY[kind]

    def load(path: Path) -> Benchmark:
        rows: list[tuple[str, str, str]] = []  # (path, emotion, where it was read)
        if path.is_file():
            with path.open(newline="", encoding="utf-8-sig") as handle:
                for number, row in enumerate(csv.reader(handle), start=1):
                    if len(row) < 2 or number == 1 and row[-1].strip().lower() in ("emotion", "label", "class"):
                        continue
                    image = Path(row[0].strip())
                    if not image.is_absolute():  # from the CSV's folder, or its images/ (T4SA 2.0's copies)
                        beside = path.parent / image
                        image = beside if beside.exists() or not (path.parent / "images" / image).exists() \
                            else path.parent / "images" / image
                    # the emotion is the label, or, where the label is a class number (T4SA 2.0's copies),
                    # the folder the image sits in
                    emotion = row[-1] if row[-1].strip().lower() in polarity else _emotion_folder(row[0]) or row[-1]
                    rows.append((str(image), emotion, f"{path}: row {number}"))
        else:
            for image in sorted(path.rglob("*")):
                if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                    rows.append((str(image), image.parent.name, str(image)))
        paths, labels, skipped = [], [], []
        for image, emotion, where in rows:
            label = polarity.get(emotion.strip().lower())
            if label is None:
                skipped.append(f"{where}: emotion {emotion.strip()!r} is not one of {', '.join(polarity)}")
                continue
            paths.append(image)
            labels.append(label)
        return Benchmark(path.name, paths, labels, skipped, kind=kind)

    return load


def _emotion_folder(path: str) -> str | None:
    """The emotion folder of a relative image path such as ``anger/232.jpg``, if its first part is an emotion."""
    first = Path(path.strip()).parts[0].lower() if path.strip() else ""
    return first if any(first in polarity for polarity in EMOTION_POLARITY.values()) else None


def _emotion_kind(path: Path) -> str | None:
    """``fi`` or ``emotionroi`` when ``path`` holds images by emotion or a CSV of emotions, else None."""
    if path.is_file():
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
                rows = [row for _, row in zip(range(2000), csv.reader(handle)) if row]
            values = {row[-1].strip().lower() for row in rows}
            # T4SA 2.0's copies: emotion/<file> and a class number, so most paths start with an emotion folder
            named = [folder for folder in map(_emotion_folder, (row[0] for row in rows[1:])) if folder]
            folders = set(named) if 2 * len(named) >= len(rows) - 1 > 0 else set()
            for kind, polarity in EMOTION_POLARITY.items():
                if values & set(polarity) and not values - set(polarity) - {"emotion", "label", "class"}:
                    return kind
                if folders and folders <= set(polarity) and folders - {"anger", "disgust", "fear", "sadness"}:
                    return kind
        return None
    for sub in [path, *(path / n for n in ("images", "emotion_dataset") if (path / n).is_dir())]:
        emotions = {p.name.lower() for p in sub.iterdir() if p.is_dir()}
        if emotions & {"amusement", "awe", "contentment", "excitement"}:
            return "fi"
        if emotions & {"joy", "surprise"} and emotions <= set(EMOTIONROI_POLARITY):
            return "emotionroi"
    return None


def is_fi(path: Path) -> bool:
    return _emotion_kind(path) == "fi"


def is_emotionroi(path: Path) -> bool:
    return _emotion_kind(path) == "emotionroi"


register_benchmark("fi", "FI (You et al. 2016): one folder per emotion, or CSV path,emotion; 8 emotions to polarity",
                   detect=is_fi, order=30)(_emotion_reader("fi"))
register_benchmark("emotionroi", "EmotionROI (Peng et al. 2016): one folder per emotion, or CSV path,emotion",
                   detect=is_emotionroi, order=40)(_emotion_reader("emotionroi"))
