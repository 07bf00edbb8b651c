"""k-fold fine-tuning on a human-labelled benchmark, the protocol of Campos et al. and Serra et al.

The benchmark is split into k folds (stratified by label, seeded). On each fold the images of the other
folds train a head on their human labels and the fold itself is scored, three ways:

- ``student``: the zero-label student as it is (no human labels), on the same test folds;
- ``from_student``: fine-tuned *from the distilled student* as ``visent adapt`` does it
  (:func:`visent.model.adapt.adapt_head`): the head starts at the student's calibrated weights and is pulled
  towards them (an L2 penalty on the distance to the student, not to zero), on the student's features (its
  fine-tuned backbone, when it has one);
- ``from_imagenet``: the same fit from scratch (L2 towards zero) on the plain ImageNet backbone's features.

The penalty strength C is chosen for each fold and each start by an inner 3-fold cross-validation on the
training folds (log-loss, the one-standard-error rule toward the start), over the same grid for both starts
(less C = 0, no model at all, for the start from zero), so the two differ only in where they start.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold

from visent.core.errors import InputError
from visent.core.labels import CLASS_INDEX, CLASSES
from visent.core.numeric import softmax
from visent.core.progress import progress
from visent.evaluate.metrics import compute_metrics
from visent.model.adapt import adapt_head, choose_C, fit_towards

N_CLASSES = len(CLASSES)


def kfold_finetune(model: Any, paths: Sequence[str], labels: Sequence[str], *, folds: int = 5, seed: int = 0,
                   finetune: bool = True, batch_size: int = 32,
                   fold_of: Sequence[int] | None = None) -> dict[str, Any]:
    """Per-fold and mean ± std metrics of the student and, with ``finetune``, of the two fine-tuned heads.

    ``paths``/``labels`` are the benchmark's readable images and their human labels (names); ``fold_of``, when
    the benchmark has folds of its own, the fold of each image (then ``folds`` and ``seed`` do not split).
    """
    from visent.embed import load_backbone

    y_all = np.array([CLASS_INDEX[label] for label in labels])
    X, _ = model.features(list(paths), batch_size=batch_size)
    ok = ~np.isnan(X).any(axis=1)
    if model.config.backbone_weights and finetune:  # a fine-tuned student: ImageNet features come from elsewhere
        from visent.embed import FeatureCache, embed_images

        plain, _ = embed_images(list(paths), None, load_backbone(model.config.backbone), cache=FeatureCache(),
                                batch_size=batch_size, tta=model.config.tta, runtime=model.config.runtime)
        ok &= ~np.isnan(plain).any(axis=1)
    else:
        plain = X
    index = np.flatnonzero(ok)
    if fold_of is not None:
        own = np.asarray(fold_of)[index]
        names = np.unique(own)
        if len(names) < 2:
            raise InputError(f"the benchmark's own folds leave {len(names)} fold with readable images")
        splits = [(np.flatnonzero(own != f), np.flatnonzero(own == f)) for f in names]
        n_folds, split_by = len(splits), "the benchmark's own folds"
    else:
        present = np.bincount(y_all[index], minlength=N_CLASSES)
        n_folds = min(folds, int(present[present > 0].min()))
        if n_folds < 2:
            raise InputError(f"k-fold evaluation needs at least 2 images of every class present, got {present.tolist()}")
        splits = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(index, y_all[index]))
        split_by = f"stratified, seed {seed}"

    head = model.head
    runs: dict[str, list[dict[str, Any]]] = {"student": []}
    if finetune:
        runs.update(from_student=[], from_imagenet=[])
    with progress(f"{n_folds}-fold protocol" + (" with fine-tuning" if finetune else ""), n_folds) as advance:
        for fold, (train, test) in enumerate(splits):
            _score_fold(runs, fold, index[train], index[test], y_all, X, plain, head, finetune, seed)
            advance(1)
    return {"folds": n_folds, "seed": seed, "split": split_by, "n": int(len(index)),
            "runs": runs, "summary": {name: summarise(rows) for name, rows in runs.items()}}


def _score_fold(runs: dict[str, list[dict[str, Any]]], fold: int, train: np.ndarray, test: np.ndarray,
                y_all: np.ndarray, X: np.ndarray, plain: np.ndarray, head: Any,
                finetune: bool, seed: int) -> None:
    """Score one fold: the student, and with ``finetune`` the heads fitted on the other folds' human labels."""

    test_labels = [CLASSES[i] for i in y_all[test]]
    runs["student"].append({"fold": fold, **compute_metrics(test_labels, head.predict_proba(X[test]))})
    if not finetune:
        return
    adapted, info = adapt_head(head, X[train], y_all[train], seed)
    runs["from_student"].append({"fold": fold, "C": info["C"],
                                 **compute_metrics(test_labels, adapted.predict_proba(X[test]))})
    present = sorted(int(c) for c in np.unique(y_all[train]))
    mean, scale = plain[train].mean(axis=0), plain[train].std(axis=0) + 1e-6
    Z_plain = (plain - mean) / scale
    zeros_W, zeros_b = np.zeros_like(head.coef_), np.zeros_like(head.intercept_)
    C, _ = choose_C(Z_plain[train], y_all[train], zeros_W, zeros_b, seed, present)
    W, b = fit_towards(Z_plain[train], y_all[train], zeros_W, zeros_b, C, present)
    runs["from_imagenet"].append({"fold": fold, "C": C,
                                  **compute_metrics(test_labels, softmax(Z_plain[test] @ W.T + b))})


def summarise(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Mean and standard deviation over folds of the headline metrics present in every fold."""
    picks = {"binary_accuracy": ("binary", "accuracy"), "binary_balanced_accuracy": ("binary", "balanced_accuracy"),
             "binary_macro_f1": ("binary", "macro_f1"), "three_class_macro_f1": ("three_class", "macro_f1"),
             "ece": ("three_class", "ece")}
    summary = {}
    for name, (group, key) in picks.items():
        values = [row[group][key] for row in rows if key in row.get(group, {})]
        if values and len(values) == len(rows):
            summary[name] = [float(np.mean(values)), float(np.std(values))]
    return summary
