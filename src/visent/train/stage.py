"""``train``: a student trained on the cleaned teacher labels of a dataset, written as a model directory.

Training reads the ``posts``, ``teach`` and ``clean`` tables only; the ``human_labels`` table is never opened.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from visent.core.errors import PathNotFound, UsageError, VisentError
from visent.core.labels import CLASSES
from visent.core.options import resolve
from visent.core.progress import console
from visent.core.store import Dataset, writes
from visent.model import ModelConfig, ModelError, VisentModel
from visent.model.head import as_targets
from visent.train.backbone import shipped_int8, student_backbone
from visent.train.card import model_card
from visent.train.features import IN_MEMORY_FIT_FACTOR, FeatureFile, embed_rows, memory_budget
from visent.train.fit import fit_head
from visent.train.noisy import sharpen
from visent.train.options import TrainOptions
from visent.train.rows import rows_fingerprint, training_rows
from visent.train.warm import WARM_FILE, load_warm, save_warm, warm_key
from visent.train.weak import warn_weak, weak_model_notes

__all__ = ["TrainError", "check_options", "train"]


class TrainError(VisentError):
    """Training cannot start: the dataset is not ready or has too few usable examples."""


def _provenance(dataset: Dataset) -> dict[str, Any]:
    """Where the training posts came from: the dataset and the parameters and counts of its stages."""
    return {"dataset": str(dataset.root),
            "stages": {k: {"params": v.get("params"), "counts": v.get("counts")}
                       for k, v in dataset.manifest["stages"].items()}}


def _file_digest(path: str | Path | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _trained(out: Path, params: dict[str, Any]) -> VisentModel | None:
    """The complete model in ``out`` when it was trained with ``params`` (and not adapted since), else None."""
    try:
        model = VisentModel.load(out)
    except (ModelError, OSError, ValueError):
        return None
    if "adaptation" in model.metrics or _canonical(model.metrics.get("params") or {}) != _canonical(params):
        return None
    if not all((out / name).is_file() for name in model.carried_files()):
        return None
    return model


def check_options(options: TrainOptions) -> tuple[str, str]:
    """Refuse an unknown backbone, target, test-time augmentation, runtime, signal or int8 calibration, and a
    weights file that does not exist, before any work (``build`` checks them before it ingests); returns the runtime
    and the tta mode."""
    from visent.embed.backbones import check_backbone
    from visent.embed.features import tta_mode
    from visent.embed.onnx import DEFAULT_RUNTIME, check_calibration, check_runtime
    from visent.signals import check_signals

    backbone, weights, target = options.backbone, options.weights, options.target
    for name in backbone.split("+"):
        check_backbone(name.strip())
    if weights is not None and not Path(weights).is_file():
        raise PathNotFound(f"{weights}: no such weights file (--weights)")
    if target not in ("soft", "hard"):
        raise UsageError(f"target must be 'soft' or 'hard', not {target!r}")
    check_signals(options.signals)
    check_calibration(options.int8_calibration)
    return check_runtime(options.runtime or DEFAULT_RUNTIME), tta_mode(options.tta)


@writes("train")  # its work files and head solutions live in the dataset
def train(dataset: Dataset | str | Path, out: str | Path, options: TrainOptions | None = None,
          **kwargs: Any) -> VisentModel:
    """Train a student on the kept rows of a cleaned dataset and write the model directory ``out``.

    ``options`` (a :class:`~visent.train.TrainOptions`, or its fields as keyword arguments: ``C=0.1``) say how.
    Training is a stage like the others: the model records its options and a digest of the kept posts it learnt
    from (``metrics["params"]``), and when ``out`` already holds a model of the same dataset, kept posts and
    options, that model is returned as it is (``force`` trains it again).

    ``target`` is ``"soft"`` (the teacher's probabilities) or ``"hard"`` (its argmax label).
    ``C`` fixes the head's regularisation; by default it is chosen on a validation split of teacher labels
    (``val_fraction`` of the kept posts). ``finetune_blocks > 0`` first fine-tunes the last blocks of the backbone
    on the weak labels (FT-A style). ``backbone`` may join several with ``+``
    (``efficientnet-lite0-ms+efficientnet-lite2``): the features of the first (fine-tuned or loaded from
    ``weights`` if asked) are followed by those of the others (frozen, packaged weights). ``signals`` adds image
    signals to the backbone's features (``visent.signals.SIGNALS``: "ocr" scored by ``signal_teacher``, default
    "vader", "faces").
    ``target_temperature`` sharpens (< 1) or flattens (> 1) the teacher's probabilities; ``self_training``
    rounds let the student relabel the posts out of fold and learn from ``alpha * teacher + (1 - alpha) *
    student`` (:mod:`visent.train.noisy`). ``calibrate`` temperature-scales the student's probabilities against
    the teacher's targets on the validation split (the predicted class never changes).
    ``runtime`` runs the backbone with PyTorch or ONNX Runtime (``visent.embed.RUNTIMES``, default
    ``DEFAULT_RUNTIME``); the model keeps it, and for int8 its calibration: ``int8_calibration="packaged"`` the
    one shipped for the backbone where there is one (packaged weights, not fine-tuned: one network for every
    dataset, so a grown crawl embeds only its new images), else (or ``"dataset"``) measured on the kept images.
    """
    from visent.embed import load_backbone
    from visent.embed.onnx import MIN_CALIBRATION_IMAGES

    options = resolve(TrainOptions, options, kwargs, what="train")
    backbone, weights, target, C, seed = options.backbone, options.weights, options.target, options.C, options.seed
    finetune_blocks, batch_size = options.finetune_blocks, options.batch_size
    int8_calibration = options.int8_calibration
    asked = options.runtime
    runtime, tta = check_options(options)
    dataset = Dataset.of(dataset)
    started = time.time()
    rows = training_rows(dataset)
    if len(rows["post_id"]) < 10:
        raise TrainError(f"{dataset.root}: only {len(rows['post_id'])} posts survived cleaning; "
                         "ingest more posts or loosen the thresholds (`visent clean --help`)")
    out = Path(out)
    params = options.params(dataset=str(dataset.root.resolve()), posts=rows_fingerprint(rows),
                            weights=_file_digest(weights), tta=tta, runtime=runtime)
    if not options.force and (done := _trained(out, params)) is not None:
        console.print(f"train: the model in {out} is up to date (same kept posts of {dataset.root}, same options); "
                      "nothing to do (`visent train --force` trains it again)", markup=False, highlight=False,
                      soft_wrap=True)
        warn_weak(out, dataset, done.metrics.get("warnings") or [])
        return done
    if (asked is None and runtime == "onnx-int8" and len(set(rows["sha256"])) < MIN_CALIBRATION_IMAGES
            and not shipped_int8(backbone, weights, finetune_blocks, int8_calibration)):
        warnings.warn(f"{dataset.root}: {len(set(rows['sha256']))} distinct images are too few to calibrate the int8 "
                      f"network (it needs {MIN_CALIBRATION_IMAGES}); the model runs in fp32 (runtime 'onnx')",
                      stacklevel=2)
        runtime = "onnx"
    labels = np.array(rows["label"])
    targets = rows["soft"] if target == "soft" else as_targets(labels)
    out.mkdir(parents=True, exist_ok=True)
    # config.json marks a complete model directory: until the new model is saved, out holds none (an interrupted
    # run must not leave new carried files beside an old head, nor pass for the old model)
    (out / "config.json").unlink(missing_ok=True)

    from visent.signals import check_signals

    backbone, *extra_backbones = [name.strip() for name in backbone.split("+")]
    # Loaded now, so that an unknown or weights-only name fails before any work; the features reuse them.
    extra_loaded = {name: load_backbone(name) for name in extra_backbones}
    config = ModelConfig(backbone=backbone, tta=tta, runtime=runtime, extra_backbones=extra_backbones,
                         signals=check_signals(options.signals), signal_teacher=options.teacher_of_signals())
    model_backbone, finetune_report = student_backbone(config, out, weights, rows, targets,
                                                        finetune_blocks=finetune_blocks,
                                                        finetune_epochs=options.finetune_epochs, batch_size=batch_size,
                                                        seed=seed, int8_calibration=int8_calibration)
    # features only, as predict computes them, with the backbones loaded here
    reader = VisentModel(config, head=None, directory=out, backbone=model_backbone,  # type: ignore[arg-type]
                         extra_backbones=extra_loaded)
    budget = memory_budget()
    X, usable, embed_errors = embed_rows(reader, rows, batch_size=batch_size, budget=budget,
                                     work=dataset.root / "work" / "train")
    try:
        if usable.sum() < 10:
            raise TrainError(f"{dataset.root}: only {int(usable.sum())} images could be embedded; see the clean "
                             "table")
        targets, labels = targets[usable], labels[usable]
        # Beyond the budget (IN_MEMORY_FIT_FACTOR), C is chosen on a subsample and the head of every row is fitted
        # reading the rows block by block, from disk when they do not fit in memory.
        streamed = not (isinstance(X, np.ndarray) and X.nbytes * IN_MEMORY_FIT_FACTOR <= budget)
        # the solutions of the dataset's previous training with these options: a grown crawl's head starts there
        warm_path, key = dataset.root / "work" / WARM_FILE, warm_key(params, int(X.shape[1]))
        warm = load_warm(warm_path, key)
        warm_started = bool(warm)
        head, C, selection, calibration = fit_head(
            X, sharpen(targets, options.target_temperature), labels, C=C, val_fraction=options.val_fraction,
            seed=seed, self_training=options.self_training, self_training_alpha=options.self_training_alpha,
            calibrate=options.calibrate, streamed=streamed, warm=warm)
        save_warm(warm_path, key, warm)
        fit = {"streamed": streamed, "features_on_disk": isinstance(X, FeatureFile),
               "memory_budget_mb": round(budget / 2**20, 1), "warm_start": warm_started}
        if streamed:
            fit["passes"] = int(getattr(head, "n_passes_", 0))
    finally:
        if isinstance(X, FeatureFile):
            X.close()

    class_counts = {name: int(np.sum(labels == name)) for name in CLASSES}
    notes = weak_model_notes(class_counts, selection, calibration)
    metrics = {
        "n_train_posts": int(usable.sum()),
        "n_embed_errors": int((~usable).sum()),
        "embed_errors": embed_errors,
        "class_counts": class_counts,
        "target": target,
        "C": C,
        "validation": selection,
        "target_temperature": options.target_temperature,
        "self_training": {"rounds": options.self_training, "alpha": options.self_training_alpha},
        "calibration": calibration,
        "finetune": finetune_report,
        "fit": fit,
        "seconds": round(time.time() - started, 1),
        **_provenance(dataset),
        "params": params,
        "warnings": notes,
    }
    model = VisentModel(config, head, metrics=metrics)
    model.save(out, card=model_card(config, metrics))
    warn_weak(out, dataset, notes)
    return model
