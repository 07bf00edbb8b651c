"""The ``bluesky-crawl`` reader: a crawl folder written by ``visent crawl bluesky`` (layout:
:mod:`visent.crawl.shards`); detected by its ``crawl.json``. Its reading, tombstones and incremental ingests
live in :mod:`visent.ingest.crawl`, which the ingest stage consults for such a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from visent.crawl.shards import is_crawl
from visent.ingest.readers.records import RawPost
from visent.ingest.readers.registry import register_reader

READER = "bluesky-crawl"
DESCRIPTION = ("a crawl folder written by `visent crawl bluesky`: posts-*.jsonl shards, tombstones honoured (posts "
               "their authors deleted are left out)")


def is_bluesky_crawl(path: Path) -> bool:
    """A folder written by ``visent crawl``."""
    return not path.is_file() and is_crawl(path)


# its posts are valid Unicode as CrawlSource.posts yields them
@register_reader(READER, DESCRIPTION, detect=is_bluesky_crawl, order=50, unicode_safe=False)
def read_crawl(source: Path) -> Iterator[RawPost]:
    """Every committed post of the crawl at ``source``, its authors' deletions honoured."""
    from visent.ingest.crawl import read_crawl  # imported here: visent.ingest.crawl imports this package

    return read_crawl(source)
