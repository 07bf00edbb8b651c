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
    assert head.temperature_ > 2  # flatter
    assert (after.argmax(1) == before.argmax(1)).all()
    ece_before, ece_after = expected_calibration_error(y[450:], before), expected_calibration_error(y[450:], after)
    assert ece_after < 0.5 * ece_before

    def nll(p):
        return -np.log(p[np.arange(len(p)), y[450:]]).mean()

    assert nll(after) < nll(before)
    head.save(tmp_path / "head.npz")
    assert StudentHead.load(tmp_path / "head.npz").temperature_ == head.temperature_


def test_heads_saved_before_temperature_load_with_none(tmp_path):
    X, y = _blobs()
    head = StudentHead(C=1.0).fit(X, y)
    np.savez(tmp_path / "old.npz", mean=head.mean_, scale=head.scale_, coef=head.coef_, intercept=head.intercept_,
             C=np.array(head.C))
    old = StudentHead.load(tmp_path / "old.npz")
    assert old.temperature_ == 1.0 and np.allclose(old.predict_proba(X), head.predict_proba(X))


# ----------------------------------------------------------------------------- the scikit-learn estimator contract
# Checks that cannot apply to a head whose classes are always the three visent classes.
_NAMES_NOT_NUMBERS = ("predict returns class names (classes_ is always CLASSES), which this check compares "
                      "with assert_allclose; test_head_predictions_are_stable covers the same ground")
EXPECTED_FAILED_CHECKS = {
    "check_classifiers_train": "predict returns class names, which this check compares with the integer y",
    "check_classifiers_classes": "labels other than the visent classes ('one', 'two', ...) are refused",
    "check_dtype_object": "labels other than the visent classes (here 3) are refused",
    "check_class_weight_classifiers": "class_weight is 'balanced' or None; per-class dicts are not offered",
    "check_estimators_pickle": _NAMES_NOT_NUMBERS,
    "check_classifier_data_not_an_array": _NAMES_NOT_NUMBERS,
    "check_supervised_y_2d": _NAMES_NOT_NUMBERS,
    "check_methods_sample_order_invariance": _NAMES_NOT_NUMBERS,
    "check_methods_subset_invariance": _NAMES_NOT_NUMBERS,
    "check_fit_idempotent": _NAMES_NOT_NUMBERS,
}


def test_scikit_learn_estimator_checks():
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(StudentHead(), expected_failed_checks=EXPECTED_FAILED_CHECKS)
    statuses = {}
    for result in results:
        statuses.setdefault(result["check_name"], set()).add(result["status"])
    assert len(statuses) > 40
    # each expected failure still fails (a check that starts passing should leave the list)
    for name in EXPECTED_FAILED_CHECKS:
        assert statuses[name] == {"xfail"}, name
    assert all(s <= {"passed", "skipped"} for name, s in statuses.items() if name not in EXPECTED_FAILED_CHECKS)


def test_head_predictions_are_stable():
    """What the name-comparing checks above test, with array_equal on the names: pickling, refitting,
    row order and subsets leave the predictions as they are."""
    import pickle

    X, y = _blobs(90)
    head = StudentHead(C=1.0).fit(X, y)
    probs, names = head.predict_proba(X), head.predict(X)
    again = pickle.loads(pickle.dumps(head))
    assert np.array_equal(again.predict(X), names) and np.array_equal(again.predict_proba(X), probs)
    refit = head.fit(X, y)
    assert refit is head and np.array_equal(head.predict_proba(X), probs)
    order = np.random.default_rng(0).permutation(len(X))
    assert np.array_equal(head.predict(X[order]), names[order])
    np.testing.assert_allclose(head.predict_proba(X[order]), probs[order])
    np.testing.assert_allclose(head.predict_proba(X[:7]), probs[:7])
    assert head.score(X, y) == head.score(X, [CLASSES[i] for i in y]) == head.score(X, as_targets(y)) > 0.95


def test_learned_state_follows_the_conventions():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    head = StudentHead(C=0.3, class_weight=None, max_iter=500)
    assert head.get_params() == {"C": 0.3, "class_weight": None, "max_iter": 500, "warm_start": False}
    assert "temperature" not in head.get_params()
    with pytest.raises(NotFittedError):
        head.predict_proba(np.ones((2, 4)))
    X, y = _blobs()
    keep = y != 1  # no neutral example: the head still has all three classes, in CLASSES order
    fitted = head.fit(X[keep], y[keep])
    assert fitted is head
    assert list(head.classes_) == list(CLASSES) and head.n_features_in_ == 4 and head.temperature_ == 1.0
    assert head.coef_.shape == (3, 4) and head.intercept_.shape == (3,)
    fresh = clone(head)
    assert fresh.get_params() == head.get_params() and not hasattr(fresh, "coef_")
    with pytest.raises(ValueError, match="4 features"):
        head.predict_proba(np.ones((2, 5)))
    with pytest.raises(ValueError, match="unknown label"):
        StudentHead().fit(X[:3], [0, 1, 3])


def test_warm_starts_along_a_C_path_reach_the_same_heads_in_fewer_steps():
    X, y = _blobs(400, seed=1)
    X = np.hstack([X, np.random.default_rng(1).normal(size=(len(X), 200))])  # features that carry nothing
    soft = 0.3 * as_targets(y) + 0.7 * np.random.default_rng(2).dirichlet(np.ones(3), len(y))  # a noisy teacher
    warm = StudentHead(warm_start=True)
    cold_steps = warm_steps = 0
    for C in (1e-3, 1e-2, 0.1, 1.0, 10.0):
        cold = StudentHead(C=C).fit(X, soft)
        warm.set_params(C=C).fit(X, soft)
        np.testing.assert_allclose(warm.predict_proba(X), cold.predict_proba(X), atol=1e-3)
        cold_steps, warm_steps = cold_steps + int(cold.n_iter_[0]), warm_steps + int(warm.n_iter_[0])
    assert warm_steps < 0.85 * cold_steps  # 64 against 85
    keep = y != 1  # other classes than the last fit: a cold start, still right
    two = warm.fit(X[keep], y[keep])
    assert two.predict_proba(X)[:, 1].max() < 1e-6 and (two.predict(X[keep]) == np.array(CLASSES)[y[keep]]).all()


def test_balanced_weights_are_the_hand_written_ones():
    """compute_sample_weight("balanced") gives exactly the weights visent used to write out by hand."""
    from sklearn.utils.class_weight import compute_sample_weight

    rng = np.random.default_rng(0)
    for n in (7, 50, 333):
        hard = rng.integers(0, 3, n)
        hard[hard == 1] = 0 if n == 50 else 1  # and once with a class absent
        counts = np.bincount(hard, minlength=3)
        by_hand = np.where(counts > 0, n / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)[hard]
        assert np.array_equal(compute_sample_weight("balanced", hard), by_hand)


def test_shipped_head_loads_and_saves_byte_identically(tmp_path):
    from visent.model.student import packaged_model_dir

    shipped = packaged_model_dir() / "head.npz"
    head = StudentHead.load(shipped)
    assert list(head.classes_) == list(CLASSES) and head.n_features_in_ == head.coef_.shape[1]
    head.save(tmp_path / "head.npz")
    assert (tmp_path / "head.npz").read_bytes() == shipped.read_bytes()
