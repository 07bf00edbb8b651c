"""The ingest stage: read a source, fetch and store its images, write the ``posts`` table.

Work goes in batches of ``batch_size`` posts; each finished batch is one checkpoint part, so an
interrupted run resumes where it stopped and memory stays bounded whatever the source size. Up to
:data:`LOOKAHEAD` batches download at once; their parts are written in source order, so a run
killed at any point (``kill -9`` included) and started again gives the tables of an uninterrupted run.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from visent.core.display import ordered
from visent.core.errors import PathNotFound, UnknownName, UsageError
from visent.core.progress import progress
from visent.core.schema import HUMAN_LABELS, POSTS
from visent.core.store import Dataset
from visent.ingest import crawl
from visent.ingest.download import ImageFetcher
from visent.ingest.readers import READERS, RECORD_FIELDS, RawPost, detect_format

STAGE = "ingest"
_LABELS = [HUMAN_LABELS.field("text_label"), HUMAN_LABELS.field("image_label")]
CHECKPOINT = pa.schema(list(POSTS) + _LABELS)  # checkpoint rows: posts plus the source's human labels
DEFAULT_PER_HOST = 8
COUNTS = ("posts", "ok", "error", "images", "with_human_labels", "text_repaired", "text_suspect",
          "ignored_fields", *crawl.COUNTS)  # the order of the counts


def ingest(source: str | os.PathLike[str], out: str | os.PathLike[str], *, format: str = "auto",
           workers: int = 16, timeout: float = 10.0, retries: int = 3, max_bytes: int = 20_000_000,
           batch_size: int = 500, limit: int | None = None, ids: set[str] | None = None,
           per_host: int = DEFAULT_PER_HOST, backoff: float = 0.5) -> dict[str, Any]:
    """Read ``source`` into the dataset at ``out`` and return the counts of the run.

    ``format`` names a reader of :data:`READERS` ("auto" detects it). ``workers`` threads fetch
    images, at most ``per_host`` at a time from one host; ``timeout``, ``retries``, ``backoff`` and
    ``max_bytes`` govern each image (see :class:`ImageFetcher`).
    ``limit`` keeps the first N posts, ``ids`` only the posts with these ids. Every post becomes a
    row with ``ingest_status`` "ok" or "error" and a reason. Running again with the same options is
    a no-op; a run that was interrupted resumes from its last finished batch.

    Texts that are not UTF-8 are counted: ``text_repaired`` were read in the source's legacy encoding with
    certainty, ``text_suspect`` could not be (an error, with the reason; see :mod:`visent.core.encoding`).
    The fields of JSON/CSV post records that visent does not read are named in the counts
    (``ignored_fields``); posts none of whose fields visent reads get a warning, once per run.

    A crawl folder (``visent crawl``) leaves out the posts their authors deleted (``deleted_by_author``), and
    grows: run again after it has grown, the stage reads only the shards and tombstones committed since (see
    :mod:`visent.ingest.crawl`; ``new_shards``, ``newly_deleted``), and gives the tables an ingest of the whole
    crawl would; ``full_reingest`` says why it read everything again (a shard ingested before changed).
    """
    if workers < 1 or batch_size < 1 or per_host < 1 or retries < 0 or max_bytes < 1 or timeout <= 0 or backoff < 0:
        raise UsageError("workers, per_host, batch_size and max_bytes must be >= 1, retries and backoff >= 0 "
                         "and timeout > 0")
    src, reader, ids, params = stage_params(source, format=format, timeout=timeout, retries=retries,
                                            max_bytes=max_bytes, limit=limit, ids=ids)
    plan = crawl.plan(out, src, params, STAGE, limit=limit) if reader == crawl.READER else None
    if plan is not None and plan.mode == "noop":
        return ordered(plan.counts, COUNTS)
    if plan is None and finished(out, params):
        return ordered(Dataset(out).stage_info(STAGE)["counts"], COUNTS)

    # the source is opened before anything is written: an archive visent refuses leaves no dataset behind
    decoding: collections.Counter[str] = collections.Counter()
    fields = _Fields()
    raw = read_posts(reader, src, ids, limit) if plan is None else None
    dataset = Dataset(out, create=True)
    if plan is not None:  # the rows kept from an earlier ingest of the crawl go first into the checkpoint
        plan.prepare(dataset, dataset.root / "work" / STAGE, CHECKPOINT)
        raw = _select(_unique(plan.posts(ids), plan.seen), ids, limit)
    assert raw is not None
    posts = fields.tally(_tally_decoding(raw, decoding))
    checkpoint = dataset.begin_stage(STAGE, params)
    _sweep(dataset)
    done = checkpoint.done_keys()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visent-ingest")
    try:
        with ImageFetcher(workers=workers, timeout=timeout, retries=retries, max_bytes=max_bytes,
                          per_host=per_host, backoff=backoff) as fetcher, \
                progress("ingest", limit) as advance:
            batches = iter(lambda: list(itertools.islice(posts, batch_size)), [])
            for batch, rows in _fetched_batches(batches, done, pool, fetcher, dataset, workers, per_host):
                if rows:
                    checkpoint.write(rows, CHECKPOINT)
                advance(len(batch))
    finally:  # on an interruption, drop the queued downloads instead of waiting for them
        pool.shutdown(wait=True, cancel_futures=True)

    table = checkpoint.read(CHECKPOINT)
    record: dict[str, Any] = {}
    if plan is not None:
        previous = dataset.read_table("posts", ["post_id", "image_file"]) if dataset.has_table("posts") else None
        table, crawl_counts, record["crawl"], left_out = plan.finish(table, previous)
    dataset.write_table("posts", table.select(POSTS.names))
    labelled = table.filter(pc.or_(pc.is_valid(table["text_label"]), pc.is_valid(table["image_label"])))
    if labelled.num_rows:
        dataset.write_table("human_labels", labelled.select(HUMAN_LABELS.names))
    else:  # labels of an earlier source must not outlive it
        dataset.table_path("human_labels").unlink(missing_ok=True)
    ok = pc.sum(pc.equal(table["ingest_status"], "ok")).as_py() or 0
    counts = {
        "posts": table.num_rows,
        "ok": ok,
        "error": table.num_rows - ok,
        "images": pc.count_distinct(table["image_sha256"]).as_py(),
        "with_human_labels": labelled.num_rows,
    }
    counts.update({f"text_{how}": decoding[how] for how in ("repaired", "suspect") if decoding[how]})
    if fields.ignored:
        counts["ignored_fields"] = _names(fields.ignored)
    if plan is not None:
        counts.update(crawl_counts)
        crawl.without_images(dataset, left_out, table)  # a post deleted by its author leaves no image behind
    dataset.finish_stage(STAGE, params, counts, **record)
    if fields.unread:
        fields.warn(src)
    return counts


def finished(out: str | os.PathLike[str], params: dict[str, Any]) -> bool:
    """True when ``out`` is a dataset whose ingest finished with ``params`` (so running it again is a no-op)."""
    if not (Path(out) / "manifest.json").exists():
        return False
    dataset = Dataset(out)
    return dataset.stage_done(STAGE, params) and dataset.has_table("posts")


def _tally_decoding(posts: Iterable[RawPost], counts: collections.Counter[str]) -> Iterator[RawPost]:
    """``posts``, counting in ``counts`` how the texts that were not UTF-8 were read (``RawPost.decoding``)."""
    for post in posts:
        if post.decoding:
            counts[post.decoding] += 1
        yield post


class _Fields:
    """The field names of the flat post records (JSON objects, CSV rows) of a source, tallied as its posts go by."""

    def __init__(self) -> None:
        self.found: dict[str, None] = {}    # in the order first seen
        self.ignored: dict[str, None] = {}  # found, but read by no reader (see RECORD_FIELDS)
        self.records = 0
        self.unread = 0                     # records none of whose fields is read

    def tally(self, posts: Iterable[RawPost]) -> Iterator[RawPost]:
        for post in posts:
            if post.fields:
                self.records += 1
                self.found.update(dict.fromkeys(post.fields))
                self.ignored.update(dict.fromkeys(post.ignored))
                self.unread += len(post.ignored) == len(post.fields)
            yield post

    def warn(self, source: Path) -> None:
        reads = "; ".join(f"{what}: {', '.join(keys)}" for what, keys in RECORD_FIELDS.items())
        warnings.warn(f"{source}: {self.unread} of {self.records} posts have no field visent reads, so they have no "
                      f"text or image of their own (fields found: {_names(self.found)}). visent reads, by what they "
                      f"hold, {reads}. Rename the fields (an image and a text field at least) and ingest again "
                      "into a new dataset directory.", UserWarning, stacklevel=3)


def _names(names: Iterable[str], most: int = 20) -> str:
    """``names`` joined with commas, the first ``most`` of them."""
    names = list(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


LOOKAHEAD = 16  # batches in flight at once: a slow post holds back its batch's checkpoint, not the workers


class _Batch:
    def __init__(self, posts: list[RawPost], todo: list[RawPost]):
        self.posts = posts
        self.todo = todo
        self.rows: list[dict[str, Any] | None] = [None] * len(todo)
        self.missing = len(todo)


def _fetched_batches(batches: Iterator[list[RawPost]], done: set[str], pool: ThreadPoolExecutor,
                     fetcher: ImageFetcher, dataset: Dataset, workers: int,
                     per_host: int) -> Iterator[tuple[list[RawPost], list[dict[str, Any]]]]:
    """``(batch, rows of its posts not in done)`` for each batch, in order, the rows in post order.

    Downloads of up to :data:`LOOKAHEAD` batches run at once, with at most ``per_host`` of them
    from one host in flight: posts of a busy host wait in its queue while the workers fetch from
    other hosts, so one slow host cannot hold every worker, and a batch's slowest download does
    not idle the workers before the next batch. Which thread finishes first changes nothing in
    what is yielded."""
    window: collections.deque[_Batch] = collections.deque()
    queues: dict[str | None, collections.deque[tuple[_Batch, int]]] = {}
    active: collections.Counter[str | None] = collections.Counter()
    running: dict[Future[dict[str, Any]], tuple[_Batch, int, str | None]] = {}
    exhausted = False
    while True:
        while not exhausted and len(window) < LOOKAHEAD:
            batch_posts = next(batches, None)
            if batch_posts is None:
                exhausted = True
                break
            batch = _Batch(batch_posts, [post for post in batch_posts if post.post_id not in done])
            window.append(batch)
            for i, post in enumerate(batch.todo):
                queues.setdefault(_host(post.image_ref), collections.deque()).append((batch, i))
        while window and window[0].missing == 0:
            batch = window.popleft()
            yield batch.posts, batch.rows  # type: ignore[misc]
        if not window:
            if exhausted:
                return
            continue  # every batch taken so far was done by an earlier run: take the next ones
        for host in list(queues):
            queue = queues[host]
            while queue and len(running) < workers and (host is None or active[host] < per_host):
                batch, i = queue.popleft()
                running[pool.submit(_row, batch.todo[i], fetcher, dataset)] = (batch, i, host)
                active[host] += 1
            if not queue:
                del queues[host]
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            batch, i, host = running.pop(future)
            active[host] -= 1
            batch.rows[i] = future.result()
            batch.missing -= 1


def fetch_rows(posts: list[RawPost], pool: ThreadPoolExecutor, fetcher: ImageFetcher, dataset: Dataset,
               workers: int, per_host: int) -> list[dict[str, Any]]:
    """The checkpoint rows (:data:`CHECKPOINT`) of ``posts``, in their order, their images fetched into
    ``dataset`` as one batch of the stage's downloads (what an engine's ingest worker runs)."""
    for _, rows in _fetched_batches(iter([posts]), set(), pool, fetcher, dataset, workers, per_host):
        return rows
    return []


def _sweep(dataset: Dataset) -> None:
    """Remove the temporary files a killed run left behind (an image or table half written when
    the process died), so a resumed run leaves the same files as an uninterrupted one."""
    for pattern in ("images/*/.*.tmp", ".posts.parquet.*.tmp", ".human_labels.parquet.*.tmp"):
        for stale in dataset.root.glob(pattern):
            stale.unlink(missing_ok=True)


def _host(ref: str | None) -> str | None:
    """The host an image reference downloads from; None for local files."""
    if not ref or "://" not in ref:
        return None
    try:
        parts = urlsplit(ref)
    except ValueError:
        return None
    return parts.netloc.lower() if parts.scheme.lower() in ("http", "https") else None


def stage_params(source: str | os.PathLike[str], *, format: str, timeout: float, retries: int, max_bytes: int,
                 limit: int | None, ids: set[str] | None) -> tuple[Path, str, set[str] | None, dict[str, Any]]:
    """The checked source, its reader, the ids as strings and the parameters the stage records (its checkpoint
    is kept only under the same ones); raises a clear error for a missing source, an unknown format or a
    negative limit. Every engine's ingest goes through here."""
    if limit is not None and limit < 0:
        raise UsageError("limit must be >= 0")
    src = Path(source).expanduser().resolve()
    if not src.exists():
        raise PathNotFound(f"{src} does not exist")
    reader = detect_format(src) if format == "auto" else format
    if reader not in READERS:
        raise UnknownName(f"unknown format {format!r}; choose one of: auto, {', '.join(READERS)}")
    ids = None if ids is None else {str(i) for i in ids}
    params: dict[str, Any] = {
        "source": str(src), "format": reader, "timeout": timeout, "retries": retries,
        "max_bytes": max_bytes, "limit": limit, "ids": _digest(ids),
    }
    return src, reader, ids, params


def _row(post: RawPost, fetcher: ImageFetcher, dataset: Dataset) -> dict[str, Any]:
    """The table row of one post, its image fetched and stored."""
    reasons = [post.error] if post.error else []
    sha256 = image_file = None
    if post.image_ref:
        fetched = fetcher.fetch(post.image_ref, post.base_dir)
        if fetched.ok:
            sha256, image_file = dataset.put_image(fetched.data, fetched.ext)
        else:
            reasons.append(fetched.reason)
    return {
        "post_id": post.post_id, "source": post.source, "text": post.text, "lang": post.lang,
        "created_at": post.created_at, "image_ref": post.image_ref, "image_sha256": sha256,
        "image_file": image_file, "ingest_status": "error" if reasons else "ok",
        "ingest_reason": "; ".join(reasons), "text_label": post.text_label, "image_label": post.image_label,
    }


def _unique(posts: Iterable[RawPost], seen: dict[str, str] | None = None) -> Iterator[RawPost]:
    """Posts with unique ids: a repeated id becomes "<id>#2", "<id>#3", ... and is marked an error. ``seen``: the
    ids (and sources) of posts read before these (the rows an incremental ingest keeps)."""
    first_seen: dict[str, str] = dict(seen or {})
    for post in posts:
        if post.post_id in first_seen:
            n = 2
            while f"{post.post_id}#{n}" in first_seen:
                n += 1
            note = f"duplicate post id {post.post_id} (first at {first_seen[post.post_id]})"
            post = replace(post, post_id=f"{post.post_id}#{n}", error="; ".join(filter(None, [post.error, note])))
        first_seen[post.post_id] = post.source
        yield post


def read_posts(reader: str, source: Path, ids: set[str] | None, limit: int | None) -> Iterator[RawPost]:
    """The posts the stage ingests, in the reader's order: ids made unique, then ``ids`` and ``limit`` applied."""
    return _select(_unique(READERS.create(reader, source=source)), ids, limit)


def _select(posts: Iterator[RawPost], ids: set[str] | None, limit: int | None) -> Iterator[RawPost]:
    if ids is not None:
        posts = (post for post in posts if post.post_id in ids)
    return itertools.islice(posts, limit)


def _digest(ids: set[str] | None) -> dict[str, Any] | None:
    """A short, stable stand-in for an id set in the stage parameters."""
    if ids is None:
        return None
    joined = "\n".join(sorted(map(str, ids))).encode("utf-8")
    return {"count": len(ids), "sha256": hashlib.sha256(joined).hexdigest()}
