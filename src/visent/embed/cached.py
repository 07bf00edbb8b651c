"""One cached pass over images: what the backbones' features and the image signals share.

:func:`cached_image_pass` hashes the files, looks their vectors up in the feature cache, computes each missing
distinct image once (decoding in threads ahead of the computation), writes finished work to the cache every
:data:`FLUSH_EVERY` images and gives an :class:`~visent.core.status.ImageStatus` per image. A backbone computes a
batch at once; a signal computes one image at a time (:func:`per_image`).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from visent.core.progress import progress
from visent.core.status import CACHED, OK, ImageStatus
from visent.core.store import file_sha256
from visent.embed.cache import FeatureCache

T = TypeVar("T")
R = TypeVar("R")

FLUSH_EVERY = 1024  # images per cache shard: an interrupted run loses at most this much work

Compute = Callable[[list[Any]], Sequence["np.ndarray | Exception"]]
"""Vectors of a batch of loaded images, one per image: a vector, or the exception that image raised (an
exception raised by the function itself stops the pass)."""


def prefetched(batches: Iterable[list[T]], load: Callable[[T], R], workers: int,
               depth: int = 2) -> Iterator[list[R | Exception]]:
    """Yield each batch of ``load(item)`` results (or the exception raised), decoding ahead in threads.

    At most ``depth + 1`` batches are in flight, so memory stays bounded however long the input.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="visent-decode")
    pending: deque[list[Future]] = deque()
    iterator = iter(batches)

    def safe(item: T) -> R | Exception:
        try:
            return load(item)
        except Exception as exc:  # noqa: BLE001 - the caller reports it per item
            return exc

    def submit() -> None:
        batch = next(iterator, None)
        if batch is not None:
            pending.append([pool.submit(safe, item) for item in batch])

    try:
        for _ in range(depth + 1):
            submit()
        while pending:
            futures = pending.popleft()
            submit()
            yield [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def file_hashes(paths: Sequence[Path | str | None], hashes: Sequence[str | None] | None = None,
                workers: int = 2) -> tuple[list[str | None], list[ImageStatus | None]]:
    """SHA-256 of each file's bytes (taken from ``hashes`` where given) and, where a file cannot be read, its
    error status (its digest None); a None path's status is the error "no image file"."""
    n = len(paths)
    if hashes is not None and len(hashes) != n:
        raise ValueError(f"{len(hashes)} hashes for {n} paths")
    digests: list[str | None] = [None] * n
    errors: list[ImageStatus | None] = [None] * n
    for i, path in enumerate(paths):
        if path is None:
            errors[i] = ImageStatus.failure("no image file")
        elif hashes is not None and hashes[i]:
            digests[i] = hashes[i]
    missing = [i for i in range(n) if digests[i] is None and errors[i] is None]
    if missing:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i, result in zip(missing, pool.map(lambda i: attempt(file_sha256, Path(paths[i])), missing)):
                if isinstance(result, Exception):
                    errors[i] = ImageStatus.from_exception(Path(paths[i]), result)  # type: ignore[arg-type]
                else:
                    digests[i] = result
    return digests, errors


def per_image(infer: Callable[[Any], np.ndarray]) -> Compute:
    """A :data:`Compute` that runs ``infer`` on one image at a time; an image it fails on gets its exception."""
    def compute(items: list[Any]) -> list[np.ndarray | Exception]:
        return [attempt(infer, item) for item in items]

    return compute


def cached_image_pass(paths: Sequence[Path | str | None], key: str, dim: int, *, load: Callable[[Path], Any],
                      compute: Compute, cache: FeatureCache | None, hashes: Sequence[str | None] | None = None,
                      hashed: tuple[Sequence[str | None], Sequence[ImageStatus | None]] | None = None,
                      workers: int = 2, batch_size: int = 16,
                      label: str = "images") -> tuple[np.ndarray, list[ImageStatus]]:
    """One float32 vector of ``dim`` per image, computed once per distinct image and cached by content under ``key``.

    ``load(path)`` runs in ``workers`` threads (decoding) ahead of ``compute`` (batches of up to ``batch_size``
    loaded images), which runs in the calling thread. ``hashes`` are the files' SHA-256 where the caller knows
    them; ``hashed`` is :func:`file_hashes`'s answer when the caller already has it. Status is ok, cached or an
    error (row NaN) for a missing or unreadable file or an image ``compute`` fails on; no image stops the pass.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    n = len(paths)
    rows = np.full((n, dim), np.nan, dtype=np.float32)
    digests, errors = hashed if hashed is not None else file_hashes(paths, hashes, workers)
    status: list[ImageStatus | None] = list(errors)

    if cache is not None:
        found = cache.get_many(key, [d for d in digests if d is not None], dim)
        for i, digest in enumerate(digests):
            if digest in found and found[digest].shape == (dim,):
                rows[i], status[i] = found[digest], CACHED

    rows_of: dict[str, list[int]] = {}  # the rows of each distinct image still to compute
    for i, digest in enumerate(digests):
        if digest is not None and status[i] is None:
            rows_of.setdefault(digest, []).append(i)
    todo = [(digest, Path(paths[where[0]])) for digest, where in rows_of.items()]  # type: ignore[arg-type]
    if not todo:
        return rows, status  # type: ignore[return-value]

    def fail(digest: str, path: Path, exc: BaseException) -> None:
        for i in rows_of[digest]:
            status[i] = ImageStatus.from_exception(path, exc)

    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    fresh: dict[str, np.ndarray] = {}
    try:
        with progress(_described(label, status, len(todo)), len(todo)) as advance:
            for batch, loaded in zip(batches, prefetched(batches, lambda item: load(item[1]), workers)):
                good = []
                for (digest, path), item in zip(batch, loaded):
                    if isinstance(item, Exception):
                        fail(digest, path, item)
                    else:
                        good.append((digest, path, item))
                results = compute([item for _, _, item in good]) if good else []
                if len(results) != len(good):
                    raise ValueError(f"{label}: {len(results)} results for a batch of {len(good)} images")
                for (digest, path, _), result in zip(good, results):
                    if isinstance(result, Exception):
                        fail(digest, path, result)
                        continue
                    vector = np.asarray(result, dtype=np.float32).reshape(dim)
                    fresh[digest] = vector
                    for i in rows_of[digest]:
                        rows[i], status[i] = vector, OK
                if cache is not None and len(fresh) >= FLUSH_EVERY:
                    cache.put_many(key, fresh)
                    fresh = {}
                advance(len(batch))
    finally:
        if cache is not None:
            cache.put_many(key, fresh)  # keep finished work even when interrupted
    return rows, status  # type: ignore[return-value]


def _described(label: str, status: Sequence[ImageStatus | None], computing: int) -> str:
    """The progress bar's label: the bar counts the distinct images computed, so where there are fewer than the
    images asked for, the label says how many images there are and why the others need no computing."""
    n = len(status)
    if computing == n:
        return label
    cached = sum(1 for s in status if s is not None and s.state == "cached")
    unreadable = sum(1 for s in status if s is not None and s.failed)
    repeated = n - computing - cached - unreadable  # the same bytes as an image computed now
    parts = {"from the cache": cached, "repeated": repeated, "unreadable": unreadable}
    return f"{label} · {n:,} images, " + ", ".join(f"{count:,} {what}" for what, count in parts.items() if count)


def attempt(function: Callable[[T], R], item: T) -> R | Exception:
    """``function(item)``, or the exception it raised (the caller reports it per image)."""
    try:
        return function(item)
    except Exception as exc:  # noqa: BLE001
        return exc
