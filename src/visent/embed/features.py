"""Embed images with a backbone: parallel decoding overlapped with batched inference, cached by content."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from visent.core.errors import UnknownName, UsageError
from visent.core.images import load_image
from visent.core.progress import progress
from visent.embed.backbones import Backbone
from visent.embed.cache import FeatureCache
from visent.embed.onnx import calibrate_int8, calibration_id, check_runtime, choose_calibration, onnx_embedder
from visent.embed.preprocess import five_crops

T = TypeVar("T")
R = TypeVar("R")

FLUSH_EVERY = 1024  # images per cache shard: an interrupted run loses at most this much work


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


def describe_error(path: Path | None, exc: BaseException) -> str:
    """``error: <file>: <reason>`` on one line."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    reason = reason.replace(f"'{path}'", "").replace(str(path), "").strip(" :") or type(exc).__name__
    return f"error: {path}: {type(exc).__name__}: {reason}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(paths: Sequence[Path | str | None], hashes: Sequence[str | None] | None = None,
                workers: int = 2) -> tuple[list[str | None], list[str | None]]:
    """SHA-256 of each file's bytes (taken from ``hashes`` where given) and, where a file cannot be read, its
    error status (``"error: <file>: <reason>"``, its digest None); a None path is ``"error: no image file"``."""
    n = len(paths)
    if hashes is not None and len(hashes) != n:
        raise ValueError(f"{len(hashes)} hashes for {n} paths")
    digests: list[str | None] = [None] * n
    errors: list[str | None] = [None] * n
    for i, path in enumerate(paths):
        if path is None:
            errors[i] = "error: no image file"
        elif hashes is not None and hashes[i]:
            digests[i] = hashes[i]
    missing = [i for i in range(n) if digests[i] is None and errors[i] is None]
    if missing:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i, result in zip(missing, pool.map(lambda i: _try(file_sha256, Path(paths[i])), missing)):
                if isinstance(result, Exception):
                    errors[i] = describe_error(Path(paths[i]), result)  # type: ignore[arg-type]
                else:
                    digests[i] = result
    return digests, errors


def pending_images(paths: Sequence[Path | str | None], digests: Sequence[str | None],
                   status: Sequence[str]) -> tuple[dict[str, list[int]], list[tuple[str, Path]]]:
    """The images still to compute (no status yet): the rows of each distinct digest, and one
    ``(digest, path)`` per digest to read it from."""
    rows_of: dict[str, list[int]] = {}
    for i, digest in enumerate(digests):
        if digest is not None and not status[i]:
            rows_of.setdefault(digest, []).append(i)
    return rows_of, [(digest, Path(paths[rows[0]])) for digest, rows in rows_of.items()]  # type: ignore[arg-type]


def first_error(status: Sequence[str], extra: Sequence[str]) -> list[str]:
    """Per image: the status it had, unless that was fine and a further pass (another backbone, a signal)
    failed on it."""
    return [s if s.startswith("error") or not e.startswith("error") else e for s, e in zip(status, extra)]


TTA_MODES = ("none", "flip", "crops")


def tta_mode(tta: bool | str) -> str:
    """The test-time augmentation: ``"none"`` (False), ``"flip"`` (True: the image and its mirror image) or
    ``"crops"`` (Campos et al.: five crops of the image and of its mirror image, ten views)."""
    mode = {False: "none", True: "flip"}.get(tta, tta) if isinstance(tta, bool) else str(tta)
    if mode not in TTA_MODES:
        raise UnknownName(f"unknown test-time augmentation {tta!r}; choose one of: {', '.join(TTA_MODES)}")
    return mode


def feature_key(backbone: Backbone, tta: bool | str, runtime: str = "torch", calib_id: str | None = None) -> str:
    """Cache key of the features: backbone identity, test-time augmentation and, for the ONNX runtimes, the
    runtime (with the int8 calibration's identity), since their features differ slightly from PyTorch's."""
    mode = tta_mode(tta)
    key = f"{backbone.key}|tta=" + {"none": "0", "flip": "1"}.get(mode, mode)
    if runtime != "torch":
        key += f"|runtime={runtime}" + (f":{calib_id}" if calib_id else "")
    return key


def embed_images(paths: Sequence[Path | None], hashes: Sequence[str | None] | None, backbone: Backbone, *,
                 cache: FeatureCache | None = None, batch_size: int = 32, workers: int = 2,
                 tta: bool | str = False, runtime: str = "torch", int8_calibration: Path | None = None,
                 threads: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Pooled features of images, float32 (n, dim), and a status per image.

    Status is ``"ok"`` (computed now), ``"cached"`` or ``"error: <file>: <reason>"`` (row is NaN).
    ``hashes`` are the SHA-256 of the files' bytes (computed when None); identical images are embedded
    once. ``tta`` averages the features of several views (see :func:`tta_mode`): ``True`` or ``"flip"``
    the image and its mirror image, ``"crops"`` ten views as Campos et al.

    ``runtime`` runs the backbone with PyTorch (``"torch"``) or, on CPU, with ONNX Runtime in fp32
    (``"onnx"``, several times faster) or int8 (``"onnx-int8"``, faster still) with the calibration file
    ``int8_calibration`` (a model directory's), else one measured on up to 128 of these images (see
    ``visent.embed.onnx``). ``threads`` is the number of inference threads (default: every core);
    ``workers`` threads decode images meanwhile.
    """
    check_runtime(runtime)
    mode = tta_mode(tta)
    n = len(paths)
    if batch_size < 1:
        raise UsageError("batch_size must be at least 1")
    features = np.full((n, backbone.dim), np.nan, dtype=np.float32)

    # 1. content hashes (read from disk only where the caller has none)
    digests, errors = file_hashes(paths, hashes, workers)
    status = [error or "" for error in errors]

    # 2. cache hits
    if runtime == "onnx-int8" and int8_calibration is None:
        int8_calibration = calibrate_int8(backbone, lambda: calibration_images(backbone, paths, digests, workers),
                                          [d for d in digests if d])
    calib_id = calibration_id(Path(int8_calibration)) if runtime == "onnx-int8" else None
    key = feature_key(backbone, tta, runtime, calib_id)
    if cache is not None:
        found = cache.get_many(key, [d for d in digests if d is not None])
        for i, digest in enumerate(digests):
            if digest in found:
                features[i] = found[digest]
                status[i] = "cached"

    # 3. compute each remaining distinct image once
    rows_of, todo = pending_images(paths, digests, status)
    if not todo:
        return features, status

    def load(item: tuple[str, Path]) -> torch.Tensor:
        """(3, S, S), or (5, 3, S, S) for the crops."""
        image = load_image(item[1], backbone.image_size)
        if mode == "crops":
            return torch.stack([backbone.to_tensor(crop)
                                for crop in five_crops(image, backbone.image_size, backbone.spec.resample)])
        return backbone.preprocess(image)

    if runtime == "torch":
        def network(batch: torch.Tensor) -> np.ndarray:
            return backbone.forward_features(batch).float().cpu().numpy()
    else:
        embedder = onnx_embedder(backbone, runtime, calibration=int8_calibration, threads=threads)

        def network(batch: torch.Tensor) -> np.ndarray:
            return embedder(batch.numpy())

    def forward(batch: torch.Tensor) -> np.ndarray:
        """Features (B, dim) of a batch (B, 3, S, S) or (B, V, 3, S, S), averaged over the views."""
        views = batch.reshape(-1, *batch.shape[-3:])
        if mode != "none":
            views = torch.cat([views, views.flip(-1)])
        return _mean_views(network(views), len(batch))

    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    fresh: dict[str, np.ndarray] = {}
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    backbone.module.eval()
    try:
        with torch.inference_mode(), progress(f"embed ({backbone.name}, {runtime})", len(todo)) as advance:
            for batch, loaded in zip(batches, prefetched(batches, load, workers)):
                good = [(digest, x) for (digest, _), x in zip(batch, loaded) if isinstance(x, torch.Tensor)]
                for (digest, path), x in zip(batch, loaded):
                    if isinstance(x, Exception):
                        for i in rows_of[digest]:
                            status[i] = describe_error(path, x)
                if good:
                    out = forward(torch.stack([x for _, x in good]))
                    for (digest, _), vector in zip(good, out):
                        fresh[digest] = vector
                        for i in rows_of[digest]:
                            features[i] = vector
                            status[i] = "ok"
                if cache is not None and len(fresh) >= FLUSH_EVERY:
                    cache.put_many(key, fresh)
                    fresh = {}
                advance(len(batch))
    finally:
        if cache is not None:
            cache.put_many(key, fresh)  # keep finished work even when interrupted
        torch.set_num_threads(torch_threads)
    return features, status


def calibration_images(backbone: Backbone, paths: Sequence[Path | None], digests: Sequence[str | None],
                       workers: int = 2) -> np.ndarray:
    """Preprocessed int8 calibration images (n, 3, S, S): ``choose_calibration`` of the readable images."""
    path_of = {digest: Path(path) for path, digest in reversed(list(zip(paths, digests))) if digest and path}
    chosen = [path_of[digest] for digest in choose_calibration(list(path_of))]

    def load(path: Path) -> torch.Tensor:
        return backbone.preprocess(load_image(path, backbone.image_size))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        images = [x.numpy() for x in pool.map(lambda path: _try(load, path), chosen) if isinstance(x, torch.Tensor)]
    size = backbone.image_size
    return np.stack(images) if images else np.empty((0, 3, size, size), np.float32)


def _mean_views(out: np.ndarray, n: int) -> np.ndarray:
    """Average (views * n, dim) laid out as [flip][image][view] over everything but the image."""
    if len(out) == n:
        return out
    per_image = len(out) // (2 * n)
    return out.reshape(2, n, per_image, out.shape[-1]).mean(axis=(0, 2))


def _try(function: Callable[[T], R], item: T) -> R | Exception:
    try:
        return function(item)
    except Exception as exc:  # noqa: BLE001
        return exc
