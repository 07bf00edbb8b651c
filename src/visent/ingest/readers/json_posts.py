"""The ``jsonl`` reader: flat post objects in a JSONL file, a JSON array or a single JSON object (their fields:
:data:`~visent.ingest.readers.records.RECORD_FIELDS`); detected by the file's suffix, after the ``tweets``
reader has looked at its first value. :func:`_read_json` is shared with the ``tweets`` reader."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from visent.core.encoding import SAMPLE_BYTES, TextDecoder
from visent.ingest.readers.records import JSON_SUFFIXES, RawPost, _file_lines, _post_from_record, _read_bytes, _rel
from visent.ingest.readers.registry import register_reader

# What makes the posts of one JSON object: (object, where, fallback id, the folder its image paths start from)
Mapper = Callable[[dict[str, Any], str, str, Path], list[RawPost]]


def is_json(path: Path) -> bool:
    """A .json, .jsonl or .ndjson file."""
    return path.is_file() and path.suffix.lower() in JSON_SUFFIXES


def _json_values(path: Path, rel: str) -> Iterator[tuple[int, str, Any, str, bool]]:
    """``(number, where, value, error, utf8)`` for each value of a JSON document, JSON array or JSONL file.

    ``number`` counts values from 1 (the line number in a JSONL file). ``utf8`` is False for a value whose line
    (or document) is not UTF-8: the bytes UTF-8 cannot read are kept in its strings as escapes (see _read_bytes).
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
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


def _read_json(source: Path, root: Path | None, mapper: Mapper = _post_from_record) -> Iterator[RawPost]:
    """The posts ``mapper`` makes of each JSON object of ``source``; a value that is no object is an error record."""
    source = Path(source)
    rel = _rel(source, root)
    prefix = f"{rel}:" if root is not None else ""
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


@register_reader("jsonl", "JSON/JSONL of posts: id, text, image (path or URL), optional labels, lang, created_at",
                 detect=is_json, order=30)
def read_jsonl(source: Path, *, root: Path | None = None) -> Iterator[RawPost]:
    """Flat post objects from a JSONL file, a JSON array or a single JSON object."""
    return _read_json(source, root)
