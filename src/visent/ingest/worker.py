"""Ingest through an engine (:func:`visent.ingest.ingest`): the posts are read on the driver, their images fetched
and stored by the engine's workers, every finished batch written to the ingest checkpoint in the reader's order.

With the local engine this is :func:`visent.ingest.stage.ingest` itself. With another engine the images are fetched
into the checkpoint first, batch by batch (an interrupted run resumes from the last finished batch); then
:func:`visent.ingest.stage.ingest` runs with the same options, finds every post done and writes the ``posts`` and
``human_labels`` tables and the counts from that checkpoint: the same tables as a local run.
"""

from __future__ import annotations

import itertools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from visent.core.progress import progress
from visent.core.store import Dataset
from visent.core.options import resolve
from visent.engine import Engine, get_engine
import visent.ingest.stage as stage
from visent.ingest.download import ImageFetcher
from visent.ingest.options import DEFAULT_PER_HOST, IngestOptions
from visent.ingest.readers import RawPost

WINDOW = 64  # batches handed to the engine at once: bounds the posts held on the driver

_RAW = pa.schema([
    ("post_id", pa.string()), ("source", pa.string()), ("text", pa.string()), ("image_ref", pa.string()),
    ("base_dir", pa.string()), ("lang", pa.string()), ("created_at", pa.string()), ("text_label", pa.string()),
    ("image_label", pa.string()), ("error", pa.string()),
])


class IngestWorker:
    """Fetches and stores the images of a batch of posts (``_RAW`` rows) into the dataset at ``root``; returns
    the batch's checkpoint rows in the same order. ``workers`` threads fetch at once."""

    def __init__(self, root: str, workers: int, fetcher: dict[str, Any]):
        self.dataset = Dataset(root)
        self.workers = workers
        self.per_host = fetcher.get("per_host", DEFAULT_PER_HOST)
        self.fetcher = ImageFetcher(workers=workers, **fetcher)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visent-ingest")

    def __call__(self, batch: pa.Table) -> pa.Table:
        posts = [_post(row) for row in batch.to_pylist()]
        rows = stage.fetch_rows(posts, self.pool, self.fetcher, self.dataset, self.workers, self.per_host)
        return pa.Table.from_pylist(rows, schema=stage.CHECKPOINT)

    def close(self) -> None:
        """Close the HTTP client and stop the fetch threads (an engine that built this worker calls it when done)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.fetcher.close()


def _post(row: dict[str, Any]) -> RawPost:
    base = row.pop("base_dir")
    return RawPost(**{**row, "base_dir": Path(base) if base else None, "error": row["error"] or ""})


def _record(post: RawPost) -> dict[str, Any]:
    return {name: (str(post.base_dir) if name == "base_dir" and post.base_dir is not None else getattr(post, name))
            for name in _RAW.names}


def ingest(source: str | os.PathLike[str], out: str | os.PathLike[str], options: IngestOptions | None = None, *,
           ids: set[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Read ``source`` (a crawl folder, a file or folder of posts, an archive: see :data:`visent.ingest.READERS`)
    into the dataset at ``out``, fetching and storing each post's image, and return the counts of the run.

    ``options`` (an :class:`~visent.ingest.IngestOptions`, or its fields as keyword arguments: ``workers=2``)
    say how; ``ids`` keeps only the posts with these ids. Its ``engine`` ("local", "ray" or an engine of
    :func:`visent.engine.get_engine`, with ``ray_address``) fetches the images; the tables are the same. Running
    again with the same options is a no-op, and an interrupted run resumes from its last finished batch (see
    :func:`visent.ingest.stage.ingest`, the local run, for the counts).
    """
    options = resolve(IngestOptions, options, kwargs, what="ingest")
    run = get_engine(options.engine, address=options.ray_address)
    here = replace(options, engine="local", ray_address=None)
    if run.name != "local":
        params = _fetch(run, source, out, options, ids)
        if params is not None:
            counts = stage.ingest(source, out, here, ids=ids)
            recorded = (Dataset(out).stage_info(stage.STAGE) or {}).get("params")
            if recorded != params:
                warnings.warn(f"the ingest stage records other parameters than the {run.name} engine wrote its "
                              "checkpoint under, so the images were fetched again locally; visent.ingest.worker "
                              "needs updating", RuntimeWarning, stacklevel=2)
            return counts
    return stage.ingest(source, out, here, ids=ids)


def _fetch(run: Engine, source: str | os.PathLike[str], out: str | os.PathLike[str], options: IngestOptions,
           ids: set[str] | None) -> dict[str, Any] | None:
    """Fill the ingest checkpoint through ``run``; returns the stage parameters, or None when the stage is
    already done (or the options are invalid: the local stage then says why)."""
    try:  # the parameters visent.ingest.stage records: the checkpoint is kept only under the same ones
        stage.check(options)
        src, reader, ids, params = stage.stage_params(source, options, ids)
    except (FileNotFoundError, ValueError):
        return None
    if stage.finished(out, params):
        return None
    limit, batch_size = options.limit, options.batch_size
    posts = stage.read_posts(reader, src, ids, limit)  # before anything is written, as the local stage does
    dataset = Dataset(out, create=True)
    with dataset.writing("ingest"):
        checkpoint = dataset.begin_stage(stage.STAGE, params)
        done = checkpoint.done_keys()
        fetcher = dict(timeout=options.timeout, retries=options.retries, max_bytes=options.max_bytes,
                       per_host=options.per_host, backoff=options.backoff)
        with progress(f"ingest ({run.name})", limit) as advance:
            for window in _windows(posts, batch_size * WINDOW):
                todo = [_record(post) for post in window if post.post_id not in done]
                advance(len(window) - len(todo))
                table = pa.Table.from_pylist(todo, schema=_RAW)
                for rows in run.map_batches(IngestWorker, (str(dataset.root.resolve()), options.workers, fetcher),
                                            table, batch_size=batch_size):
                    checkpoint.write(rows.cast(stage.CHECKPOINT))
                    advance(rows.num_rows)
    return params


def _windows(posts: Iterator[RawPost], size: int) -> Iterator[list[RawPost]]:
    while window := list(itertools.islice(posts, size)):
        yield window
