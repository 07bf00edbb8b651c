"""The ``archive`` reader: a .zip/.tar/.tar.gz/.tgz/.tar.bz2/.tar.xz archive of any other format, extracted
safely (:mod:`visent.ingest.archives`) and read with the reader detected on its contents; detected by the
archive's suffix or magic bytes (after the data-file readers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from visent.ingest.archives import ArchiveError, extract, is_archive
from visent.ingest.readers.mvsa import _mvsa_root
from visent.ingest.readers.records import CSV_SUFFIXES, JSON_SUFFIXES, RawPost, _rel
from visent.ingest.readers.registry import READERS, detect_format, register_reader


def is_packed(path: Path) -> bool:
    """An archive file visent extracts."""
    return path.is_file() and is_archive(path)


def _archive_content(folder: Path) -> Path:
    """What to read in an extracted archive: its one data file, its one top folder, or the folder itself."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and (entries[0].is_dir() or entries[0].suffix.lower() in JSON_SUFFIXES | CSV_SUFFIXES):
        return entries[0]
    return folder


@register_reader("archive", "a .zip/.tar/.tar.gz/.tgz/.tar.bz2/.tar.xz archive of any of the other formats",
                 detect=is_packed, order=40)
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
