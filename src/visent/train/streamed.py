"""Heads fitted and read a block of rows at a time, for features beyond the memory budget (an array or a
:class:`~visent.train.features.FeatureFile`): the same heads as in memory, without copies of the features."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from visent.core.errors import UsageError
from visent.core.labels import CLASSES
from visent.core.numeric import softmax
from visent.model.head import StudentHead, default_block_rows

__all__ = ["decision_rows", "fit_streamed", "predict_rows", "self_train_streamed", "subsample"]


def subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``size`` rows, stratified by label (every row when there are no more)."""
    n = len(labels)
    if n <= size:
        return np.arange(n)
    stratify = labels if np.unique(labels, return_counts=True)[1].min() >= 2 else None
    chosen = train_test_split(np.arange(n), train_size=size, random_state=seed, stratify=stratify)[0]
    return np.sort(chosen)


def fit_streamed(X: Any, targets: np.ndarray, C: float, *, rows: np.ndarray | None = None,
                  start: tuple | None = None) -> StudentHead:
    """:meth:`StudentHead.fit_streamed` of C, from the solution ``start`` when given (the same optimum, in fewer
    passes over the rows)."""
    return StudentHead(C=C).start_from(start).fit_streamed(X, targets, rows=rows).set_params(warm_start=False)


def decision_rows(head: StudentHead, X: Any, rows: np.ndarray) -> np.ndarray:
    """The head's logits of those rows of X, a block at a time."""
    size = default_block_rows(X.shape[1])
    out = np.empty((len(rows), len(CLASSES)))
    for start in range(0, len(rows), size):
        out[start:start + size] = head.decision_function(X[rows[start:start + size]])
    return out


def predict_rows(head: StudentHead, X: Any, rows: np.ndarray) -> np.ndarray:
    """The head's probabilities of those rows of X, a block at a time."""
    return softmax(decision_rows(head, X, rows) / head.temperature_)


def self_train_streamed(X: Any, targets: np.ndarray, C: float, *, rounds: int, alpha: float, seed: int,
                         start: tuple | None = None) -> tuple[StudentHead, np.ndarray]:
    """:func:`visent.train.noisy.self_train` with streamed fits: the head of every row, then ``rounds`` times the
    rows relabelled out of fold (as :func:`visent.train.noisy.out_of_fold_proba`: stratified folds of the
    targets' argmax) and the head fitted again on ``alpha * targets + (1 - alpha) * student``."""
    if rounds < 0 or not 0.0 <= alpha <= 1.0:
        raise UsageError(f"self-training needs rounds >= 0 and 0 <= alpha <= 1, got {rounds}, {alpha}")
    current = np.asarray(targets, dtype=np.float64)
    head = fit_streamed(X, current, C, start=start)
    for _ in range(rounds):
        hard = current.argmax(axis=1)
        counts = np.bincount(hard)
        folds = int(min(5, counts[counts > 0].min()))
        every = np.arange(len(current))
        if folds < 2:
            student = predict_rows(fit_streamed(X, current, C), X, every)
        else:
            student = np.empty_like(current)
            for train_rows, held in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(every,
                                                                                                              hard):
                student[held] = predict_rows(fit_streamed(X, current[train_rows], C, rows=train_rows), X, held)
        current = alpha * targets + (1.0 - alpha) * student
        head = fit_streamed(X, current, C, start=head.solution)
    return head, current
