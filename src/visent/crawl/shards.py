"""A crawl directory: rotating JSONL shards of image posts, their tombstones, and the cursor that commits them.

Layout of ``DIR``::

    crawl.json                 what was crawled: service, source, endpoints, filters, first/last event, counts
    posts-000001.jsonl         one row per image (see visent.crawl.events.image_rows), in stream order
    tombstones-000001.jsonl    {"id": "at://<did>/app.bsky.feed.post/<rkey>", "time_us": ...}: deleted by their authors
    .state/cursor.json         the commit point: the last finished shard, the stream position after it, the
                               per-author counts of the hour
    .state/ids-000001.u64      hashes of the post URIs each shard wrote (dedup and deletes without holding rows)
    .state/lock                held by the one crawler writing the directory

A shard is written whole (temporary file, fsync, rename), then its tombstones and id hashes, then
``cursor.json``: the cursor is the commit point. A shard numbered above the cursor's (a crawler killed between the
two writes) is removed when the crawl starts again, and the stream is replayed from the cursor; posts already
written are recognised by their URI hashes and dropped, so no post is lost and none written twice. Readers
(:func:`committed_shards`) see only committed shards, so a crawl can be ingested while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from visent.core.errors import InputError, VisentError
from visent.core.store import atomic_open, atomic_write_bytes, atomic_write_json

CRAWL_FILE = "crawl.json"
FORMAT = 1
STATE_DIR = ".state"
_SHARD = re.compile(r"posts-(\d{6,})\.jsonl")


class CrawlError(VisentError):
    """A crawl directory that cannot be written or read as it is (another crawler, other options, damage)."""


def uri_hash(uri: str) -> int:
    """A 64-bit hash of a record URI (BLAKE2b): the crawl remembers what it wrote by these, 8 bytes a post."""
    return int.from_bytes(hashlib.blake2b(uri.encode("utf-8"), digest_size=8).digest(), "little")


def post_uri(row_id: str) -> str:
    """``at://did/app.bsky.feed.post/rkey#2`` → ``at://did/app.bsky.feed.post/rkey``."""
    return row_id.split("#", 1)[0]


def shard_name(number: int) -> str:
    return f"posts-{number:06d}.jsonl"


def tombstone_name(number: int) -> str:
    return f"tombstones-{number:06d}.jsonl"


def is_crawl(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder written by ``visent crawl``."""
    try:
        info = json.loads((Path(path) / CRAWL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "visent_crawl" in info


def read_info(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``crawl.json`` of a crawl directory."""
    path = Path(root) / CRAWL_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CrawlError(f"{path}: not readable ({exc}); is {Path(root)} a visent crawl?") from None
    if not isinstance(info, dict) or info.get("visent_crawl") != FORMAT:
        raise CrawlError(f"{path}: not a visent crawl of format {FORMAT}")
    return info


def read_cursor(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The commit point of a crawl (``{}`` before its first shard)."""
    path = Path(root) / STATE_DIR / "cursor.json"
    if not path.exists():
        return {}
    try:
        cursor = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CrawlError(f"{path} is damaged ({exc}); the shards are intact: move the folder's posts-*.jsonl and "
                         "tombstones-*.jsonl to a new crawl, or start the crawl again in a new folder") from None
    return cursor if isinstance(cursor, dict) else {}


def committed_shards(root: str | os.PathLike[str]) -> list[Path]:
    """The finished shards of a crawl, in order (a shard above the commit point is not finished)."""
    root = Path(root)
    last = int(read_cursor(root).get("shard", 0))
    return [root / shard_name(n) for n in range(1, last + 1) if (root / shard_name(n)).exists()]


def committed_tombstones(root: str | os.PathLike[str]) -> list[Path]:
    """The finished tombstone files of a crawl, in order."""
    root = Path(root)
    last = int(read_cursor(root).get("shard", 0))
    return [root / tombstone_name(n) for n in range(1, last + 1) if (root / tombstone_name(n)).exists()]


def read_lines(path: Path) -> Iterator[tuple[int, Any, str]]:
    """``(line number, JSON object, problem)`` of each non-empty line of a JSONL file; ``problem`` says why a line
    is not a JSON object (the object is then None). Never raises on bad content."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except UnicodeDecodeError:
                yield number, None, "not UTF-8"
                continue
            except json.JSONDecodeError as exc:
                yield number, None, f"invalid JSON: {exc.msg}"
                continue
            except RecursionError:
                yield number, None, "invalid JSON: nested too deeply"
                continue
            except ValueError as exc:
                yield number, None, f"invalid JSON: {exc}"
                continue
            if not isinstance(value, dict):
                yield number, None, f"a JSON {type(value).__name__}, not an object"
                continue
            yield number, value, ""


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(line number, row)`` of a JSONL file; ``None`` for a line that is not a JSON object."""
    for number, row, _ in read_lines(path):
        yield number, row


def read_tombstones(paths: list[Path]) -> set[str]:
    """The post URIs the tombstone files ``paths`` name (lines that are not tombstones are skipped)."""
    uris: set[str] = set()
    for path in paths:
        uris.update(row["id"] for _, row, _ in read_lines(path) if row is not None and isinstance(row.get("id"), str))
    return uris


def tombstoned(root: str | os.PathLike[str]) -> set[str]:
    """The post URIs the committed tombstones of the crawl at ``root`` name."""
    return read_tombstones(committed_tombstones(root))


class HashIndex:
    """A set of 64-bit hashes, 8 bytes each: a sorted array of the committed ones and a set of the pending ones."""

    def __init__(self) -> None:
        self._sorted = np.zeros(0, dtype=np.uint64)
        self.pending: set[int] = set()

    def __contains__(self, key: int) -> bool:
        if key in self.pending:
            return True
        i = int(np.searchsorted(self._sorted, np.uint64(key)))
        return i < len(self._sorted) and int(self._sorted[i]) == key

    def __len__(self) -> int:
        return len(self._sorted) + len(self.pending)

    def add(self, key: int) -> None:
        self.pending.add(key)

    def load(self, arrays: list[np.ndarray]) -> None:
        """Take the committed hashes of every shard at once (one sort, not one merge per shard)."""
        self._sorted = np.unique(np.concatenate([self._sorted, *arrays]).astype(np.uint64))

    def take_pending(self) -> np.ndarray:
        """The pending hashes as an array, merged into the sorted ones (one new array: memory stays at twice the
        index while it grows)."""
        keys = np.fromiter(sorted(self.pending), dtype=np.uint64, count=len(self.pending))
        self.pending = set()
        if len(keys):
            at = np.searchsorted(self._sorted, keys)
            present = at < len(self._sorted)
            present[present] = self._sorted[at[present]] == keys[present]
            self._sorted = np.insert(self._sorted, at[~present], keys[~present])
        return keys


class CrawlWriter:
    """Buffers the rows and tombstones of the shard in progress and commits them with the stream position.

    ``with CrawlWriter(root, info) as writer:`` takes the directory's lock (a second crawler is refused at once),
    removes what a killed crawler left above the commit point and loads the URI hashes of what is written.
    """

    def __init__(self, root: str | os.PathLike[str], info: dict[str, Any], *, shard_rows: int = 5_000):
        self.root = Path(root)
        self.info = info
        self.shard_rows = shard_rows
        self.lines: list[bytes] = []              # the rows of the shard in progress, as JSON lines
        self.tombstones: list[dict[str, Any]] = []
        self.posts = HashIndex()                  # post URIs written or buffered
        self.deleted = HashIndex()                # post URIs tombstoned
        self.cursor: dict[str, Any] = {}
        self._lock: Any = None

    # ----------------------------------------------------------------- opening
    def __enter__(self) -> "CrawlWriter":
        state = self.root / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        self._lock = open(state / "lock", "a+")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "another process"
            self._lock.close()
            raise CrawlError(f"{self.root} is being crawled by {holder}; stop it first, or crawl into another "
                             "folder") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"process {os.getpid()}\n")
        self._lock.flush()
        try:
            self._open()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _open(self) -> None:
        self.cursor = read_cursor(self.root)
        last = int(self.cursor.get("shard", 0))
        for pattern in ("posts-*.jsonl", "tombstones-*.jsonl", f"{STATE_DIR}/ids-*.u64", f"{STATE_DIR}/del-*.u64"):
            for path in self.root.glob(pattern):
                number = re.search(r"(\d{6,})", path.name)
                if number and int(number.group(1)) > last:
                    path.unlink()  # written by a crawler killed before its commit: the replay writes it again
        for path in list(self.root.glob(".*.tmp")) + list((self.root / STATE_DIR).glob(".*.tmp")):
            path.unlink(missing_ok=True)
        for prefix, index in (("ids", self.posts), ("del", self.deleted)):
            arrays = []
            for n in range(1, last + 1):
                path = self.root / STATE_DIR / f"{prefix}-{n:06d}.u64"
                if path.exists():
                    data = path.read_bytes()
                    if len(data) % 8:
                        raise CrawlError(f"{path} is damaged (not a whole number of hashes); the crawl cannot tell "
                                         "which posts it wrote: continue it in a new folder")
                    arrays.append(np.frombuffer(data, dtype="<u8"))
            index.load(arrays)
        atomic_write_json(self.root / CRAWL_FILE, self.info)

    # ----------------------------------------------------------------- writing
    @property
    def shard(self) -> int:
        return int(self.cursor.get("shard", 0))

    def has_post(self, uri: str) -> bool:
        return uri_hash(uri) in self.posts

    def add_post(self, uri: str, rows: list[dict[str, Any]]) -> None:
        """Buffer the rows of a post not yet written (see :meth:`has_post`)."""
        self.posts.add(uri_hash(uri))
        self.lines.extend(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
                          for row in rows)

    def delete(self, uri: str, time_us: int | None) -> str:
        """A delete of ``uri``: "tombstoned" (a post of this crawl, written or still in the buffer: its rows stay in
        the shards, so that a crawl's shards do not depend on when they were committed, and its tombstone keeps it
        out of every dataset), "repeated" (tombstoned already) or "unknown" (not a post of this crawl)."""
        key = uri_hash(uri)
        if key in self.deleted:
            return "repeated"
        if key not in self.posts:
            return "unknown"
        self.deleted.add(key)
        self.tombstones.append({"id": uri, "time_us": time_us})
        return "tombstoned"

    def full(self) -> bool:
        return len(self.lines) >= self.shard_rows

    def commit(self, position: int | None, extra: dict[str, Any]) -> bool:
        """Write the buffer as the next shard and move the commit point to ``position`` (with ``extra``: counts,
        filter state). Returns False when there was nothing to write (only the cursor moved)."""
        wrote = bool(self.lines or self.tombstones)
        number = self.shard + 1 if wrote else self.shard
        if wrote:
            if self.lines:
                with atomic_open(self.root / shard_name(number), "wb") as handle:
                    handle.writelines(self.lines)
            if self.tombstones:
                lines = "".join(json.dumps(t, separators=(",", ":")) + "\n" for t in self.tombstones)
                atomic_write_bytes(self.root / tombstone_name(number), lines.encode("utf-8"))
            for name, index in ((f"ids-{number:06d}.u64", self.posts), (f"del-{number:06d}.u64", self.deleted)):
                keys = index.take_pending()
                if len(keys):
                    atomic_write_bytes(self.root / STATE_DIR / name, keys.astype("<u8").tobytes())
        self.cursor = {**self.cursor, **extra, "shard": number, "position": position}
        atomic_write_json(self.root / STATE_DIR / "cursor.json", self.cursor)
        self.lines, self.tombstones = [], []
        return wrote

    def update_info(self, info: dict[str, Any]) -> None:
        self.info = info
        atomic_write_json(self.root / CRAWL_FILE, info)


def check_options(root: Path, info: dict[str, Any], options: dict[str, Any]) -> None:
    """Refuse to continue a crawl with other filters than it was started with (its shards would mix them)."""
    before = info.get("options")
    if before is None or before == options:
        return
    changed = ", ".join(f"{k}: {before.get(k)!r} then, {options.get(k)!r} now"
                        for k in sorted(set(before) | set(options)) if before.get(k) != options.get(k))
    raise InputError(f"{root} was crawled with other options ({changed}); continue it with the same options, or "
                     "crawl into a new folder")
