import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visent.model import ModelError, VisentModel, resolve_model_dir
from visent.predict import expand_inputs, iter_predict, predict, write_csv


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_expand_files_folders_and_list_files(tmp_path):
    _images(tmp_path / "a" / "deep", 2)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    (tmp_path / "list.txt").write_text("# photos\na/deep/0.png\n\nmissing.png\n")
    items = expand_inputs([str(tmp_path / "a"), f"@{tmp_path / 'list.txt'}", str(tmp_path / "empty"),
                           "@nowhere.txt"])
    paths = [p for p, _ in items]
    problems = dict(items)
    assert paths[:2] == [str(tmp_path / "a" / "deep" / "0.png"), str(tmp_path / "a" / "deep" / "1.png")]
    assert problems[str(tmp_path / "a" / "deep" / "0.png")] is None
    assert problems[str(tmp_path / "missing.png")] == "file not found"
    assert "no image files" in problems[str(tmp_path / "empty")]
    assert "not found" in problems["@nowhere.txt"]
    assert len(items) == 6


def test_relative_paths_of_a_list_file_are_taken_from_its_folder_else_from_here(tmp_path, monkeypatch):
    _images(tmp_path / "lists" / "photos", 1)  # beside the list file
    _images(tmp_path / "here", 2)  # only from the working directory
    _images(tmp_path / "lists" / "here", 1)  # a name found both ways: the list file's folder wins
    (tmp_path / "lists" / "todo.txt").write_text("photos/0.png\nhere/1.png\nhere/0.png\ngone.png\n")
    monkeypatch.chdir(tmp_path)
    items = expand_inputs(["@lists/todo.txt"])
    assert items == [(str(Path("lists", "photos", "0.png")), None), ("here/1.png", None),
                     (str(Path("lists", "here", "0.png")), None), (str(Path("lists", "gone.png")), "file not found")]
    monkeypatch.chdir(tmp_path / "lists")  # the same list read from its own folder
    assert [path for path, _ in expand_inputs(["@todo.txt"])][:1] == ["photos/0.png"]


def test_predict_command_fails_when_nothing_was_predicted(tmp_path):
    """A run that predicted nothing exits 1 with a line saying why (its rows are still written); one with an image
    predicted succeeds. Counts read "1 image", "2 images"."""
    from typer.testing import CliRunner

    from visent.cli import app

    _images(tmp_path, 1)
    page = tmp_path / "page.jpg"
    page.write_bytes(b"<!doctype html><html><body>Sign in to see this photo</body></html>")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "default", str(page), "--out", str(tmp_path / "none.csv")])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "1 image: 0 predicted, 1 unreadable" in output
    assert f"error: predict: nothing was predicted: {page}: not an image (HTML); give image files" in output
    with (tmp_path / "none.csv").open() as handle:
        assert [row["error"] for row in csv.DictReader(handle)] == [f"{page}: not an image (HTML)"]
    result = runner.invoke(app, ["predict", "default", str(page), str(tmp_path / "gone.jpg")])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "2 images: 0 predicted, 2 unreadable" in output
    assert f"none of the 2 images could be read (the first: {page}: not an image (HTML))" in output
    result = runner.invoke(app, ["predict", "default", str(tmp_path / "0.png"), str(page)])
    assert result.exit_code == 0, result.output
    assert "2 images: 1 predicted, 1 unreadable" in " ".join(result.output.split())


@pytest.mark.slow
def test_shipped_model_predicts_and_keeps_every_row(tmp_path):
    _images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "bad.png").write_bytes(b"\x89PNG broken")
    rows = predict("default", [str(tmp_path / "imgs"), str(tmp_path / "gone.jpg")])
    assert len(rows) == 5
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["gone.jpg"]["status"] == "error" and by_name["gone.jpg"]["error"] == "file not found"
    assert by_name["bad.png"]["status"] == "error" and "bad.png" in by_name["bad.png"]["error"]
    for name in ("0.png", "1.png", "2.png"):
        row = by_name[name]
        assert row["status"] == "ok"
        assert row["negative"] + row["neutral"] + row["positive"] == pytest.approx(1.0)
        assert row["label"] == max(("negative", "neutral", "positive"), key=row.get)
    write_csv(rows, tmp_path / "out.csv")
    with (tmp_path / "out.csv").open() as handle:
        written = list(csv.DictReader(handle))
    assert [r["path"] for r in written] == [r["path"] for r in rows]
    assert written[-1]["negative"] == "" and written[-1]["status"] == "error"


def test_unreadable_files_read_as_ingest_words_them(tmp_path):
    """predict, predict_proba and explain name an image fault in the words of ingest (visent.core.images), not
    in those of the exception that found it (UnidentifiedImageError, "ImageError: ...")."""
    from visent.explain import explain_images
    from visent.ingest.download import sniff_image

    files = {"page.jpg": b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>", "empty.jpg": b"",
             "notes.png": b"remember the milk\n"}
    paths = []
    for name, data in files.items():
        paths.append(str(tmp_path / name))
        (tmp_path / name).write_bytes(data)
    expected = [f"{path}: {sniff_image(data)[1]}" for path, data in zip(paths, files.values())]
    assert expected[0].endswith(": not an image (HTML)") and expected[1].endswith(": empty file")
    rows = predict("default", paths)
    assert [row["error"] for row in rows] == expected and {row["status"] for row in rows} == {"error"}
    _, statuses = VisentModel.load("default").predict_proba(paths)
    assert [status.message for status in statuses] == expected
    explained = explain_images("default", paths, tmp_path / "maps")
    assert [row["error"] for row in explained] == expected


def test_predict_proba_says_ok_where_predict_does_for_a_cached_image(tmp_path):
    _images(tmp_path, 1)
    path = str(tmp_path / "0.png")
    model = VisentModel.load("default")
    _, first = model.predict_proba([path])
    assert model.features([path])[1][0].state == "cached"  # the features now come from the cache ...
    _, again = model.predict_proba([path])
    assert [s.state for s in first + again] == ["ok", "ok"]  # ... which predict_proba does not report
    assert model.predict([path]).column("status").to_pylist() == ["ok"]


def test_model_names_resolve(tmp_path):
    assert resolve_model_dir("default").name == "default"
    default = VisentModel.load("default")
    assert default.config.backbone == "efficientnet-lite0-ms"
    assert default.config.extra_backbones == [] and default.config.runtime == "onnx-int8"
    assert (default.directory / default.config.graph["file"]).is_file()  # it carries its int8 network
    assert default.head.coef_.shape == (3, 2576) and 0.5 < default.head.temperature_ < 2
    with pytest.raises(ModelError, match="config.json"):
        resolve_model_dir(tmp_path)


@pytest.mark.slow
def test_chunked_prediction_keeps_order_and_results(tmp_path):
    _images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "3.png").write_bytes(b"broken")  # an error inside a chunk
    inputs = [str(tmp_path / "imgs"), str(tmp_path / "gone.jpg")]
    whole = predict("default", inputs, cache=False)
    chunked = iter_predict("default", inputs, cache=False, chunk_size=2)
    assert not isinstance(chunked, list)  # rows come as they are computed
    rows = list(chunked)
    assert [r["path"] for r in rows] == [r["path"] for r in whole] and len(rows) == 6
    for a, b in zip(rows, whole):
        assert a["status"] == b["status"] and a["label"] == b["label"]
        if a["status"] == "ok":
            assert a["positive"] == pytest.approx(b["positive"], abs=1e-6)
    assert write_csv(iter(rows), tmp_path / "out.csv") == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_interrupted_csv_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("previous\n")

    def rows():
        yield {"path": "a.jpg", "negative": 0.1, "neutral": 0.2, "positive": 0.7, "label": "positive",
               "status": "ok", "error": ""}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_csv(rows(), target)
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
