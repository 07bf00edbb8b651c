"""The benchmark readers of the seeds' benchmarks, each on a small self-made copy of its layout, and the detection
of a bare path's kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from visent.evaluate import BENCHMARKS, BenchmarkError, load_benchmark
from visent.evaluate.benchmarks import detect_kind

from conftest import SHARED_DATA


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff")  # readers do not open images
    return path


def test_every_seed_benchmark_is_registered():
    assert {"twitter-i", "twitter-ii", "fi", "emotionroi", "mvsa", "csv", "folders"} <= set(BENCHMARKS)


def test_twitter_i_reads_the_three_agreement_subsets_side_by_side(tmp_path):
    root = tmp_path / "Twitter-I"
    for name in ("1.jpg", "2.jpg", "3.jpg", "4.jpg"):
        _touch(root / "images" / name)
    (root / "ground_truth").mkdir()
    (root / "ground_truth" / "twitter_three_agrees.txt").write_text("1.jpg 1\n2.jpg 0\n3.jpg 1\n4.jpg 0\nbad line\n")
    (root / "ground_truth" / "twitter_four_agrees.txt").write_text("1.jpg 1\n2.jpg 0\n3.jpg 1\n")
    (root / "ground_truth" / "twitter_five_agrees.txt").write_text("1.jpg 1\n2.jpg 1\n")
    bench = load_benchmark(root)
    assert bench.kind == "twitter-i" and detect_kind(root) == "twitter-i"
    assert [Path(p).name for p in bench.paths] == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    assert bench.labels == ["positive", "negative", "positive", "negative"]  # 1 = positive
    assert list(bench.subsets) == ["5-agree", "4-agree", "3-agree"]
    assert bench.subsets == {"5-agree": [0, 1], "4-agree": [0, 1, 2], "3-agree": [0, 1, 2, 3]}
    assert any("line 5" in s and "bad line" in s for s in bench.skipped)
    assert any("2.jpg is positive here but negative" in s for s in bench.skipped)  # a conflict is named, not hidden
    assert Path(bench.paths[0]).parent == root / "images"
    with pytest.raises(BenchmarkError, match="ground_truth/twitter_five_agrees.txt"):
        load_benchmark(f"twitter-i={tmp_path}")


def test_twitter_i_subsets_take_campos_cross_validation_splits_when_they_are_beside_the_ground_truth(tmp_path):
    root = tmp_path / "Twitter-I"
    names = [f"{i}.jpg" for i in range(6)]
    for name in names:
        _touch(root / "images" / name)
    truth = root / "ground_truth"
    truth.mkdir()
    (truth / "twitter_three_agrees.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))
    (truth / "twitter_four_agrees.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names[:4])))
    (truth / "twitter_five_agrees.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names[:4])))
    for k, members in enumerate([["2.jpg", "3.jpg"], ["1.jpg", "0.jpg"]], start=1):  # the 5-agree splits
        (truth / "five_agrees" / f"test{k}").mkdir(parents=True)
        (truth / "five_agrees" / f"test{k}" / "test.txt").write_text("".join(f"{m} 1\n" for m in members))
        (truth / "five_agrees" / f"test{k}" / "train.txt").write_text("")
    (truth / "four_agrees" / "test1").mkdir(parents=True)  # splits that leave images out are not used
    (truth / "four_agrees" / "test1" / "test.txt").write_text("0.jpg 0\n1.jpg 1\n")
    bench = load_benchmark(root)
    assert bench.subsets["5-agree"] == [0, 1, 2, 3] and bench.subset_folds["5-agree"] == [1, 1, 0, 0]
    assert "4-agree" not in bench.subset_folds and "3-agree" not in bench.subset_folds
    assert any("2 of the 4-agree subset's images are in no test<k>/test.txt" in s for s in bench.skipped)


def test_twitter_ii_uses_only_ids_with_an_image_and_its_partitions_are_the_folds(tmp_path):
    root = tmp_path / "twitter-ii"
    _touch(root / "partition1" / "1.jpg")
    _touch(root / "partition1" / "4.jpg")
    _touch(root / "partition2" / "2.jpg")
    (root / "partition2" / "2_hashtag.txt").write_text("<meta> post text </meta>")
    _touch(root / "partition3" / "7.jpg")
    (root / "groundTruthLabel.txt").write_text("Image\tSentiment\n1.jpg\tpositive\n2.jpg\tnegative\n3.jpg\tpositive\n"
                                               "4.jpg\tnegative\n7.jpg\tpositive\n8.jpg\tweird\n")
    bench = load_benchmark(root)
    assert bench.kind == "twitter-ii"
    assert [Path(p).name for p in bench.paths] == ["1.jpg", "2.jpg", "4.jpg", "7.jpg"]
    assert bench.labels == ["positive", "negative", "negative", "positive"]
    assert bench.folds == [0, 1, 0, 2]
    assert any("1 labelled ids have no image" in s for s in bench.skipped)  # 3.jpg
    assert any("line 7" in s for s in bench.skipped)  # 8.jpg's unknown label


@pytest.mark.parametrize("kind, emotions, expected", [
    ("fi", {"amusement": 2, "awe": 1, "fear": 1, "sadness": 1}, ["positive"] * 3 + ["negative"] * 2),
    ("emotionroi", {"joy": 1, "surprise": 1, "anger": 2}, ["negative"] * 2 + ["positive"] * 2),
])
def test_emotion_benchmarks_map_emotions_to_polarity_from_folders_or_csv(tmp_path, kind, emotions, expected):
    root = tmp_path / kind / "images"
    rows = ["path,emotion"]
    for emotion, count in emotions.items():
        for i in range(count):
            _touch(root / emotion / f"{emotion}_{i}.jpg")
            rows.append(f"images/{emotion}/{emotion}_{i}.jpg,{emotion}")
    (root / "README").write_text("not an image")
    from_folders = load_benchmark(tmp_path / kind)
    assert from_folders.kind == kind and sorted(from_folders.labels) == sorted(expected)
    assert all(Path(p).exists() for p in from_folders.paths)
    table = tmp_path / kind / "labels.csv"
    table.write_text("\n".join(rows + ["images/x.jpg,contempt"]) + "\n")
    from_csv = load_benchmark(f"{kind}={table}")
    assert sorted(from_csv.labels) == sorted(expected) and sorted(from_csv.paths) == sorted(from_folders.paths)
    assert any("contempt" in s for s in from_csv.skipped)
    table.write_text("\n".join(rows) + "\n")
    assert detect_kind(table) == kind  # a CSV of emotions is recognised by its labels


@pytest.mark.parametrize("kind, rows, expected", [
    # T4SA 2.0's copies: path,class with the emotion as the folder, class numbers (FI: 0/2, EmotionROI: 0/1), and
    # the paths relative to images/ beside the CSV
    ("fi", ["amusement/amusement_1.jpg,2", "awe/awe_2.jpg,2", "fear/fear_3.jpg,0"],
     ["positive", "positive", "negative"]),
    ("emotionroi", ["sadness/232.jpg,0", "surprise/232.jpg,1", "joy/233.jpg,1", "anger/233.jpg,0"],
     ["negative", "positive", "positive", "negative"]),
])
def test_emotion_csvs_as_t4sa_2_ships_them_read_and_are_detected(tmp_path, kind, rows, expected):
    for row in rows:
        _touch(tmp_path / "images" / row.split(",")[0])
    table = tmp_path / f"{kind}_complete.csv"
    table.write_text("\n".join(["path,class", *rows, "elsewhere.jpg,1"]) + "\n")
    assert detect_kind(table) == kind
    bench = load_benchmark(table)
    assert bench.kind == kind and bench.labels == expected
    assert [Path(p) for p in bench.paths] == [tmp_path / "images" / r.split(",")[0] for r in rows]
    assert any(f"row {len(rows) + 2}: emotion '1' is not one of" in s for s in bench.skipped)  # no emotion folder


def test_class_folders_and_csv_still_read(tmp_path):
    for label, names in {"positive": ["a.jpg", "b.png"], "negative": ["c.jpg"], "misc": ["d.jpg"]}.items():
        for name in names:
            _touch(tmp_path / "folders" / label / name)
    bench = load_benchmark(tmp_path / "folders")
    assert bench.kind == "folders" and sorted(bench.labels) == ["negative", "positive", "positive"]
    assert any("misc" in s for s in bench.skipped)
    (tmp_path / "b.csv").write_text("path,label\nx.jpg,1\ny.jpg,0\n")
    assert load_benchmark(tmp_path / "b.csv").kind == "csv"


@pytest.mark.skipif(not (SHARED_DATA / "twitter-ii").is_dir(), reason="needs ../shared/data/twitter-ii")
def test_the_shared_twitter_ii_copy_reads_as_published():
    bench = load_benchmark(SHARED_DATA / "twitter-ii")
    assert len(bench.paths) == 603 and bench.labels.count("positive") == 470
    assert sorted(set(bench.folds)) == [0, 1, 2, 3, 4]


def test_published_rows_are_cited_and_match_registered_benchmarks():
    from visent.evaluate import PUBLISHED, published_for

    assert PUBLISHED, "the table ships with at least one published figure"
    for row in PUBLISHED:
        assert row.benchmark in BENCHMARKS and 0 < row.value <= 1
        assert row.citation and row.doi.startswith("10.") and row.protocol and row.model
    subset_rows = [r for r in PUBLISHED if r.benchmark == "twitter-i" and r.subset]
    assert published_for("twitter-i") == published_for("twitter-i", None)
    assert len(published_for("twitter-i", ["5-agree", "4-agree", "3-agree"])) == len(subset_rows)
    assert published_for("twitter-i", ["no-such-subset"]) == [] and published_for("csv") == []


@pytest.mark.slow
def test_evaluate_and_report_show_subsets_and_the_published_figures_beside_them(tmp_path, photos):
    import json
    import re

    from typer.testing import CliRunner

    from visent.cli import app
    from visent.report import render_report

    root = tmp_path / "Twitter-I"
    (root / "images").mkdir(parents=True)
    lines = []
    for i, photo in enumerate(photos):
        (root / "images" / f"{i}.jpg").write_bytes(photo.read_bytes())
        lines.append(f"{i}.jpg {i % 2}")
    (root / "ground_truth").mkdir()
    (root / "ground_truth" / "twitter_three_agrees.txt").write_text("\n".join(lines) + "\n")
    (root / "ground_truth" / "twitter_four_agrees.txt").write_text("\n".join(lines[:12]) + "\n")
    (root / "ground_truth" / "twitter_five_agrees.txt").write_text("\n".join(lines[:3]) + "\n")
    for k in range(3):  # Campos et al.'s splits of the 4-agree subset: its k-fold uses them
        split = root / "ground_truth" / "four_agrees" / f"test{k + 1}"
        split.mkdir(parents=True)
        (split / "test.txt").write_text("\n".join(lines[k:12:3]) + "\n")
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["evaluate", "default", "--benchmark", f"twitter-i={root}", "--out", str(out),
                                      "--folds", "3", "--finetune"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {name: figures["n"] for name, figures in report["subsets"].items()} == {"5-agree": 3, "4-agree": 12,
                                                                                    "3-agree": 16}
    # each subset cross-validated on its own images, as the literature does; one with too few images says why
    assert report["kfold"]["n"] == 16
    for name, n, split in (("4-agree", 12, "the benchmark's own folds"), ("3-agree", 16, "stratified, seed 0")):
        kfold = report["subsets"][name]["kfold"]
        assert kfold["n"] == n and kfold["folds"] == 3 and kfold["split"] == split
        assert set(kfold["summary"]) == {"student", "from_student", "from_imagenet"}
    assert report["subsets"]["3-agree"].get("kfold_is_all") and "kfold_is_all" not in report["subsets"]["4-agree"]
    assert "kfold" not in report["subsets"]["5-agree"] and "at least 2 images of every class" in report["subsets"]["5-agree"]["kfold_skipped"]
    published = report["published"]
    assert published and all(row["benchmark"] == "twitter-i" for row in published)
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "published figures for this benchmark" in output and "not re-measured" in output
    for row in published:
        assert f"{row['subset']}: {row['metric']} {row['value']:.3f}" in output and f"doi:{row['doi']}" in output

    page = render_report("default", evaluation=out, top=0)
    section = dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', page, re.S))["evaluation"]
    assert "Published figures for this benchmark" in section and "not re-measured by visent" in section
    published_table = re.search(r'<table class="published">(.*?)</table>', section, re.S).group(1)
    assert all(row["doi"] in published_table and f"{row['value']:.3f}" in published_table for row in published)
    subsets_table = re.search(r'<table class="subsets">(.*?)</table>', section, re.S).group(1)
    assert all(name in subsets_table for name in ("5-agree", "4-agree", "3-agree"))
    low, high = report["subsets"]["4-agree"]["binary"]["accuracy_ci95"]
    assert f"{low:.3f}–{high:.3f}" in subsets_table
    assert "3-fold protocol, 4-agree subset" in section and "3-agree subset" not in section  # 3-agree: every image
    assert "4-agree subset's 12 images" in output and "no k-fold protocol on the 5-agree subset" in output
    assert "the 3-agree subset holds every image" in output

    # a benchmark with no published figures gets no such table
    del report["published"]
    assert "Published figures" not in render_report("default", evaluation=report, top=0)


def test_visent_benchmarks_lists_every_reader_and_what_is_published_for_it():
    from typer.testing import CliRunner

    from visent.cli import app
    from visent.evaluate import published_for

    result = CliRunner().invoke(app, ["benchmarks"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    for name in BENCHMARKS:
        assert f"{name} " in output
    n = len(published_for("twitter-i"))
    assert f"{n} published figure" in output and "ground_truth/ as twitter-i" in output
