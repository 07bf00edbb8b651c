"""Score a student on a human-labelled benchmark: :func:`evaluate` gives an :class:`~visent.evaluate.record.Evaluation`.

Protocol (T4SA, Serra et al.): on positive-vs-negative images, neutral images left out, the decision is the
larger of P(positive) and P(negative); binary accuracy, balanced accuracy and macro-F1 are reported. When the
benchmark has neutral images, 3-class macro-F1 and the 3×3 confusion matrix (argmax) are reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visent.core.errors import InputError
from visent.evaluate.benchmarks import BenchmarkError, load_benchmark
from visent.evaluate.kfold import kfold_finetune
from visent.evaluate.metrics import compute_metrics
from visent.evaluate.published import PublishedFigure, published_for
from visent.evaluate.record import (
    BinaryFigures,
    Evaluation,
    KFold,
    SubsetEvaluation,
    ThreeClassFigures,
    TrainingOverlap,
)

__all__ = ["evaluate", "shared_with_kept", "training_overlap"]


def training_overlap(model: Any, digests: Sequence[str | None]) -> TrainingOverlap | None:
    """How many of the benchmark images (their SHA-256 ``digests``) are among the images the model learnt from (its
    dataset's kept images, with the teacher's labels): on those the figures are not held out. None when the
    model's dataset is not on this machine or not cleaned."""
    dataset, _ = model.trained_on()
    if dataset is None or not dataset.has_table("clean"):
        return None
    posts = dataset.posts()
    if not {"image_sha256", "clean_status"} <= set(posts.column_names):
        return None
    shared = shared_with_kept(posts.column("image_sha256").to_pylist(), posts.column("clean_status").to_pylist(),
                              digests)
    return TrainingOverlap(shared=shared, n=len(digests), dataset=str(dataset.root))


def shared_with_kept(sha256s: Sequence[str | None], statuses: Sequence[str | None],
                     digests: Sequence[str | None]) -> int:
    """How many images of SHA-256 ``digests`` (None: unreadable) are among a dataset's kept images, given its
    posts' ``image_sha256`` and ``clean_status`` columns."""
    kept = {sha for sha, status in zip(sha256s, statuses) if status == "kept" and sha}
    return sum(1 for digest in digests if digest in kept)


def _figures(labels: Sequence[str], probs: np.ndarray) -> dict[str, Any]:
    """:func:`compute_metrics` of ``labels`` and ``probs``, typed: the ``binary`` and ``three_class`` figures."""
    metrics = compute_metrics(labels, probs)
    return {"binary": BinaryFigures.from_json(metrics["binary"]) if "binary" in metrics else None,
            "three_class": ThreeClassFigures.from_json(metrics["three_class"])}


def _kfold(model: Any, paths: Sequence[Any], labels: Sequence[str], **options: Any) -> KFold:
    return KFold.from_json(kfold_finetune(model, paths, labels, **options))


def evaluate(model: Any, spec: str | Path, *, out: str | Path | None = None, batch_size: int = 32,
             folds: int | None = None, finetune: bool = False, seed: int = 0) -> Evaluation:
    """Score ``model`` (a VisentModel or a model directory) on a benchmark; write its JSON to ``out`` if given
    (:meth:`Evaluation.save`).

    ``folds`` (k ≥ 2) adds ``evaluation.kfold``: the student per fold and, with ``finetune``, heads fine-tuned
    on the other folds' human labels from the student and from ImageNet features (mean ± std over folds); a
    benchmark with folds of its own (Twitter-II's partitions) is split by them instead. A benchmark with named
    subsets (Twitter-I's agreement levels) adds ``evaluation.subsets``, the same figures per subset, and with
    ``folds`` each subset's own k-fold, as the literature cross-validates them.
    """
    from visent.model import VisentModel

    model = model if isinstance(model, VisentModel) else VisentModel.load(model)
    bench = load_benchmark(spec)
    if not bench.paths:
        raise BenchmarkError(f"{spec}: no labelled images found" + (f" ({bench.skipped[0]})" if bench.skipped else ""))
    from visent.embed.cached import file_hashes

    digests, _ = file_hashes(bench.paths)  # read once: for the features' cache keys and the training overlap
    probs, statuses = model.predict_proba(bench.paths, hashes=digests, batch_size=batch_size)
    ok = ~np.isnan(probs).any(axis=1)
    if not ok.any():
        first = next((str(s) for s in statuses if s.failed), "no images")
        raise BenchmarkError(f"{spec}: none of the {len(bench.paths)} images could be read ({first}); "
                             "relative paths in a CSV are read from the CSV's folder")
    scored_labels = [label for label, good in zip(bench.labels, ok) if good]
    evaluation = Evaluation(
        benchmark=str(spec), model=str(model.directory), n=len(bench.paths), n_scored=int(ok.sum()),
        n_unreadable=int((~ok).sum()),
        unreadable=[f"{p}: {s}" for p, s, good in zip(bench.paths, statuses, ok) if not good][:50],
        n_skipped_labels=len(bench.skipped), kind=bench.kind, training_overlap=training_overlap(model, digests),
        **_figures(scored_labels, probs[ok]))
    if bench.subsets:  # e.g. Twitter-I's 5-, 4- and 3-agree images, reported side by side
        evaluation.subsets = {}
        for name, members in bench.subsets.items():
            rows = [i for i in members if ok[i]]
            if rows:
                evaluation.subsets[name] = SubsetEvaluation(
                    n=len(rows), **_figures([bench.labels[i] for i in rows], probs[rows]))
    published = published_for(bench.kind, list(bench.subsets) if bench.subsets else None)
    if published:  # the papers' own figures for this benchmark, shown beside these, never as re-measured
        evaluation.published = [PublishedFigure(**row) for row in published]
    if finetune and not folds:
        folds = 5
    if folds:
        if folds < 2:
            raise BenchmarkError(f"--folds must be at least 2, got {folds}")
        scored_paths = [path for path, good in zip(bench.paths, ok) if good]
        own = [f for f, good in zip(bench.folds, ok) if good] if bench.folds else None
        evaluation.kfold = _kfold(model, scored_paths, scored_labels, folds=folds, seed=seed, finetune=finetune,
                                  batch_size=batch_size, fold_of=own)
        # the literature cross-validates each subset on its own (Twitter-I: 5-fold on the 5-, 4- and 3-agree images)
        for name, subset in (evaluation.subsets or {}).items():
            members = bench.subsets[name]
            rows = [i for i in members if ok[i]]
            own_folds = bench.subset_folds.get(name)
            if own_folds is not None:  # the subset's own splits (Campos et al.'s for Twitter-I)
                subset_folds = [fold for i, fold in zip(members, own_folds) if ok[i]]
            else:
                subset_folds = [bench.folds[i] for i in rows] if bench.folds else None
                if len(rows) == evaluation.kfold.n:  # the subset is every scored image, split the same way
                    subset.kfold, subset.kfold_is_all = evaluation.kfold, True
                    continue
            try:
                subset.kfold = _kfold(model, [bench.paths[i] for i in rows], [bench.labels[i] for i in rows],
                                      folds=folds, seed=seed, finetune=finetune, batch_size=batch_size,
                                      fold_of=subset_folds)
            except InputError as error:  # too few images of a class in this subset: said, not fatal
                subset.kfold_skipped = str(error)
    if out is not None:
        evaluation.save(out)
    return evaluation
