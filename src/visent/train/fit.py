"""The head fitted on the teacher's targets: C chosen unless given, the self-training rounds, the temperature."""

from __future__ import annotations

from typing import Any

import numpy as np

from visent.core.numeric import expected_calibration_error, fit_temperature, softmax
from visent.core.progress import progress
from visent.model.head import StudentHead, as_targets
from visent.train.noisy import self_train
from visent.train.select import C_GRID, select_C, teacher_split
from visent.train.streamed import decision_rows, fit_streamed, self_train_streamed, subsample
from visent.train.warm import final_start

__all__ = ["C_SUBSAMPLE", "fit_head"]

# Rows C is chosen and the temperature fitted on when the head is streamed: 515 MB of 2,576 features in memory.
C_SUBSAMPLE = 50_000


def fit_head(X: Any, targets: np.ndarray, labels: np.ndarray, *, C: float | None, val_fraction: float,
              seed: int, self_training: int, self_training_alpha: float, calibrate: bool,
              streamed: bool = False,
              warm: dict[Any, Any] | None = None) -> tuple[StudentHead, float, dict[str, Any], dict[str, Any] | None]:
    """The head on the teacher's (sharpened) targets: C chosen on a teacher-label split unless given, the
    self-training rounds, then the temperature. Returns the head, C, how C was chosen and the calibration.
    A progress bar counts the fits (each C of the grid, the head on every row, the calibration's).

    Every fit starts from a nearby solution (the problem is convex: the same optimum, in fewer solver steps): each
    C of the grid from the one before it, the head of every row from the split head of the chosen C, and with
    ``warm`` (the solutions of the dataset's previous training, see :func:`load_warm`) each from its own previous
    solution; ``warm`` is then updated with this training's solutions.

    ``streamed`` (features beyond the memory budget, ``X`` an array or a :class:`FeatureFile`): C is chosen, and
    the temperature fitted, on a stratified subsample of at most :data:`C_SUBSAMPLE` rows held in memory (every
    row when there are no more), and every head is fitted by :meth:`StudentHead.fit_streamed`, the head of every
    row starting from the split head of the chosen C."""
    if streamed:
        return _fit_head_streamed(X, targets, labels, C=C, val_fraction=val_fraction, seed=seed,
                                  self_training=self_training, self_training_alpha=self_training_alpha,
                                  calibrate=calibrate, warm=warm)
    split_head = None
    fits = (len(C_GRID) if C is None else 0) + 1 + int(calibrate)
    with progress(f"train: fitting the head ({len(X):,} images, {X.shape[1]:,} features)", fits) as advance:
        if C is None:
            C, selection, split_head = select_C(X, targets, labels, val_fraction, seed, C_GRID, advance, warm=warm)
        else:
            selection = {"chosen": {"C": C}}
        head, learnt = self_train(X, targets, C, rounds=self_training, alpha=self_training_alpha, seed=seed,
                                  start=final_start(warm, C, split_head))
        if warm is not None:
            warm[("final", C)] = head.solution
        advance()
        # Without self-training the calibration's split head is the one C was chosen with: same rows, targets, C.
        reuse = split_head if self_training == 0 else None
        calibration = _calibrate(head, X, learnt, labels, val_fraction, seed, reuse) if calibrate else None
        advance(int(calibrate))
    return head, C, selection, calibration


def _fit_head_streamed(X: Any, targets: np.ndarray, labels: np.ndarray, *, C: float | None, val_fraction: float,
                       seed: int, self_training: int, self_training_alpha: float, calibrate: bool,
                       warm: dict[Any, Any] | None = None,
                       ) -> tuple[StudentHead, float, dict[str, Any], dict[str, Any] | None]:
    """:func:`fit_head` for features beyond the memory budget (see there)."""
    sub = subsample(labels, C_SUBSAMPLE, seed)
    whole = len(sub) == len(labels)
    # Features on disk: the subsample is read into memory once (each C reads it many times); in memory, it is
    # addressed where it lies.
    in_memory = isinstance(X, np.ndarray)
    X_sub, at = (X, None if whole else sub) if in_memory else (X[sub], None)
    targets_sub, labels_sub = (targets, labels) if whole else (targets[sub], labels[sub])
    split_head = None
    fits = (len(C_GRID) if C is None else 0) + 1 + int(calibrate)
    with progress(f"train: fitting the head ({len(X):,} images, {X.shape[1]:,} features, streamed; C chosen on "
                  f"{len(sub):,})", fits) as advance:
        if C is None:
            C, selection, split_head = select_C(X_sub, targets_sub, labels_sub, val_fraction, seed, C_GRID, advance,
                                                 streamed=True, rows=at, warm=warm)
        else:
            selection = {"chosen": {"C": C}}
        selection["subsample"] = int(len(sub))
        head, learnt = self_train_streamed(X, targets, C, rounds=self_training, alpha=self_training_alpha,
                                            seed=seed, start=final_start(warm, C, split_head))
        if warm is not None:
            warm[("final", C)] = head.solution
        advance()
        reuse = split_head if self_training == 0 else None
        calibration = None
        if calibrate:
            calibration = _calibrate(head, X_sub, learnt if whole else learnt[sub], labels_sub, val_fraction, seed,
                                     reuse, streamed=True, rows=at)
        advance(int(calibrate))
    return head, C, selection, calibration


def _calibrate(head: StudentHead, X: np.ndarray, targets: np.ndarray, labels: np.ndarray, val_fraction: float,
               seed: int, split_head: StudentHead | None = None, *, streamed: bool = False,
               rows: np.ndarray | None = None) -> dict[str, Any]:
    """Set ``head.temperature_``: fitted on the validation split's teacher targets by a head of the same C trained
    on the rest (no human labels; ``split_head`` when that head is at hand, as after choosing C). Returns the
    temperature and the validation ECE against the teacher's labels before and after. ``streamed`` and ``rows`` as
    for :func:`select_C`."""
    from visent.core.labels import CLASS_INDEX

    idx_train, idx_val = teacher_split(labels, val_fraction, seed)
    y_val = np.array([CLASS_INDEX[label] for label in labels[idx_val]])
    if streamed:
        at_train, at_val = (idx_train, idx_val) if rows is None else (rows[idx_train], rows[idx_val])
        if split_head is None:
            split_head = fit_streamed(X, targets[idx_train], head.C, rows=at_train)
        logits = decision_rows(split_head, X, at_val)  # StudentHead.calibrate's, a block of rows at a time
        before = expected_calibration_error(y_val, softmax(logits / split_head.temperature_))
        split_head.temperature_ = fit_temperature(logits, as_targets(targets[idx_val]))
        after = expected_calibration_error(y_val, softmax(logits / split_head.temperature_))
        head.temperature_ = split_head.temperature_
        return {"temperature": head.temperature_, "val_ece_before": before, "val_ece_after": after,
                "n_val": len(idx_val)}
    if split_head is None:
        split_head = StudentHead(C=head.C).fit(X[idx_train], targets[idx_train])
    before = expected_calibration_error(y_val, split_head.predict_proba(X[idx_val]))
    split_head.calibrate(X[idx_val], targets[idx_val])
    after = expected_calibration_error(y_val, split_head.predict_proba(X[idx_val]))
    head.temperature_ = split_head.temperature_
    return {"temperature": head.temperature_, "val_ece_before": before, "val_ece_after": after, "n_val": len(idx_val)}
