"""The three sentiment classes, the label spellings visent accepts, and the files of human image labels it reads
(CSVs of path,label; Label Studio's JSON and JSON_MIN exports)."""

from __future__ import annotations

import os
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


def read_labelled_images(path: str | Path, *,
                         document_root: str | Path | None = None) -> tuple[list[str], list[str], list[str]]:
    """The labelled images of ``path``: the image paths, their labels as class names, and the rows that could not be
    used, each with its reason.

    ``path`` is a CSV of ``path,label`` rows (a header row naming ``path`` and ``label`` is optional; labels are
    names, or 0/1 with 0 = negative unless a 2 appears, then 0/1/2 as XLM-T; relative paths are taken from the CSV's
    folder), or a ``.json`` export of a Label Studio project, "JSON" or "JSON_MIN" (:func:`read_label_studio`, where
    ``document_root`` is used)."""
    import csv

    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_label_studio(path, document_root=document_root)
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
            # an empty label is a row of `visent label suggest`'s file not filled in yet
            why = "not labelled yet" if not row[label_col].strip() else f"unknown label {row[label_col]!r}"
            skipped.append(f"{path}: row {number}: {why}")
            continue
        image = Path(row[path_col].strip())
        paths.append(str(image if image.is_absolute() else path.parent / image))
        labels.append(label)
    return paths, labels, skipped


# Label Studio: the names of the labelling config visent writes (visent.label.studio), the field visent adds to a
# task's data with the image's local path, and the variable Label Studio serves local files from.
STUDIO_IMAGE = "image"
STUDIO_CHOICES = "sentiment"
STUDIO_PATH = "visent_path"
STUDIO_DOCUMENT_ROOT = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
STUDIO_LOCAL_FILES = "/data/local-files/"
STUDIO_UPLOADS = "/data/upload/"

# the keys Label Studio's JSON_MIN export adds to a task's data besides its choices
_MIN_KEYS = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history",
             "was_cancelled", "completed_by"}


def choice_label(value: object) -> str | None:
    """The class a Label Studio choice names (Negative / Neutral / Positive, any case, or neg / neu / pos), or None."""
    return _ALIASES.get(str(value).strip().lower()) if isinstance(value, str) and not value.strip().isdigit() else None


def read_label_studio(path: str | Path, *,
                      document_root: str | Path | None = None) -> tuple[list[str], list[str], list[str]]:
    """The labelled images of a Label Studio export: image paths, class names, and the tasks left out with why.

    Both of Label Studio's JSON exports are read: "JSON" (a list of tasks, each with its ``data`` and its
    ``annotations``, whose ``result`` holds the choice) and "JSON_MIN" (one flat object per annotation: the task's
    data fields beside the choice, under the control's name). The choice is that of the ``sentiment`` control of the
    config visent writes, or else of the one choices control whose choice is a sentiment; Negative, Neutral and
    Positive in any case. Cancelled (skipped) annotations are ignored. When a task has several annotations, one
    marked ground truth decides; else the majority of them, and a tie goes to the most recent one.

    The image is the task's ``visent_path`` when that file is here (tasks visent exported carry it); else its
    ``image`` reference: a local-storage URL (``/data/local-files/?d=...``) is resolved against ``document_root``,
    else the ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` variable, else the export's folder; a plain path is taken as
    it is (a relative one from the export's folder). Images uploaded into Label Studio (``/data/upload/...``) and
    web URLs have no file here, so their tasks are left out with that reason.
    """
    import json

    from visent.core.errors import InputError

    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: not a JSON file ({' '.join(str(error).split())}); give a CSV of path,label or a "
                         "Label Studio export in the JSON or JSON_MIN format") from None
    if isinstance(tasks, dict) and ("annotations" in tasks or "completions" in tasks):
        tasks = [tasks]  # one task, as Label Studio's target storage writes each
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        raise InputError(f"{path}: not a Label Studio export (a JSON list of tasks); export the project as JSON or "
                         "JSON_MIN")
    if document_root is None and os.environ.get(STUDIO_DOCUMENT_ROOT):
        document_root = os.environ[STUDIO_DOCUMENT_ROOT]
    # JSON_MIN has one object per annotation: those of one task are put together again
    grouped: dict[object, list[dict]] = {}
    for number, task in enumerate(tasks, start=1):
        if isinstance(task.get("data"), dict):
            grouped[("task", number)] = [task]
        else:
            key = task.get("id") if task.get("id") is not None else task.get(STUDIO_IMAGE, number)
            grouped.setdefault(("min", key), []).append(task)
    paths, labels, skipped = [], [], []
    for (kind, _), group in grouped.items():
        first = group[0]
        data = first["data"] if kind == "task" else first
        name = f"{path}: task {first['id']}" if first.get("id") is not None else f"{path}: task {data.get(STUDIO_IMAGE)!r}"
        if kind == "task":
            annotations = first.get("annotations", first.get("completions")) or []
            votes = [(_annotation_choice(a), a) for a in annotations if isinstance(a, dict)]
            kept = [(label, a) for label, a in votes if not (a.get("was_cancelled") or a.get("skipped"))]
            if not annotations:
                skipped.append(f"{name}: not labelled")
                continue
            if not kept:
                skipped.append(f"{name}: every annotation was cancelled (skipped in Label Studio)")
                continue
        else:
            kept = [(_min_choice(record), record) for record in group]
        chosen = [(label, a) for label, a in kept if label is not None]
        if not chosen:
            seen = [a for a in kept if a[0] is None]
            skipped.append(f"{name}: no Negative, Neutral or Positive choice" + _seen_choices([a for _, a in seen], kind))
            continue
        image, problem = _studio_image(data, path.parent, document_root)
        if image is None:
            skipped.append(f"{name}: {problem}")
            continue
        paths.append(image)
        labels.append(_decide(chosen))
    return paths, labels, skipped


def _annotation_choice(annotation: dict) -> str | None:
    """The class an annotation of Label Studio's JSON export chose: its ``sentiment`` choices control's, else the
    first choices result whose choice is a sentiment."""
    results = [r for r in annotation.get("result") or [] if isinstance(r, dict) and isinstance(r.get("value"), dict)
               and isinstance(r["value"].get("choices"), list)]
    results.sort(key=lambda r: r.get("from_name") != STUDIO_CHOICES)
    for result in results:
        found = {choice_label(c) for c in result["value"]["choices"]} - {None}
        if len(found) == 1:
            return found.pop()
    return None


def _min_choice(record: dict) -> str | None:
    """The class of a JSON_MIN object: its ``sentiment`` field's, else the one field holding a sentiment choice (a
    single choice is a string there, several a list of ``{"choices": [...]}``)."""
    fields = [STUDIO_CHOICES] if STUDIO_CHOICES in record else [k for k in record if k not in _MIN_KEYS]
    for key in fields:
        value = record.get(key)
        values = value if isinstance(value, list) else [value]
        found = set()
        for item in values:
            if isinstance(item, dict) and isinstance(item.get("choices"), list):
                found |= {choice_label(c) for c in item["choices"]}
            else:
                found.add(choice_label(item))
        found.discard(None)
        if len(found) == 1:
            return found.pop()
    return None


def _seen_choices(annotations: list[dict], kind: str) -> str:
    """What a task's annotations chose instead, for the reason it is left out."""
    if kind == "task":
        choices = [c for a in annotations for r in a.get("result") or [] if isinstance(r, dict)
                   for c in (r.get("value") or {}).get("choices") or []]
    else:
        choices = [a.get(STUDIO_CHOICES) for a in annotations if a.get(STUDIO_CHOICES) is not None]
    return f" (chose {', '.join(map(str, dict.fromkeys(map(str, choices))))})" if choices else " (not labelled)"


def _decide(chosen: list[tuple[str, dict]]) -> str:
    """The class of a task with these (class, annotation) pairs: a ground-truth annotation's, else the majority's,
    a tie going to the most recent annotation (by ``updated_at``, else ``created_at``, else its place)."""
    from collections import Counter

    truth = [pair for pair in chosen if pair[1].get("ground_truth")]
    pairs = truth or chosen
    counts = Counter(label for label, _ in pairs)
    top = max(counts.values())
    leaders = {label for label, n in counts.items() if n == top}
    latest = max(((str(a.get("updated_at") or a.get("created_at") or ""), i, label) for i, (label, a)
                  in enumerate(pairs) if label in leaders))
    return latest[2]


def _studio_image(data: dict, folder: Path, document_root: str | Path | None) -> tuple[str | None, str]:
    """The local file of a task's image and "", or None and why there is none."""
    from urllib.parse import parse_qs, unquote, urlsplit

    stored = data.get(STUDIO_PATH)
    if isinstance(stored, str) and stored and Path(stored).is_file():
        return stored, ""
    reference = data.get(STUDIO_IMAGE)
    if reference is None:
        strings = [v for k, v in data.items() if isinstance(v, str) and k not in _MIN_KEYS | {STUDIO_PATH,
                                                                                          STUDIO_CHOICES}]
        reference = strings[0] if len(strings) == 1 else None
    if not isinstance(reference, str) or not reference.strip():
        return None, f"no {STUDIO_IMAGE!r} field in the task's data"
    reference = reference.strip()
    parts = urlsplit(reference)
    if (parts.path.rstrip("/") + "/").endswith(STUDIO_LOCAL_FILES):
        relative = (parse_qs(parts.query).get("d") or [""])[0].lstrip("/")
        if not relative:
            return None, f"{reference}: a local-files URL without its ?d= path"
        root = Path(document_root) if document_root is not None else folder
        image = root / relative
        if image.is_file():
            return str(image), ""
        hint = ("" if document_root is not None else f", the export's folder: set {STUDIO_DOCUMENT_ROOT} or "
                "--document-root to the folder Label Studio serves local files from")
        return None, f"{reference}: no file {image} (document root {root}{hint})"
    if STUDIO_UPLOADS in parts.path:
        return None, (f"{reference}: an image uploaded into Label Studio has no file visent can find here; label "
                      "images from local storage or a URL visent exported (visent label export)")
    if parts.scheme == "file":
        return unquote(parts.path), ""
    if len(parts.scheme) > 1:  # a one-letter scheme is a Windows drive
        return None, (f"{reference}: a URL, not a file here; tasks made by `visent label export` carry their "
                      f"file in {STUDIO_PATH!r}")
    image = Path(reference)
    return str(image if image.is_absolute() else folder / image), ""
