"""Embed a dataset's kept images into the feature cache ahead of ``train``, through an engine.

``embed_dataset(ds, backbone)`` computes, for every backbone of ``backbone`` (joined with ``+`` as train takes
them), the features of the images the clean stage kept, under the same cache keys train and predict use; train
then reads them instead of computing them. The engine ("local" or "ray") runs the chunks of images; each chunk
is one cache shard, written atomically by the worker that computed it, so an interrupted run keeps its chunks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from visent.core.errors import UsageError
from visent.core.status import STATUS_COLUMNS, ImageStatus, status_columns, statuses_from_columns
from visent.core.store import Dataset
from visent.embed.backbones import load_backbone
from visent.embed.cache import FeatureCache
from visent.embed.features import embed_images, feature_key, tta_mode
from visent.embed.onnx import DEFAULT_RUNTIME, calibration_id, check_runtime
from visent.embed.spec import DEFAULT_BACKBONE

CHUNK = 256  # images per engine batch and cache shard


class EmbedWorker:
    """Features of a chunk of images (``image_sha256``, ``path``) into the feature cache at ``cache_root``;
    returns each image's status as the columns ``state``, ``reason`` and ``file`` (see
    :func:`visent.core.status.status_columns`). The backbone is loaded once per process."""

    def __init__(self, backbone: str, tta: bool | str, runtime: str, calibration: str | None, cache_root: str,
                 batch_size: int = 32, threads: int | None = None, *, model: Any = None,
                 cache: FeatureCache | None = None):
        self.backbone = model if model is not None else load_backbone(backbone)
        self.options: dict[str, Any] = dict(
            tta=tta, runtime=runtime, batch_size=batch_size, threads=threads,
            int8_calibration=Path(calibration) if calibration else None)
        self.cache = cache if cache is not None else FeatureCache(cache_root)

    def __call__(self, batch: pa.Table) -> pa.Table:
        hashes = batch.column("image_sha256").to_pylist()
        paths = [Path(p) for p in batch.column("path").to_pylist()]
        _, status = embed_images(paths, hashes, self.backbone, cache=self.cache, **self.options)
        columns = status_columns(status)
        return pa.table({"image_sha256": pa.array(hashes, pa.string()),
                         **{name: pa.array(columns[name], pa.string()) for name in STATUS_COLUMNS}})


def kept_images(dataset: Dataset) -> tuple[list[str], list[Path]]:
    """The distinct images (SHA-256, path) of the posts the clean stage kept, in table order."""
    dataset.require_stage("clean")
    table = dataset.posts()
    seen: dict[str, Path] = {}
    for row in table.select(["image_sha256", "image_file", "clean_status"]).to_pylist():
        if row["clean_status"] == "kept" and row["image_sha256"] and row["image_sha256"] not in seen:
            seen[row["image_sha256"]] = dataset.image_path(row["image_file"])
    return list(seen), list(seen.values())


def embed_dataset(dataset: Dataset | str | Path, backbone: str = DEFAULT_BACKBONE, *,
                  runtime: str | None = None, tta: bool | str = False, batch_size: int = 32, chunk_size: int = CHUNK,
                  cache: FeatureCache | None = None, engine: Any = None,
                  int8_calibration: str = "packaged") -> dict[str, dict[str, int]]:
    """Cache the features of the kept images for each backbone of ``backbone``, as ``visent train`` with the same
    ``backbone``, ``runtime`` (default ``DEFAULT_RUNTIME``), ``tta`` and ``int8_calibration`` reads
    them. ``engine`` runs the chunks
    of ``chunk_size`` images ("local" by default, "ray", or an engine of :func:`visent.engine.get_engine`).
    Returns per backbone the counts: images, already cached, computed now, errors."""
    from visent.engine import get_engine

    run = get_engine(engine)
    if chunk_size < 1:
        raise UsageError(f"chunk_size must be at least 1, got {chunk_size}")
    runtime = check_runtime(runtime or DEFAULT_RUNTIME)
    tta = tta_mode(tta)
    ds = Dataset.of(dataset)
    cache = cache or FeatureCache()
    digests, paths = kept_images(ds)
    names = [name.strip() for name in backbone.split("+")]
    loaded = {name: load_backbone(name) for name in names}  # an unknown name fails before any work
    counts: dict[str, dict[str, int]] = {}
    for position, name in enumerate(names):
        model = loaded[name]
        calibration = None
        name_runtime = runtime
        if runtime == "onnx-int8" and position > 0:
            name_runtime = "onnx"  # as train: the int8 calibration belongs to the first backbone
        elif runtime == "onnx-int8":  # shipped, or measured on the kept images, as train chooses it
            from visent.embed.features import calibration_images
            from visent.embed.onnx import calibrate_int8

            calibration = calibrate_int8(model, lambda: calibration_images(model, paths, digests), digests,
                                         calibration=int8_calibration)
        key = feature_key(model, tta, name_runtime, calibration_id(Path(calibration)) if calibration else None)
        found = cache.get_many(key, digests)
        todo = [i for i, digest in enumerate(digests) if digest not in found]
        table = pa.table({"image_sha256": pa.array([digests[i] for i in todo], pa.string()),
                          "path": pa.array([os.path.abspath(paths[i]) for i in todo], pa.string())})
        args = (name, tta, name_runtime, str(calibration) if calibration else None, str(cache.root), batch_size,
                getattr(run, "threads_per_worker", None))
        status: list[ImageStatus] = []
        here = EmbedWorker(*args, model=model, cache=cache) if run.name == "local" else None
        for result in run.map_batches(EmbedWorker, args, table, batch_size=chunk_size, local=here):
            status += statuses_from_columns(*(result.column(column).to_pylist() for column in STATUS_COLUMNS))
        counts[name] = {"images": len(digests), "cached": len(found),
                        "computed": sum(s.state == "ok" for s in status), "errors": sum(s.failed for s in status)}
    return counts
