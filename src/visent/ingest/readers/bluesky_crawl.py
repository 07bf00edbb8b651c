"""The ``bluesky-crawl`` reader: a crawl folder written by ``visent crawl bluesky`` (layout:
:mod:`visent.crawl.shards`), detected by its ``crawl.json``.

:class:`CrawlSource` reads the committed shards of a crawl, one :class:`RawPost` per row, and leaves out every post
its author deleted (the crawl's tombstones): such a post never reaches the dataset. ``CrawlSource.left_out`` counts
the rows it left out. The incremental ingests of a growing crawl are planned in :mod:`visent.ingest.crawl`, which
the ingest stage consults for such a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from visent.crawl.shards import (committed_shards, committed_tombstones, is_crawl, post_uri, read_info, read_lines,
                                 read_tombstones)
from visent.ingest.readers.records import RawPost, _valid_unicode
from visent.ingest.readers.registry import register_reader

READER = "bluesky-crawl"
DESCRIPTION = ("a crawl folder written by `visent crawl bluesky`: posts-*.jsonl shards, tombstones honoured (posts "
               "their authors deleted are left out)")


def is_bluesky_crawl(path: Path) -> bool:
    """A folder written by ``visent crawl``."""
    return not path.is_file() and is_crawl(path)


def author(post_id: str) -> str | None:
    """The DID in ``at://<did>/app.bsky.feed.post/<rkey>#<k>``; None for an id that is not an ``at://`` URI."""
    if not post_id.startswith("at://"):
        return None
    did = post_id[5:].split("/", 1)[0]
    return did or None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _post(row: dict[str, Any], where: str) -> RawPost:
    """The post of one crawl row; a row without a usable id or image keeps its place as an error."""
    problems = []
    post_id = row.get("id")
    if not isinstance(post_id, str) or not post_id.strip():
        problems.append("no id" if post_id in (None, "") else f"id is a {type(post_id).__name__}, not a string")
        post_id = where
    image = _text(row.get("image"))
    if image is None:
        problems.append("no image")
    elif urlsplit(image).scheme.lower() not in ("http", "https"):
        problems.append(f"image {image[:200]!r} is not an http(s) URL")
        image = None
    text = row.get("text")
    return RawPost(post_id=post_id, source=where, text=text.strip() if isinstance(text, str) else "", image_ref=image,
                   lang=_text(row.get("lang")), created_at=_text(row.get("created_at")),
                   error=f"{', '.join(problems)} at {where}" if problems else "")


class CrawlSource:
    """The committed files of a crawl as they are now: its shards and tombstone files, in order. Shards committed
    later are not seen by this snapshot (the crawl may be running)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.info = read_info(self.root)
        self.shards = committed_shards(self.root)
        self.tombstones = committed_tombstones(self.root)
        self.deleted: set[str] = set()  # the post URIs :meth:`posts` leaves out
        self.left_out = 0               # rows :meth:`posts` left out because their post is in ``deleted``

    def posts(self, shards: list[Path] | None = None, ids: set[str] | None = None) -> Iterator[RawPost]:
        """One post per row of ``shards`` (default: every committed shard), in order, the posts in ``deleted``
        left out and counted in ``left_out`` (only those among ``ids`` when ids are given)."""
        for path in self.shards if shards is None else shards:
            for number, row, problem in read_lines(path):
                where = f"{path.name}:{number}"
                if row is None:
                    yield RawPost(post_id=where, source=where, error=f"{problem} at {where}")
                    continue
                post_id = row.get("id")
                if isinstance(post_id, str) and post_uri(post_id) in self.deleted:
                    self.left_out += ids is None or post_id in ids
                    continue
                yield _valid_unicode(_post(row, where))

    def summary(self) -> dict[str, Any]:
        """What ``crawl.json`` says of the crawl that a dataset card may tell: no local path."""
        hosts = []
        for url in self.info.get("endpoints") or []:
            try:
                host = urlsplit(str(url)).hostname
            except ValueError:
                host = None
            if host and host not in hosts:
                hosts.append(host)
        return {"service": self.info.get("service"), "source": self.info.get("source"), "endpoints": hosts,
                "first_event": self.info.get("first_event"), "last_event": self.info.get("last_event")}


# its posts are valid Unicode as CrawlSource.posts yields them
@register_reader(READER, DESCRIPTION, detect=is_bluesky_crawl, order=50, unicode_safe=False)
def read_crawl(source: Path) -> Iterator[RawPost]:
    """Every committed post of the crawl at ``source``, its authors' deletions honoured."""
    crawl = CrawlSource(source)
    crawl.deleted = read_tombstones(crawl.tombstones)
    return crawl.posts()
