"""Adapting a student's head to human labels, starting from the student.

The head is refitted on the labelled images' features with the penalty ``||W - W0||² / 2`` toward the student's
calibrated weights (``coef_ / T``, ``intercept_ / T``) instead of toward zero: with few labels the student's
weights carry what the crawl taught, the labels move them where they disagree. The strength C is chosen by an inner
stratified cross-validation (log-loss, the one-standard-error rule toward the student) when every labelled class
has enough images, else the middle of the grid. Classes absent from the labels (e.g. neutral, when the labels are
positive / negative) are never pushed down: the likelihood is that of the labelled classes among themselves (a
softmax over those columns), so the rows of the other classes stay at the student's weights.

:func:`fit_towards` and :func:`choose_C` also serve the k-fold protocol of :mod:`visent.evaluate.kfold`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from visent.core.labels import CLASSES
from visent.core.numeric import log_softmax

C_GRID = (0.0, 1e-4, 1e-3, 1e-2, 0.1)
N_CLASSES = len(CLASSES)


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    """scikit-learn's "balanced" sample weights: n / (classes * count of the row's class)."""
    present, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(present) * counts))[inverse]


def fit_towards(Z: np.ndarray, y: np.ndarray, W0: np.ndarray, b0: np.ndarray, C: float,
                classes: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised features ``Z`` and class indices ``y``, with balanced
    class weights and the penalty ``||W - W0||² / 2`` (scikit-learn's form: C times the weighted log-loss plus the
    penalty; ``W0 = 0`` is ordinary L2). ``classes``: the columns the likelihood is over (default: all three);
    the rows of the others keep ``W0``/``b0``. Starts at (W0, b0). Returns (W, b)."""
    from scipy.optimize import minimize

    d = Z.shape[1]
    cols = np.arange(N_CLASSES) if classes is None else np.asarray(sorted(classes))
    local = np.searchsorted(cols, y)
    weight = _balanced_weights(y)
    onehot = np.eye(len(cols))[local]
    W0c, b0c = W0[cols], b0[cols]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: len(cols) * d].reshape(len(cols), d), theta[len(cols) * d:]
        log_p = log_softmax(Z @ W.T + b)
        delta = W - W0c
        value = -C * float((weight * (onehot * log_p).sum(axis=1)).sum()) + 0.5 * float((delta ** 2).sum())
        residual = C * weight[:, None] * (np.exp(log_p) - onehot)
        grad = np.concatenate([(residual.T @ Z + delta).ravel(), residual.sum(axis=0)])
        return value, grad

    start = np.concatenate([W0c.ravel(), b0c]).astype(np.float64)
    theta = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 300}).x
    W, b = np.array(W0, dtype=np.float64), np.array(b0, dtype=np.float64)
    W[cols], b[cols] = theta[: len(cols) * d].reshape(len(cols), d), theta[len(cols) * d:]
    return W, b


def choose_C(Z: np.ndarray, y: np.ndarray, W0: np.ndarray, b0: np.ndarray, seed: int,
             classes: Sequence[int] | None = None) -> tuple[float, str]:
    """The C of :data:`C_GRID` chosen by inner cross-validation (3 folds, or fewer when a class is rare); the
    middle of the grid when a labelled class has fewer than 2 images.

    Every image gets an out-of-fold log-loss under each C (weighted as the fit is, so a class's rarity does not
    make learning the class mix pay). The choice is the smallest C, the one that stays closest to the student,
    whose loss is within one standard error of the best C's, the error taken over the images' paired
    differences (the one-standard-error rule): with few labels the CV cannot tell most C apart, and the
    student, which learnt from the whole crawl, is then the safer head. From a zero start (a head from scratch)
    C = 0 would be no model at all, so the grid starts at its first positive C."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=N_CLASSES)
    splits = min(3, int(counts[counts > 0].min()))
    if splits < 2:
        return C_GRID[len(C_GRID) // 2], "grid middle: a labelled class has fewer than 2 images"
    cols = np.arange(N_CLASSES) if classes is None else np.asarray(sorted(classes))
    inner = StratifiedKFold(splits, shuffle=True, random_state=seed)
    grid = C_GRID if np.any(W0) or np.any(b0) else tuple(C for C in C_GRID if C > 0)
    losses = np.zeros((len(grid), len(y)))
    for k, C in enumerate(grid):
        for train, test in inner.split(Z, y):
            W, b = fit_towards(Z[train], y[train], W0, b0, C, classes)
            log_p = log_softmax(Z[test] @ W[cols].T + b[cols])
            weight = _balanced_weights(y[test])
            losses[k, test] = -weight * log_p[np.arange(len(test)), np.searchsorted(cols, y[test])]
    best = int(np.argmin(losses.sum(axis=1)))
    differences = losses[: best + 1] - losses[best]  # the grid ascends: the first eligible C is nearest the start
    within = differences.mean(axis=1) <= differences.std(axis=1, ddof=1) / np.sqrt(len(y))
    return grid[int(np.argmax(within))], f"{splits}-fold inner cross-validation, one-standard-error rule"


def adapt_head(head: Any, X: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A copy of the fitted :class:`~visent.model.head.StudentHead` ``head`` refitted on features ``X`` and class
    indices ``y`` from the student's calibrated weights; returns it (temperature 1: the fit is a likelihood fit)
    and what was done (C, how it was chosen, labels per class)."""
    import copy

    if len(y) == 0:
        raise ValueError("adapting needs at least one labelled image")
    present = sorted(int(c) for c in np.unique(y))
    Z = (X - head.mean_) / head.scale_
    W0, b0 = head.coef_ / head.temperature_, head.intercept_ / head.temperature_
    if len(present) < 2:
        raise ValueError(f"adapting needs labelled images of at least two classes, got only {CLASSES[present[0]]}")
    C, how = choose_C(Z, y, W0, b0, seed, present)
    W, b = fit_towards(Z, y, W0, b0, C, present)
    new = copy.deepcopy(head)
    new.coef_, new.intercept_, new.temperature_ = W, b, 1.0
    counts = np.bincount(y, minlength=N_CLASSES)
    return new, {"C": C, "C_chosen_by": how, "labels": int(len(y)),
                 "per_class": {name: int(counts[i]) for i, name in enumerate(CLASSES)},
                 "classes_fitted": [CLASSES[i] for i in present]}
