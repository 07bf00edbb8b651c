"""The student head: a multinomial logistic classifier on frozen image features.

It learns from hard teacher labels or from the teacher's full probability vectors (soft targets).
Soft targets are fitted exactly by giving each example one weighted copy per class, the weight
being the teacher's probability for that class: the weighted log-loss is then the cross-entropy
against the soft target. Inference is plain numpy, so a saved head needs no scikit-learn object.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from visent.core.errors import InputError
from visent.core.labels import CLASS_INDEX, CLASSES
from visent.core.store import atomic_write_bytes

N_CLASSES = len(CLASSES)


def as_targets(y: Sequence[str] | Sequence[int] | np.ndarray) -> np.ndarray:
    """Turn labels (names or indices) or an (n, 3) probability array into (n, 3) float targets."""
    array = np.asarray(y)
    if array.ndim == 2:
        if array.shape[1] != N_CLASSES:
            raise ValueError(f"soft targets need {N_CLASSES} columns, got {array.shape[1]}")
        targets = array.astype(np.float64)
        sums = targets.sum(axis=1, keepdims=True)
        if np.any(sums <= 0):
            raise ValueError("every soft target row needs a positive sum")
        return targets / sums
    index = np.array([CLASS_INDEX[v] if isinstance(v, str) else int(v) for v in array.tolist()], dtype=np.int64)
    targets = np.zeros((len(index), N_CLASSES))
    targets[np.arange(len(index)), index] = 1.0
    return targets


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class StudentHead:
    """Standardise features, then multinomial logistic regression (scikit-learn style)."""

    C: float = 0.1
    class_weight: str | None = "balanced"
    max_iter: int = 2000
    temperature: float = 1.0  # logits are divided by it (fitted after training by calibrate())
    mean_: np.ndarray | None = field(default=None, repr=False)
    scale_: np.ndarray | None = field(default=None, repr=False)
    coef_: np.ndarray | None = field(default=None, repr=False)
    intercept_: np.ndarray | None = field(default=None, repr=False)

    def fit(self, X: np.ndarray, y: Sequence[str] | Sequence[int] | np.ndarray) -> "StudentHead":
        X = np.asarray(X, dtype=np.float64)
        targets = as_targets(y)
        if len(X) != len(targets):
            raise ValueError(f"{len(X)} feature rows but {len(targets)} targets")
        present = targets.sum(axis=0) > 0
        if present.sum() < 2:
            raise InputError("the student needs examples of at least two classes; loosen the cleaning thresholds")
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-6
        Z = (X - self.mean_) / self.scale_

        # "balanced": each example is weighted by how rare its teacher label (argmax) is, so every
        # class counts equally while the soft distribution inside an example is left as the teacher gave it.
        hard = targets.argmax(axis=1)
        if self.class_weight == "balanced":
            counts = np.bincount(hard, minlength=N_CLASSES)
            per_class = np.where(counts > 0, len(hard) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
            example_weight = per_class[hard]
        else:
            example_weight = np.ones(len(hard))

        rows, cols = np.nonzero(targets > 0)
        weights = targets[rows, cols] * example_weight[rows]
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=1e-5)
        model.fit(Z[rows], cols, sample_weight=weights)

        # A class that never occurs gets a very low fixed logit so probabilities still have 3 columns.
        self.coef_ = np.zeros((N_CLASSES, X.shape[1]))
        self.intercept_ = np.full(N_CLASSES, -30.0)
        seen = model.classes_.astype(int)
        if len(seen) == 2:  # scikit-learn stores one row for two classes: logit of classes_[1] against classes_[0]
            self.coef_[seen[1]], self.intercept_[seen[1]] = model.coef_[0], model.intercept_[0]
            self.intercept_[seen[0]] = 0.0
        else:
            self.coef_[seen], self.intercept_[seen] = model.coef_, model.intercept_
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("StudentHead is not fitted")
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return Z @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.decision_function(X) / self.temperature)

    def calibrate(self, X: np.ndarray, y: Sequence[str] | Sequence[int] | np.ndarray) -> "StudentHead":
        """Temperature scaling (Guo et al., 2017): set ``temperature`` to the value that minimises the
        cross-entropy of ``softmax(logits / T)`` against the targets ``y`` (labels or soft targets) on held-out
        rows ``X``. The predicted class never changes; only the confidence does."""
        from scipy.optimize import minimize_scalar

        logits, targets = self.decision_function(X), as_targets(y)

        def loss(log_t: float) -> float:
            probs = softmax(logits / np.exp(log_t))
            return float(-np.mean(np.sum(targets * np.log(np.clip(probs, 1e-12, 1.0)), axis=1)))

        self.temperature = float(np.exp(minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded").x))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.array(CLASSES)[self.predict_proba(X).argmax(axis=1)]

    def save(self, path: str | Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean_, scale=self.scale_, coef=self.coef_, intercept=self.intercept_,
                 C=np.array(self.C), temperature=np.array(self.temperature))
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "StudentHead":
        with np.load(path) as data:
            head = cls(C=float(data["C"]), temperature=float(data["temperature"]) if "temperature" in data else 1.0)
            head.mean_, head.scale_ = data["mean"], data["scale"]
            head.coef_, head.intercept_ = data["coef"], data["intercept"]
        return head
