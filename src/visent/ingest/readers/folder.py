"""The ``folder`` reader: a folder, read recursively, of JSON/JSONL/CSV files (each read by its own reader) and
``<name>.<image>`` + ``<name>.txt`` pairs; crawl folders inside are read by the ``bluesky-crawl`` reader. It is
the catch-all of detection: a folder no other reader claims."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from visent.core.encoding import TextDecoder
from visent.core.registry import CATCH_ALL
from visent.crawl.shards import is_crawl
from visent.ingest.readers.records import CSV_SUFFIXES, JSON_SUFFIXES, RawPost, _pair_posts, _txt_samples
from visent.ingest.readers.registry import READERS, register_reader
from visent.ingest.readers.tweets import is_tweets


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


def is_folder(path: Path) -> bool:
    """Anything that is not a file: a folder (tried last)."""
    return not path.is_file()


@register_reader("folder", "a folder of JSON/JSONL/CSV files and <name>.<image> + <name>.txt pairs, recursive",
                 detect=is_folder, order=CATCH_ALL)
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
    for crawl in crawls:  # deletions honoured there too (see visent.ingest.readers.bluesky_crawl)
        yield from READERS.create("bluesky-crawl", source=crawl)
    for directory, _ in tree:
        yield from _pair_posts(directory, source, decoder, nested_ids=directory != source, lone=not data_files)


def _file_format(path: Path) -> str:
    """The reader of a data file inside the folder: ``csv``, ``tweets`` or ``jsonl``."""
    if path.suffix.lower() in CSV_SUFFIXES:
        return "csv"
    return "tweets" if is_tweets(path) else "jsonl"
