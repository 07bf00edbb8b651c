"""The student head: a multinomial logistic classifier on frozen image features.

It learns from hard teacher labels or from the teacher's full probability vectors (soft targets).
Soft targets are fitted exactly by giving each example one weighted copy per class, the weight
being the teacher's probability for that class: the weighted log-loss is then the cross-entropy
against the soft target. Inference is plain numpy, so a saved head needs no scikit-learn object.

:class:`StudentHead` is a scikit-learn estimator (``get_params``, ``clone``, ``fit`` returning self, learned
state with a trailing ``_``), with one difference from a generic classifier: its classes are always
:data:`visent.core.labels.CLASSES`, whatever subset the targets happen to contain, so every head gives three
probability columns in the same order.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import assert_all_finite, check_is_fitted, column_or_1d, validate_data

from visent.core.errors import InputError
from visent.core.labels import CLASS_INDEX, CLASSES
from visent.core.numeric import fit_temperature, softmax
from visent.core.store import atomic_write_bytes

N_CLASSES = len(CLASSES)


def as_targets(y: Sequence[str] | Sequence[int] | np.ndarray) -> np.ndarray:
    """Turn labels (names or indices) or an (n, 3) probability array into (n, 3) float targets."""
    array = np.asarray(y)
    if array.ndim == 2 and array.shape[1] == 1:  # a column of labels
        array = column_or_1d(array, warn=True)
    if array.ndim == 2:
        if array.shape[1] != N_CLASSES:
            raise ValueError(f"soft targets need {N_CLASSES} columns, got {array.shape[1]}")
        targets = array.astype(np.float64)
        if not np.all(np.isfinite(targets)) or np.any(targets < 0):
            raise ValueError("soft targets must be finite and non-negative")
        sums = targets.sum(axis=1, keepdims=True)
        if np.any(sums <= 0):
            raise ValueError("every soft target row needs a positive sum")
        return targets / sums
    if array.ndim != 1:
        raise ValueError(f"targets must be labels (n,) or soft targets (n, {N_CLASSES}), got shape {array.shape}")
    if array.dtype.kind == "f":
        assert_all_finite(array, input_name="y")
        if np.any(array != np.round(array)):
            raise ValueError("Unknown label type: continuous targets; labels are class names, indices 0-2 "
                             f"or (n, {N_CLASSES}) soft targets")
    index = np.array([_class_index(v) for v in array.tolist()], dtype=np.int64)
    targets = np.zeros((len(index), N_CLASSES))
    targets[np.arange(len(index)), index] = 1.0
    return targets


def _class_index(value: object) -> int:
    if isinstance(value, str):
        if value not in CLASS_INDEX:
            raise ValueError(f"unknown label {value!r}: labels are {', '.join(CLASSES)} or their indices 0-2")
        return CLASS_INDEX[value]
    index = int(value)  # type: ignore[call-overload]
    if index != value or not 0 <= index < N_CLASSES:
        raise ValueError(f"unknown label {value!r}: labels are {', '.join(CLASSES)} or their indices 0-2")
    return index


class StudentHead(ClassifierMixin, BaseEstimator):
    """Standardise features, then multinomial logistic regression.

    ``C``: inverse L2 strength; ``class_weight``: ``"balanced"`` (each example weighted by how rare its argmax
    class is) or None; ``max_iter``: the solver's iteration limit; ``warm_start``: start the solver from the
    solution of the previous :meth:`fit` (with the same classes and features), as along a path of ``C`` values.
    The solver works on the standardised features in float32 (the backbones' features are float32), the learned
    state is float64.

    Learned: ``mean_``, ``scale_`` (the standardisation), ``coef_`` (3, d), ``intercept_`` (3,), ``classes_``
    (always :data:`CLASSES`), ``n_features_in_``, ``n_iter_`` (the solver's, after :meth:`fit` only) and
    ``temperature_`` (1.0 after :meth:`fit`; set by :meth:`calibrate`). ``y`` may be label names, class indices or (n, 3) soft targets.
    """

    def __init__(self, C: float = 0.1, class_weight: str | None = "balanced", max_iter: int = 2000,
                 warm_start: bool = False):
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.warm_start = warm_start

    def fit(self, X: np.ndarray, y: Sequence[str] | Sequence[int] | np.ndarray) -> "StudentHead":
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, not {self.class_weight!r}")
        X = validate_data(self, X, dtype=np.float64)
        if y is None:
            raise ValueError("StudentHead requires y to be passed, but the target y is None")
        targets = as_targets(y)
        if len(X) != len(targets):
            raise ValueError(f"{len(X)} feature rows but {len(targets)} targets")
        present = targets.sum(axis=0) > 0
        if present.sum() < 2:
            raise InputError("the student needs examples of at least two classes, not one class; "
                             "loosen the cleaning thresholds")
        self.classes_ = np.array(CLASSES)
        self.temperature_ = 1.0
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-6
        Z = ((X - self.mean_) / self.scale_).astype(np.float32)  # half the memory traffic of each solver step

        # "balanced": each example is weighted by how rare its teacher label (argmax) is, so every
        # class counts equally while the soft distribution inside an example is left as the teacher gave it.
        hard = targets.argmax(axis=1)
        if self.class_weight == "balanced":
            example_weight = compute_sample_weight("balanced", hard)
        else:
            example_weight = np.ones(len(hard))

        rows, cols = np.nonzero(targets > 0)
        weights = targets[rows, cols] * example_weight[rows]
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=1e-5, warm_start=self.warm_start)
        previous = getattr(self, "_solution", None)
        if self.warm_start and previous is not None and previous[0] == (tuple(np.unique(cols)), X.shape[1]):
            model.coef_, model.intercept_ = previous[1], previous[2]
        model.fit(Z[rows], cols, sample_weight=weights)
        self.n_iter_ = model.n_iter_
        self._solution = ((tuple(model.classes_), X.shape[1]), model.coef_, model.intercept_)  # for a warm start

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
        """The head's logits (n, 3) in :attr:`classes_` order, before the temperature."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        Z = (X - self.mean_) / self.scale_
        return Z @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (n, 3) in :attr:`classes_` order: ``softmax(logits / temperature_)``."""
        return softmax(self.decision_function(X) / self.temperature_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class name per row."""
        best = self.predict_proba(X).argmax(axis=1)
        return self.classes_[best]

    def score(self, X: np.ndarray, y: Sequence[str] | Sequence[int] | np.ndarray,
              sample_weight: np.ndarray | None = None) -> float:
        """Accuracy against ``y`` given as names, class indices or soft targets (their argmax)."""
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(as_targets(y).argmax(axis=1), self.predict_proba(X).argmax(axis=1),
                                    sample_weight=sample_weight))

    def calibrate(self, X: np.ndarray, y: Sequence[str] | Sequence[int] | np.ndarray) -> "StudentHead":
        """Temperature scaling (Guo et al., 2017): set ``temperature_`` to the value that minimises the
        cross-entropy of ``softmax(logits / T)`` against the targets ``y`` (labels or soft targets) on held-out
        rows ``X``. The predicted class never changes; only the confidence does. Returns self.

        The fit is :func:`visent.core.numeric.fit_temperature`, the one the text teachers use too.
        """
        self.temperature_ = fit_temperature(self.decision_function(X), as_targets(y))
        return self

    def save(self, path: str | Path) -> None:
        check_is_fitted(self, "coef_")
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean_, scale=self.scale_, coef=self.coef_, intercept=self.intercept_,
                 C=np.array(self.C), temperature=np.array(self.temperature_))
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "StudentHead":
        """A fitted head from ``head.npz`` (heads saved before calibration existed get ``temperature_ = 1``)."""
        with np.load(path) as data:
            head = cls(C=float(data["C"]))
            head.mean_, head.scale_ = data["mean"], data["scale"]
            head.coef_, head.intercept_ = data["coef"], data["intercept"]
            head.temperature_ = float(data["temperature"]) if "temperature" in data else 1.0
        head.classes_ = np.array(CLASSES)
        head.n_features_in_ = int(head.coef_.shape[1])
        return head
