"""Adapting a student's head to human labels, starting from the student.

The head is refitted on the labelled images' features with the penalty ``||W - W0||² / 2`` toward the student's
calibrated weights (``coef_ / T``, ``intercept_ / T``) instead of toward zero: with few labels the student's
weights carry what the crawl taught, the labels move them where they disagree. The strength C is chosen by an inner
stratified cross-validation (log-loss, the one-standard-error rule toward the student) when every labelled class
has enough images, else the middle of the grid. Classes absent from the labels (e.g. neutral, when the labels are
positive / negative) are never pushed down: the likelihood is that of the labelled classes among themselves (a
softmax over those columns), so the rows of the other classes stay at the student's weights.

What the labels bought is measured on the labels themselves (:func:`assess_adaptation`): a stratified k-fold
cross-validation over the labelled images (5 folds, fewer when a labelled class has fewer than 5 images) scores
the student as it is and the head adapted on the other folds (C chosen inside the fold, as above) on each held-out
fold: balanced accuracy and ECE before and after. When the adapted head's out-of-fold probabilities are better
calibrated with a single temperature fitted on the labels (its cross-validated log-loss and ECE both lower), the
adapted head carries that temperature; the predicted class never changes with it.

:func:`fit_towards` and :func:`choose_C` also serve the k-fold protocol of :mod:`visent.evaluate.kfold`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from visent.core.labels import CLASSES
from visent.core.numeric import log_softmax

C_GRID = (0.0, 1e-4, 1e-3, 1e-2, 0.1)
N_CLASSES = len(CLASSES)
ASSESS_FOLDS = 5
ECE_MARGIN = 0.02  # ECE after adapting above ECE before by more than this: a warning
ACCURACY_MARGIN = 0.01  # balanced accuracy after adapting below before by more than this: a warning


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


def adapt_head(head: Any, X: np.ndarray, y: np.ndarray, seed: int = 0,
               assess: bool = False) -> tuple[Any, dict[str, Any]]:
    """A copy of the fitted :class:`~visent.model.head.StudentHead` ``head`` refitted on features ``X`` and class
    indices ``y`` from the student's calibrated weights; returns it (temperature 1: the fit is a likelihood fit)
    and what was done (C, how it was chosen, labels per class).

    With ``assess``, what the labels bought is measured by cross-validation (:func:`assess_adaptation`) and
    recorded (``cross_validation``, ``before``, ``after``, ``temperature``, ``warnings``); the returned head then
    carries the temperature fitted on the labels when that calibrates it better, else it is the same head."""
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
    info = {"C": C, "C_chosen_by": how, "labels": int(len(y)),
            "per_class": {name: int(counts[i]) for i, name in enumerate(CLASSES)},
            "classes_fitted": [CLASSES[i] for i in present]}
    if assess:
        info.update(assess_adaptation(head, X, y, seed))
        if info["temperature"]["refit"]:
            new.temperature_ = info["temperature"]["value"]
        if C == 0.0 and info["after"] is not None:  # the folds judge the procedure; on all labels it kept the student
            info["warnings"] = [w.replace("the student may serve better", "on all the labels C = 0 was chosen, "
                                          "so the adapted head keeps the student's weights and decisions")
                                for w in info["warnings"]]
    return new, info


def _figures(y: np.ndarray, probs: np.ndarray, cols: Sequence[int]) -> dict[str, float]:
    """Balanced accuracy (the most probable of the labelled classes ``cols`` against the label: for negative /
    positive labels, the binary figure of :func:`visent.evaluate.metrics.compute_metrics`), top-label ECE and
    log-loss of the three probabilities against the labels."""
    from sklearn.metrics import balanced_accuracy_score

    from visent.core.numeric import expected_calibration_error

    cols = np.asarray(cols)
    predicted = cols[probs[:, cols].argmax(axis=1)]
    nll = -float(np.log(np.clip(probs[np.arange(len(y)), y], 1e-300, None)).mean())
    return {"balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
            "ece": float(expected_calibration_error(y, probs)), "nll": nll}


def assess_adaptation(head: Any, X: np.ndarray, y: np.ndarray, seed: int = 0,
                      folds: int = ASSESS_FOLDS) -> dict[str, Any]:
    """Before and after adapting ``head`` to the labels ``y`` of the features ``X``, by stratified k-fold
    cross-validation (``folds``, or fewer when a labelled class has fewer images; seeded): "before" is the head
    as it is on every held-out fold, "after" the head adapted on the other folds (C chosen inside the fold as
    :func:`adapt_head` chooses it) on the held-out fold. The figures (:func:`_figures`) are over the held-out
    predictions of all folds together. The features are standardised once; each fold costs a head fit and its
    choice of C.

    The temperature: one T fitted on the adapted heads' out-of-fold logits (the log-loss of the labels,
    :func:`visent.core.numeric.fit_temperature`). It replaces the adapted head's temperature of 1 (the student's
    own temperature is already folded into the weights the adaptation starts from) when it helps out of sample:
    on each fold a T fitted on the other folds' logits, and the held-out log-loss and ECE both lower with it.

    Returns ``cross_validation`` (folds, labels, seed, how), ``before``, ``after`` (the adapted head as it is
    kept, with its temperature; None without cross-validation), ``temperature`` (``value`` kept, ``refit``,
    ``fitted``, the out-of-fold figures without and with it, ``decision`` in words) and ``warnings``."""
    from sklearn.model_selection import StratifiedKFold

    from visent.core.numeric import fit_temperature, softmax

    y = np.asarray(y, dtype=int)
    present = sorted(int(c) for c in np.unique(y))
    counts = np.bincount(y, minlength=N_CLASSES)
    k = min(folds, int(counts[present].min()))
    before = _figures(y, head.predict_proba(X), present)
    if k < 2:
        rare = ", ".join(CLASSES[c] for c in present if counts[c] < 2)
        return {"cross_validation": {"folds": 0, "labels": int(len(y)), "seed": seed,
                                     "how": f"none: {rare} has a single label, so no fold can hold it out; "
                                            "before is the student on all labels"},
                "before": before, "after": None,
                "temperature": {"value": 1.0, "refit": False, "fitted": None,
                                "decision": "not refit: no cross-validation to judge it"},
                "warnings": [f"no before/after comparison: {rare} has a single label (2 or more per class needed)"]}
    Z = (X - head.mean_) / head.scale_
    W0, b0 = head.coef_ / head.temperature_, head.intercept_ / head.temperature_
    logits = np.zeros((len(y), N_CLASSES))
    fold_of = np.zeros(len(y), dtype=int)
    for i, (train, test) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(Z, y)):
        C, _ = choose_C(Z[train], y[train], W0, b0, seed, present)
        W, b = fit_towards(Z[train], y[train], W0, b0, C, present)
        logits[test] = Z[test] @ W.T + b
        fold_of[test] = i
    plain = softmax(logits)
    scaled = np.zeros_like(plain)
    for i in range(k):
        held = fold_of == i
        scaled[held] = softmax(logits[held] / fit_temperature(logits[~held], y[~held]))
    without, with_t = _figures(y, plain, present), _figures(y, scaled, present)
    fitted = fit_temperature(logits, y)
    refit = with_t["nll"] < without["nll"] and with_t["ece"] < without["ece"]
    after = with_t if refit else without
    figures = (f"out-of-fold ECE {without['ece']:.3f} → {with_t['ece']:.3f}, "
               f"log-loss {without['nll']:.3f} → {with_t['nll']:.3f}")
    decision = (f"refit: T = {fitted:.3g} fitted on the labels ({figures})" if refit else
                f"not refit: a temperature fitted on the labels (T = {fitted:.3g}) does not calibrate the adapted "
                f"head better out of fold ({figures}); T = 1")
    how = f"{k}-fold stratified cross-validation over the {len(y)} labels (seed {seed})" + (
        f", {k} folds since {', '.join(CLASSES[c] for c in present if counts[c] < folds)} has fewer than "
        f"{folds} labels" if k < folds else "")
    warnings = []
    if after["balanced_accuracy"] < before["balanced_accuracy"] - ACCURACY_MARGIN:
        warnings.append(f"adapting lowered balanced accuracy by cross-validation: {before['balanced_accuracy']:.3f}"
                        f" → {after['balanced_accuracy']:.3f} over {len(y)} labels; the student may serve better")
    if without["ece"] > before["ece"] + ECE_MARGIN:
        warnings.append(f"adapting made the probabilities less calibrated: ECE {before['ece']:.3f} → "
                        f"{without['ece']:.3f} by cross-validation over {len(y)} labels; " + (
                            f"a temperature fitted on the labels (T = {fitted:.3g}) brings it to {with_t['ece']:.3f}"
                            if refit else "a temperature fitted on the labels does not help"))
        if refit and with_t["ece"] > before["ece"] + ECE_MARGIN:
            warnings.append(f"with that temperature the ECE ({with_t['ece']:.3f}) is still above the student's "
                            f"({before['ece']:.3f})")
    return {"cross_validation": {"folds": k, "labels": int(len(y)), "seed": seed, "how": how},
            "before": before, "after": after,
            "temperature": {"value": fitted if refit else 1.0, "refit": bool(refit), "fitted": fitted,
                            "out_of_fold_without": without, "out_of_fold_with": with_t, "decision": decision},
            "warnings": warnings}
