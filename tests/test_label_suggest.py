"""visent label suggest: which images to label next, from a pool scored by the student; labelled images (and
copies of them) left out, unreadable ones listed, picks deterministic for a seed, uncertain, spread over the
predicted classes, and written as a CSV that visent adapt reads once filled in."""

from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_pipeline import loose_options, make_crawl, make_image
from visent.core.labels import CLASSES, read_labelled_images
from visent.core.store import Dataset
from visent.label import STRATEGIES, suggest, write_csv
from visent.label.suggest import badge_picks, diverse_picks, gradient_embeddings, margins
from visent.model import VisentModel


@pytest.fixture(scope="module")
def student() -> VisentModel:
    return VisentModel.load("default")


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """48 small generated images, warm and dark scenes in turn."""
    folder = tmp_path_factory.mktemp("pool")
    for i in range(48):
        make_image(folder / f"img{i:02d}.jpg", "positive" if i % 2 == 0 else "negative", seed=500 + i)
    return folder


def _labels_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


def test_strategies_are_registered():
    assert {"badge", "uncertainty", "entropy", "random"} <= set(STRATEGIES)
    with pytest.raises(KeyError, match="uncertainty"):
        STRATEGIES.create("nope")


@pytest.mark.slow
def test_labelled_images_and_renamed_copies_are_left_out(student, pool, tmp_path):
    labelled = _labels_csv(tmp_path / "done.csv", [(str(pool / "img00.jpg"), "positive"),
                                                   (str(pool / "img01.jpg"), "negative")])
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(pool / "img01.jpg", copies / "renamed.jpg")  # the same photo under another name
    shutil.copy(pool / "img03.jpg", copies / "twice.jpg")  # found twice in the pool
    result = suggest(student, [str(pool), str(copies)], n=100, labelled=[labelled])
    picked = {Path(row.path).name for row in result}
    assert not picked & {"img00.jpg", "img01.jpg", "renamed.jpg"}
    assert sorted(Path(p).name for p in result.excluded) == ["img00.jpg", "img01.jpg", "renamed.jpg"]
    assert [Path(p).name for p in result.duplicates] == ["twice.jpg"]
    assert len(result) == result.candidates == 48 - 2
    assert result.counts == {"pool": 50, "suggested": 46, "labelled": 3, "duplicates": 1, "unreadable": 0}


@pytest.mark.slow
def test_deterministic_for_a_seed_and_different_for_another(student, pool):
    for strategy in ("badge", "uncertainty", "entropy", "random"):
        first = suggest(student, pool, n=10, strategy=strategy, seed=1)
        again = suggest(student, pool, n=10, strategy=strategy, seed=1)
        assert [r.path for r in first] == [r.path for r in again], strategy
        assert [r.rank for r in first] == list(range(1, 11))
    assert [r.path for r in suggest(student, pool, n=10, strategy="random", seed=2)] != \
        [r.path for r in suggest(student, pool, n=10, strategy="random", seed=1)]


@pytest.mark.slow
def test_unreadable_images_are_listed_never_suggested(student, pool, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.jpg").write_text("not a photo at all\n")
    data = (pool / "img05.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(data[:len(data) // 2])
    make_image(bad / "fine.jpg", "positive", seed=9)
    listed = tmp_path / "list.txt"
    listed.write_text(f"{bad / 'notes.jpg'}\n{bad / 'cut.jpg'}\n{bad / 'gone.jpg'}\n{bad / 'fine.jpg'}\n")
    result = suggest(student, f"@{listed}", n=10)
    assert [Path(r.path).name for r in result] == ["fine.jpg"]
    reasons = {Path(path).name: reason for path, reason in result.skipped}
    assert reasons == {"notes.jpg": "not an image (text)", "cut.jpg": "truncated JPEG image",
                       "gone.jpg": "file not found"}
    assert result.counts["unreadable"] == 3


@pytest.mark.slow
def test_more_asked_than_the_pool_holds_gives_every_readable_image(student, pool, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    paths = [str(pool / f"img{i:02d}.jpg") for i in range(7)] + [str(tmp_path / "broken.jpg")]
    for strategy in STRATEGIES:
        result = suggest(student, paths, n=50, strategy=strategy)
        assert sorted(r.path for r in result) == sorted(paths[:7]), strategy
        assert len(result.skipped) == 1


@pytest.mark.slow
def test_uncertainty_picks_are_less_sure_than_random_ones(student, pool):
    uncertain = suggest(student, pool, n=12, strategy="uncertainty")
    drawn = [suggest(student, pool, n=12, strategy="random", seed=seed) for seed in range(5)]
    mean_random = np.mean([[r.margin for r in result] for result in drawn])
    assert np.mean([r.margin for r in uncertain]) < mean_random
    for row in uncertain:
        top = sorted(row.probabilities)
        assert row.margin == pytest.approx(top[-1] - top[-2]) and row.score == pytest.approx(1 - row.margin)
        assert row.predicted == CLASSES[int(np.argmax(row.probabilities))]
        assert row.why.startswith(f"margin {row.margin:.2f}, cluster ") and row.why.endswith(" of 12")


def test_the_turns_give_a_rare_predicted_class_its_share():
    rng = np.random.default_rng(0)
    n_pool = 200
    predicted = np.where(np.arange(n_pool) % 10 == 0, rng.integers(0, 2, n_pool), 2)  # 90% positive
    probs = np.full((n_pool, 3), 0.1)
    probs[np.arange(n_pool), predicted] = rng.uniform(0.45, 0.8, n_pool)
    probs /= probs.sum(1, keepdims=True)
    features = rng.normal(size=(n_pool, 8))
    scores = 1 - margins(probs)
    picks = diverse_picks(probs, features, 30, 0, scores, "margin", margins(probs))
    chosen = predicted[[i for i, _, _ in picks]]
    counts = np.bincount(chosen, minlength=3)
    available = np.bincount(predicted, minlength=3)
    assert available[0] < 10 and counts[0] == available[0]  # the rarest class: every one of its images
    assert counts.sum() == 30 and abs(counts[1] - counts[2]) <= 1  # the others share the rest in turn
    assert list(chosen[:3]) == [0, 1, 2]  # one of each in turn
    # one class: every cluster gives one image before any gives a second, the most uncertain of it
    positive = np.flatnonzero(predicted == 2)
    picks = diverse_picks(probs[positive], features[positive], 30, 0, scores[positive], "margin",
                          margins(probs[positive]))
    clusters = [why.split("cluster ")[1] for _, _, why in picks]
    assert len(set(clusters)) == 30 and all(why.endswith(" of 30") for _, _, why in picks)
    assert picks[0][0] == int(np.argmax(scores[positive]))


@pytest.mark.slow
def test_a_pool_predicted_mostly_positive_still_offers_the_rarer_classes(student, pool):
    features, _ = student.features(sorted(pool.glob("*.jpg")))
    logits = student.head.decision_function(features)
    gap = np.delete(logits, 2, axis=1).max(1) - logits[:, 2]  # what positive lacks to win, per image
    head = copy.deepcopy(student.head)
    head.intercept_ = head.intercept_ + np.array([0.0, 0.0, np.quantile(gap, 0.9) + 1e-6])
    biased = VisentModel(student.config, head, student.directory)
    result = suggest(biased, pool, n=12)
    everything = suggest(biased, pool, n=100)
    in_pool = {c: sum(r.predicted == c for r in everything) for c in CLASSES}
    assert in_pool["positive"] >= 0.85 * 48
    picked = {c: sum(r.predicted == c for r in result) for c in CLASSES}
    present = [c for c in CLASSES if in_pool[c]]
    for c in present:
        assert picked[c] >= min(in_pool[c], 12 // len(present)), (picked, in_pool)


@pytest.mark.slow
def test_a_dataset_directory_offers_its_kept_images(student, tmp_path):
    from visent.clean import clean
    from visent.ingest import ingest
    from visent.teach import teach

    ingest(make_crawl(tmp_path / "crawl", n_per_class=6), tmp_path / "ds")
    teach(tmp_path / "ds", teacher="vader")
    clean(tmp_path / "ds", thresholds=loose_options().thresholds)
    dataset = Dataset(tmp_path / "ds")
    posts = dataset.posts().to_pylist()
    kept = {str(dataset.image_path(p["image_file"])) for p in posts if p["clean_status"] == "kept"}
    assert 0 < len(kept) < len(posts)
    result = suggest(student, tmp_path / "ds", n=100)
    assert {r.path for r in result} == kept and result.pool == len(kept) and not result.skipped
    some = suggest(student, dataset, n=3, strategy="random")
    assert len(some) == 3 and {r.path for r in some} <= kept


def _fill_in(path: Path, labels: list[str]) -> None:
    """A user writes ``labels`` into the label column of a suggestions CSV, row by row."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row, label in zip(rows, labels):
        row["label"] = label
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_the_csv_is_filled_in_and_read_back_as_labels(student, pool, tmp_path):
    result = suggest(student, pool, n=5)
    out = write_csv(result, tmp_path / "to-label.csv")
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "predicted", "p_negative", "p_neutral", "p_positive", "score", "why"]
    assert all(row["label"] == "" for row in rows) and len(rows) == 5
    assert [row["predicted"] for row in rows] == [r.predicted for r in result]
    assert [row["path"] for row in rows] == [r.path for r in result]  # outside the CSV's folder: in full

    paths, labels, skipped = read_labelled_images(out)  # nothing filled in yet: every row is left out
    assert paths == [] and len(skipped) == 5 and all(line.endswith(": not labelled yet") for line in skipped)
    _fill_in(out, ["positive", "negative", "neutral", "", ""])  # a user fills in some of them
    paths, labels, skipped = read_labelled_images(out)
    assert paths == [r.path for r in result.rows[:3]] and labels == ["positive", "negative", "neutral"]
    assert len(skipped) == 2

    # a path under the CSV's folder is written relative to it, and read back from there
    beside = write_csv(result, pool.parent / "to-label-beside.csv")
    with beside.open(newline="") as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == [f"{pool.name}/{Path(r.path).name}" for r in result]
    _fill_in(beside, ["neutral"] * 5)
    assert [Path(p).resolve() for p in read_labelled_images(beside)[0]] == [Path(r.path).resolve() for r in result]

    # the labelled ones are not offered again
    again = suggest(student, pool, n=100, labelled=[out])
    assert len(again.excluded) == 3 and not {r.path for r in again} & set(paths)


@pytest.mark.slow
def test_the_commands_suggest_then_export_tasks_for_label_studio(pool, tmp_path):
    """`visent label suggest` writes the file to fill in and says what to run next; `visent label export` writes
    the Label Studio tasks and their labelling config."""
    import json

    from typer.testing import CliRunner

    from visent.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["label", "suggest", "default", str(pool), "--n", "4", "--out",
                                 str(tmp_path / "to-label.csv"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "first of 4 suggestions (uncertainty)" in output and "visent adapt default --labels" in output
    with (tmp_path / "to-label.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and all(row["label"] == "" for row in rows)
    result = runner.invoke(app, ["label", "export", "default", *[row["path"] for row in rows], "--out",
                                 str(tmp_path / "tasks.json")])
    assert result.exit_code == 0, result.output
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert len(tasks) == 4 and all(task["predictions"][0]["result"][0]["from_name"] == "sentiment" for task in tasks)
    assert (tmp_path / "tasks.label_config.xml").is_file()


def _rare_class_pool(n_pool: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities of a pool the student calls 90% positive, its predicted classes and 8-wide features."""
    rng = np.random.default_rng(seed)
    predicted = np.where(np.arange(n_pool) % 10 == 0, rng.integers(0, 2, n_pool), 2)
    probs = np.full((n_pool, 3), 0.1)
    probs[np.arange(n_pool), predicted] = rng.uniform(0.45, 0.8, n_pool)
    return probs / probs.sum(1, keepdims=True), predicted, rng.normal(size=(n_pool, 8))


def test_badge_draws_doubtful_images_unlike_the_picks_so_far():
    probs, predicted, features = _rare_class_pool()
    picks = badge_picks(probs, features, 30, seed=0)
    chosen = [i for i, _, _ in picks]
    assert len(set(chosen)) == 30 and chosen == [i for i, _, _ in badge_picks(probs, features, 30, seed=0)]
    assert chosen != [i for i, _, _ in badge_picks(probs, features, 30, seed=1)]
    g = gradient_embeddings(probs, features, 0)
    length = np.linalg.norm(g, axis=1)
    assert chosen[0] == int(np.argmax(length)) and picks[0][1] == pytest.approx(length[chosen[0]])
    assert "the longest gradient" in picks[0][2] and all("k-means++ draw" in why for _, _, why in picks[1:])
    assert margins(probs[chosen]).mean() < margins(probs).mean()


def test_badge_spreads_its_picks_over_distinct_groups_of_images():
    """Four tight groups of images, equally doubtful: the first four picks come one from each group."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(4, 32)) * 10
    features = np.repeat(centres, 25, axis=0) + rng.normal(size=(100, 32)) * 0.1
    probs = np.tile([0.3, 0.3, 0.4], (100, 1)) + rng.uniform(0, 0.01, (100, 3))
    probs /= probs.sum(axis=1, keepdims=True)
    for seed in range(5):
        groups = [i // 25 for i, _, _ in badge_picks(probs, features, 4, seed)]
        assert sorted(groups) == [0, 1, 2, 3], seed


def test_badge_takes_a_sure_image_once_then_the_doubtful_ones():
    """Images the student is sure of have no gradient: one of them stands for all (their distance to it is 0),
    so the other picks are the images it doubts."""
    rng = np.random.default_rng(3)
    sure = np.eye(3)[np.full(60, 2)]
    doubtful = rng.dirichlet([2, 2, 2], size=20)
    probs = np.vstack([sure, doubtful])
    features = rng.normal(size=(80, 16))
    chosen = [i for i, _, _ in badge_picks(probs, features, 15, seed=0)]
    assert sum(i < 60 for i in chosen) <= 1 and len(chosen) == 15
    # every image sure: nothing is unlike the first pick, the rest follow in pool order, and say so
    picks = badge_picks(sure, features[:60], 5, seed=0)
    assert [i for i, _, _ in picks] == [0, 1, 2, 3, 4]
    assert all("none unlike the picks" in why for _, _, why in picks[1:])


def test_badge_on_a_tiny_or_narrow_pool():
    probs, _, features = _rare_class_pool(n_pool=5)
    assert sorted(i for i, _, _ in badge_picks(probs, features[:, :2], 50, seed=0)) == [0, 1, 2, 3, 4]
    assert [i for i, _, _ in badge_picks(probs[:1], features[:1], 3, seed=0)] == [0]
    assert badge_picks(probs, features, 0, seed=0) == []
