"""End to end on a small self-made crawl: build → predict → evaluate, through the CLI and the Python API."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from visent import Dataset
from visent.build import BuildOptions, build
from visent.cli import app
from visent.model import VisentModel

POSITIVE_TEXTS = ["I love this, what a wonderful happy day!", "Great news, so proud and happy :)",
                  "Best day ever, amazing and beautiful!", "Wonderful friends, I love you all <3"]
NEGATIVE_TEXTS = ["This is terrible, I hate it so much.", "Awful news, so sad and angry :(",
                  "Worst day ever, horrible and ugly.", "Disgusting, I am furious and miserable."]

runner = CliRunner()


def make_image(path: Path, mood: str, seed: int) -> None:
    """Bright warm scenes for positive posts, dark blue ones for negative, each with its own random shapes."""
    rng = random.Random(seed)
    background = (rng.randint(220, 255), rng.randint(150, 200), rng.randint(0, 60)) if mood == "positive" \
        else (rng.randint(0, 30), rng.randint(0, 40), rng.randint(60, 120))
    image = Image.new("RGB", (96, 96), background)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = rng.randint(0, 96), rng.randint(0, 96), rng.randint(5, 25)
        shade = tuple(min(255, max(0, c + rng.randint(-60, 60))) for c in background)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=shade)
    noise = np.random.default_rng(seed).integers(-25, 25, size=(96, 96, 3))
    array = np.clip(np.asarray(image, dtype=int) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(array).save(path, quality=90)


def make_crawl(root: Path, n_per_class: int = 24) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(2 * n_per_class):
        mood = "positive" if i % 2 == 0 else "negative"
        texts = POSITIVE_TEXTS if mood == "positive" else NEGATIVE_TEXTS
        make_image(root / f"{i}.jpg", mood, seed=i)
        lines.append(json.dumps({"id": str(i), "text": texts[i // 2 % len(texts)], "image": f"{i}.jpg"}))
    lines.append("{not json")
    lines.append(json.dumps({"id": "broken-image", "text": "I love it", "image": "missing.jpg"}))
    (root / "posts.jsonl").write_text("\n".join(lines) + "\n")
    return root / "posts.jsonl"


def make_mvsa(root: Path, n_per_class: int = 15) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    labels = ["ID\ttext,image"]
    for i in range(1, 2 * n_per_class + 1):
        mood = "positive" if i % 2 else "negative"
        texts = POSITIVE_TEXTS if mood == "positive" else NEGATIVE_TEXTS
        make_image(data / f"{i}.jpg", mood, seed=100 + i)
        (data / f"{i}.txt").write_text(texts[i % len(texts)])
        labels.append(f"{i}\t{mood},{mood}")
    (root / "labelResultAll.txt").write_text("\n".join(labels) + "\n")
    return root


def loose_options(**kwargs) -> BuildOptions:
    """Tiny crawls: keep every confident-enough post."""
    return BuildOptions(thresholds={"negative": 0.4, "neutral": 0.9, "positive": 0.4}, **kwargs)


def cleaned_dataset(root: Path, n_per_class: int) -> Dataset:
    """A crawl of ``n_per_class`` posts per class under ``root``, ingested, taught (default teacher) and cleaned
    with :func:`loose_options`' thresholds into ``root / "ds"``."""
    from visent.clean import clean
    from visent.ingest import ingest
    from visent.teach import teach

    ingest(make_crawl(root / "crawl", n_per_class=n_per_class), root / "ds")
    teach(root / "ds")
    clean(root / "ds", thresholds=loose_options().thresholds)
    return Dataset(root / "ds")


@pytest.mark.slow
def test_build_predict_evaluate_through_the_cli(tmp_path):
    crawl = make_crawl(tmp_path / "crawl")
    model_dir = tmp_path / "model"
    result = runner.invoke(app, ["build", str(crawl), "--out", str(model_dir), "--neg-threshold", "0.4",
                                 "--pos-threshold", "0.4"])
    assert result.exit_code == 0, result.output
    assert "clean: counts per step" in result.output
    summary = " ".join(result.output.split())
    assert "images (negative: 24, neutral: 0, positive: 24), C = " in summary  # no Python dict in the summary
    for name in ("config.json", "head.npz", "metrics.json", "MODEL_CARD.md"):
        assert (model_dir / name).exists(), name
    dataset = tmp_path / "model-dataset"
    posts = Dataset(dataset).posts().to_pylist()
    # every input line is a row: 48 posts, one malformed line, one missing image
    assert len(posts) == 50
    assert sum(p["ingest_status"] == "error" for p in posts) == 2

    # fresh images the student never saw, plus one that is not an image
    new = tmp_path / "new"
    new.mkdir()
    truth = {}
    for i in range(10):
        mood = "positive" if i % 2 == 0 else "negative"
        make_image(new / f"n{i}.jpg", mood, seed=1000 + i)
        truth[f"n{i}.jpg"] = mood
    (new / "broken.jpg").write_bytes(b"not a jpeg")
    out_csv = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(model_dir), str(new), "--out", str(out_csv)])
    assert result.exit_code == 0, result.output
    with out_csv.open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:5] == ["path", "negative", "neutral", "positive", "label"]
        rows = list(reader)
    assert len(rows) == 11
    broken = [r for r in rows if r["path"].endswith("broken.jpg")][0]
    assert broken["status"] == "error" and broken["negative"] == "" and "broken.jpg" in broken["error"]
    good = [r for r in rows if r["status"] == "ok"]
    for row in good:
        total = sum(float(row[c]) for c in ("negative", "neutral", "positive"))
        assert total == pytest.approx(1.0, abs=1e-4)
    correct = sum(row["label"] == truth[Path(row["path"]).name] for row in good)
    assert correct >= 9

    bench = tmp_path / "bench.csv"
    bench.write_text("path,label\n" + "".join(f"{new / name},{1 if mood == 'positive' else 0}\n"
                                               for name, mood in truth.items()))
    report_path = tmp_path / "report.json"
    result = runner.invoke(app, ["evaluate", str(model_dir), "--benchmark", str(bench), "--out", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["binary"]["n"] == 10
    assert report["binary"]["balanced_accuracy"] >= 0.9
    assert report["training_overlap"]["shared"] == 0 and "warning" not in result.output  # fresh images

    # a benchmark of images the student learnt from is scored, with a warning that it is not held out
    seen = tmp_path / "seen.csv"
    seen.write_text("path,label\n" + "".join(f"{crawl.parent / f'{i}.jpg'},{'positive' if i % 2 == 0 else 'negative'}\n"
                                               for i in range(6)))
    result = runner.invoke(app, ["evaluate", str(model_dir), "--benchmark", str(seen), "--out", str(report_path)])
    assert result.exit_code == 0, result.output
    overlap = json.loads(report_path.read_text())["training_overlap"]
    kept = sum(p["clean_status"] == "kept" for p in posts if p["image_file"] and p["post_id"] in {str(i) for i in range(6)})
    assert overlap["n"] == 6 and overlap["shared"] == kept > 0
    assert f"warning: {kept} of the benchmark's 6 images are among the images the student learnt from" in \
        " ".join(result.output.split())

    # the k-fold protocol: the student per fold, and heads fine-tuned on the other folds' human labels
    result = runner.invoke(app, ["evaluate", str(model_dir), "--benchmark", str(bench), "--folds", "2", "--finetune",
                                 "--out", str(report_path)])
    assert result.exit_code == 0, result.output
    kfold = json.loads(report_path.read_text())["kfold"]
    assert kfold["folds"] == 2 and set(kfold["summary"]) == {"student", "from_student", "from_imagenet"}
    assert all(len(runs) == 2 for runs in kfold["runs"].values())


@pytest.mark.slow
def test_human_labels_never_reach_training(tmp_path):
    """Shuffling the MVSA labels file must give the identical model."""
    source = make_mvsa(tmp_path / "mvsa")
    first = tmp_path / "first"
    build(source, first / "model", options=loose_options())

    labels_file = source / "labelResultAll.txt"
    header, *rows = labels_file.read_text().splitlines()
    values = [r.split("\t")[1] for r in rows]
    random.Random(7).shuffle(values)
    flipped = [v.replace("positive", "x").replace("negative", "positive").replace("x", "negative") for v in values]
    labels_file.write_text("\n".join([header] + [f"{r.split(chr(9))[0]}\t{v}" for r, v in zip(rows, flipped)]) + "\n")
    second = tmp_path / "second"
    build(source, second / "model", options=loose_options())

    a, b = VisentModel.load(first / "model"), VisentModel.load(second / "model")
    assert np.array_equal(a.head.coef_, b.head.coef_)
    assert np.array_equal(a.head.intercept_, b.head.intercept_)
    # the labels were read (for evaluation) and they did change
    la = Dataset(first / "model-dataset").read_table("human_labels").to_pylist()
    lb = Dataset(second / "model-dataset").read_table("human_labels").to_pylist()
    assert la != lb


@pytest.mark.slow
def test_rebuild_is_a_no_op_and_resumes(tmp_path):
    crawl = make_crawl(tmp_path / "crawl", n_per_class=10)
    summary = build(crawl, tmp_path / "model", options=loose_options())
    manifest = json.loads((tmp_path / "model-dataset" / "manifest.json").read_text())
    finished = {k: v["finished_at"] for k, v in manifest["stages"].items()}
    model_files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "model").iterdir()}
    again = build(crawl, tmp_path / "model", options=loose_options())
    assert again["ingest"] == summary["ingest"] and again["clean"] == summary["clean"]
    assert again["train"] == summary["train"]
    manifest = json.loads((tmp_path / "model-dataset" / "manifest.json").read_text())
    assert {k: v["finished_at"] for k, v in manifest["stages"].items()} == finished
    # training is a stage too: the model is not written again
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "model").iterdir()} == model_files


def test_every_command_has_help():
    for command in ("ingest", "teach", "clean", "train", "build", "predict", "explain", "evaluate", "report", "export",
                    "serve", "demo", "backbones", "teachers", "benchmarks", "cache", "teacher"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.output


def test_errors_name_the_problem_and_exit_1(tmp_path):
    result = runner.invoke(app, ["teach", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "not a visent dataset" in result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "no-model"), "x.jpg"])
    assert result.exit_code == 1
    assert "no visent model" in result.output


@pytest.mark.slow
def test_shipped_default_model_predicts_demo_photos():
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "chelsea.png" in result.output
    assert any(label in result.output for label in ("positive", "negative", "neutral"))


def test_default_thresholds_follow_the_teacher(tmp_path):
    from visent.clean import DEFAULT_THRESHOLDS, clean, default_thresholds
    from visent.ingest import ingest
    from visent.teach import load_teacher, teach

    crawl = make_crawl(tmp_path / "crawl", n_per_class=3)
    ingest(crawl, tmp_path / "ds")
    assert default_thresholds(tmp_path / "ds") == DEFAULT_THRESHOLDS == \
        {"negative": 0.7, "neutral": 0.9, "positive": 0.9}  # not taught yet: Serra et al.'s
    teach(tmp_path / "ds", "vader")
    declared = load_teacher("vader").thresholds
    assert Dataset(tmp_path / "ds").stage_info("teach")["thresholds"] == declared != DEFAULT_THRESHOLDS
    clean(tmp_path / "ds")
    params = Dataset(tmp_path / "ds").stage_info("clean")["params"]
    assert params["thresholds"] == declared
    clean(tmp_path / "ds", thresholds={"positive": 0.95})
    params = Dataset(tmp_path / "ds").stage_info("clean")["params"]
    assert params["thresholds"] == {**declared, "positive": 0.95}


def test_a_dataset_taught_before_thresholds_were_recorded_is_mended_by_teaching_again(tmp_path):
    from visent.clean import DEFAULT_THRESHOLDS, clean
    from visent.ingest import ingest
    from visent.teach import load_teacher, teach

    ingest(make_crawl(tmp_path / "crawl", n_per_class=3), tmp_path / "ds")
    teach(tmp_path / "ds", "vader")
    manifest_path = tmp_path / "ds" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["stages"]["teach"]["thresholds"]  # as an older visent wrote it
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="run `visent teach .*` again"):  # never silently Serra et al.'s
        clean(tmp_path / "ds")
    assert Dataset(tmp_path / "ds").stage_info("clean")["params"]["thresholds"] == DEFAULT_THRESHOLDS
    taught = (tmp_path / "ds" / "teach.parquet").stat().st_mtime_ns
    teach(tmp_path / "ds", "vader")  # a no-op that records the thresholds
    info = Dataset(tmp_path / "ds").stage_info("teach")
    assert info["thresholds"] == load_teacher("vader").thresholds
    assert info["finished_at"] == manifest["stages"]["teach"]["finished_at"]
    assert (tmp_path / "ds" / "teach.parquet").stat().st_mtime_ns == taught
    clean(tmp_path / "ds")
    assert Dataset(tmp_path / "ds").stage_info("clean")["params"]["thresholds"] == info["thresholds"]
