import numpy as np
import pytest

from visent.core.labels import CLASSES
from visent.model.head import StudentHead, as_targets


def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    y = rng.integers(0, 3, size=n)
    X = centres[y] + rng.normal(scale=0.5, size=(n, 4))
    return X, y


def test_as_targets_accepts_names_indices_and_soft():
    assert as_targets(["negative", "positive"]).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert as_targets([1]).tolist() == [[0, 1, 0]]
    soft = as_targets(np.array([[2.0, 1.0, 1.0]]))
    assert np.allclose(soft, [[0.5, 0.25, 0.25]])
    with pytest.raises(ValueError):
        as_targets(np.ones((2, 2)))


def test_fit_separable_blobs_and_probabilities():
    X, y = _blobs()
    head = StudentHead(C=1.0).fit(X, y)
    probs = head.predict_proba(X)
    assert probs.shape == (len(X), 3)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y).mean() > 0.95
    assert list(head.predict(X[:3])) == [CLASSES[i] for i in y[:3]]


def test_soft_targets_follow_the_teacher_confidence():
    # Same features, teacher 80% sure vs 55% sure: the soft student's confidence follows.
    X = np.repeat(np.array([[1.0, 0.0], [-1.0, 0.0]]), 50, axis=0)
    sure = np.repeat(np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]), 50, axis=0)
    unsure = np.repeat(np.array([[0.25, 0.2, 0.55], [0.55, 0.2, 0.25]]), 50, axis=0)
    p_sure = StudentHead(C=100.0, class_weight=None).fit(X, sure).predict_proba(X[:1])[0]
    p_unsure = StudentHead(C=100.0, class_weight=None).fit(X, unsure).predict_proba(X[:1])[0]
    assert p_sure[2] == pytest.approx(0.8, abs=0.03)
    assert p_unsure[2] == pytest.approx(0.55, abs=0.03)


def test_two_classes_still_give_three_columns():
    X, y = _blobs()
    keep = y != 1
    head = StudentHead().fit(X[keep], y[keep])
    probs = head.predict_proba(X)
    assert probs.shape[1] == 3
    assert probs[:, 1].max() < 1e-6
    assert (probs[keep].argmax(axis=1) == y[keep]).mean() > 0.95


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="two classes"):
        StudentHead().fit(np.ones((5, 2)), ["positive"] * 5)


def test_save_load_round_trip(tmp_path):
    X, y = _blobs()
    head = StudentHead(C=0.3).fit(X, y)
    head.save(tmp_path / "head.npz")
    again = StudentHead.load(tmp_path / "head.npz")
    assert again.C == 0.3
    assert np.allclose(again.predict_proba(X), head.predict_proba(X))


def test_temperature_scaling_fixes_overconfidence_without_changing_classes(tmp_path):
    from visent.core.numeric import expected_calibration_error

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 900)
    X = rng.normal(0, 0.25, (3, 40))[y] + rng.normal(size=(900, 40))  # weak signal in many dimensions
    head = StudentHead(C=10.0).fit(X[:150], y[:150])  # few rows, weak regularisation: overconfident
    before = head.predict_proba(X[450:])
    head.calibrate(X[150:450], y[150:450])
    after = head.predict_proba(X[450:])  # rows the temperature never saw
    assert head.temperature > 2  # flatter
    assert (after.argmax(1) == before.argmax(1)).all()
    ece_before, ece_after = expected_calibration_error(y[450:], before), expected_calibration_error(y[450:], after)
    assert ece_after < 0.5 * ece_before

    def nll(p):
        return -np.log(p[np.arange(len(p)), y[450:]]).mean()

    assert nll(after) < nll(before)
    head.save(tmp_path / "head.npz")
    assert StudentHead.load(tmp_path / "head.npz").temperature == head.temperature


def test_heads_saved_before_temperature_load_with_none(tmp_path):
    X, y = _blobs()
    head = StudentHead(C=1.0).fit(X, y)
    np.savez(tmp_path / "old.npz", mean=head.mean_, scale=head.scale_, coef=head.coef_, intercept=head.intercept_,
             C=np.array(head.C))
    old = StudentHead.load(tmp_path / "old.npz")
    assert old.temperature == 1.0 and np.allclose(old.predict_proba(X), head.predict_proba(X))
