"""The math of probabilities that several stages share: softmax, temperature scaling, a move to another class
prior, and the calibration error with its reliability bins. Softmax and log-softmax are scipy's."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy.special import log_softmax as _log_softmax
from scipy.special import softmax as _softmax

from visent.core.errors import UsageError
from visent.core.labels import CLASSES

N_CLASSES = len(CLASSES)

# The log-temperatures a fit searches: T from e^-3 (about 0.05) to e^3 (about 20).
LOG_TEMPERATURE_BOUNDS = (-3.0, 3.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, k) logits."""
    return _softmax(logits, axis=1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (n, k) logits."""
    return _log_softmax(logits, axis=1)


def one_hot(labels: np.ndarray, classes: int = N_CLASSES) -> np.ndarray:
    """(n, classes) float targets with a 1 at each row's label index."""
    targets = np.zeros((len(labels), classes))
    targets[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1.0
    return targets


def fit_temperature(logits: np.ndarray, targets: np.ndarray,
                    log_bounds: tuple[float, float] = LOG_TEMPERATURE_BOUNDS) -> float:
    """Temperature scaling (Guo et al., 2017): the T in ``exp(log_bounds)`` that minimises the cross-entropy of
    ``softmax(logits / T)`` against ``targets`` ((n, k) soft targets, or n label indices). The predicted class
    never changes; only the confidence does."""
    from scipy.optimize import minimize_scalar

    targets = np.asarray(targets)
    if targets.ndim == 1:
        targets = one_hot(targets, logits.shape[1])

    def loss(log_t: float) -> float:
        return float(-np.mean(np.sum(targets * log_softmax(logits / math.exp(log_t)), axis=1)))

    return float(math.exp(minimize_scalar(loss, bounds=log_bounds, method="bounded").x))


def prior_vector(prior: str | Sequence[float], train_prior: np.ndarray) -> np.ndarray:
    """The class prior a classifier's probabilities should assume: ``"train"`` (the training mix), ``"uniform"``
    or three positive weights in :data:`CLASSES` order (normalised)."""
    if isinstance(prior, str):
        if prior == "train":
            return np.asarray(train_prior, dtype=np.float64)
        if prior == "uniform":
            return np.full(N_CLASSES, 1.0 / N_CLASSES)
        raise UsageError(f"prior must be 'uniform', 'train' or {N_CLASSES} class weights, not {prior!r}")
    vector = np.asarray(prior, dtype=np.float64)
    if vector.shape != (N_CLASSES,) or not np.all(np.isfinite(vector)) or np.any(vector <= 0):
        raise UsageError(f"prior needs {N_CLASSES} positive weights in the order {CLASSES}, got {prior!r}")
    return vector / vector.sum()


def prior_shift(prior: str | Sequence[float], train_prior: np.ndarray) -> np.ndarray:
    """The log-ratio added to logits to move from the training class mix to ``prior`` (Bayes' rule)."""
    train_prior = np.asarray(train_prior, dtype=np.float64)
    if isinstance(prior, str) and prior == "train":
        return np.zeros(N_CLASSES)
    return np.log(prior_vector(prior, train_prior)) - np.log(train_prior)


def _confidence_bins(probs: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-label confidence per row, its bin (0 … bins-1, equal widths over [0, 1]) and the bin edges."""
    confidence = probs.max(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return confidence, which, edges


def reliability_bins(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> list[dict[str, Any]]:
    """The reliability diagram: per equal-width confidence bin its edges, how many predictions fall in it, their
    mean top-label confidence and their accuracy (None for an empty bin). The count-weighted mean of
    |accuracy - confidence| is the ECE (:func:`expected_calibration_error`)."""
    probs = np.asarray(probs, dtype=float)
    confidence, which, edges = _confidence_bins(probs, bins)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    rows = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                     "confidence": float(confidence[mask].mean()) if count else None,
                     "accuracy": float(correct[mask].mean()) if count else None})
    return rows


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over confidence bins (weighted by count)."""
    probs = np.asarray(probs, dtype=float)
    confidence, which, _ = _confidence_bins(probs, bins)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)
