"""The head's regularisation strength C, chosen on a validation split of the teacher's labels (no human labels)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split

from visent.core.labels import CLASSES
from visent.core.progress import Advance
from visent.model.head import StudentHead
from visent.train.streamed import predict_rows

__all__ = ["C_GRID", "C_PATIENCE", "select_C", "teacher_split"]

# Weak labels from text are noisy about the image, so the useful range reaches strong regularisation.
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)


# The grid is walked from strong to weak regularisation and left once this many C values in a row have done worse
# than the best: the validation cross-entropy has one minimum along it (on each MVSA fold at 1e-4 or 3e-4, then
# rising at every step), and the weak end costs the most solver steps (at 10k crawl images, 0.01 took 4x the steps of
# 1e-4).
C_PATIENCE = 2


def teacher_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows of the teacher's labels (stratified where every class has two rows)."""
    stratify = labels if min(np.unique(labels, return_counts=True)[1]) >= 2 else None
    return train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=stratify)


def select_C(X: np.ndarray, targets: np.ndarray, labels: np.ndarray, val_fraction: float, seed: int,
              grid: tuple[float, ...], advance: Advance = lambda n=1: None, *, streamed: bool = False,
              rows: np.ndarray | None = None,
              warm: dict[str, Any] | None = None) -> tuple[float, dict[str, Any], StudentHead]:
    """Pick the regularisation strength on a validation split of the teacher's labels (no human labels).
    Returns C, the figures of every C, and the head of the chosen C fitted on the split's training rows.
    ``streamed`` fits each head with :meth:`StudentHead.fit_streamed` and predicts a block of rows at a time (the
    same heads and figures, without copies of X); the targets and labels are then those of X's ``rows`` when given.
    ``warm`` (see :func:`load_warm`): each C's fit starts from that C's solution of the previous training of the
    dataset when there is one, and its solutions are put there for the next."""
    idx_train, idx_val = teacher_split(labels, val_fraction, seed)
    at_train, at_val = (idx_train, idx_val) if rows is None else (rows[idx_train], rows[idx_val])
    scores, heads = [], {}
    # Along the grid (strong to weak regularisation) each fit starts from the last one's solution: the same
    # optima in fewer solver steps.
    head = StudentHead(warm_start=True)
    for position, C in enumerate(grid):
        best_at = min(range(len(scores)), key=lambda i: scores[i]["val_cross_entropy"], default=0)
        if len(scores) - 1 - best_at >= C_PATIENCE:
            advance(len(grid) - position)  # the rest of the grid, not fitted
            break
        if warm is not None and warm.get(C) is not None:
            head.start_from(warm[C])
        if streamed:
            head.set_params(C=C).fit_streamed(X, targets[idx_train], rows=at_train)
        else:
            head.set_params(C=C).fit(X[idx_train], targets[idx_train])
        heads[C] = copy.deepcopy(head)
        if warm is not None:
            warm[C] = head.solution
        advance()
        probs = predict_rows(head, X, at_val) if streamed else head.predict_proba(X[idx_val])
        pred = np.array(CLASSES)[probs.argmax(axis=1)]
        scores.append({
            "C": C,
            "val_cross_entropy": float(-np.mean(np.sum(targets[idx_val] * np.log(np.clip(probs, 1e-12, 1)), axis=1))),
            "val_balanced_accuracy": float(balanced_accuracy_score(labels[idx_val], pred)),
            "val_agreement": float(np.mean(pred == labels[idx_val])),
        })
    # Cross-entropy against the teacher's targets is a proper score, and it tracks the student's accuracy
    # on human image labels better than agreement does (measured on MVSA, see docs/results.md).
    best = min(scores, key=lambda s: s["val_cross_entropy"])
    present, counts = np.unique(labels[idx_val], return_counts=True)
    selection = {"n_train": int(len(idx_train)), "n_val": int(len(idx_val)),
                 "val_class_counts": {str(name): int(n) for name, n in zip(present, counts)}, "grid": scores,
                 "chosen": best}
    return best["C"], selection, heads[best["C"]]
