"""EVALUATE --folds --finetune: the penalised head fit and the k-fold protocol on small fixtures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from visent.core.labels import CLASSES
from visent.core.numeric import softmax
from visent.evaluate.kfold import fit_towards, kfold_finetune
from visent.train import StudentHead


def _blobs(n: int, d: int = 8, seed: int = 0, shift: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, shift, (3, d))
    return centres[y] + rng.normal(size=(n, d)), y


def test_fit_from_zero_is_ordinary_l2_logistic_regression() -> None:
    Z, y = _blobs(300)
    W, b = fit_towards(Z, y, np.zeros((3, Z.shape[1])), np.zeros(3), C=0.05)
    reference = LogisticRegression(C=0.05, class_weight="balanced", max_iter=5000, tol=1e-10).fit(Z, y)
    np.testing.assert_allclose(softmax(Z @ W.T + b), reference.predict_proba(Z), atol=2e-3)


def test_strong_penalty_keeps_the_starting_head_weak_penalty_learns() -> None:
    Z, y = _blobs(300)
    W0 = np.random.default_rng(1).normal(size=(3, Z.shape[1]))
    W, _ = fit_towards(Z, y, W0, np.zeros(3), C=1e-6)
    assert np.abs(W - W0).max() < 1e-3
    W, b = fit_towards(Z, y, W0, np.zeros(3), C=10.0)
    assert (softmax(Z @ W.T + b).argmax(1) == y).mean() > 0.9


class _FakeModel:
    """Features given directly: the protocol only needs features(), head and config."""

    def __init__(self, X: np.ndarray, head: StudentHead):
        self._X, self.head = X, head
        self.config = SimpleNamespace(backbone_weights=None, tta=False, runtime="torch", backbone="none")

    def features(self, paths, batch_size: int = 32):
        return self._X[[int(p) for p in paths]], ["ok"] * len(paths)


@pytest.mark.slow
def test_kfold_protocol_scores_every_fold_and_both_starts() -> None:
    X, y = _blobs(150, seed=3)
    noisy = y.copy()
    flip = np.random.default_rng(0).random(len(y)) < 0.4  # the student learnt from a noisy teacher
    noisy[flip] = np.random.default_rng(1).integers(0, 3, flip.sum())
    head = StudentHead(C=0.01).fit(X, noisy)
    labels = [CLASSES[i] for i in y]
    X[5] = np.nan  # an unreadable image is left out, not a crash
    report = kfold_finetune(_FakeModel(X, head), [str(i) for i in range(len(y))], labels, folds=3, seed=0)
    assert report["folds"] == 3 and report["n"] == 149
    for name in ("student", "from_student", "from_imagenet"):
        assert len(report["runs"][name]) == 3
        mean, std = report["summary"][name]["binary_balanced_accuracy"]
        assert 0 <= std < 0.2
    summary = report["summary"]
    # human labels on clean blobs beat the noisy student; both fine-tuned heads learn them
    assert summary["from_student"]["three_class_macro_f1"][0] > summary["student"]["three_class_macro_f1"][0]
    assert summary["from_imagenet"]["three_class_macro_f1"][0] > 0.8
    again = kfold_finetune(_FakeModel(X, head), [str(i) for i in range(len(y))], labels, folds=3, seed=0)
    assert again["summary"] == summary  # seeded: the same folds and fits


def test_kfold_needs_two_examples_per_class() -> None:
    X, y = _blobs(20)
    head = StudentHead(C=0.1).fit(X, y)
    labels = ["negative"] * 19 + ["positive"]
    with pytest.raises(ValueError, match="at least 2 images of every class"):
        kfold_finetune(_FakeModel(X, head), [str(i) for i in range(20)], labels, folds=5)
