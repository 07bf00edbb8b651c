"""End to end on 400 real MVSA posts, labels used for evaluation only (skips without ../shared/data)."""

from __future__ import annotations

import csv

import pytest

from conftest import MVSA, needs_mvsa
from visent import Dataset
from visent.build import BuildOptions, build
from visent.evaluate import evaluate
from visent.ingest.readers import read_mvsa_labels


@pytest.mark.slow
@needs_mvsa
def test_build_on_1200_real_posts_and_evaluate_on_the_next_400(tmp_path):
    labels = read_mvsa_labels(MVSA / "labelResultAll.txt")
    ids = sorted((p.stem for p in (MVSA / "data").glob("*.jpg")), key=int)
    train_ids, test_ids = set(ids[:1200]), ids[1200:1600]
    options = BuildOptions(thresholds={"negative": 0.5, "neutral": 0.7, "positive": 0.5}, ingest={"ids": train_ids})
    summary = build(MVSA, tmp_path / "model", options=options)

    assert summary["ingest"]["posts"] == 1200
    clean_counts = summary["clean"]
    assert clean_counts["posts"] == 1200 and clean_counts["kept"] >= 240
    store = Dataset(tmp_path / "model-dataset")
    assert store.read_table("human_labels").num_rows == 1200  # kept for evaluation, in their own table
    reasons = [r["clean_reason"] for r in store.read_table("clean").to_pylist() if r["clean_status"] == "dropped"]
    assert reasons and all(reasons)  # every dropped row says why

    bench = tmp_path / "heldout.csv"
    with bench.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for post_id in test_ids:
            writer.writerow([MVSA / "data" / f"{post_id}.jpg", labels[post_id][1]])
    report = evaluate(tmp_path / "model", bench)
    assert report.n_scored == 400
    assert report.binary.n == sum(labels[i][1] != "neutral" for i in test_ids)
    # it beats chance on unseen posts, beyond doubt: the whole 95% interval lies above 0.5. 400 posts were too few
    # for that (a student near chance: 0.49 on one machine, 0.55 on another); 1,200 gave 0.630 [0.572, 0.685] on
    # AMD EPYC (Zen 4)
    low, _ = report.binary.balanced_accuracy_ci95
    assert low > 0.5, report.binary
