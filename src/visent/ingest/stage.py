"""The ingest stage: read a source, fetch and store its images, write the ``posts`` table.

Work goes in batches of ``batch_size`` posts; each finished batch is one checkpoint part, so an
interrupted run resumes where it stopped and memory stays bounded whatever the source size. Up to
:data:`LOOKAHEAD` batches download at once; their parts are written in source order, so a run
killed at any point (``kill -9`` included) and started again gives the tables of an uninterrupted run.

A source that is not a crawl folder (a file, a folder, an archive) is fingerprinted: the size and SHA-256 of each
of its files (a folder's files in sorted order), recorded in the stage's manifest entry (``source_fingerprint``),
never in its parameters. Run again with the same options, the stage is a no-op while the fingerprint is the same;
when it is not, the stage runs again and says why (``source_changed``): the posts whose id and image reference are
those of the last ingest keep the image it stored (nothing fetched again, unless the image file is gone or, for a
local file, the file is no longer the one read), the others are fetched, and the tables are those of an ingest
from scratch. ``work/ingest-files.parquet`` remembers the size, modification time and SHA-256 of the source's files
and of the local images read (so an unchanged file is not hashed again, and a local image is known unchanged
without reading it); ``work/ingest/previous.parquet`` and ``work/ingest/source.json`` hold, while a run is under
way, the rows of the last ingest and the fingerprint the run reads, so an interrupted run resumes as it was.
Crawl folders have their own incremental reading (:mod:`visent.ingest.crawl`).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from visent.core.display import ordered
from visent.core.errors import PathNotFound, UnknownName, UsageError
from visent.core.options import resolve
from visent.core.progress import progress
from visent.core.schema import HUMAN_LABELS, POSTS
from visent.core.store import Checkpoint, Dataset, atomic_write_json, atomic_write_table, file_sha256
import visent.ingest.crawl as crawl
from visent.ingest.download import ImageFetcher, local_file
from visent.ingest.options import IngestOptions
from visent.ingest.readers import READERS, RECORD_FIELDS, RawPost, _walk, detect_format, find_mvsa_layout

STAGE = "ingest"
_LABELS = [HUMAN_LABELS.field("text_label"), HUMAN_LABELS.field("image_label")]
CHECKPOINT = pa.schema(list(POSTS) + _LABELS)  # checkpoint rows: posts plus the source's human labels
# what a run over a changed source adds: why it ran, and its posts against the last ingest's (not repeated by a no-op)
RUN_COUNTS = ("source_changed", "new_posts", "changed_posts", "removed_posts", "reused")
COUNTS = ("posts", "ok", "error", "images", "with_human_labels", "text_repaired", "text_suspect",
          "ignored_fields", *crawl.COUNTS, *RUN_COUNTS)  # the order of the counts
FINGERPRINT = "source_fingerprint"  # the manifest entry's key of the source's fingerprint
FILES = "ingest-files.parquet"      # in work/: size, modification time and SHA-256 of the files the stage read
PREVIOUS = "previous.parquet"       # in work/ingest/: the rows of the last ingest, while a run over a changed source
STATE = "source.json"               # in work/ingest/: the fingerprint of the source the running ingest reads
_FILES_SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                           ("sha256", pa.string()), ("role", pa.string())])
_PREVIOUS_COLUMNS = ["post_id", "text", "lang", "created_at", "image_ref", "image_sha256", "image_file"]


def ingest(source: str | os.PathLike[str], out: str | os.PathLike[str], options: IngestOptions | None = None, *,
           ids: set[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Read ``source`` into the dataset at ``out`` here, in this process, and return the counts of the run:
    :func:`visent.ingest.ingest` (which hands the images to an engine first when asked) with the local engine.

    ``options`` (an :class:`IngestOptions`, or its fields as keyword arguments) say how; ``ids`` keeps only the
    posts with these ids. Every post becomes a row with ``ingest_status`` "ok" or "error" and a reason. Running
    again with the same options is a no-op; a run that was interrupted resumes from its last finished batch.

    Texts that are not UTF-8 are counted: ``text_repaired`` were read in the source's legacy encoding with
    certainty, ``text_suspect`` could not be (an error, with the reason; see :mod:`visent.core.encoding`).
    The fields of JSON/CSV post records that visent does not read are named in the counts
    (``ignored_fields``); posts none of whose fields visent reads get a warning, once per run.

    A crawl folder (``visent crawl``) leaves out the posts their authors deleted (``deleted_by_author``), and
    grows: run again after it has grown, the stage reads only the shards and tombstones committed since (see
    :mod:`visent.ingest.crawl`; ``new_shards``, ``newly_deleted``), and gives the tables an ingest of the whole
    crawl would; ``full_reingest`` says why it read everything again (a shard ingested before changed).
    """
    options = resolve(IngestOptions, options, kwargs, what="ingest")
    workers, batch_size, per_host, limit = options.workers, options.batch_size, options.per_host, options.limit
    check(options)
    src, reader, ids, params = stage_params(source, options, ids)
    plan = crawl.plan(out, src, params, STAGE, limit=limit) if reader == crawl.READER else None
    if plan is not None and plan.mode == "noop":
        return ordered(plan.counts, COUNTS)
    source = _Source(out, src, reader) if plan is None else None
    if source is not None and finished(out, params):
        info = Dataset(out).stage_info(STAGE)
        if info.get(FINGERPRINT) == source.fingerprint:
            source.unchanged(Dataset(out))
            return ordered({k: v for k, v in info["counts"].items() if k not in RUN_COUNTS}, COUNTS)

    # the source is opened before anything is written: an archive visent refuses leaves no dataset behind
    decoding: collections.Counter[str] = collections.Counter()
    fields = _Fields()
    raw = read_posts(reader, src, ids, limit) if plan is None else None
    dataset = Dataset(out, create=True)
    with dataset.writing("ingest"):  # one writer at a time (see Dataset.writing)
        if plan is not None:  # the rows kept from an earlier ingest of the crawl go first into the checkpoint
            plan.prepare(dataset, dataset.root / "work" / STAGE, CHECKPOINT)
            raw = _select(_unique(plan.posts(ids), plan.seen), ids, limit)
        assert raw is not None
        posts = fields.tally(_tally_decoding(raw, decoding))
        if source is not None:  # before begin_stage, which forgets that the last ingest finished
            source.prepare(dataset, params)
            posts = source.watch(posts)
        checkpoint = dataset.begin_stage(STAGE, params)
        _sweep(dataset)
        reuse = source.start(dataset) if source is not None else None
        done = checkpoint.done_keys()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visent-ingest")
        try:
            with ImageFetcher(workers=workers, timeout=options.timeout, retries=options.retries,
                              max_bytes=options.max_bytes, per_host=per_host, backoff=options.backoff) as fetcher, \
                    progress("ingest", limit) as advance:
                batches = iter(lambda: list(itertools.islice(posts, batch_size)), [])
                for batch, rows in _fetched_batches(batches, done, pool, fetcher, dataset, workers, per_host,
                                                    reuse=reuse, read=None if source is None else source.read):
                    if rows:
                        checkpoint.write(rows, CHECKPOINT)
                    advance(len(batch))
        finally:  # on an interruption, drop the queued downloads instead of waiting for them
            pool.shutdown(wait=True, cancel_futures=True)

        table = checkpoint.read(CHECKPOINT)
        record: dict[str, Any] = {}
        if plan is not None:
            previous = dataset.read_table("posts", ["post_id", "image_file"]) if dataset.intact("posts") else None
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
        if source is not None:
            counts.update(source.finish(dataset, table))
            record[FINGERPRINT] = source.fingerprint
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
                     fetcher: ImageFetcher, dataset: Dataset, workers: int, per_host: int, *,
                     reuse: Callable[[RawPost], dict[str, Any] | None] | None = None,
                     read: dict[str, tuple[int, int, str]] | None = None,
                     ) -> Iterator[tuple[list[RawPost], list[dict[str, Any]]]]:
    """``(batch, rows of its posts not in done)`` for each batch, in order, the rows in post order.

    ``reuse`` gives the row of a post whose image need not be fetched (None: fetch it); ``read`` collects the
    local image files fetched (path -> size, modification time before the read, SHA-256).

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
                row = reuse(post) if reuse is not None else None
                if row is not None:
                    batch.rows[i] = row
                    batch.missing -= 1
                    continue
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
                running[pool.submit(_fetch, batch.todo[i], fetcher, dataset, read)] = (batch, i, host)
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


def check(options: IngestOptions) -> None:
    """Refuse options out of range, before any work."""
    if (options.workers < 1 or options.batch_size < 1 or options.per_host < 1 or options.retries < 0
            or options.max_bytes < 1 or options.timeout <= 0 or options.backoff < 0):
        raise UsageError("workers, per_host, batch_size and max_bytes must be >= 1, retries and backoff >= 0 "
                         "and timeout > 0")


def stage_params(source: str | os.PathLike[str], options: IngestOptions,
                 ids: set[str] | None) -> tuple[Path, str, set[str] | None, dict[str, Any]]:
    """The checked source, its reader, the ids as strings and the parameters the stage records (its checkpoint
    is kept only under the same ones: :meth:`IngestOptions.params`); raises a clear error for a missing source, an
    unknown format or a negative limit. Every engine's ingest goes through here."""
    limit, format = options.limit, options.format
    if limit is not None and limit < 0:
        raise UsageError("limit must be >= 0")
    src = Path(source).expanduser().resolve()
    if not src.exists():
        raise PathNotFound(f"{src} does not exist")
    reader = detect_format(src) if format == "auto" else format
    if reader not in READERS:
        raise UnknownName(f"unknown format {format!r}; choose one of: auto, {', '.join(READERS)}")
    ids = None if ids is None else {str(i) for i in ids}
    return src, reader, ids, options.params(src, reader, _digest(ids))


def _fetch(post: RawPost, fetcher: ImageFetcher, dataset: Dataset,
           read: dict[str, tuple[int, int, str]] | None) -> dict[str, Any]:
    """:func:`_row`; a local image file it read goes into ``read`` with its size and modification time as they
    were before the read (a file changed since then has others: it is read again next time)."""
    local = _local_file(post.image_ref, post.base_dir) if read is not None else None
    stat = _stat(local) if local is not None else None
    row = _row(post, fetcher, dataset)
    if read is not None and stat is not None and row["image_sha256"]:
        read[str(local)] = (*stat, row["image_sha256"])
    return row


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
    return _post_row(post, sha256, image_file, reasons)


def _post_row(post: RawPost, sha256: str | None, image_file: str | None, reasons: list[str]) -> dict[str, Any]:
    """The table row of ``post`` with its image stored as ``image_file`` (None: ``reasons`` say why not)."""
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


# --------------------------------------------------------------------------- a source that changed
class _Source:
    """A source other than a crawl folder: its fingerprint now, and what the last ingest into ``out`` read of it
    (see the module's docstring). :meth:`prepare` (before the stage begins) and :meth:`start` (after) ready a run
    over a changed source, whose :meth:`reuse` gives the rows of the posts that need no fetching; :meth:`finish`
    records the files read and says what changed.

    The fingerprint covers the source's files and the local image files the last ingest read (a JSONL file's
    images beside it): a file whose size and modification time are those recorded is not read again."""

    def __init__(self, out: str | os.PathLike[str], src: Path, reader: str):
        self.src = src
        # an archive's images are read from a temporary extraction: never known unchanged, never recorded
        self.record_images = reader != "archive"
        self.base = src if src.is_dir() else src.parent
        known = _read_files(Path(out) / "work" / FILES)  # path -> (size, mtime_ns, sha256, role)
        self.before = {path: entry[:3] for path, entry in known.items() if entry[3] == "source"}
        self.rehashed = 0
        # the source's files now, and the local images the last ingest read as they are now: path -> (size, mtime_ns,
        # sha256); an image file that is gone has none
        self.files = self._hashed(_source_files(src, reader), known)
        self.images: dict[str, tuple[int, int, str] | None] = {}
        for path, entry in known.items():
            if entry[3] == "image" and path not in self.files:
                self.images[path] = self._hashed([Path(path)], known).get(path)
        self.recorded = {path: entry[:3] for path, entry in known.items() if entry[3] == "image"}
        self.fingerprint = self._fingerprint(self.files, self.images)
        self.read: dict[str, tuple[int, int, str]] = {}   # local images fetched by this run
        self.used: dict[str, tuple[int, int, str]] = {}   # local images of the last ingest that this run kept
        self.local: dict[str, str] = {}                   # post_id -> the local image file it names
        self.previous: dict[str, dict[str, Any]] = {}     # post_id -> row of the last ingest (a changed source)
        self.changed: str | None = None
        self.root: Path | None = None

    def _hashed(self, paths: list[Path], known: dict[str, tuple[int, int, str, str]]
                ) -> dict[str, tuple[int, int, str]]:
        """(size, mtime_ns, SHA-256) of the readable files of ``paths``, hashing only those not as ``known``."""
        out: dict[str, tuple[int, int, str]] = {}
        for path in paths:
            stat = _stat(path)
            if stat is None:
                continue
            entry = known.get(str(path))
            if entry is not None and (entry[0], entry[1]) == stat:
                out[str(path)] = (*stat, entry[2])
                continue
            try:
                out[str(path)] = (*stat, file_sha256(path))
            except OSError:
                continue
            self.rehashed += 1
        return out

    def _fingerprint(self, files: dict[str, tuple[int, int, str]],
                     images: dict[str, tuple[int, int, str] | None]) -> dict[str, Any]:
        digest = hashlib.sha256()
        for path, (size, _, sha) in files.items():
            name = os.path.relpath(path, self.base).encode("utf-8", "surrogateescape")
            digest.update(name + f"\0{size}\0{sha}\n".encode())
        digest.update(b"\0images\n")
        for path in sorted(images):
            entry = images[path]
            digest.update(path.encode("utf-8", "surrogateescape") + f"\0{entry[2] if entry else 'gone'}\n".encode())
        return {"files": len(files), "bytes": sum(entry[0] for entry in files.values()), "images": len(images),
                "sha256": digest.hexdigest()}

    def prepare(self, dataset: Dataset, params: dict[str, Any]) -> None:
        """Before the stage begins: when the last ingest finished with ``params`` (the source changed, else the stage
        was a no-op), keep its rows in ``work/ingest/``; when an interrupted run read another state of the source,
        drop its rows."""
        info = dataset.stage_info(STAGE)
        if info is None or not crawl._same(info.get("params"), params):
            return  # a run from scratch: begin_stage clears the checkpoint
        work = dataset.root / "work" / STAGE
        if info.get("status") == "done" and dataset.intact("posts"):  # a damaged table: a run from scratch
            Checkpoint(work).clear()
            posts = dataset.read_table("posts")
            previous = pa.table({name: posts.column(name) if name in posts.column_names
                                 else pa.nulls(posts.num_rows, pa.string()) for name in _PREVIOUS_COLUMNS})
            atomic_write_table(work / PREVIOUS, previous)
            atomic_write_json(work / STATE, {"fingerprint": self.fingerprint, "changed": self._why(info)})
            return
        state = _read_json(work / STATE)
        if state is not None and state.get("fingerprint") != self.fingerprint:
            for part in work.glob("part-*.parquet"):  # rows of another state of the source
                part.unlink()
            changed = self._why(None) if (work / PREVIOUS).is_file() else None
            atomic_write_json(work / STATE, {"fingerprint": self.fingerprint, "changed": changed})

    def start(self, dataset: Dataset) -> Callable[[RawPost], dict[str, Any] | None] | None:
        """After the stage began: the function that gives the row of a post that needs no fetching (None when the
        last ingest's rows are not at hand)."""
        work = dataset.root / "work" / STAGE
        state = _read_json(work / STATE)
        if state is None:  # a run from scratch (or one an engine began): its checkpoint holds this source's rows
            state = {"fingerprint": self.fingerprint, "changed": None}
            atomic_write_json(work / STATE, state)
        self.changed = state.get("changed")
        self.root = dataset.root
        if not (work / PREVIOUS).is_file():
            return None
        self.previous = {row["post_id"]: row for row in pq.read_table(work / PREVIOUS).to_pylist()}
        return self.reuse

    def watch(self, posts: Iterable[RawPost]) -> Iterator[RawPost]:
        """``posts``, noting the local image file of each (see :meth:`finish`)."""
        for post in posts:
            local = _local_file(post.image_ref, post.base_dir)
            if local is not None:
                self.local[post.post_id] = str(local)
            yield post

    def reuse(self, post: RawPost) -> dict[str, Any] | None:
        """The row of ``post`` with the image the last ingest stored for it, when it has the same id and image
        reference, the image file is still in the dataset, and a local image file is still the one read."""
        old = self.previous.get(post.post_id)
        if old is None or not post.image_ref or old["image_ref"] != post.image_ref:
            return None
        sha, image_file = old["image_sha256"], old["image_file"]
        if not sha or not image_file or self.root is None or not (self.root / image_file).is_file():
            return None
        local = self.local.get(post.post_id)
        if local is not None:
            entry = self.files.get(local) or self.images.get(local)
            if entry is None or entry[2] != sha:
                return None
            self.used[local] = entry
        return _post_row(post, sha, image_file, [post.error] if post.error else [])

    def finish(self, dataset: Dataset, table: pa.Table) -> dict[str, Any]:
        """Record the files read (the fingerprint, returned in :attr:`fingerprint`, is then theirs); remove the
        images of the last ingest that no post has now; the counts of a run over a changed source
        (:data:`RUN_COUNTS`; none for a run from scratch)."""
        images = {**self.used, **self.read}
        # the local images of posts a run interrupted before this one stored: read now, if still what was stored
        for post_id, sha in zip(table.column("post_id").to_pylist(), table.column("image_sha256").to_pylist()):
            path = self.local.get(post_id)
            if sha and path is not None and path not in images and path not in self.files and self.record_images:
                entry = self._hashed([Path(path)], {})
                if entry.get(path) and entry[path][2] == sha:
                    images[path] = entry[path]
        images = {path: entry for path, entry in images.items() if path not in self.files and self.record_images}
        self._save(dataset, images)
        self.fingerprint = self._fingerprint(self.files, images)  # type: ignore[arg-type]
        if not self.previous:
            return {}
        ids = table.column("post_id").to_pylist()
        columns = {name: table.column(name).to_pylist() for name in _PREVIOUS_COLUMNS[1:]}
        new = changed = reused = 0
        for k, post_id in enumerate(ids):
            old = self.previous.get(post_id)
            if old is None:
                new += 1
                continue
            changed += any(old[name] != columns[name][k] for name in ("text", "lang", "created_at", "image_ref"))
            reused += bool(old["image_sha256"]) and old["image_ref"] == columns["image_ref"][k] and \
                (old["image_sha256"], old["image_file"]) == (columns["image_sha256"][k], columns["image_file"][k])
        removed = len(self.previous.keys() - set(ids))
        crawl.without_images(dataset, [row["image_file"] for row in self.previous.values() if row["image_file"]], table)
        return {"source_changed": self.changed or f"{self.src.name} changed since the last ingest", "new_posts": new,
                "changed_posts": changed, "removed_posts": removed, "reused": reused}

    def unchanged(self, dataset: Dataset) -> None:
        """On a no-op: record the files hashed again (touched, not changed), so the next run need not."""
        if self.rehashed:
            self._save(dataset, {path: entry for path, entry in self.images.items() if entry is not None})

    def _save(self, dataset: Dataset, images: dict[str, tuple[int, int, str]]) -> None:
        """Write ``work/ingest-files.parquet``: the source's files and the local images ``images``."""
        rows = [(path, *entry, "source") for path, entry in self.files.items()]
        rows += [(path, *entry, "image") for path, entry in images.items()]
        rows = [row for row in rows if _utf8(row[0])]
        table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(_FILES_SCHEMA.names)},
                         schema=_FILES_SCHEMA)
        atomic_write_table(dataset.root / "work" / FILES, table)

    def _why(self, info: dict[str, Any] | None) -> str:
        """Why the source is not what the last ingest read, in a few words."""
        name = self.src.name
        if info is not None and not info.get(FINGERPRINT):
            return f"the last ingest recorded no fingerprint of {name}: read again"
        what: list[str] = []
        names: list[str] = []
        if self.before and self.src.is_dir():
            added = [path for path in self.files if path not in self.before]
            changed = [path for path in self.files
                       if path in self.before and self.before[path][2] != self.files[path][2]]
            removed = [path for path in self.before if path not in self.files]
            what += [f"{len(paths)} {how}" for paths, how in ((added, "added"), (changed, "changed"),
                                                               (removed, "removed")) if paths]
            names += [os.path.relpath(path, self.src) for path in added + changed + removed]
            what = [f"files {', '.join(what)}"] if what else []
        elif self.before and any(self.before.get(path, (0, 0, ""))[2] != entry[2]
                                 for path, entry in self.files.items()):
            what.append("the file itself")
        images = [path for path, entry in self.images.items()
                  if entry is None or entry[2] != self.recorded.get(path, (0, 0, ""))[2]]
        if images:
            what.append(f"{len(images)} local image{'s' if len(images) > 1 else ''} changed or gone")
            names += [os.path.relpath(path, self.base) for path in images]
        if not what or what == ["the file itself"]:
            return f"{name} changed since the last ingest"
        more = ", ..." if len(names) > 3 else ""
        detail = f" ({', '.join(names[:3])}{more})" if names else ""
        return f"{name} changed since the last ingest: {'; '.join(what)}{detail}"


def _source_files(src: Path, reader: str) -> list[Path]:
    """The files the reader ``reader`` reads of ``src`` (for a folder: its files, hidden ones and datasets left
    out), in sorted order."""
    if src.is_file():
        return [src]
    if reader == "mvsa":
        data, labels = find_mvsa_layout(src)
        files = [path for _, names in _walk(data) for path in names] + ([labels] if labels else [])
        return sorted(set(path for path in files if path.is_file()), key=str)
    return [path for _, names in _walk(src) for path in names if path.is_file()]


def _local_file(ref: str | None, base: Path | None) -> Path | None:
    """The local file an image reference names, as the image fetcher reads it (:func:`local_file`), made absolute;
    None for a URL or a reference that names no file."""
    path = local_file(ref, base)[0] if ref else None
    if path is None:
        return None
    try:
        return Path(os.path.abspath(path))
    except ValueError:  # a NUL byte
        return None


def _stat(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file; None when it cannot be read."""
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    return stat.st_size, stat.st_mtime_ns


def _read_files(path: Path) -> dict[str, tuple[int, int, str, str]]:
    """What ``work/ingest-files.parquet`` says of each file (empty when it is missing or damaged)."""
    if not path.is_file():
        return {}
    try:
        table = pq.read_table(path).cast(_FILES_SCHEMA)
    except (OSError, pa.ArrowException):
        return {}
    columns = [table.column(name).to_pylist() for name in _FILES_SCHEMA.names]
    return {row[0]: tuple(row[1:]) for row in zip(*columns)}  # type: ignore[misc]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
