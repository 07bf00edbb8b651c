"""What every reader shares: the record a reader yields (:class:`RawPost`), the fields of a flat post record
(:data:`RECORD_FIELDS`) and how they are mapped, and the helpers that read text: valid Unicode, legacy
encodings, small text files, image + text pairs. A reader module imports what it needs from here."""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from visent.core.encoding import ESCAPED, Decoded, TextDecoder
from visent.core.images import IMAGE_SUFFIXES
from visent.core.labels import normalise_label

JSON_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson"})
CSV_SUFFIXES = frozenset({".csv", ".tsv"})
MVSA_LABEL_FILE = "labelResultAll.txt"

ID_KEYS = ("id", "post_id", "tweet_id", "id_str")
TEXT_KEYS = ("text", "full_text", "caption")
IMAGE_KEYS = ("image", "image_path", "image_url", "url", "media_url", "path")
# The fields of a flat post record (JSON object or CSV row, names matched case-insensitively) that
# _post_from_record reads, by what they hold; the first non-empty one of each entry wins.
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ID_KEYS, "text": TEXT_KEYS, "image": IMAGE_KEYS, "image label": ("image_label", "label"),
    "text label": ("text_label",), "language": ("lang",), "date": ("created_at",),
}
_RECORD_KEYS = frozenset(key for keys in RECORD_FIELDS.values() for key in keys)


@dataclass
class RawPost:
    """One post (one image of it) as a reader found it, before its image is fetched."""

    post_id: str
    source: str                       # where it came from: "data/12.txt", "tweets.jsonl:17"
    text: str = ""
    image_ref: str | None = None      # a path (relative to ``base_dir``) or a URL
    base_dir: Path | None = None
    lang: str | None = None
    created_at: str | None = None
    text_label: str | None = None     # human labels found in the source (normalised)
    image_label: str | None = None
    error: str = ""                   # why the post is incomplete ("" when it is not)
    # "repaired": its text was not UTF-8 and was read in the source's legacy encoding with certainty; "suspect":
    # it could not be read with certainty (``error`` says why); "" for UTF-8
    decoding: str = ""
    fields: tuple[str, ...] = ()      # a flat record's field names, as found
    ignored: tuple[str, ...] = ()     # those of them visent does not read (see RECORD_FIELDS)
    # what must stay alive while the post is in use: the extraction folder its image comes from
    keep: Any = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- valid Unicode, legacy encodings
# Lone UTF-16 surrogates: JSON escapes such as "\ud800", and the bytes of file names that are not
# UTF-8 (Python decodes them as surrogates). The dataset's tables hold UTF-8 only.
_SURROGATES = re.compile("[\ud800-\udfff]")
_TEXT_FIELDS = ("post_id", "source", "text", "lang", "created_at", "text_label", "image_label", "error")


def _valid_unicode(post: RawPost) -> RawPost:
    """``post`` with every lone surrogate shown as U+FFFD; an image name that has one becomes an error."""
    for name in _TEXT_FIELDS:
        value = getattr(post, name)
        if value and _SURROGATES.search(value):
            setattr(post, name, _SURROGATES.sub("\ufffd", value))
    if any(_SURROGATES.search(name) for name in post.fields):
        post.fields, post.ignored = (tuple(_SURROGATES.sub("\ufffd", name) for name in names)
                                     for names in (post.fields, post.ignored))
    if post.image_ref and _SURROGATES.search(post.image_ref):
        shown = _SURROGATES.sub("\ufffd", post.image_ref)
        problem = f"image name {shown!r} is not valid UTF-8; rename the file or fix the reference"
        post.error = f"{post.error}; {problem}" if post.error else problem
        post.image_ref = None
    return post


def _unicode_safe(reader: Callable[..., Iterator[RawPost]]) -> Callable[..., Iterator[RawPost]]:
    """The reader with :func:`_valid_unicode` applied to each of its posts."""
    @functools.wraps(reader)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[RawPost]:
        return map(_valid_unicode, reader(*args, **kwargs))
    return wrapper


_READ_FIELDS = ("post_id", "text", "lang", "created_at", "image_ref")  # the RawPost fields read from a record


def _read_bytes(post: RawPost, decoder: TextDecoder, legacy: bool = False) -> RawPost:
    """``post`` with the fields of its record that UTF-8 could not read (their bytes kept as escapes, see
    ``ESCAPE``) read again by ``decoder``; with ``legacy``, the record was read in the legacy encoding of
    ``decoder`` and its fields that are not ASCII are checked. Its ``decoding`` and ``error`` say how that went."""
    outcomes: list[Decoded] = []
    for name in _READ_FIELDS:
        value = getattr(post, name)
        if not value or (value.isascii() if legacy else not ESCAPED.search(value)):
            continue
        decoded = decoder.check(value) if legacy else decoder.read(value.encode("utf-8", "surrogateescape"))
        setattr(post, name, decoded.text.strip() or decoded.text)  # as _str() left it, never empty
        outcomes.append(decoded)
    if not legacy and any(ESCAPED.search(name) for name in post.fields):
        post.fields, post.ignored = (tuple(_read_name(name, decoder) for name in names)
                                     for names in (post.fields, post.ignored))
    return _decoded(post, outcomes)


def _read_name(name: str, decoder: TextDecoder) -> str:
    return decoder.decode(name.encode("utf-8", "surrogateescape")) if ESCAPED.search(name) else name


def _decoded(post: RawPost, outcomes: list[Decoded]) -> RawPost:
    """``post`` marked with how its text was read (see ``RawPost.decoding``); a suspect text is an error."""
    problem = next((d.problem for d in outcomes if d.problem), "")
    if problem:
        post.decoding = "suspect"
        post.error = f"{post.error}; {problem}" if post.error else problem
    elif any(d.repaired for d in outcomes):
        post.decoding = "repaired"
    return post


def _read_text(path: Path, decoder: TextDecoder) -> tuple[Decoded, str]:
    """(text and how it was read, error) of a small text file."""
    try:
        decoded = decoder.read(path.read_bytes())
    except OSError as exc:
        return Decoded(""), f"cannot read {path.name} ({exc.strerror or exc})"
    return replace(decoded, text=decoded.text.strip()), ""


# --------------------------------------------------------------------------- helpers
def _id_sort_key(stem: str) -> tuple[int, int, str]:
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def _rel(path: Path, root: Path | None) -> str:
    if root is None:
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first(record: dict[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = record.get(key)
        if value not in (None, ""):
            return value
    return None


def _majority(values: Iterable[str | None]) -> str | None:
    """The most frequent label, or None when there is none or the top is tied."""
    counts = Counter(v for v in values if v is not None).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def _expand_images(base: RawPost, refs: list[str], missing: str) -> list[RawPost]:
    """One record per image: "<id>" for the first, "<id>_1", "<id>_2" for the rest."""
    if not refs:
        base.error = base.error or missing
        return [base]
    posts = []
    for k, ref in enumerate(refs):
        posts.append(replace(base, image_ref=ref, post_id=f"{base.post_id}_{k}" if k else base.post_id))
    return posts


# --------------------------------------------------------------------------- image + text pairs
def _pair_posts(directory: Path, root: Path, decoder: TextDecoder, *, nested_ids: bool,
                lone: bool) -> Iterator[RawPost]:
    """Posts made of ``<stem>.<image>`` + ``<stem>.txt`` in one directory, in id order.

    ``lone``: also report an image without text or a text without image (as an error record).
    """
    stems: dict[str, dict[str, list[Path]]] = {}
    try:
        entries = [Path(e.path) for e in os.scandir(directory) if e.is_file() and not e.name.startswith(".")]
    except OSError:
        return
    for path in entries:
        suffix = path.suffix.lower()
        if suffix == ".txt" and path.name != MVSA_LABEL_FILE:
            stems.setdefault(path.stem, {"txt": [], "img": []})["txt"].append(path)
        elif suffix in IMAGE_SUFFIXES:
            stems.setdefault(path.stem, {"txt": [], "img": []})["img"].append(path)
    for stem in sorted(stems, key=_id_sort_key):
        texts, images = stems[stem]["txt"], sorted(stems[stem]["img"])
        if not lone and not (texts and images):
            continue
        post_id = _rel(directory / stem, root) if nested_ids else stem
        if texts:
            text, error = _read_text(texts[0], decoder)
            source = _rel(texts[0], root)
        else:
            source = _rel(images[0], root)
            text, error = Decoded(""), f"no text file ({_rel(directory / stem, root)}.txt missing)"
        base = _decoded(RawPost(post_id=post_id, source=source, text=text.text, base_dir=root, error=error), [text])
        yield from _expand_images(base, [_rel(p, root) for p in images], f"no image file for {source}")


def _txt_samples(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        try:
            yield path.read_bytes()
        except OSError:
            continue


# --------------------------------------------------------------------------- flat post records
def _label(record: dict[str, Any], keys: Iterable[str]) -> str | None:
    """The first of ``keys`` that holds a label visent knows, normalised."""
    return next((label for label in (normalise_label(record.get(key)) for key in keys) if label), None)


def _post_from_record(record: dict[str, Any], where: str, fallback_id: str, base_dir: Path) -> list[RawPost]:
    """Records from one flat row/object: the fields of :data:`RECORD_FIELDS`; the others are listed in ``ignored``."""
    found = tuple(str(k) for k in record if str(k).strip())
    record = {str(k).strip().lower(): v for k, v in record.items()}
    post = RawPost(
        post_id=_str(_first(record, RECORD_FIELDS["id"])) or fallback_id,
        source=where,
        text=_str(_first(record, RECORD_FIELDS["text"])) or "",
        base_dir=base_dir,
        lang=_str(_first(record, RECORD_FIELDS["language"])),
        created_at=_str(_first(record, RECORD_FIELDS["date"])),
        text_label=_label(record, RECORD_FIELDS["text label"]),
        image_label=_label(record, RECORD_FIELDS["image label"]),
        fields=found,
        ignored=tuple(k for k in found if k.strip().lower() not in _RECORD_KEYS),
    )
    images = _first(record, RECORD_FIELDS["image"])
    refs = [images] if not isinstance(images, list) else images
    return _expand_images(post, [r for r in (_str(x) for x in refs) if r], "no image in post")


def _file_lines(path: Path) -> Iterator[bytes]:
    """The lines of a file, read only when iterated (what a source's :class:`TextDecoder` learns on)."""
    try:
        with open(path, "rb") as handle:
            yield from handle
    except OSError:
        return
