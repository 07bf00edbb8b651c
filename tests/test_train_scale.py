"""train at scale: the kept rows read as Arrow columns, the features kept on disk beyond the memory budget, and the
head fitted block by block (StudentHead.fit_streamed) to the head scikit-learn's solver gives."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils.class_weight import compute_sample_weight

import visent.train.features as features_module
import visent.train.fit as fit_module
from test_pipeline import cleaned_dataset
from visent.core.errors import UsageError
from visent.core.labels import CLASSES
from visent.core.status import OK, ImageStatus
from visent.model.head import StudentHead
from visent.train import memory_budget
from visent.train import train as _train
from visent.train.features import FeatureFile
from visent.train.fit import fit_head
from visent.train.rows import rows_fingerprint, training_rows
from visent.train.streamed import self_train_streamed, subsample
from visent.train.noisy import self_train


def _problem(n=900, d=60, seed=0, classes=3):
    """Features with a little signal about the class, a noisy teacher's soft targets, and its labels."""
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, n, p=np.arange(1, classes + 1) / np.arange(1, classes + 1).sum())  # unbalanced
    X = (rng.normal(size=(n, d)) + 0.8 * np.eye(3, d)[y] + 2.0).astype(np.float32)  # not centred: standardised
    soft = 0.5 * np.eye(3)[y] + 0.5 * rng.dirichlet(np.ones(3), n)
    if classes == 2:
        soft[:, 2] = 0.0  # a class that never occurs
    soft /= soft.sum(axis=1, keepdims=True)
    return X, soft, np.array(CLASSES)[soft.argmax(axis=1)]


def _same_head(a: StudentHead, b: StudentHead, X: np.ndarray, y: np.ndarray) -> None:
    """The equality asked of the streamed fit: coefficients to 1e-3, the same predictions, balanced accuracy
    within 0.2 point."""
    np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-3, atol=1e-3 * np.abs(a.coef_).max())
    np.testing.assert_allclose(b.intercept_, a.intercept_, rtol=1e-3, atol=1e-3)  # intercepts near 0: L-BFGS's gtol
    np.testing.assert_allclose(b.decision_function(X), a.decision_function(X), atol=2e-3)
    np.testing.assert_allclose(b.mean_, a.mean_, rtol=1e-6)
    np.testing.assert_allclose(b.scale_, a.scale_, rtol=1e-6)
    pa, pb = a.predict_proba(X), b.predict_proba(X)
    top = np.sort(pa, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-3  # a near tie may go either way within the solver's tolerance
    assert np.array_equal(pa.argmax(axis=1)[clear], pb.argmax(axis=1)[clear])
    assert np.mean(pa.argmax(axis=1) == pb.argmax(axis=1)) >= 0.99
    assert abs(balanced_accuracy_score(y, a.predict(X)) - balanced_accuracy_score(y, b.predict(X))) <= 0.002


def _reference(X: np.ndarray, y: np.ndarray, C: float, class_weight: str | None = "balanced") -> StudentHead:
    """The head's objective as scikit-learn's solver fits it: the standardised rows in float64, one copy of each row
    per class of its (soft) target, weighted by the target times the row's class weight."""
    from visent.model.head import as_targets

    targets = as_targets(y)
    head = StudentHead(C=C, class_weight=class_weight)
    X64 = X.astype(np.float64)
    head.mean_, head.scale_ = X64.mean(axis=0), X64.std(axis=0) + 1e-6
    head.classes_, head.temperature_, head.n_features_in_ = np.array(CLASSES), 1.0, X.shape[1]
    weight = compute_sample_weight("balanced", targets.argmax(axis=1)) if class_weight else np.ones(len(X))
    rows, cols = np.nonzero(targets > 0)
    model = LogisticRegression(C=C, max_iter=5000, tol=1e-10)
    model.fit(((X64 - head.mean_) / head.scale_)[rows], cols, sample_weight=targets[rows, cols] * weight[rows])
    head._set_solution(model.classes_.astype(int), X.shape[1], model.coef_, model.intercept_)
    return head


@pytest.fixture
def feature_file(tmp_path):
    files = []

    def make(X: np.ndarray, block: int = 128) -> FeatureFile:
        store = FeatureFile(tmp_path / "work", X.shape[1])
        for start in range(0, len(X), block):
            store.append(X[start:start + block])
        files.append(store)
        return store

    yield make
    for store in files:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("classes", [3, 2])
@pytest.mark.parametrize("C", [1e-3, 0.1])
def test_the_head_is_scikit_learns_logistic_regression_in_memory_or_streamed(classes, C, feature_file):
    X, soft, labels = _problem(classes=classes)
    for y in (soft, labels):
        reference = _reference(X, y, C)
        _same_head(reference, StudentHead(C=C).fit(X, y), X, labels)
        for source in (X, feature_file(X)):
            streamed = StudentHead(C=C).fit_streamed(source, y, block_rows=100)
            _same_head(reference, streamed, X, labels)
            assert streamed.n_passes_ >= streamed.n_iter_[0] >= 1
    _same_head(_reference(X, soft, C, class_weight=None), StudentHead(C=C, class_weight=None).fit(X, soft), X, labels)


def test_the_streamed_fit_on_some_rows_warm_starts_and_refuses_what_fit_refuses(feature_file):
    X, soft, labels = _problem(n=600, seed=1)
    rows = np.random.default_rng(0).permutation(600)[:450]  # unsorted, as a teacher split gives them
    memory = StudentHead(C=0.01).fit(X[rows], soft[rows])
    _same_head(memory, StudentHead(C=0.01).fit_streamed(feature_file(X), soft[rows], rows=rows, block_rows=64),
               X, labels)
    warm = StudentHead(C=0.01, warm_start=True).fit_streamed(X, soft)
    cold_passes = warm.n_passes_
    assert warm.fit_streamed(X, soft).n_passes_ <= 3 < cold_passes  # started at its own optimum
    _same_head(StudentHead(C=0.01).fit(X, soft), warm, X, labels)
    with pytest.raises(ValueError, match="two classes"):
        StudentHead().fit_streamed(X[:5], ["positive"] * 5)
    with pytest.raises(ValueError, match="targets"):
        StudentHead().fit_streamed(X[:5], soft[:4])
    bad = X[:20].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        StudentHead().fit_streamed(bad, soft[:20])


def test_feature_files_give_back_their_rows_and_leave_nothing_behind(tmp_path, feature_file):
    X = np.random.default_rng(0).normal(size=(1000, 7)).astype(np.float32)
    store = feature_file(X, block=333)
    assert store.shape == (1000, 7) and len(store) == 1000
    assert np.array_equal(store[:], X) and np.array_equal(store[990:2000], X[990:])
    assert store[5:5].shape == (0, 7)
    index = np.array([999, 3, 3, 500, 0, 70, 71, 600])  # unsorted, repeated, near and far apart
    assert np.array_equal(store[index], X[index])
    spread = np.sort(np.random.default_rng(1).choice(1000, 300, replace=False))
    assert np.array_equal(store[spread], X[spread])
    with pytest.raises(IndexError):
        store[np.array([1000])]
    with pytest.raises(ValueError):
        store.append(np.ones((2, 3), np.float32))
    assert list((tmp_path / "work").iterdir()) == []  # the file has no name: nothing to clean up, even after kill -9


def test_memory_budget_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("VISENT_TRAIN_MEMORY_MB", raising=False)
    assert memory_budget() == 1024 * 2**20
    monkeypatch.setenv("VISENT_TRAIN_MEMORY_MB", "0.5")
    assert memory_budget() == 2**19
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv("VISENT_TRAIN_MEMORY_MB", bad)
        with pytest.raises(UsageError, match="VISENT_TRAIN_MEMORY_MB"):
            memory_budget()


@pytest.mark.slow
@pytest.mark.parametrize("self_training", [0, 1])
def test_the_streamed_head_choice_and_calibration_are_the_in_memory_ones(self_training, feature_file):
    X, soft, labels = _problem(n=700, d=40, seed=2)
    options = dict(C=None, val_fraction=0.2, seed=0, self_training=self_training, self_training_alpha=0.5,
                   calibrate=True)
    head, C, selection, calibration = fit_head(X, soft, labels, **options)
    for source in (X, feature_file(X)):
        s_head, s_C, s_selection, s_calibration = fit_head(source, soft, labels, streamed=True, **options)
        assert s_C == C and s_selection["subsample"] == len(X) and s_selection["n_train"] == selection["n_train"]
        for ours, theirs in zip(s_selection["grid"], selection["grid"]):
            assert ours["val_cross_entropy"] == pytest.approx(theirs["val_cross_entropy"], rel=1e-4)
            assert ours["val_balanced_accuracy"] == pytest.approx(theirs["val_balanced_accuracy"], abs=0.002)
        _same_head(head, s_head, X, labels)
        assert s_calibration["temperature"] == pytest.approx(calibration["temperature"], rel=1e-3)
        assert s_head.temperature_ == pytest.approx(head.temperature_, rel=1e-3)


@pytest.mark.slow
def test_streamed_self_training_is_noisy_self_training():
    X, soft, labels = _problem(n=500, d=30, seed=3)
    memory, learnt = self_train(X, soft, 0.01, rounds=2, alpha=0.5, seed=0)
    streamed, s_learnt = self_train_streamed(X, soft, 0.01, rounds=2, alpha=0.5, seed=0)
    np.testing.assert_allclose(s_learnt, learnt, atol=1e-3)
    _same_head(memory, streamed, X, labels)


def test_beyond_the_budget_C_is_chosen_on_a_stratified_subsample(monkeypatch, feature_file):
    X, soft, labels = _problem(n=1200, d=20, seed=4)
    monkeypatch.setattr(fit_module, "C_SUBSAMPLE", 400)
    options = dict(C=None, val_fraction=0.2, seed=0, self_training=0, self_training_alpha=0.5, calibrate=True,
                   streamed=True)
    head, C, selection, calibration = fit_head(feature_file(X), soft, labels, **options)
    assert selection["subsample"] == 400 and selection["n_train"] + selection["n_val"] == 400
    assert calibration["n_val"] == selection["n_val"]
    # features in memory: the subsample is addressed where it lies, not copied; the same choice and head
    in_memory, C_memory, selection_memory, calibration_memory = fit_head(X, soft, labels, **options)
    assert C_memory == C and selection_memory["chosen"] == pytest.approx(selection["chosen"], rel=1e-6)
    assert calibration_memory["temperature"] == pytest.approx(calibration["temperature"], rel=1e-6)
    _same_head(head, in_memory, X, labels)
    sub = subsample(labels, 400, 0)
    assert np.all(np.diff(sub) > 0)
    share = {name: np.mean(labels == name) for name in CLASSES}
    assert all(abs(np.mean(labels[sub] == name) - share[name]) < 0.01 for name in CLASSES)
    _same_head(StudentHead(C=C).fit(X, soft), head, X, labels)  # the head of every row, whatever C was chosen on


class _Reader:
    """VisentModel.features of made-up images: a row per hash, NaN (and an error) where the hash says so."""

    def __init__(self, d=5):
        self.d, self.calls = d, []

    def features(self, paths, hashes, batch_size=32):
        self.calls.append(len(paths))
        rows = np.array([[int(h[1:]) + k / 10 for k in range(self.d)] for h in hashes], dtype=np.float32)
        status = []
        for i, h in enumerate(hashes):
            if int(h[1:]) % 7 == 3:
                rows[i] = np.nan
                status.append(ImageStatus.failure(f"{paths[i]}: unreadable"))
            else:
                status.append(OK)
        return rows, status


@pytest.mark.parametrize("budget", [1 << 30, 0])
def test_features_are_embedded_a_block_at_a_time_into_memory_or_a_file(budget, tmp_path, monkeypatch):
    n = 100
    rows = {"sha256": [f"h{i}" for i in range(n)], "path": [f"img{i}.jpg" for i in range(n)]}
    one = _Reader()
    whole, usable, errors = features_module.embed_rows(one, rows, batch_size=8, budget=1 << 30, work=tmp_path)
    assert one.calls == [n] and isinstance(whole, np.ndarray)
    assert usable.sum() == n - 14 and len(errors) == 14 and "img3.jpg" in errors[0]
    monkeypatch.setattr(features_module, "FEATURE_BLOCK_ROWS", 30)
    blocks = _Reader()
    X, s_usable, s_errors = features_module.embed_rows(blocks, rows, batch_size=8, budget=budget, work=tmp_path)
    try:
        assert blocks.calls == [30, 30, 30, 10]
        assert isinstance(X, np.ndarray if budget else FeatureFile)
        assert np.array_equal(X[:], whole) and np.array_equal(s_usable, usable) and s_errors == errors
    finally:
        if isinstance(X, FeatureFile):
            X.close()


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    return cleaned_dataset(tmp_path_factory.mktemp("scale"), n_per_class=12)


def test_training_rows_are_the_kept_rows_read_as_columns(cleaned):
    rows = training_rows(cleaned)
    kept = [r for r in cleaned.posts().to_pylist() if r.get("clean_status") == "kept"]  # as training read them
    assert rows["post_id"] == [r["post_id"] for r in kept]
    assert rows["sha256"] == [r["image_sha256"] for r in kept]
    assert rows["label"] == [r["label"] for r in kept]
    assert list(rows["path"]) == [cleaned.image_path(r["image_file"]) for r in kept]
    assert rows["path"][1:3] == [cleaned.image_path(r["image_file"]) for r in kept[1:3]]
    assert rows["soft"].dtype == np.float32 and rows["soft"].shape == (len(kept), 3)
    old = np.array([[r[c] for c in ("p_negative", "p_neutral", "p_positive")] for r in kept], dtype=np.float64)
    assert np.array_equal(rows["soft"].astype(np.float64), old)
    assert rows_fingerprint(rows) == rows_fingerprint({**rows, "soft": old})


@pytest.mark.slow
def test_training_beyond_the_budget_gives_the_in_memory_model(cleaned, tmp_path, monkeypatch):
    """The whole stage with features on disk and the head streamed (a budget of 0 MB) against the in-memory run."""
    memory = _train(cleaned, tmp_path / "memory", backbone="efficientnet-lite0", runtime="torch")
    assert memory.metrics["fit"] == {"streamed": False, "features_on_disk": False, "memory_budget_mb": 1024.0,
                                     "warm_start": False}
    monkeypatch.setenv("VISENT_TRAIN_MEMORY_MB", "0")
    disk = _train(cleaned, tmp_path / "disk", backbone="efficientnet-lite0", runtime="torch")
    fit = disk.metrics["fit"]
    assert fit["streamed"] and fit["features_on_disk"] and fit["memory_budget_mb"] == 0 and fit["passes"] > 0
    assert disk.metrics["C"] == memory.metrics["C"]
    assert disk.metrics["n_train_posts"] == memory.metrics["n_train_posts"]
    assert disk.metrics["validation"]["subsample"] == memory.metrics["n_train_posts"]
    rows = training_rows(cleaned)
    X, _ = memory.features(rows["path"], rows["sha256"])
    labels = np.array(rows["label"])
    _same_head(memory.head, disk.head, X, labels)
    assert disk.head.temperature_ == pytest.approx(memory.head.temperature_, rel=1e-3)
    assert not any((cleaned.root / "work" / "train").iterdir())


def test_inside_shared_indexes_new_feature_caches_read_only_the_shards_written_since(tmp_path, monkeypatch):
    """VisentModel.features makes a FeatureCache per call: while train embeds block by block, the caches of a root
    share one index, so the shards are indexed once, not once per block."""
    from visent.embed.cache import FeatureCache, shared_indexes

    rng = np.random.default_rng(0)
    vectors = {f"h{i}": rng.normal(size=4).astype(np.float32) for i in range(6)}
    FeatureCache(tmp_path).put_many("key", dict(list(vectors.items())[:3]))
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    with shared_indexes():
        first = FeatureCache(tmp_path)
        assert set(first.get_many("key", ["h0", "h1"])) == {"h0", "h1"}
        indexed = len(loads)  # the shard's hashes, then its features
        FeatureCache(tmp_path).put_many("key", dict(list(vectors.items())[3:]))  # written by another cache object
        second = FeatureCache(tmp_path)
        found = second.get_many("key", list(vectors))
        assert second._index is first._index
        assert all(np.array_equal(found[h], v) for h, v in vectors.items())
        assert len(loads) - indexed == 2  # the two shards' features: neither shard's hashes were read again
    outside = FeatureCache(tmp_path)
    assert outside._index is not first._index and set(outside.get_many("key", list(vectors))) == set(vectors)


def test_the_head_solutions_of_a_damaged_file_are_not_used_and_the_file_is_written_again(tmp_path):
    from visent.train.warm import load_warm, save_warm

    path = tmp_path / "work" / "head-solutions.npz"
    solution = ((0, 1, 2), 4), np.arange(12.0).reshape(3, 4), np.array([0.5, -0.5, 0.0])
    save_warm(path, "options", {1e-4: solution, ("final", 1e-4): solution})
    warm = load_warm(path, "options")
    assert set(warm) == {1e-4, ("final", 1e-4)} and warm[1e-4][0] == ((0, 1, 2), 4)
    assert np.array_equal(warm[("final", 1e-4)][1], solution[1])
    assert load_warm(path, "other options") == {}  # another training's: not used, nothing said
    assert load_warm(tmp_path / "none.npz", "options") == {}
    for damage in (path.read_bytes()[:100], b"not an npz file"):
        path.write_bytes(damage)
        with pytest.warns(RuntimeWarning, match="damaged.*start from scratch"):
            assert load_warm(path, "options") == {}
