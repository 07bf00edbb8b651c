"""visent adapt: the student's head fitted to human labels from the student, classes without labels kept, bad
rows listed, the new model directory complete and saying what it was adapted to."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from visent.cli import app
from visent.core.labels import CLASS_INDEX
from visent.core.numeric import log_softmax
from visent.model import VisentModel
from visent.model.adapt import adapt_head
from visent.model.head import StudentHead


def _head_and_blobs(n: int = 240, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(0, 0.8, (3, d))[y] + rng.normal(size=(n, d))  # overlapping classes
    noisy = np.where(rng.random(n) < 0.6, rng.integers(0, 3, n), y)  # a student taught by a noisy teacher
    head = StudentHead(C=0.01).fit(X, noisy)
    head.temperature_ = 1.7
    return head, X, y


def _conditional_nll(head, X, y, cols):
    logits = head.decision_function(X)[:, cols] / head.temperature_
    return -float(log_softmax(logits)[np.arange(len(y)), np.searchsorted(cols, y)].mean())


def test_adapting_fits_the_labels_from_the_students_calibrated_weights():
    head, X, y = _head_and_blobs()
    adapted, info = adapt_head(head, X, y, seed=0)
    assert adapted is not head and head.temperature_ == 1.7 and adapted.temperature_ == 1.0
    assert info["labels"] == len(y) and info["C_chosen_by"].startswith("3-fold")
    assert sum(info["per_class"].values()) == len(y)
    # the fit starts at the student and lowers the penalised loss, so the labels' likelihood cannot get worse
    assert _conditional_nll(adapted, X, y, [0, 1, 2]) < _conditional_nll(head, X, y, [0, 1, 2])
    assert (adapted.predict_proba(X).argmax(1) == y).mean() > (head.predict_proba(X).argmax(1) == y).mean()


def test_labels_that_tell_nothing_keep_the_student_and_informative_ones_move_it():
    from visent.model.adapt import C_GRID, choose_C

    # a student that already knows what the labels say: a few labels can only add noise, so it is kept
    rng = np.random.default_rng(3)
    y_all = rng.integers(0, 3, 3000)
    X_all = rng.normal(0, 0.8, (3, 6))[y_all] + rng.normal(size=(3000, 6))
    right = StudentHead(C=1.0).fit(X_all, y_all)
    for draw in range(20):  # the lowest CV loss alone moved it in 3 of these 20 draws of 30 labels
        pick = np.random.default_rng(100 + draw).choice(len(y_all), 30, replace=False)
        Z = (X_all[pick] - right.mean_) / right.scale_
        C, how = choose_C(Z, y_all[pick], right.coef_, right.intercept_, seed=draw)
        assert C == C_GRID[0] == 0.0 and "one-standard-error" in how, draw
    # a student taught by a noisy teacher, and many labels the features predict well: it is moved
    head, X, y = _head_and_blobs(n=300)
    Z = (X - head.mean_) / head.scale_
    C, _ = choose_C(Z, y, head.coef_ / head.temperature_, head.intercept_ / head.temperature_, seed=0)
    assert C > 0.0


def test_a_class_without_labels_keeps_the_students_weights():
    head, X, y = _head_and_blobs()
    binary = y != CLASS_INDEX["neutral"]
    adapted, info = adapt_head(head, X[binary], y[binary], seed=0)
    neutral = CLASS_INDEX["neutral"]
    np.testing.assert_allclose(adapted.coef_[neutral], head.coef_[neutral] / head.temperature_)
    assert adapted.intercept_[neutral] == pytest.approx(head.intercept_[neutral] / head.temperature_)
    assert info["classes_fitted"] == ["negative", "positive"] and info["per_class"]["neutral"] == 0
    cols = [CLASS_INDEX["negative"], CLASS_INDEX["positive"]]
    assert _conditional_nll(adapted, X[binary], y[binary], cols) < _conditional_nll(head, X[binary], y[binary], cols)
    with pytest.raises(ValueError, match="at least two classes"):
        adapt_head(head, X[y == 0], y[y == 0])


def test_visent_adapt_writes_a_complete_model_and_lists_bad_rows(tmp_path, photos):
    rows = ["path,label"] + [f"{p},{'1' if i % 2 else '0'}" for i, p in enumerate(photos)]
    (tmp_path / "page.jpg").write_text("<!doctype html><html><body>not found</body></html>")
    rows += [f"{tmp_path / 'missing.jpg'},1", f"{photos[0]},maybe", f"{tmp_path / 'page.jpg'},0"]
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    out = tmp_path / "adapted"
    result = CliRunner().invoke(app, ["adapt", "default", "--labels", str(labels), "--out", str(out)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "rows left out" in output and "unknown label 'maybe'" in output and "not an image (HTML)" in output

    student = VisentModel.load("default")
    assert {p.name for p in out.iterdir()} >= {"config.json", "head.npz", "metrics.json", "MODEL_CARD.md",
                                                *student.carried_files()}
    record = json.loads((out / "metrics.json").read_text())["adaptation"]
    assert record["labels"] == len(photos) and record["per_class"] == {"negative": 8, "neutral": 0, "positive": 8}
    assert record["source"] == "labels.csv" and record["n_skipped"] == 3
    assert any("missing.jpg" in s for s in record["skipped"]) and any("page.jpg" in s for s in record["skipped"])
    card = (out / "MODEL_CARD.md").read_text()
    assert "Adapted to human labels" in card and "16 human image labels" in card and "labels.csv" in card

    adapted = VisentModel.load(out)
    probs, _ = adapted.predict_proba(photos)
    before, _ = student.predict_proba(photos)
    assert np.isfinite(probs).all() and not np.allclose(probs, before)
    neutral = CLASS_INDEX["neutral"]
    np.testing.assert_allclose(adapted.head.coef_[neutral], student.head.coef_[neutral] / student.head.temperature_)

    missing = CliRunner().invoke(app, ["adapt", "default", "--labels", str(tmp_path / "none.csv"), "--out", str(out)])
    assert missing.exit_code != 0 and "labels file not found" in missing.output
