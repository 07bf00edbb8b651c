"""visent report: one self-contained HTML page, its figures per section, the notes when a part is missing; and the
reliability bins that evaluate now reports."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from test_export import TEACHER, build_dataset, make_varied_crawl
from test_pipeline import make_crawl, make_image
from visent import Dataset
from visent.cli import app
from visent.core.labels import CLASSES
from visent.core.store import DatasetError
from visent.evaluate import compute_metrics, evaluate
from visent.ingest import ingest
from visent.report import reason_kind, render_report, write_report
from visent.teach import teach
from visent.train import train

runner = CliRunner()
PNG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
JPEG = re.compile(r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"')


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', page, re.S))


def notes(section: str) -> list[str]:
    return re.findall(r'<p class="note">(.*?)</p>', section, re.S)


def table_rows(section: str, css: str) -> list[list[str]]:
    table = re.search(rf'<table class="{css}">(.*?)</table>', section, re.S)
    assert table, css
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))][1:]


def decode_png(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def assert_self_contained(page: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    for target in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert target.startswith(("data:image/png;base64,", "data:image/jpeg;base64,", "#")), target[:40]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    dataset = build_dataset(make_varied_crawl(root / "crawl"), root / "ds")
    model = train(dataset, root / "model", backbone="efficientnet-lite0", C=0.1)
    bench = root / "bench"
    bench.mkdir()
    lines = ["path,label"]
    for i in range(8):
        mood = "positive" if i % 2 == 0 else "negative"
        make_image(bench / f"b{i}.jpg", mood, seed=900 + i)
        lines.append(f"b{i}.jpg,{mood}")
    lines.append("b0.jpg,neutral")
    (bench / "bench.csv").write_text("\n".join(lines) + "\n")
    return {"root": root, "dataset": dataset, "model": model, "model_dir": root / "model",
            "bench": bench / "bench.csv"}


def test_reliability_bins_reproduce_the_ece():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([0.7, 0.7, 0.7], size=400)
    labels = [CLASSES[k] for k in rng.integers(0, 3, size=400)]
    three = compute_metrics(labels, probs)["three_class"]
    bins = three["reliability"]["bins"]
    assert len(bins) == 15 and bins[0]["lo"] == 0.0 and bins[-1]["hi"] == 1.0
    assert all(a["hi"] == pytest.approx(b["lo"]) for a, b in zip(bins, bins[1:]))
    assert sum(b["count"] for b in bins) == 400
    weighted = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / 400
    assert weighted == pytest.approx(three["ece"], abs=1e-12)
    assert three["ece"] > 0.01  # not a trivially calibrated case
    # a bin's figures are those of the predictions whose top probability falls in it
    top = probs.max(axis=1)
    right = probs.argmax(axis=1) == np.array([CLASSES.index(c) for c in labels])
    for b in bins:
        inside = (top >= b["lo"]) & (top < b["hi"]) if b["hi"] < 1 else (top >= b["lo"])
        assert b["count"] == inside.sum()
        if b["count"]:
            assert b["confidence"] == pytest.approx(top[inside].mean())
            assert b["accuracy"] == pytest.approx(right[inside].mean())
        else:
            assert b["confidence"] is None and b["accuracy"] is None
    assert json.loads(json.dumps(three))["reliability"] == three["reliability"]  # JSON as it is written


def test_reason_kind_counts_reasons_without_their_details():
    assert reason_kind("near duplicate of 17 (distance 3)") == "near duplicate (pHash distance 3)"
    assert reason_kind("exact duplicate of 4") == reason_kind("exact duplicate of x_2")
    assert reason_kind("low teacher confidence (neutral 0.40 < 0.50)") == "low teacher confidence (neutral)"
    assert reason_kind("tiny image (20x20 < 32 px)") == "tiny image (shorter side < 32 px)"
    assert reason_kind("no teacher label (teacher failed: ValueError: boom)") == "no teacher label (teacher failed)"
    assert reason_kind("ingest: image file not found (a.jpg)") == reason_kind("ingest: image file not found (b.jpg)")
    # the image faults of visent.core.images
    assert reason_kind("too many pixels (9000 x 9000 = 81,000,000 pixels, more than the limit 50,000,000)") == \
        "too many pixels"
    assert reason_kind("corrupt PNG image (broken PNG file (chunk b'\\x00\\x00'))") == "corrupt PNG image"
    assert reason_kind("corrupt image (could not create decoder object)") == "corrupt image"
    assert reason_kind("truncated JPEG image") == "truncated JPEG image"
    assert reason_kind("not an image (HTML)") == reason_kind("not an image") == "not an image"


def test_page_is_put_together_from_its_package_resources(tmp_path):
    from importlib import resources

    crawl = make_crawl(tmp_path / "crawl", n_per_class=1)
    ingest(crawl, tmp_path / "ds")
    page = render_report(tmp_path / "ds")
    folder = resources.files("visent") / "resources" / "report"
    css, skeleton = ((folder / name).read_text(encoding="utf-8") for name in ("report.css", "page.html"))
    assert f"<style>\n{css}</style>" in page
    # the page is the skeleton with its placeholders filled in, and nothing else
    parts = re.split(r"\$(\w+)", skeleton)
    pattern = "".join(re.escape(text) if i % 2 == 0 else "(.*?)" for i, text in enumerate(parts))
    filled = re.fullmatch(pattern, page, re.S)
    assert filled and set(parts[1::2]) == {"title", "css", "subject", "version", "made", "nav", "body"}
    assert dict(zip(parts[1::2], filled.groups()))["css"] == css


@pytest.mark.slow
def test_report_of_a_dataset_with_its_model_and_a_benchmark(built, tmp_path):
    out = write_report(built["dataset"].root, tmp_path / "r" / "report.html", model=built["model_dir"],
                       benchmark=built["bench"], top=2)
    assert out == tmp_path / "r" / "report.html"
    page = out.read_text()
    assert_self_contained(page)
    parts = sections(page)
    assert list(parts) == ["summary", "cleaning", "confidence", "balance", "evaluation", "images"]
    counts = {key: len(PNG.findall(parts[key])) for key in parts}
    assert counts == {"summary": 0, "cleaning": 1, "confidence": 1, "balance": 1, "evaluation": 2, "images": 0}

    funnel = decode_png(PNG.findall(parts["cleaning"])[0])
    assert funnel.format == "PNG" and funnel.width >= 600 and funnel.height >= 300
    for section in ("confidence", "balance", "evaluation"):
        for data in PNG.findall(parts[section]):
            image = decode_png(data)
            assert 300 <= image.width <= 2000 and 200 <= image.height <= 1500, section
            assert np.unique(np.asarray(image.convert("L"))).size > 10  # something is drawn

    # summary: source, teacher, thresholds, model facts
    summary = parts["summary"]
    assert str(built["root"] / "crawl" / "posts.jsonl") in summary
    assert f"<code>{TEACHER}</code>" in summary
    assert "negative 0.50 · neutral 0.60 · positive 0.50" in summary
    assert "efficientnet-lite0" in summary and "C = 0.1" in summary

    # the steps table holds the stage's counts; the reasons table names each kind of drop
    stage = built["dataset"].stage_info("clean")["counts"]
    steps = {re.sub(r" \(.*\)$", "", row[0]): int(row[1].replace(",", ""))
             for row in table_rows(parts["cleaning"], "steps")}
    assert steps["exact duplicate"] == stage["exact_duplicate"] == 1
    assert steps["low teacher confidence"] == stage["low_confidence"]
    assert sum(steps.values()) == stage["posts"] - stage["kept"]
    reasons = {row[1]: int(row[2]) for row in table_rows(parts["cleaning"], "reasons")}
    assert reasons["exact duplicate of a kept post"] == 1
    assert reasons["no teacher label (no text)"] == 1
    assert reasons["tiny image (shorter side &lt; 32 px)"] == 1
    assert reasons["low teacher confidence (negative)"] == 1
    assert any(kind.startswith("near duplicate (pHash distance") for kind in reasons)
    assert sum(reasons.values()) == stage["posts"] - stage["kept"]
    step_of = {row[1]: row[0] for row in table_rows(parts["cleaning"], "reasons")}  # from the clean_step column
    assert step_of["tiny image (shorter side &lt; 32 px)"] == "bad image"
    assert step_of["exact duplicate of a kept post"] == "exact duplicate"
    assert step_of["no teacher label (no text)"] == "no teacher label"
    assert step_of["low teacher confidence (negative)"] == "low teacher confidence"
    assert all(step.startswith("ingest error") for kind, step in step_of.items() if kind.startswith("ingest:"))
    assert "image file not found" in parts["cleaning"] and "invalid JSON" in parts["cleaning"]
    balance = {row[0]: row[1:] for row in table_rows(parts["balance"], "balance")}
    assert int(balance["neutral"][2]) == built["model"].metrics["class_counts"]["neutral"] == 2

    # evaluation: the metrics of evaluate, no "how to add one" note
    assert not notes(parts["evaluation"])
    report = evaluate(built["model"], built["bench"])
    metrics = {row[0]: row for row in table_rows(parts["evaluation"], "metrics")}
    assert metrics["3 classes (argmax)"][-1] == f"{report.three_class.ece:.3f}"
    assert metrics["binary (positive vs negative)"][3] == f"{report.binary.balanced_accuracy:.3f}"
    low, high = report.binary.balanced_accuracy_ci95
    assert f"balanced accuracy {low:.3f}–{high:.3f}" in parts["evaluation"]

    # the grid: the two most confident kept images per predicted class, with the model's probability
    kept = [r for r in built["dataset"].posts().to_pylist() if r["clean_status"] == "kept"]
    probs, _ = built["model"].predict_proba([built["dataset"].image_path(r["image_file"]) for r in kept])
    grid = parts["images"]
    thumbs = JPEG.findall(grid)
    expected = 0
    for c, name in enumerate(CLASSES):
        members = np.flatnonzero(probs.argmax(axis=1) == c)
        best = members[np.argsort(-probs[members, c])][:2]
        expected += len(best)
        block = re.search(rf'<div class="grid" data-class="{name}">(.*?)</div>\s*(?:<h3|<p|$)', grid, re.S)
        if not len(best):
            assert block is None and f"No image is predicted {name}." in grid
            continue
        shown = re.findall(r"post ([\w-]+)</span>", block.group(1))
        assert shown == [kept[k]["post_id"] for k in best]
        assert f"P({name}) = {probs[best[0], c]:.2f}" in block.group(1)
    assert len(thumbs) == expected >= 2
    for data in thumbs:
        thumb = Image.open(io.BytesIO(base64.b64decode(data)))
        assert max(thumb.size) == 160
    assert "sentiment map" in grid and "no sentiment map" not in grid


def test_report_says_when_benchmark_images_were_learnt_from(built, tmp_path):
    """A benchmark that shares images with the crawl is not held out there: the report counts the shared ones."""
    kept = [r for r in built["dataset"].posts().to_pylist() if r["clean_status"] == "kept"][:3]
    lines = ["path,label"]
    for i, row in enumerate(kept):  # copies under other names: recognised by their bytes
        (tmp_path / f"copy{i}.jpg").write_bytes(built["dataset"].image_path(row["image_file"]).read_bytes())
        lines.append(f"copy{i}.jpg,{'positive' if i % 2 else 'negative'}")
    make_image(tmp_path / "fresh.jpg", "positive", seed=4242)
    lines.append("fresh.jpg,positive")
    (tmp_path / "bench.csv").write_text("\n".join(lines) + "\n")
    page = render_report(built["dataset"].root, model=built["model_dir"], benchmark=tmp_path / "bench.csv", top=0)
    (note,) = notes(sections(page)["evaluation"])
    assert note.startswith("3 of the benchmark&#x27;s 4 images are among this dataset&#x27;s kept images"), note


@pytest.mark.slow
def test_report_of_a_model_finds_its_dataset_and_reuses_an_evaluation(built, tmp_path):
    saved = tmp_path / "eval.json"
    evaluate(built["model"], built["bench"], out=saved)
    page = render_report(built["model_dir"], evaluation=saved, top=1)
    assert_self_contained(page)
    parts = sections(page)
    assert str(built["dataset"].root) in parts["summary"]  # found through metrics.json
    assert len(PNG.findall(parts["cleaning"])) == 1 and len(PNG.findall(parts["evaluation"])) == 2
    assert len(JPEG.findall(parts["images"])) >= 2

    # an evaluation written before the reliability bins: the confusion matrices, and a note for the rest
    old = json.loads(saved.read_text())
    del old["three_class"]["reliability"]
    parts = sections(render_report(built["model_dir"], evaluation=old, top=0))
    assert len(PNG.findall(parts["evaluation"])) == 1
    assert any("no reliability bins" in note for note in notes(parts["evaluation"]))
    assert JPEG.findall(parts["images"]) == [] and "--top 0" in parts["images"]

    # no evaluation: the note says how to add one
    parts = sections(render_report(built["model_dir"], top=0))
    assert PNG.findall(parts["evaluation"]) == []
    assert "--benchmark" in notes(parts["evaluation"])[0]


@pytest.mark.slow
def test_report_degrades_with_notes(built, tmp_path):
    # a dataset that is taught but not cleaned, and no model
    crawl = make_crawl(tmp_path / "crawl", n_per_class=3)
    ingest(crawl, tmp_path / "taught")
    teach(tmp_path / "taught", TEACHER)
    page = render_report(tmp_path / "taught")
    assert_self_contained(page)
    parts = sections(page)
    assert PNG.findall(parts["cleaning"]) == []
    assert any("clean stage has not run" in note for note in notes(parts["cleaning"]))
    assert "image file not found" in parts["cleaning"]  # ingest errors still listed
    assert len(PNG.findall(parts["confidence"])) == 1 and "default threshold" in parts["confidence"]
    assert len(PNG.findall(parts["balance"])) == 1
    assert any("--model" in note for note in notes(parts["images"]))
    assert any("--benchmark" in note for note in notes(parts["evaluation"]))

    # a model whose dataset is gone
    moved = tmp_path / "model"
    shutil.copytree(built["model_dir"], moved)
    metrics = json.loads((moved / "metrics.json").read_text())
    metrics["dataset"] = str(tmp_path / "gone")
    (moved / "metrics.json").write_text(json.dumps(metrics))
    parts = sections(render_report(moved))
    assert "efficientnet-lite0" in parts["summary"]
    assert any("not on this machine" in note for note in notes(parts["summary"]))
    for key in ("cleaning", "confidence", "images"):
        assert notes(parts[key]) and not PNG.findall(parts[key]) and not JPEG.findall(parts[key]), key
    assert "negative 10" in notes(parts["balance"])[0]  # the model's own class counts

    # kept images that went missing or bad after cleaning: left out with a note, the rest of the grid stands
    copy = tmp_path / "ds"
    shutil.copytree(built["dataset"].root, copy)
    kept = [r for r in Dataset(copy).posts().to_pylist() if r["clean_status"] == "kept"]
    (copy / kept[0]["image_file"]).unlink()
    (copy / kept[1]["image_file"]).write_bytes(b"not an image any more")
    parts = sections(render_report(copy, model=built["model_dir"], top=3))
    assert any("2 images could not be read" in note for note in notes(parts["images"]))
    assert len(JPEG.findall(parts["images"])) >= 3
    assert kept[0]["post_id"] not in re.findall(r"post ([\w-]+)</span>", parts["images"])


def test_report_refuses_what_it_cannot_use(built, tmp_path):
    with pytest.raises(DatasetError, match="neither a visent dataset"):
        render_report(tmp_path / "nothing")
    with pytest.raises(ValueError, match="needs a model"):
        render_report(built["dataset"].root, benchmark=built["bench"])
    with pytest.raises(ValueError, match="not both"):
        render_report(built["model_dir"], benchmark=built["bench"], evaluation={"three_class": {}})
    (tmp_path / "bad.json").write_text("{\"n\": 3}")
    with pytest.raises(ValueError, match="three_class"):
        render_report(built["model_dir"], evaluation=tmp_path / "bad.json")
    with pytest.raises(ValueError, match="--model goes with a dataset"):
        render_report(built["model_dir"], model=built["model_dir"])


@pytest.mark.slow
def test_cli_report(built, tmp_path):
    out = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(built["dataset"].root), "--model", str(built["model_dir"]),
                                 "--out", str(out), "--top", "1"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not list(tmp_path.glob(".page.html.*"))  # no temporary file left behind
    result = runner.invoke(app, ["report", str(tmp_path / "nothing"), "--out", str(out)])
    assert result.exit_code == 1 and "neither a visent dataset" in result.output
    result = runner.invoke(app, ["report", str(built["dataset"].root), "--out", str(out),
                                 "--benchmark", str(built["bench"])])
    assert result.exit_code == 1 and "needs a model" in result.output
