"""Source readers: one per input format, each yielding :class:`RawPost` records in a stable order.

A reader never raises on bad input: an unreadable file, a malformed line or a post without an
image becomes a record with ``error`` set, so every post of the source shows up in the dataset.
Readers only read text and metadata; the images are fetched later by :mod:`visent.ingest.download`.
An archive (zip, tar, tar.gz, ...) is extracted safely (:mod:`visent.ingest.archives`) and read with
the reader its contents call for.

One module per format, each registering its reader and its detection with
:func:`~visent.ingest.readers.registry.register_reader`: ``tables`` (csv), ``tweets``, ``json_posts`` (jsonl),
``archive``, ``bluesky_crawl``, ``mvsa``, ``folder``; ``records`` holds what they share (:class:`RawPost`,
:data:`RECORD_FIELDS`, the text helpers) and ``registry`` the registry and :func:`detect_format`. Every module of
this folder is imported with the package, so adding a format is adding a module here (docs/extending.md).
"""

from visent.core.images import IMAGE_SUFFIXES
from visent.core.registry import import_modules
from visent.ingest.readers.archive import read_archive
from visent.ingest.readers.bluesky_crawl import read_crawl
from visent.ingest.readers.folder import _walk as _walk
from visent.ingest.readers.folder import read_folder
from visent.ingest.readers.json_posts import read_jsonl
from visent.ingest.readers.mvsa import find_mvsa_layout, read_mvsa, read_mvsa_labels
from visent.ingest.readers.records import (
    CSV_SUFFIXES,
    ID_KEYS,
    IMAGE_KEYS,
    JSON_SUFFIXES,
    MVSA_LABEL_FILE,
    RECORD_FIELDS,
    TEXT_KEYS,
    RawPost,
)
from visent.ingest.readers.records import _valid_unicode as _valid_unicode
from visent.ingest.readers.registry import READERS, detect_format, register_reader
from visent.ingest.readers.tables import read_csv
from visent.ingest.readers.tweets import read_tweets

import_modules(__name__, __path__)  # a format module added to this folder registers itself

__all__ = ["CSV_SUFFIXES", "ID_KEYS", "IMAGE_KEYS", "IMAGE_SUFFIXES", "JSON_SUFFIXES", "MVSA_LABEL_FILE", "READERS",
           "RECORD_FIELDS", "TEXT_KEYS", "RawPost", "detect_format", "find_mvsa_layout", "read_archive", "read_crawl",
           "read_csv", "read_folder", "read_jsonl", "read_mvsa", "read_mvsa_labels", "read_tweets", "register_reader"]
