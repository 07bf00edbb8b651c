"""Learning from the teacher's noisy labels: target temperature and self-training rounds.

The text teacher is right about the image only part of the time, so the student is trained on its targets with
care. What ``visent train`` offers (each measured on the MVSA zero-label protocol, see the ablation in docs/results.md):

- :func:`sharpen`: the teacher's probabilities raised to ``1 / T`` and renormalised (T < 1 sharpens);
- :func:`self_train`: rounds in which the student relabels the training posts out of fold and learns again from
  a mix of the teacher's targets and its own (Xie et al.'s noisy-student idea, with a linear head);
- :func:`out_of_fold_proba`: each post predicted by a head that never saw it (the relabelling above).
"""

from __future__ import annotations

import numpy as np
from sklearn import config_context
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from visent.core.errors import UsageError
from visent.model.head import StudentHead


def sharpen(targets: np.ndarray, temperature: float) -> np.ndarray:
    """``targets ** (1 / temperature)``, rows renormalised; ``temperature == 1`` leaves them as they are."""
    if temperature <= 0:
        raise UsageError(f"the target temperature must be positive, got {temperature}")
    if temperature == 1.0:
        return np.asarray(targets, dtype=np.float64)
    powered = np.power(np.clip(np.asarray(targets, dtype=np.float64), 1e-12, 1.0), 1.0 / temperature)
    return powered / powered.sum(axis=1, keepdims=True)


def out_of_fold_proba(X: np.ndarray, targets: np.ndarray, C: float, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Student probabilities (n, 3) for the training rows, each from a head fitted on the other folds.

    The folds are stratified on the targets' argmax (``folds`` of them, fewer when a class has fewer rows).
    ``cross_val_predict`` would read a 2-D ``y`` as several label columns and re-encode each to integers, which
    would destroy soft targets; so ``y`` stays None, the targets go in as the fit parameter ``y`` (which it
    slices to each training fold, as it does a sample weight), and the splits are given as ``cv``. With no
    ``y`` it also leaves the columns alone: a head's three columns are always in ``CLASSES`` order.
    """
    labels = targets.argmax(axis=1)
    smallest = np.bincount(labels)[np.bincount(labels) > 0].min()
    folds = int(min(folds, smallest))
    if folds < 2:
        return StudentHead(C=C).fit(X, targets).predict_proba(X)
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, labels))
    with config_context(enable_metadata_routing=False):  # "y" as a fit parameter is not routable metadata
        return cross_val_predict(StudentHead(C=C), X, cv=splits, method="predict_proba", params={"y": targets})


def self_train(X: np.ndarray, targets: np.ndarray, C: float, *, rounds: int, alpha: float = 0.5,
               seed: int = 0, start: tuple | None = None) -> tuple[StudentHead, np.ndarray]:
    """Fit a head on ``targets``, then ``rounds`` times relabel the rows out of fold and refit on
    ``alpha * targets + (1 - alpha) * student``. Returns the last head and the targets it learnt from.
    ``start``: a head's solution (``StudentHead.solution``) the first fit starts from (the same optimum, in fewer
    solver steps)."""
    if rounds < 0 or not 0.0 <= alpha <= 1.0:
        raise UsageError(f"self-training needs rounds >= 0 and 0 <= alpha <= 1, got {rounds}, {alpha}")
    current = np.asarray(targets, dtype=np.float64)
    head = StudentHead(C=C).start_from(start).fit(X, current).set_params(warm_start=False)
    for _ in range(rounds):
        student = out_of_fold_proba(X, current, C, seed=seed)
        current = alpha * targets + (1.0 - alpha) * student
        head = StudentHead(C=C).fit(X, current)
    return head, current
