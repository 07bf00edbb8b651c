"""Source readers: one per input format, each yielding :class:`RawPost` records in a stable order.

A reader never raises on bad input: an unreadable file, a malformed line or a post without an
image becomes a record with ``error`` set, so every post of the source shows up in the dataset.
Readers only read text and metadata; the images are fetched later by :mod:`visent.ingest.download`.
An archive (zip, tar, tar.gz, ...) is extracted safely (:mod:`visent.ingest.archives`) and read with
the reader its contents call for.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit
from urllib.request import url2pathname

from visent.core.encoding import ESCAPE, ESCAPED, SAMPLE_BYTES, Decoded, TextDecoder, is_utf8, single_byte
from visent.core.errors import InputError, PathNotFound
from visent.core.images import IMAGE_SUFFIXES
from visent.core.labels import normalise_label
from visent.core.registry import Registry
from visent.crawl.shards import is_crawl
from visent.ingest.archives import ArchiveError, extract, is_archive

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
_TWEET_KEYS = frozenset({"id_str", "entities", "extended_entities", "extended_tweet", "retweeted_status",
                         "user", "attachments", "edit_history_tweet_ids", "note_tweet"})


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


READERS: Registry[Iterator[RawPost]] = Registry("reader")

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


# --------------------------------------------------------------------------- MVSA
def read_mvsa_labels(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """``id -> (text_label, image_label)`` from an MVSA ``labelResultAll.txt``.

    MVSA-Multiple lists several annotators (``id<TAB>t,i<TAB>t,i<TAB>t,i``); each modality gets the
    majority label, or None on a tie. Lines that are not label lines (the header) are skipped.
    """
    labels: dict[str, tuple[str | None, str | None]] = {}
    try:
        lines = TextDecoder().decode(path.read_bytes()).splitlines()
    except OSError:
        return labels
    for line in lines:
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            continue
        votes = [tuple(normalise_label(v) for v in field.split(",", 1)) for field in fields[1:] if "," in field]
        if not votes or all(t is None and i is None for t, i in votes):
            continue
        labels[fields[0].strip()] = (_majority(t for t, _ in votes), _majority(i for _, i in votes))
    return labels


def _mvsa_root(source: Path) -> tuple[Path, Path]:
    """(root, data dir) of an MVSA folder given either the folder or its data/ directory."""
    if (source / "data").is_dir():
        return source, source / "data"
    return source.parent, source


def find_mvsa_layout(source: Path) -> tuple[Path, Path | None]:
    """(data dir, labels file or None) of an MVSA folder given either the folder or its data/ directory."""
    root, data = _mvsa_root(Path(source))
    return data, next((p for p in (root / MVSA_LABEL_FILE, data / MVSA_LABEL_FILE) if p.is_file()), None)


@READERS.register("mvsa", "MVSA folder: data/<id>.jpg + data/<id>.txt, optional labelResultAll.txt")
@_unicode_safe
def read_mvsa(source: Path) -> Iterator[RawPost]:
    root, data = _mvsa_root(Path(source))
    label_file = find_mvsa_layout(source)[1]
    labels = read_mvsa_labels(label_file) if label_file else {}
    decoder = TextDecoder.learn(_txt_samples(sorted(data.glob("*.txt"))))
    for post in _pair_posts(data, root, decoder, nested_ids=False, lone=True):
        post.text_label, post.image_label = labels.get(post.post_id.split("_")[0], (None, None))
        yield post


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


# --------------------------------------------------------------------------- CSV
def _csv_dialect(path: Path) -> tuple[str, str, TextDecoder]:
    """(encoding, delimiter, decoder) of a CSV/TSV file, from its first bytes.

    A file that starts in UTF-8 is read as UTF-8, its other lines (if any) by a decoder learned on them. A file
    that does not is a legacy one: its decoder learns the encoding on those first bytes; the file is read as
    UTF-8 and its fields in that encoding when it is a single-byte one, so lines that are UTF-8 stay right.
    """
    with open(path, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    if sample.startswith(codecs.BOM_UTF8) or is_utf8(sample, final=False):
        encoding, decoder = "utf-8-sig", TextDecoder.learn(_file_lines(path))
    else:
        decoder = TextDecoder.learn([sample])
        legacy = decoder.legacy().encoding
        encoding = "utf-8" if single_byte(legacy) else legacy
    if path.suffix.lower() == ".tsv":
        return encoding, "\t", decoder
    header = sample.split(b"\n", 1)[0].decode(encoding, errors="replace")
    return encoding, max(",\t;|", key=header.count), decoder


def _file_lines(path: Path) -> Iterator[bytes]:
    """The lines of a file, read only when iterated (what a source's :class:`TextDecoder` learns on)."""
    try:
        with open(path, "rb") as handle:
            yield from handle
    except OSError:
        return


@READERS.register("csv", "CSV/TSV of posts: id, text, image (path or URL), optional labels, lang, created_at")
@_unicode_safe
def read_csv(source: Path, *, root: Path | None = None) -> Iterator[RawPost]:
    """Rows of a CSV/TSV file with a header line; ``root`` is set when reading inside a folder."""
    source = Path(source)
    rel = _rel(source, root)
    prefix = f"{rel}:" if root is not None else ""
    try:
        encoding, delimiter, decoder = _csv_dialect(source)
        handle = open(source, encoding=encoding, errors=ESCAPE, newline="")
    except OSError as exc:
        yield RawPost(post_id=rel, source=rel, error=f"cannot read {rel} ({exc.strerror or exc})")
        return
    with handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header: list[str] | None = None
        row = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row += 1
                yield RawPost(post_id=f"{prefix}{row}", source=f"{rel}:{reader.line_num}",
                              error=f"malformed row at {rel}:{reader.line_num} ({exc})")
                continue
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]  # matched case-insensitively, named as found
                continue
            row += 1
            where = f"{rel}:{reader.line_num}"
            if len(fields) > len(header):
                yield RawPost(post_id=f"{prefix}{row}", source=where,
                              error=f"malformed row at {where} ({len(fields)} fields, header has {len(header)})")
                continue
            for post in _post_from_record(dict(zip(header, fields)), where, f"{prefix}{row}", source.parent):
                yield _read_bytes(post, decoder, legacy=not encoding.startswith("utf-8"))


# --------------------------------------------------------------------------- JSON and tweets
def _json_values(path: Path, rel: str) -> Iterator[tuple[int, str, Any, str, bool]]:
    """``(number, where, value, error, utf8)`` for each value of a JSON document, JSON array or JSONL file.

    ``number`` counts values from 1 (the line number in a JSONL file). ``utf8`` is False for a value whose line
    (or document) is not UTF-8: the bytes UTF-8 cannot read are kept in its strings as escapes (see _read_bytes).
    """
    try:
        handle = open(path, "rb")
    except OSError as exc:
        yield 1, rel, None, f"cannot read {rel} ({exc.strerror or exc})", True
        return
    with handle:
        head = handle.read(SAMPLE_BYTES).lstrip(codecs.BOM_UTF8 + b" \t\r\n")
        handle.seek(0)
        if not head:
            return
        if head[:1] == b"[" or (head[:1] == b"{" and not _jsonl_like(head)):
            text, utf8 = _utf8(handle.read())
            try:
                document = json.loads(text.removeprefix("\ufeff"))
            except json.JSONDecodeError as exc:
                if exc.msg != "Extra data":  # one broken document, not several on their own lines
                    yield 1, f"{rel}:{exc.lineno}", None, f"invalid JSON at {rel}:{exc.lineno} ({exc.msg})", utf8
                    return
                handle.seek(0)
            except (ValueError, RecursionError) as exc:  # valid syntax Python will not load
                yield 1, rel, None, f"invalid JSON in {rel} ({_json_problem(exc)})", utf8
                return
            else:
                if not isinstance(document, list):
                    yield 1, rel, document, "", utf8
                    return
                for i, value in enumerate(document, 1):
                    yield i, f"{rel}[{i - 1}]", value, "", utf8
                return
        for number, line in enumerate(handle, 1):
            line = line.strip().removeprefix(codecs.BOM_UTF8)
            if not line:
                continue
            where = f"{rel}:{number}"
            text, utf8 = _utf8(line)
            try:
                value = json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield number, where, None, f"invalid JSON at {where} ({_json_problem(exc)})", utf8
            else:
                yield number, where, value, "", utf8


def _utf8(data: bytes) -> tuple[str, bool]:
    """(text, whether ``data`` is UTF-8); the bytes UTF-8 cannot read are kept as escapes."""
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="surrogateescape"), False


def _json_problem(exc: BaseException) -> str:
    """What is wrong with a JSON text, in words for the ingest reason."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "digits" in str(exc):
        return "a number with too many digits"
    return str(exc) or type(exc).__name__


def _jsonl_like(head: bytes) -> bool:
    """True when one of the first lines is a whole JSON object (so the file is JSONL)."""
    lines = [line for line in head.split(b"\n")[:-1] if line.strip()][:5] or [head]
    for line in lines:
        try:
            if isinstance(json.loads(line.decode("utf-8", errors="replace")), dict):
                return True
        except (ValueError, RecursionError):
            continue
    return False


def _looks_like_tweets(value: Any) -> bool:
    """True for a Twitter API object: a v2 response page, or a v1.1/v2 tweet without flat image keys."""
    if not isinstance(value, dict):
        return False
    if isinstance(value.get("data"), (list, dict)):
        return True
    return bool(_TWEET_KEYS & value.keys()) and not any(k in value for k in IMAGE_KEYS)


def _v1_text(tweet: dict[str, Any]) -> str:
    extended = tweet.get("extended_tweet") or tweet.get("extended_text") or {}
    return _str(_first(extended, ("full_text",)) or _first(tweet, ("full_text", "text"))) or ""


def _v1_photos(tweet: dict[str, Any]) -> list[str]:
    for holder in (tweet.get("extended_tweet") or {}, tweet):
        for key in ("extended_entities", "entities"):
            media = (holder.get(key) or {}).get("media") or []
            urls = [m.get("media_url_https") or m.get("media_url") for m in media
                    if isinstance(m, dict) and m.get("type", "photo") == "photo"]
            urls = list(dict.fromkeys(u for u in urls if u))
            if urls:
                return urls
    return []


def _v1_posts(tweet: dict[str, Any], where: str, fallback_id: str, base_dir: Path) -> list[RawPost]:
    """API v1.1 tweet; a retweet takes the text and photos of the retweeted tweet."""
    core = tweet.get("retweeted_status") if isinstance(tweet.get("retweeted_status"), dict) else tweet
    post = RawPost(post_id=_str(tweet.get("id_str") or tweet.get("id")) or fallback_id, source=where,
                   text=_v1_text(core), base_dir=base_dir, lang=_str(tweet.get("lang")),
                   created_at=_str(tweet.get("created_at")))
    return _expand_images(post, _v1_photos(core), "no image in post")


def _v2_posts(page: dict[str, Any], where: str, fallback_id: str, base_dir: Path) -> list[RawPost]:
    """API v2 response page: photos are found through ``includes.media`` by media key."""
    data = page["data"]
    tweets = [data] if isinstance(data, dict) else data
    includes = page.get("includes") or {}
    media = {m["media_key"]: m for m in includes.get("media") or [] if isinstance(m, dict) and "media_key" in m}
    referenced = {str(t["id"]): t for t in includes.get("tweets") or [] if isinstance(t, dict) and "id" in t}
    posts: list[RawPost] = []
    for k, tweet in enumerate(tweets):
        own_id = fallback_id if len(tweets) == 1 else f"{fallback_id}.{k + 1}"
        if not isinstance(tweet, dict):
            posts.append(RawPost(post_id=own_id, source=where, error=f"tweet {k} at {where} is not an object"))
            continue
        core = tweet
        for ref in tweet.get("referenced_tweets") or []:
            if isinstance(ref, dict) and ref.get("type") == "retweeted" and str(ref.get("id")) in referenced:
                core = referenced[str(ref["id"])]
        keys = (core.get("attachments") or {}).get("media_keys") or []
        photos = [media[key]["url"] for key in keys
                  if key in media and media[key].get("type") == "photo" and media[key].get("url")]
        text = (core.get("note_tweet") or {}).get("text") or core.get("text") or ""
        post = RawPost(post_id=_str(tweet.get("id")) or own_id, source=where, text=str(text).strip(),
                       base_dir=base_dir, lang=_str(tweet.get("lang")), created_at=_str(tweet.get("created_at")))
        posts.extend(_expand_images(post, list(dict.fromkeys(photos)), "no image in post"))
    return posts


def _tweet_posts(value: dict[str, Any], where: str, fallback_id: str, base_dir: Path) -> list[RawPost]:
    if isinstance(value.get("data"), (list, dict)):
        return _v2_posts(value, where, fallback_id, base_dir)
    return _v1_posts(value, where, fallback_id, base_dir)


def _read_json(source: Path, root: Path | None, tweets: bool) -> Iterator[RawPost]:
    source = Path(source)
    rel = _rel(source, root)
    prefix = f"{rel}:" if root is not None else ""
    mapper = _tweet_posts if tweets else _post_from_record
    decoder = TextDecoder.learn(_file_lines(source))
    for number, where, value, error, utf8 in _json_values(source, rel):
        fallback_id = f"{prefix}{number}"
        # a value that is no post takes its place in the file as its id ("posts.jsonl:2"): its line number alone
        # would take the id of a real post numbered so, which would then be refused as a duplicate
        if error:
            yield RawPost(post_id=where, source=where, error=error)
        elif not isinstance(value, dict):
            yield RawPost(post_id=where, source=where,
                          error=f"expected a JSON object at {where}, got {type(value).__name__}")
        else:
            try:
                posts = mapper(value, where, fallback_id, source.parent)
            except (AttributeError, KeyError, TypeError, ValueError, RecursionError) as exc:  # valid JSON, odd shape
                posts = [RawPost(post_id=where, source=where,
                                 error=f"unexpected structure at {where} ({type(exc).__name__}: {exc})")]
            yield from posts if utf8 else (_read_bytes(post, decoder) for post in posts)


@READERS.register("jsonl", "JSON/JSONL of posts: id, text, image (path or URL), optional labels, lang, created_at")
@_unicode_safe
def read_jsonl(source: Path, *, root: Path | None = None) -> Iterator[RawPost]:
    """Flat post objects from a JSONL file, a JSON array or a single JSON object."""
    return _read_json(source, root, tweets=False)


@READERS.register("tweets", "Twitter API v1.1 tweets or v2 response pages (JSON, JSON array or JSONL)")
@_unicode_safe
def read_tweets(source: Path, *, root: Path | None = None) -> Iterator[RawPost]:
    """Tweets; one record per photo (``<id>``, ``<id>_1``, ...), "no image in post" when there is none."""
    return _read_json(source, root, tweets=True)


# --------------------------------------------------------------------------- folders and detection
def _is_dataset(directory: Path) -> bool:
    manifest = directory / "manifest.json"
    try:
        return manifest.is_file() and '"visent_dataset"' in manifest.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _walk(source: Path, crawls: list[Path] | None = None) -> Iterator[tuple[Path, list[Path]]]:
    """(directory, its files) in sorted order, skipping hidden entries and visent datasets; the folders written by
    ``visent crawl`` are not walked but added to ``crawls`` (their shards are read by their own reader)."""
    for current, dirs, files in os.walk(source):
        directory = Path(current)
        if _is_dataset(directory) or (crawls is not None and is_crawl(directory)):
            if crawls is not None and is_crawl(directory):
                crawls.append(directory)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield directory, sorted(directory / f for f in files if not f.startswith("."))


@READERS.register("folder", "a folder of JSON/JSONL/CSV files and <name>.<image> + <name>.txt pairs, recursive")
@_unicode_safe
def read_folder(source: Path) -> Iterator[RawPost]:
    """Every data file under ``source``, then image + text pairs by directory.

    When the folder holds no data file, an image without text (or text without image) is reported
    as an incomplete post; otherwise lone files are taken as assets of the data files and skipped.
    """
    source = Path(source)
    crawls: list[Path] = []
    tree = list(_walk(source, crawls))
    data_files = [p for _, files in tree for p in files if p.suffix.lower() in JSON_SUFFIXES | CSV_SUFFIXES]
    decoder = TextDecoder.learn(_txt_samples(p for _, files in tree for p in files if p.suffix.lower() == ".txt"))
    for path in data_files:
        yield from READERS.create(_file_format(path), source=path, root=source)
    for crawl in crawls:  # deletions honoured there too (the reader is registered by visent.ingest.crawl)
        yield from READERS.create("bluesky-crawl", source=crawl)
    for directory, _ in tree:
        yield from _pair_posts(directory, source, decoder, nested_ids=directory != source, lone=not data_files)


def _file_format(path: Path) -> str:
    if path.suffix.lower() in CSV_SUFFIXES:
        return "csv"
    for _, _, value, error, _ in _json_values(path, path.name):
        if not error:
            return "tweets" if _looks_like_tweets(value) else "jsonl"
    return "jsonl"


def detect_format(source: str | os.PathLike[str]) -> str:
    """Name of the reader in :data:`READERS` for ``source`` (a file, a folder or an archive)."""
    path = Path(source)
    if not path.exists():
        raise PathNotFound(f"{path} does not exist")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in CSV_SUFFIXES or suffix in JSON_SUFFIXES:
            return _file_format(path)
        if is_archive(path):
            return "archive"
        raise InputError(f"cannot tell the format of {path}; give a folder, a .jsonl/.json/.csv/.tsv file, "
                         f"a .zip/.tar/.tar.gz archive of them, or pass format=")
    if is_crawl(path):  # its reader is registered by visent.ingest.crawl
        return "bluesky-crawl"
    return _folder_format(path)


def _folder_format(path: Path) -> str:
    root, data = _mvsa_root(path)
    if (root / MVSA_LABEL_FILE).is_file() or (data / MVSA_LABEL_FILE).is_file():
        return "mvsa"
    if data != path or path.name == "data":
        try:
            stems = {p.stem for p in data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".txt"}}
        except OSError:
            return "folder"
        if stems and all(s.isdigit() for s in stems):
            return "mvsa"
    return "folder"


# --------------------------------------------------------------------------- archives
def _archive_content(folder: Path) -> Path:
    """What to read in an extracted archive: its one data file, its one top folder, or the folder itself."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and (entries[0].is_dir() or entries[0].suffix.lower() in JSON_SUFFIXES | CSV_SUFFIXES):
        return entries[0]
    return folder


@READERS.register("archive", "a .zip/.tar/.tar.gz/.tgz/.tar.bz2/.tar.xz archive of any of the other formats")
@_unicode_safe
def read_archive(source: Path) -> Iterator[RawPost]:
    """The posts of the crawl inside an archive, read with the format detected on its contents.

    The archive is extracted (every member checked, see :mod:`visent.ingest.archives`) into a
    temporary folder that lives as long as the returned posts do; ``source`` fields read
    ``crawl.zip!data/12.txt``. Raises :class:`~visent.ingest.archives.ArchiveError` (a ValueError)
    for an archive visent refuses to extract.
    """
    source = Path(source)
    extraction = extract(source)
    content = _archive_content(extraction.path)
    inner = detect_format(content)
    if inner == "archive":
        extraction.cleanup()
        raise ArchiveError(f"{source.name} holds only another archive ({content.name}); unpack it and ingest that")
    # sources of the inner reader are relative to this folder (a single file is named by its file name)
    base = content.parent if content.is_file() else _mvsa_root(content)[0] if inner == "mvsa" else content
    prefix = _rel(base, extraction.path) if base != extraction.path else ""
    label = f"{source.name}!{prefix + '/' if prefix else ''}"
    return _from_archive(READERS.create(inner, source=content), label, extraction)


def _from_archive(posts: Iterator[RawPost], label: str, extraction: Any) -> Iterator[RawPost]:
    for post in posts:
        post.source = label + post.source
        post.keep = extraction
        if post.image_ref and _outside(post.image_ref, post.base_dir, extraction.path):
            problem = (f"image path {post.image_ref!r} points outside the archive; pack the image into the "
                       f"archive with a relative path")
            post.error = f"{post.error}; {problem}" if post.error else problem
            post.image_ref = None
        yield post


def _outside(ref: str, base: Path | None, root: Path) -> bool:
    """True when the local file ``ref`` names (from ``base``) is not inside ``root``; URLs are not files."""
    try:
        parts = urlsplit(ref)
    except ValueError:
        return False  # the image fetcher reports the invalid URL
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = Path(url2pathname(parts.path))
    elif len(scheme) > 1:
        return False
    elif ref.startswith("~"):
        return True
    else:
        path = Path(ref) if Path(ref).is_absolute() or base is None else base / ref
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError):  # a NUL byte, a symbolic link loop: the fetcher says so
        return False
    return resolved != root and root not in resolved.parents
