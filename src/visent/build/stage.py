"""``build``: ingest, teach, clean and train in a row, each stage doing only what is left to do (see
:mod:`visent.build`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from visent.clean import CleanOptions
from visent.core.cache import FEATURES, cache_root
from visent.core.display import ordered
from visent.core.options import combine
from visent.core.store import Dataset
from visent.ingest import IngestOptions
from visent.teach import TeachOptions
from visent.train import TrainOptions

__all__ = ["BuildOptions", "build", "default_dataset_dir"]


@dataclass
class BuildOptions(combine("StageOptions", {"ingest": IngestOptions, "teach": TeachOptions, "clean": CleanOptions,
                                           "train": TrainOptions}, module=__name__)):  # type: ignore[misc]
    """The options of every stage of :func:`build`, as one flat record: the fields of
    :class:`~visent.ingest.IngestOptions`, :class:`~visent.teach.TeachOptions`, :class:`~visent.clean.CleanOptions`
    and :class:`~visent.train.TrainOptions` (``BuildOptions(teacher="vader", balance=True, C=0.1)``), which
    ``visent build`` offers as its options. ``seed`` is clean's and train's, ``engine`` and ``ray_address`` ingest's and
    teach's; the batch sizes are ``ingest_batch_size``, ``teach_batch_size`` and ``train_batch_size``.
    ``part("clean")`` is clean's record of these values, and ``BuildOptions.of(clean=CleanOptions(...))`` the
    options made of stages' records. A ``signal_teacher`` left unset is the posts' ``teacher``. ``ingest`` holds
    more keyword arguments of :func:`visent.ingest.ingest`, over its options (``{"ids": {...}}``: only the posts
    with these ids)."""

    ingest: dict[str, Any] = field(default_factory=dict)


def default_dataset_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + "-dataset")


def build(source: str | Path, out: str | Path, *, dataset: str | Path | None = None,
          options: BuildOptions | None = None) -> dict[str, Any]:
    """Run every stage on ``source`` and write the model to ``out``; returns each stage's counts.

    The dataset store goes to ``dataset`` (default: ``<out>-dataset`` beside the model). Finished
    stages are skipped, so an interrupted build picks up where it stopped, and a source that grew costs only
    its new posts (see the module's docstring). ``summary["images_embedded"]`` counts the images whose
    features train computed (the others came from the feature cache).
    """
    from visent.clean import clean
    from visent.engine import get_engine
    from visent.ingest import ingest
    from visent.teach import teach
    from visent.teach.teachers import check_teacher
    from visent.train import check_options, train

    options = options or BuildOptions()
    taught, trained = options.part("teach"), options.part("train")
    check_teacher(taught.teacher)  # a wrong name or option fails now, not after ingest, teach and clean
    check_options(trained)
    if trained.signal_teacher is None:  # the posts' teacher also reads the text inside images
        trained = replace(trained, signal_teacher=taught.teacher)
    engine = get_engine(options.engine, address=options.ray_address)  # one engine (one cluster) for the build
    dataset_dir = Path(dataset) if dataset is not None else default_dataset_dir(out)
    summary: dict[str, Any] = {"dataset": str(dataset_dir), "model": str(out)}
    summary["ingest"] = ingest(source, dataset_dir, replace(options.part("ingest"), engine=engine), **options.ingest)
    store = Dataset(dataset_dir)
    before = _finished(store, "teach")
    summary["teach"] = {**teach(store, options=replace(taught, engine=engine)), **_run_record(store, "teach", before)}
    before = _finished(store, "clean")
    summary["clean"] = {**clean(store, options.part("clean")), **_run_record(store, "clean", before)}
    shards = _feature_shards()
    model = train(store, out, trained)
    summary["train"] = {k: model.metrics[k] for k in ("n_train_posts", "class_counts", "C")}
    summary["train"]["validation"] = model.metrics["validation"]["chosen"]
    summary["images_embedded"] = _images_in(_feature_shards() - shards)  # beside train's summary, which a no-op repeats
    return summary


def _finished(store: Dataset, stage: str) -> tuple[int, int] | None:
    """Which table ``stage`` last wrote (a run writes a new file; a no-op leaves it)."""
    try:
        stat = store.table_path(stage).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _run_record(store: Dataset, stage: str, before: tuple[int, int] | None) -> dict[str, Any]:
    """What ``stage`` recorded it did (its ``run``: taught and reused, images checked and reused) when it ran
    in this build and took work from an earlier run; nothing for a no-op or a run from scratch (as ingest's
    counts)."""
    if before is not None and _finished(store, stage) == before:
        return {}
    run = (Dataset(store.root).stage_info(stage) or {}).get("run") or {}
    if not any(value for key, value in run.items() if key.endswith("reused")):
        return {}
    return ordered(run, ("taught", "reused", "images_checked", "images_reused"))  # the manifest sorts them


def _feature_shards() -> set[Path]:
    """The shard files of the feature cache now (train adds one per batch of images it embeds)."""
    return set((cache_root() / FEATURES).glob("*/shard-*.npz"))


def _images_in(shards: set[Path]) -> int:
    """How many distinct images the feature cache shards ``shards`` hold features of."""
    images: set[str] = set()
    for shard in shards:
        try:
            with np.load(shard, allow_pickle=False) as data:
                images.update(data["hashes"].tolist())
        except Exception:  # noqa: BLE001 - a shard another process is writing or damaged: not counted
            continue
    return len(images)
