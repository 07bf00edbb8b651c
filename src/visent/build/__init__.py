"""``build``: the four stages in a row (ingest → teach → clean → train) with good defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visent.core.store import Dataset
from visent.train import DEFAULT_BACKBONE


@dataclass
class BuildOptions:
    teacher: str = "default"
    thresholds: dict[str, float] | None = None
    near_dup_distance: int = 4
    min_side: int = 32
    balance: bool = False
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None
    target: str = "soft"
    tta: bool | str = False
    finetune_blocks: int = 0
    target_temperature: float = 1.0
    self_training: int = 0
    calibrate: bool = True
    seed: int = 0
    runtime: str | None = None  # None: visent.embed.DEFAULT_RUNTIME
    signals: tuple[str, ...] = ()  # image signals fused with the backbone: "ocr", "faces"
    ingest: dict[str, Any] = field(default_factory=dict)


def default_dataset_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + "-dataset")


def build(source: str | Path, out: str | Path, *, dataset: str | Path | None = None,
          options: BuildOptions | None = None) -> dict[str, Any]:
    """Run every stage on ``source`` and write the model to ``out``; returns each stage's counts.

    The dataset store goes to ``dataset`` (default: ``<out>-dataset`` beside the model). Finished
    stages are skipped, so an interrupted build picks up where it stopped.
    """
    from visent.clean import clean
    from visent.ingest import ingest
    from visent.teach import teach
    from visent.teach.teachers import check_teacher
    from visent.train import check_options, train

    options = options or BuildOptions()
    check_teacher(options.teacher)  # a wrong name or option fails now, not after ingest, teach and clean
    check_options(backbone=options.backbone, weights=options.weights, target=options.target, tta=options.tta,
                  runtime=options.runtime, signals=options.signals)
    dataset_dir = Path(dataset) if dataset is not None else default_dataset_dir(out)
    summary: dict[str, Any] = {"dataset": str(dataset_dir), "model": str(out)}
    summary["ingest"] = ingest(source, dataset_dir, **options.ingest)
    store = Dataset(dataset_dir)
    summary["teach"] = teach(store, options.teacher)
    summary["clean"] = clean(store, thresholds=options.thresholds, near_dup_distance=options.near_dup_distance,
                             min_side=options.min_side, balance=options.balance, seed=options.seed)
    model = train(store, out, backbone=options.backbone, weights=options.weights, target=options.target,
                  tta=options.tta, finetune_blocks=options.finetune_blocks, seed=options.seed,
                  runtime=options.runtime, signals=options.signals, target_temperature=options.target_temperature,
                  self_training=options.self_training, calibrate=options.calibrate,
                  signal_teacher=options.teacher)  # the posts' teacher also reads the text inside images
    summary["train"] = {k: model.metrics[k] for k in ("n_train_posts", "class_counts", "C")}
    summary["train"]["validation"] = model.metrics["validation"]["chosen"]
    return summary
