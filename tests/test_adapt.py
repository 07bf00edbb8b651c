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


@pytest.mark.slow
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
    assert "what the labels bought, by" in output and "before (the student)" in output and "temperature" in output

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


# What the labels bought: before / after by cross-validation over the labels, the temperature decision, warnings

def _labelled_scenes(directory, n: int = 24, neutral: int = 0):
    """Generated scenes (bright warm or dark blue) labelled by their mood, which the shipped student gets wrong:
    it finds the bright warm ones more negative than positive. The first ``neutral`` positive scenes are labelled
    neutral instead."""
    from test_pipeline import make_image

    paths, labels = [], []
    for i in range(n):
        mood = "positive" if i % 2 == 0 else "negative"
        make_image(directory / f"scene{i}.jpg", mood, seed=i)
        paths.append(directory / f"scene{i}.jpg")
        labels.append("neutral" if mood == "positive" and i // 2 < neutral else mood)
    return paths, labels


def _overconfident_case():
    """A weak student (taught by a very noisy teacher) and 60 labels that a few of 200 features predict well:
    the head adapted on them is right far more often than it is confident, so its probabilities are less
    calibrated than the student's."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    centers = rng.normal(0, 1, (3, 200)) * (np.arange(200) < 3) * 2.0
    X = centers[y] + rng.normal(size=(60, 200))
    y_crawl = rng.integers(0, 3, 600)
    X_crawl = centers[y_crawl] + rng.normal(size=(600, 200))
    teacher = np.where(rng.random(600) < 0.9, rng.integers(0, 3, 600), y_crawl)
    return StudentHead(C=0.001).fit(X_crawl, teacher), X, y


def _in_unit_interval(figures):
    return all(0.0 <= figures[name] <= 1.0 for name in ("balanced_accuracy", "ece"))


@pytest.mark.slow
def test_labels_that_correct_the_student_show_a_higher_balanced_accuracy_after(tmp_path):
    paths, labels = _labelled_scenes(tmp_path)
    student = VisentModel.load("default")
    record = student.adapt(paths, labels, seed=0).metrics["adaptation"]
    assert record["cross_validation"]["folds"] == 5 and record["cross_validation"]["labels"] == len(paths)
    assert _in_unit_interval(record["before"]) and _in_unit_interval(record["after"])
    assert record["before"]["balanced_accuracy"] < 0.5  # the student is wrong on the bright scenes
    assert record["after"]["balanced_accuracy"] > record["before"]["balanced_accuracy"] + 0.3


def test_worse_calibration_warns_and_a_temperature_refit_on_the_labels_lowers_the_out_of_fold_ece():
    head, X, y = _overconfident_case()
    adapted, info = adapt_head(head, X, y, seed=0, assess=True)
    plain, plain_info = adapt_head(head, X, y, seed=0)
    assert "before" not in plain_info and plain.temperature_ == 1.0  # without assess: the head of before
    without, with_t = info["temperature"]["out_of_fold_without"], info["temperature"]["out_of_fold_with"]
    assert without["ece"] > info["before"]["ece"] + 0.02
    assert any("less calibrated" in w and f"{info['before']['ece']:.3f}" in w for w in info["warnings"])
    assert info["temperature"]["refit"] and with_t["ece"] < without["ece"] and with_t["nll"] < without["nll"]
    assert info["after"] == with_t and info["temperature"]["decision"].startswith("refit")
    # the refit changes the confidence only: same weights, same decisions
    assert adapted.temperature_ == info["temperature"]["value"] == info["temperature"]["fitted"] != 1.0
    np.testing.assert_array_equal(adapted.coef_, plain.coef_)
    np.testing.assert_array_equal(adapted.predict_proba(X).argmax(1), plain.predict_proba(X).argmax(1))
    assert not np.allclose(adapted.predict_proba(X), plain.predict_proba(X))


def test_without_a_refit_the_adapted_head_is_the_one_adapt_always_made():
    # a student already calibrated on what the labels say: a temperature fitted on 60 labels does not help
    rng = np.random.default_rng(3)
    y_all = rng.integers(0, 3, 3000)
    X_all = rng.normal(0, 0.8, (3, 6))[y_all] + rng.normal(size=(3000, 6))
    head = StudentHead(C=1.0).fit(X_all, y_all)
    pick = np.random.default_rng(100).choice(len(y_all), 60, replace=False)
    adapted, info = adapt_head(head, X_all[pick], y_all[pick], seed=0, assess=True)
    plain, _ = adapt_head(head, X_all[pick], y_all[pick], seed=0)
    assert not info["temperature"]["refit"] and "not refit" in info["temperature"]["decision"]
    assert adapted.temperature_ == 1.0 == info["temperature"]["value"]
    np.testing.assert_array_equal(adapted.coef_, plain.coef_)
    np.testing.assert_array_equal(adapted.intercept_, plain.intercept_)
    assert info["after"] == info["temperature"]["out_of_fold_without"] and info["warnings"] == []
    # deterministic for a seed; another seed draws other folds
    assert adapt_head(head, X_all[pick], y_all[pick], seed=0, assess=True)[1] == info
    assert adapt_head(head, X_all[pick], y_all[pick], seed=1, assess=True)[1]["after"] != info["after"]


def test_a_class_with_one_label_gives_no_comparison_and_says_why():
    head, X, y = _head_and_blobs()
    keep = np.concatenate([np.flatnonzero(y == 0)[:1], np.flatnonzero(y != 0)])
    adapted, info = adapt_head(head, X[keep], y[keep], seed=0, assess=True)
    assert info["cross_validation"]["folds"] == 0 and info["after"] is None and "negative" in info["warnings"][0]
    assert _in_unit_interval(info["before"]) and adapted.temperature_ == 1.0 and not info["temperature"]["refit"]


@pytest.mark.slow
def test_visent_adapt_records_before_and_after_and_the_card_states_them(tmp_path):
    from visent.train.adapt import adapt_model

    paths, labels = _labelled_scenes(tmp_path, neutral=2)  # 2 neutral labels: 2 folds
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{p.name},{label}\n" for p, label in zip(paths, labels)))
    record = adapt_model("default", csv, tmp_path / "adapted")
    folds = record["cross_validation"]
    assert folds["folds"] == 2 and "neutral has fewer than 5 labels" in folds["how"]
    assert _in_unit_interval(record["before"]) and _in_unit_interval(record["after"])
    assert isinstance(record["warnings"], list) and "decision" in record["temperature"]
    saved = json.loads((tmp_path / "adapted" / "metrics.json").read_text())["adaptation"]
    assert saved["before"] == record["before"] and saved["temperature"] == record["temperature"]
    card = " ".join((tmp_path / "adapted" / "MODEL_CARD.md").read_text().split())
    assert "What the labels bought" in card and "2-fold stratified cross-validation over the 24 labels" in card
    assert f"| before (the student) | {record['before']['balanced_accuracy']:.3f} | {record['before']['ece']:.3f} |" \
        in card
    after = f"| {record['after']['balanced_accuracy']:.3f} | {record['after']['ece']:.3f} |"
    assert f"| after (adapted, T = {record['temperature']['value']:.3g}) {after}" in card \
        if record["temperature"]["refit"] else f"| after (adapted) {after}" in card
    assert "Temperature: " + record["temperature"]["decision"] in card
    adapted = VisentModel.load(tmp_path / "adapted")
    assert adapted.head.temperature_ == record["temperature"]["value"]
