"""The figures a benchmark gives: binary (positive vs negative, neutral left out) and 3-class metrics."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from visent.core.labels import CLASS_INDEX, CLASSES
from visent.core.numeric import expected_calibration_error, reliability_bins


BOOTSTRAP_ROUNDS = 1000


def bootstrap_intervals(y: np.ndarray, pred: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS,
                        seed: int = 0) -> dict[str, list[float]]:
    """95% percentile bootstrap intervals of accuracy and balanced accuracy: the images resampled with
    replacement ``rounds`` times (seeded, so a report is reproducible); resamples missing a class are dropped."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (rounds, len(y)))
    correct, ys = (y == pred)[idx], y[idx]
    classes = np.unique(y)
    counts = np.stack([(ys == c).sum(axis=1) for c in classes])
    keep = (counts > 0).all(axis=0)
    recalls = np.stack([(correct & (ys == c)).sum(axis=1) for c in classes]) / np.maximum(counts, 1)
    out = {}
    for name, values in (("accuracy_ci95", correct.mean(axis=1)), ("balanced_accuracy_ci95", recalls.mean(axis=0))):
        kept = values[keep]
        out[name] = [float(v) for v in np.percentile(kept, [2.5, 97.5])] if kept.size else [float("nan")] * 2
    return out


def compute_metrics(labels: Sequence[str], probs: np.ndarray) -> dict[str, Any]:
    """Metrics of (n, 3) probabilities against label names (rows with NaN probabilities must be removed first).

    The binary figures (T4SA 2.0's zero-shot protocol) carry 95% bootstrap intervals for accuracy and balanced
    accuracy."""
    y = np.array([CLASS_INDEX[label] for label in labels], dtype=int)
    probs = np.asarray(probs, dtype=float)
    result: dict[str, Any] = {}
    binary = y != CLASS_INDEX["neutral"]
    if binary.any():
        yb = (y[binary] == CLASS_INDEX["positive"]).astype(int)
        pb = (probs[binary, CLASS_INDEX["positive"]] > probs[binary, CLASS_INDEX["negative"]]).astype(int)
        result["binary"] = {
            "n": int(binary.sum()),
            "n_positive": int(yb.sum()),
            "n_negative": int((1 - yb).sum()),
            "accuracy": float(accuracy_score(yb, pb)),
            "balanced_accuracy": float(balanced_accuracy_score(yb, pb)),
            **bootstrap_intervals(yb, pb),
            "macro_f1": float(f1_score(yb, pb, average="macro", labels=[0, 1], zero_division=0)),
            "confusion": {"labels": ["negative", "positive"], "rows_true_cols_predicted":
                          confusion_matrix(yb, pb, labels=[0, 1]).tolist()},
        }
    pred = probs.argmax(axis=1)
    three = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "confusion": {"labels": list(CLASSES), "rows_true_cols_predicted":
                      confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()},
        "ece": expected_calibration_error(y, probs),
        "reliability": {"bins": reliability_bins(y, probs)},
    }
    if (y == CLASS_INDEX["neutral"]).any():
        three["macro_f1"] = float(f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0))
        three["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    result["three_class"] = three
    return result
