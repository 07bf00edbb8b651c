"""Labelled texts for training and scoring teachers.

Two layouts are read, found by walking the folders given:

* SemEval-2017 task 4A: ``*.tsv`` files of ``id<TAB>label<TAB>text`` (English tweets);
* XLM-T / UMSAB: ``<split>_text.txt`` with ``<split>_labels.txt`` beside it, one text or one label
  (0 = negative, 1 = neutral, 2 = positive) per line; the folder's name gives the language
  (``arabic``, ``english``, ... or a two-letter code).

Lines that cannot be used (no valid label, no text after :func:`preprocess_tweet`, a duplicate id,
a text also present in the held-out data) are tallied with their reason, never silently lost.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from visent.core.errors import InputError, PathNotFound
from visent.core.labels import CLASS_INDEX, normalise_label
from visent.teach.text import preprocess_tweet

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")

LANGUAGE_CODES = {
    "arabic": "ar", "english": "en", "french": "fr", "german": "de", "hindi": "hi", "italian": "it",
    "portuguese": "pt", "spanish": "es", "dutch": "nl", "russian": "ru", "turkish": "tr", "japanese": "ja",
    "chinese": "zh", "korean": "ko", "indonesian": "id", "polish": "pl",
}


@dataclass
class Tweets:
    """Labelled texts from one or more files, with a tally of the lines left out."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, object]] = field(default_factory=list)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def add(self, tweet_id: str, text: str, label: int, language: str = "en", source: str = "") -> None:
        self.ids.append(tweet_id)
        self.texts.append(text)
        self.labels.append(label)
        self.languages.append(language)
        self.sources.append(source)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def y(self) -> np.ndarray:
        return np.asarray(self.labels, dtype=np.int64)

    def subset(self, mask: Sequence[bool] | np.ndarray) -> "Tweets":
        keep = np.flatnonzero(np.asarray(mask, dtype=bool))
        out = Tweets(dropped=dict(self.dropped), files=list(self.files))
        for i in keep:
            out.add(self.ids[i], self.texts[i], self.labels[i], self.languages[i], self.sources[i])
        return out


def _accept(into: Tweets, tweet_id: str, text: str, raw_label: str, language: str, source: str,
            skip_ids: set[str], skip_texts: set[str], *, unescape: bool = False) -> bool:
    label = normalise_label(raw_label)
    if label is None:
        into.drop("bad label")
        return False
    if unescape:
        text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
    clean = preprocess_tweet(text)
    if not clean:
        into.drop("no text")
    elif tweet_id in skip_ids:
        into.drop("duplicate id")
    elif clean in skip_texts:
        into.drop("text also in held-out file")
    else:
        into.add(tweet_id, text, CLASS_INDEX[label], language, source)
        skip_ids.add(tweet_id)
        return True
    return False


def read_semeval(path: Path, into: Tweets, skip_ids: set[str], skip_texts: set[str]) -> int:
    """Append the usable tweets of one SemEval TSV to ``into``; returns how many were added.

    Undoes the ``\\uXXXX`` escapes and enclosing quotes found in some files.
    """
    added = 0
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            into.drop("malformed line")
            continue
        added += _accept(into, parts[0].strip(), parts[2], parts[1], "en", Path(path).name,
                         skip_ids, skip_texts, unescape=True)
    return added


def _language_of(folder: Path) -> str:
    name = folder.name.lower()
    return LANGUAGE_CODES.get(name, name if len(name) in (2, 3) else "und")


def read_xlmt(text_path: Path, into: Tweets, skip_ids: set[str], skip_texts: set[str]) -> int:
    """Append one ``<split>_text.txt`` / ``<split>_labels.txt`` pair; returns how many were added."""
    text_path = Path(text_path)
    labels_path = text_path.with_name(text_path.name.replace("_text.txt", "_labels.txt"))
    texts = text_path.read_text(encoding="utf-8", errors="replace").splitlines()
    labels = labels_path.read_text(encoding="utf-8", errors="replace").splitlines()
    if len(texts) != len(labels):
        raise InputError(f"{text_path} has {len(texts)} lines but {labels_path} has {len(labels)}; "
                         "each text needs exactly one label line")
    language = _language_of(text_path.parent)
    source = f"{text_path.parent.name}/{text_path.name}"
    added = 0
    for i, (text, label) in enumerate(zip(texts, labels)):
        added += _accept(into, f"{source}:{i + 1}", text, label, language, source, skip_ids, skip_texts)
    return added


def data_files(paths: Iterable[str | Path], exclude: Sequence[str] = ()) -> list[Path]:
    """The labelled files under ``paths`` (files or folders, walked), minus names matching ``exclude``.

    Patterns match a file's name or its path relative to the folder given (``english/val_*``).
    """
    found: list[Path] = []
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise PathNotFound(f"{root}: no such file or folder of labelled texts")
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in candidates:
            rel = path.name if path == root else path.relative_to(root).as_posix()
            if any(fnmatch.fnmatch(path.name, pat) or fnmatch.fnmatch(rel, pat) for pat in exclude):
                continue
            if path.suffix == ".tsv" or (path.name.endswith("_text.txt")
                                         and path.with_name(path.name.replace("_text.txt", "_labels.txt")).is_file()):
                found.append(path)
    return found


def file_info(path: Path, rows: int) -> dict[str, object]:
    """Provenance of one labelled file; XLM-T files are named with their language folder."""
    name = path.name if path.suffix == ".tsv" else f"{path.parent.name}/{path.name}"
    return {"name": name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "rows_used": rows}


def read_labelled(paths: Iterable[str | Path], *, exclude: Sequence[str] = (),
                  heldout: Tweets | None = None) -> Tweets:
    """Every labelled text under ``paths`` (SemEval TSV and XLM-T pairs); texts of ``heldout`` never enter."""
    files = data_files(paths, exclude)
    if not files:
        raise PathNotFound(f"no labelled files (SemEval *.tsv or XLM-T *_text.txt + *_labels.txt) "
                                f"in {', '.join(map(str, paths))}")
    into = Tweets()
    skip_ids = set(heldout.ids) if heldout is not None else set()
    skip_texts = {preprocess_tweet(t) for t in heldout.texts} if heldout is not None else set()
    for path in files:
        reader = read_semeval if path.suffix == ".tsv" else read_xlmt
        into.files.append(file_info(path, reader(path, into, skip_ids, skip_texts)))
    return into
