"""A crawl that grows (or changes): each stage notices, says so, and does only the new work (ingest fetches only the
new posts' images, teach teaches only the new texts, clean checks only the new images and finds duplicates across
old and new, train embeds only the new images), and the dataset and the model are those of a build from scratch.
A run killed half way and run again gives the same tables, and a source that did not change is a no-op."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import visent.clean.checks as clean_checks
import visent.ingest.stage as ingest_stage
import visent.teach.stage as teach_stage
from test_pipeline import NEGATIVE_TEXTS, POSITIVE_TEXTS, make_image
from visent import Dataset
from visent.build import BuildOptions, build
from visent.clean import clean
from visent.cli import app
from visent.ingest import ingest
from visent.model import VisentModel
from visent.model.student import packaged_model_dir
from visent.teach import load_teacher, teach

TEXTS = POSITIVE_TEXTS + NEGATIVE_TEXTS + ["The bus leaves at five.", "Photos from the meeting", ""]
TABLES = ("posts", "human_labels", "teach", "clean")
runner = CliRunner()


def text_of(i: int) -> str:
    text = TEXTS[i % len(TEXTS)]
    return f"{text} (post {i})" if text else ""


def line(i: int, text: str | None = None, image: str | None = None) -> dict:
    return {"id": str(i), "text": text_of(i) if text is None else text, "image": image or f"{i}.jpg"}


def write_crawl(root: Path, lines: list[dict]) -> Path:
    """``root/posts.jsonl`` with ``lines``; the images ``<i>.jpg`` not there yet are drawn."""
    root.mkdir(parents=True, exist_ok=True)
    for record in lines:
        path = root / record["image"]
        if not path.exists():
            i = int(record["id"])
            make_image(path, "positive" if TEXTS[i % len(TEXTS)] in POSITIVE_TEXTS else "negative", seed=i)
    source = root / "posts.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in lines))
    return source


def near_copy(source: Path, target: Path) -> None:
    """The same picture saved again at another JPEG quality: other bytes, a perceptual hash within a few bits."""
    with Image.open(source) as image:
        image.convert("RGB").save(target, quality=60)


class Spy:
    """VADER, counting the texts it is asked about; raises KeyboardInterrupt on call ``fail_on_call``."""

    def __init__(self, fail_on_call: int | None = None):
        self.inner = load_teacher("vader")
        self.name, self.fingerprint = self.inner.name, self.inner.fingerprint
        self.thresholds, self.accepts_languages = self.inner.thresholds, False
        self.fail_on_call = fail_on_call
        self.calls: list[list[str]] = []

    @property
    def texts(self) -> list[str]:
        return [text for call in self.calls for text in call]

    def predict_proba(self, texts):
        if self.fail_on_call == len(self.calls) + 1:
            raise KeyboardInterrupt  # a run stopped half way
        self.calls.append(list(texts))
        return self.inner.predict_proba(texts)


class Counters:
    """What the stages did in a run: images fetched by ingest (post ids), texts taught, images checked by clean."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.monkeypatch = monkeypatch
        self.fetched: list[str] = []
        self.checked: list[Path] = []
        self.fail_fetch_on: int | None = None
        real_row, real_analyse = ingest_stage._row, clean_checks.analyse_image

        def row(post, fetcher, dataset):
            if self.fail_fetch_on == len(self.fetched) + 1:
                raise KeyboardInterrupt
            self.fetched.append(post.post_id)
            return real_row(post, fetcher, dataset)

        monkeypatch.setattr(ingest_stage, "_row", row)
        monkeypatch.setattr(clean_checks, "analyse_image", lambda path: self.checked.append(path) or real_analyse(path))
        self.teacher = self.spy()

    def spy(self, fail_on_call: int | None = None) -> Spy:
        self.teacher = Spy(fail_on_call)
        self.monkeypatch.setattr(teach_stage, "load_teacher", lambda name, **kw: self.teacher)
        return self.teacher

    def clear(self) -> None:
        self.fetched.clear()
        self.checked.clear()
        self.teacher.calls.clear()


@pytest.fixture
def counters(monkeypatch):
    return Counters(monkeypatch)


def tables(root: Path) -> dict:
    ds = Dataset(root)
    return {name: ds.read_table(name) for name in TABLES if ds.has_table(name)}


def assert_same_dataset(a: Path, b: Path) -> None:
    ta, tb = tables(a), tables(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name].num_rows > 0
        assert ta[name].equals(tb[name]), f"{name} differs from a run from scratch"
    images = [sorted(p.relative_to(root).as_posix() for p in root.glob("images/*/*")) for root in (a, b)]
    assert images[0] == images[1]


def stages_of(root: Path) -> dict:
    return {name: (info["status"], info.get("finished_at")) for name, info in Dataset(root).manifest["stages"].items()}


def kept_images(root: Path) -> set[str]:
    posts = Dataset(root).posts()
    shas, status = posts.column("image_sha256").to_pylist(), posts.column("clean_status").to_pylist()
    return {sha for sha, kept in zip(shas, status) if kept == "kept"}


def options() -> BuildOptions:
    # the default int8 network (the shipped one: a crawl that grows keeps it, and only new images are embedded);
    # ingest one thread, five posts a batch, so where a run stops is known
    return BuildOptions(teacher="vader", thresholds={"negative": 0.4, "neutral": 0.9, "positive": 0.4},
                        ingest={"batch_size": 5, "workers": 1})


# --------------------------------------------------------------------------- a build on a grown crawl
@pytest.mark.slow
def test_a_grown_crawl_is_built_incrementally_and_equals_a_build_from_scratch(tmp_path, counters, monkeypatch):
    crawl = tmp_path / "crawl"
    lines = [line(i) for i in range(200)]
    source = write_crawl(crawl, lines)
    model = tmp_path / "model"
    first = build(source, model, options=options())
    assert first["images_embedded"] == len(kept_images(tmp_path / "model-dataset"))
    assert (model / "backbone.onnx").read_bytes() == (packaged_model_dir() / "backbone.onnx").read_bytes()  # int8
    kept_before = kept_images(tmp_path / "model-dataset")
    assert counters.teacher.texts and len(counters.fetched) == 200

    # 21 more posts: one shows the very image of post 5 (an exact duplicate), one post 7's saved again (a near one)
    near_copy(crawl / "7.jpg", crawl / "near-7.jpg")
    grown = lines + [line(i) for i in range(200, 219)] + [line(219, image="5.jpg"), line(220, image="near-7.jpg")]
    write_crawl(crawl, grown)
    new_texts = [text_of(i) for i in range(200, 221) if text_of(i)]

    # the build stopped half way through the new posts' images (after two batches of five) ...
    counters.clear()
    counters.fail_fetch_on = 12
    with pytest.raises(KeyboardInterrupt):
        build(source, model, options=options())
    assert counters.fetched == [str(i) for i in range(200, 211)]  # only new posts were fetched
    assert not Dataset(tmp_path / "model-dataset").stage_done("ingest")

    # ... and run again: it fetches the rest only, teaches the new texts, checks the new images, embeds them
    counters.clear()
    counters.fail_fetch_on = None
    second = build(source, model, options=options())
    assert counters.fetched == [str(i) for i in range(210, 221)]
    ingested = second["ingest"]
    assert ingested["source_changed"] == "posts.jsonl changed since the last ingest"
    assert (ingested["posts"], ingested["new_posts"], ingested["changed_posts"], ingested["removed_posts"],
            ingested["reused"]) == (221, 21, 0, 0, 200)
    assert sorted(counters.teacher.texts) == sorted(new_texts)
    assert list(second["teach"])[-2:] == ["taught", "reused"]  # in this order after the stage's own counts
    assert (second["teach"]["taught"], second["teach"]["reused"]) == (21, 200)
    new_images = 20  # 21 new posts, one of them with an image ingested before
    assert len(counters.checked) == second["clean"]["images_checked"] == new_images
    assert second["clean"]["images_reused"] == 200  # the old posts' images
    kept_now = kept_images(tmp_path / "model-dataset")
    assert second["images_embedded"] == len(kept_now - kept_before) > 0

    # duplicates were found across the old and the new posts
    rows = {row["post_id"]: row for row in Dataset(tmp_path / "model-dataset").read_table("clean").to_pylist()}
    assert (rows["219"]["clean_step"], rows["219"]["duplicate_of"]) == ("exact_duplicate", "5")  # 219 has no text
    near = [rows[i] for i in ("7", "220") if rows[i]["clean_step"] == "near_duplicate"]
    assert len(near) == 1 and near[0]["duplicate_of"] == ({"7", "220"} - {near[0]["post_id"]}).pop()

    # a build from scratch of the grown crawl, with a feature cache of its own: the same tables, the same head
    cache = os.environ["VISENT_CACHE"]
    monkeypatch.setenv("VISENT_CACHE", str(tmp_path / "scratch-cache"))
    scratch = build(source, tmp_path / "scratch", options=options())
    assert scratch["images_embedded"] == len(kept_now)
    assert "source_changed" not in scratch["ingest"] and "taught" not in scratch["teach"]
    assert Dataset(tmp_path / "scratch-dataset").stage_info("teach")["run"] == {"taught": 221, "reused": 0}
    assert_same_dataset(tmp_path / "model-dataset", tmp_path / "scratch-dataset")
    # the grown crawl's head started from the last training's solutions, the scratch one from zero: the same
    # optimum to the solver's tolerance
    assert VisentModel.load(model).metrics["fit"]["warm_start"]
    assert not VisentModel.load(tmp_path / "scratch").metrics["fit"]["warm_start"]
    with np.load(model / "head.npz") as a, np.load(tmp_path / "scratch" / "head.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            assert a[name].shape == b[name].shape
            if name != "temperature":  # fitted on 40 validation posts: it follows the logits' small differences
                assert np.allclose(a[name], b[name], rtol=1e-3, atol=1e-4 * max(1.0, np.abs(a[name]).max())), name
        assert float(a["temperature"]) == pytest.approx(float(b["temperature"]), rel=0.02)
    images = sorted(str(p) for p in (tmp_path / "model-dataset" / "images").glob("*/*"))
    grown, scratch = (VisentModel.load(m).predict_proba(images)[0] for m in (model, tmp_path / "scratch"))
    assert np.abs(grown - scratch).max() < 5e-3 and (grown.argmax(1) == scratch.argmax(1)).all()
    monkeypatch.setenv("VISENT_CACHE", cache)

    # the same crawl again: nothing to do
    stages = stages_of(tmp_path / "model-dataset")
    model_files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in model.iterdir()}
    counters.clear()
    third = build(source, model, options=options())
    assert counters.fetched == counters.checked == counters.teacher.calls == []
    assert third["ingest"] == {k: v for k, v in ingested.items() if k not in ingest_stage.RUN_COUNTS}
    assert "taught" not in third["teach"] and "images_checked" not in third["clean"]
    assert third["images_embedded"] == 0
    assert stages_of(tmp_path / "model-dataset") == stages
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in model.iterdir()} == model_files


# --------------------------------------------------------------------------- the stages on a changed source
def stages(source: Path, out: Path, **teach_options) -> dict:
    return {"ingest": ingest(source, out), "teach": teach(out, "vader", **teach_options), "clean": clean(out)}


def test_an_unchanged_source_is_a_no_op_and_a_changed_one_redoes_only_what_changed(tmp_path, counters):
    crawl = tmp_path / "crawl"
    lines = [line(i) for i in range(30)]
    source = write_crawl(crawl, lines)
    out = tmp_path / "ds"
    first = stages(source, out)
    assert len(counters.fetched) == 30 and len(counters.checked) == 30

    # unchanged (even touched): nothing runs, nothing is written
    os.utime(source)
    before = {name: Dataset(out).table_path(name).stat().st_mtime_ns for name in ("posts", "teach", "clean")}
    manifest = stages_of(out)
    counters.clear()
    assert stages(source, out) == first
    assert counters.fetched == counters.checked == counters.teacher.calls == []
    assert {name: Dataset(out).table_path(name).stat().st_mtime_ns for name in before} == before
    assert stages_of(out) == manifest

    # a text edited, an image reference changed, a line moved up, a line removed, one image file changed in place,
    # two posts added
    lines[7] = line(7, text="Edited: what a horrible, sad and awful day")
    make_image(crawl / "other-3.jpg", "negative", seed=1003)
    lines[3] = line(3, image="other-3.jpg")
    lines.insert(2, lines.pop(20))
    del lines[lines.index(line(12))]
    make_image(crawl / "9.jpg", "positive", seed=999)
    lines += [line(30), line(31)]
    write_crawl(crawl, lines)
    counters.clear()
    result = runner.invoke(app, ["ingest", str(source), "--out", str(out)], terminal_width=300,
                           env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "source_changed" in result.output
    assert "posts.jsonl changed since the last ingest: the file itself; 1 local image changed or gone (9.jpg)" in \
        " ".join(result.output.split())
    assert sorted(counters.fetched) == ["3", "30", "31", "9"]  # the others keep their stored image
    counts = Dataset(out).stage_info("ingest")["counts"]
    assert (counts["new_posts"], counts["changed_posts"], counts["removed_posts"]) == (2, 2, 1)
    teach(out, "vader")
    assert sorted(counters.teacher.texts) == sorted(["Edited: what a horrible, sad and awful day", text_of(30),
                                                     text_of(31)])
    assert Dataset(out).stage_info("teach")["run"] == {"taught": 3, "reused": 28}
    clean(out)
    assert len(counters.checked) == 4  # other-3.jpg, the new 9.jpg, 30.jpg, 31.jpg
    assert Dataset(out).stage_info("clean")["run"]["images_checked"] == 4

    stages(source, tmp_path / "scratch")
    assert_same_dataset(out, tmp_path / "scratch")


def test_a_teach_killed_over_grown_posts_resumes_to_the_table_of_a_run_from_scratch(tmp_path, counters):
    crawl = tmp_path / "crawl"
    lines = [line(i) for i in range(40)]
    source = write_crawl(crawl, lines)
    out = tmp_path / "ds"
    stages(source, out)
    lines[5] = line(5, text="Now a very happy and wonderful post")
    lines += [line(i) for i in range(40, 52)]
    write_crawl(crawl, lines)
    ingest(source, out)

    counters.spy(fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        teach(out, "vader", batch_size=4)
    assert not Dataset(out).stage_done("teach")
    assert len(list((out / "work" / "teach").glob("part-*.parquet"))) == 3  # the rows kept, two batches taught
    spy = counters.spy()
    teach(out, "vader", batch_size=4)
    # batches of four: [5, 40, 41, 42] and [43 (no text), 44, 45, 46] were taught before the stop
    assert spy.texts == [text_of(i) for i in range(47, 52)]
    assert Dataset(out).stage_info("teach")["run"] == {"taught": 13, "reused": 39}
    clean(out)
    stages(source, tmp_path / "scratch")
    assert_same_dataset(out, tmp_path / "scratch")

    # killed again, and the posts change before it runs again: still the table of a run from scratch
    lines += [line(52)]
    write_crawl(crawl, lines)
    ingest(source, out)
    counters.spy(fail_on_call=1)
    with pytest.raises(KeyboardInterrupt):
        teach(out, "vader", batch_size=4)
    lines[0] = line(0, text="Changed while the teacher was stopped: awful")
    write_crawl(crawl, lines)
    ingest(source, out)
    counters.spy()
    teach(out, "vader", batch_size=4)
    clean(out)
    stages(source, tmp_path / "scratch-2")
    assert_same_dataset(out, tmp_path / "scratch-2")


def test_an_ingest_killed_over_a_changed_source_resumes_even_if_the_source_changes_again(tmp_path, counters):
    crawl = tmp_path / "crawl"
    lines = [line(i) for i in range(20)]
    source = write_crawl(crawl, lines)
    out = tmp_path / "ds"
    ingest(source, out, batch_size=4, workers=1)
    lines += [line(i) for i in range(20, 30)]
    write_crawl(crawl, lines)
    counters.clear()
    counters.fail_fetch_on = 6
    with pytest.raises(KeyboardInterrupt):
        ingest(source, out, batch_size=4, workers=1)
    assert counters.fetched == [str(i) for i in range(20, 25)]

    # resumed as it was: the finished batches are not fetched again, nor the posts of the last ingest
    counters.clear()
    counters.fail_fetch_on = None
    counts = ingest(source, out, batch_size=4, workers=1)
    assert counters.fetched == [str(i) for i in range(24, 30)]
    assert (counts["new_posts"], counts["reused"]) == (10, 20)
    ingest(source, tmp_path / "scratch", batch_size=4, workers=1)
    assert_same_dataset(out, tmp_path / "scratch")

    # killed again; then a text changes: the rows of the stopped run are dropped, the last ingest's images kept
    lines += [line(30)]
    write_crawl(crawl, lines)
    counters.clear()
    counters.fail_fetch_on = 1
    with pytest.raises(KeyboardInterrupt):
        ingest(source, out, batch_size=4, workers=1)
    lines[2] = line(2, text="A new text for post 2")
    write_crawl(crawl, lines)
    counters.clear()
    counters.fail_fetch_on = None
    counts = ingest(source, out, batch_size=4, workers=1)
    assert counters.fetched == ["30"]
    assert (counts["new_posts"], counts["changed_posts"], counts["reused"]) == (1, 1, 30)
    ingest(source, tmp_path / "scratch-2", batch_size=4, workers=1)
    assert_same_dataset(out, tmp_path / "scratch-2")


def test_a_folder_source_that_gains_files_is_read_again(tmp_path, counters):
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(6):
        make_image(folder / f"{i}.jpg", "positive", seed=i)
        (folder / f"{i}.txt").write_text(text_of(i) or "plain")
    out = tmp_path / "ds"
    first = ingest(folder, out)
    counters.clear()
    assert ingest(folder, out) == first and counters.fetched == []
    make_image(folder / "6.jpg", "negative", seed=6)
    (folder / "6.txt").write_text("A sad one")
    counts = ingest(folder, out)
    assert counters.fetched == ["6"]
    assert counts["source_changed"] == "folder changed since the last ingest: files 2 added (6.jpg, 6.txt)"
    ingest(folder, tmp_path / "scratch")
    assert_same_dataset(out, tmp_path / "scratch")


def test_downloaded_images_are_not_downloaded_again_unless_their_url_changed(tmp_path):
    from faultserver import FaultServer

    source = tmp_path / "posts.jsonl"
    with FaultServer() as server:
        lines = [{"id": str(i), "text": text_of(i), "image": server.url(f"/ok/{i}.jpg")} for i in range(12)]
        source.write_text("".join(json.dumps(record) + "\n" for record in lines))
        out = tmp_path / "ds"
        ingest(source, out)
        assert sum(path.startswith("/ok/") for path in server.hits) == 12
        server.hits.clear()
        lines[4]["image"] = server.url("/ok/40.jpg")  # another image for post 4
        lines[6]["image"] = server.url("/404")       # post 6's image is gone
        lines.append({"id": "12", "text": "new", "image": server.url("/ok/12.jpg")})
        source.write_text("".join(json.dumps(record) + "\n" for record in lines))
        counts = ingest(source, out)
        assert sorted(path for path in server.hits if server.hits[path]) == ["/404", "/ok/12.jpg", "/ok/40.jpg"]
        assert (counts["new_posts"], counts["changed_posts"], counts["reused"], counts["error"]) == (1, 2, 10, 1)
        ingest(source, tmp_path / "scratch")
    assert_same_dataset(out, tmp_path / "scratch")


def test_an_archive_is_a_no_op_until_it_changes(tmp_path, counters):
    import zipfile

    crawl = tmp_path / "crawl"
    lines = [line(i) for i in range(8)]
    write_crawl(crawl, lines)
    archive = tmp_path / "crawl.zip"

    def pack() -> None:
        with zipfile.ZipFile(archive, "w") as zipped:
            for path in sorted(crawl.iterdir()):
                zipped.write(path, path.name)

    pack()
    out = tmp_path / "ds"
    first = ingest(archive, out)
    counters.clear()
    assert ingest(archive, out) == first and counters.fetched == []
    make_image(crawl / "3.jpg", "negative", seed=333)  # another image under the same name: read again
    lines.append(line(8))
    write_crawl(crawl, lines)
    pack()
    counts = ingest(archive, out)
    assert counts["source_changed"] == "crawl.zip changed since the last ingest" and counts["new_posts"] == 1
    assert len(counters.fetched) == 9  # an archive's images come from a new extraction each time: all read
    ingest(archive, tmp_path / "scratch")
    assert_same_dataset(out, tmp_path / "scratch")
    counters.clear()
    assert ingest(archive, out)["posts"] == 9 and counters.fetched == []
