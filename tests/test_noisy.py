"""Learning from noisy teacher targets: sharpening and self-training rounds (visent.train.noisy)."""

from __future__ import annotations

import numpy as np
import pytest

from visent.model.head import StudentHead, as_targets
from visent.train.noisy import out_of_fold_proba, self_train, sharpen


def _noisy_blobs(n: int = 450, noise: float = 0.35, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(0, 2.0, (3, 6))[y] + rng.normal(size=(n, 6))
    noisy = y.copy()
    flip = rng.random(n) < noise
    noisy[flip] = (y[flip] + rng.integers(1, 3, flip.sum())) % 3  # always a wrong label
    return X, y, noisy, flip


def test_sharpen() -> None:
    p = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    assert np.array_equal(sharpen(p, 1.0), p)
    sharp, flat = sharpen(p, 0.5), sharpen(p, 2.0)
    assert np.allclose(sharp.sum(1), 1) and np.allclose(flat.sum(1), 1)
    assert (sharp.max(1) > p.max(1)).all() and (flat.max(1) < p.max(1)).all()
    assert (sharp.argmax(1) == p.argmax(1)).all()
    with pytest.raises(ValueError):
        sharpen(p, 0.0)


def test_out_of_fold_predictions_disagree_with_wrong_labels() -> None:
    X, y, noisy, flip = _noisy_blobs()
    oof = out_of_fold_proba(X, as_targets(noisy), C=0.1)
    in_sample = StudentHead(C=0.1).fit(X, as_targets(noisy)).predict_proba(X)
    # a head that never saw a post mostly predicts its true class, even where the teacher was wrong
    assert (oof.argmax(1)[flip] == y[flip]).mean() > 0.7
    assert oof[flip, noisy[flip]].mean() <= in_sample[flip, noisy[flip]].mean()


def test_self_training_moves_targets_towards_the_truth() -> None:
    X, y, noisy, _ = _noisy_blobs()
    targets = as_targets(noisy)
    plain, same = self_train(X, targets, 0.1, rounds=0)
    assert np.array_equal(same, targets)
    reference = StudentHead(C=0.1).fit(X, targets)
    assert np.allclose(plain.coef_, reference.coef_)
    head, learnt = self_train(X, targets, 0.1, rounds=2, alpha=0.3)
    assert (learnt.argmax(1) == y).mean() > (noisy == y).mean() + 0.1
    assert np.allclose(learnt.sum(1), 1)
    with pytest.raises(ValueError):
        self_train(X, targets, 0.1, rounds=1, alpha=1.5)


def test_out_of_fold_is_cross_val_predict_on_the_same_splits() -> None:
    """out_of_fold_proba (scikit-learn's cross_val_predict) gives exactly what the explicit loop over the
    stratified folds gives, for soft targets and with a class that is never the argmax."""
    from sklearn.model_selection import StratifiedKFold

    X, _, noisy, _ = _noisy_blobs(200)
    rng = np.random.default_rng(1)
    soft = 0.6 * as_targets(noisy) + 0.4 * rng.dirichlet([1, 1, 1], len(noisy))
    no_neutral = as_targets(np.where(noisy == 1, 2, noisy)) * 0.8 + 0.2 / 3
    for targets, seed in ((soft, 0), (no_neutral, 3)):
        expected = np.zeros_like(targets)
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(X, targets.argmax(1))
        for train, held in folds:
            expected[held] = StudentHead(C=0.1).fit(X[train], targets[train]).predict_proba(X[held])
        assert np.array_equal(out_of_fold_proba(X, targets, C=0.1, seed=seed), expected)
