"""Label Studio: tasks exported with the student's prediction as a pre-annotation in Label Studio's import format,
and Label Studio's JSON and JSON_MIN exports read back as human labels (visent adapt --labels, evaluate).

The files below follow Label Studio's documentation (HumanSignal/label-studio, docs/source/guide/):
predictions.md (tasks with ``predictions``: ``model_version``, ``score``, ``result`` of ``choices``), tasks.md
("Basic Label Studio JSON format": ``data``, ``annotations``, ``predictions``), export.md ("Label Studio JSON format
of annotated tasks": ``id``, ``data``, ``annotations[{id, result, was_cancelled, ground_truth, created_at,
updated_at, lead_time, task, completed_by}]``, ``predictions``; "JSON_MIN": the task's data fields beside each
control's value) and storage.md ("Tasks with local storage file references": ``/data/local-files/?d=`` paths
relative to LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT). JSON_MIN writes one object per annotation that is not
cancelled, a single choice as a plain string (label_studio_sdk.converter: convert_to_json_min, prettify_result).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from test_pipeline import make_image
from visent.core.errors import InputError, UsageError
from visent.core.labels import read_labelled_images
from visent.label.studio import config_path, export_tasks

STAMP = "2024-05-0{}T10:00:00.000000Z"


def _images(folder: Path, moods: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, mood in enumerate(moods):
        path = folder / f"{mood} {i}.jpg"  # a space: local-files paths are URL-encoded
        make_image(path, mood, seed=i)
        paths.append(path)
    return paths


def _result(choice: str, from_name: str = "sentiment") -> dict:
    """One result of an annotation, as export.md shows them (a choices control instead of rectangles)."""
    return {"id": f"r-{choice.lower()}", "from_name": from_name, "to_name": "image", "type": "choices",
            "origin": "manual", "value": {"choices": [choice]}}


def _annotation(number: int, task: int, choice: str | None, *, cancelled: bool = False, day: int = 1,
                ground_truth: bool = False) -> dict:
    """An annotation as Label Studio's JSON export writes it (export.md); a cancelled (skipped) one has no result."""
    return {"id": number, "completed_by": 1 + number % 3, "result": [] if choice is None else [_result(choice)],
            "was_cancelled": cancelled, "ground_truth": ground_truth, "created_at": STAMP.format(day),
            "updated_at": STAMP.format(day), "lead_time": 4.288, "prediction": {}, "result_count": 0,
            "task": task, "parent_prediction": None, "parent_annotation": None}


def _exported(task_id: int, data: dict, annotations: list[dict], predictions: list | None = None) -> dict:
    """A task of Label Studio's JSON export (export.md): its id, data, annotations and predictions."""
    return {"id": task_id, "annotations": annotations, "file_upload": None, "drafts": [],
            "predictions": predictions or [], "data": data, "meta": {}, "created_at": STAMP.format(1),
            "updated_at": STAMP.format(2), "inner_id": task_id, "total_annotations": len(annotations),
            "cancelled_annotations": sum(a["was_cancelled"] for a in annotations), "total_predictions": 0,
            "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 3,
            "updated_by": 1, "comment_authors": []}


def test_exported_tasks_follow_label_studios_import_format_and_match_the_config(tmp_path):
    root = tmp_path / "served"
    images = _images(root / "batch", ["positive", "negative", "positive"])
    (root / "batch" / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "tasks.json"
    record = export_tasks("default", [root / "batch"], out, document_root=root)

    assert record["tasks"] == 3 and sum(record["per_class"].values()) == 3
    assert len(record["skipped"]) == 1 and "broken.jpg" in record["skipped"][0]  # no task, listed with the reason
    assert record["config"] == str(config_path(out)) == str(tmp_path / "tasks.label_config.xml")
    tasks = json.loads(out.read_text())
    config = ET.fromstring(Path(record["config"]).read_text())
    image_tag, choices_tag = config.find("Image"), config.find("Choices")
    assert image_tag.get("value") == "$image" and choices_tag.get("choice") == "single"
    allowed = {c.get("value") for c in choices_tag.findall("Choice")}
    assert allowed == {"Negative", "Neutral", "Positive"}

    assert isinstance(tasks, list) and len(tasks) == 3
    for task in tasks:
        assert set(task) == {"data", "predictions"}
        reference = task["data"][image_tag.get("value").removeprefix("$")]
        assert reference.startswith("/data/local-files/?d=batch/")  # storage.md: relative to the document root
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "visent default"
        assert 1 / 3 <= prediction["score"] <= 1
        [result] = prediction["result"]
        assert result["from_name"] == choices_tag.get("name") and result["to_name"] == image_tag.get("name")
        assert result["to_name"] == choices_tag.get("toName") and result["type"] == "choices"
        assert len(result["value"]["choices"]) == 1 and result["value"]["choices"][0] in allowed
        assert Path(task["data"]["visent_path"]).is_file()
    assert len({t["predictions"][0]["result"][0]["id"] for t in tasks}) == 3  # predictions.md: distinct ids
    from urllib.parse import parse_qs, urlsplit

    served = {(root / parse_qs(urlsplit(t["data"]["image"]).query)["d"][0]).resolve() for t in tasks}
    assert served == {p.resolve() for p in images}

    # the student's own prediction is what the task shows
    from visent.model import VisentModel

    rows = {Path(r["path"]).resolve(): r for r in VisentModel.load("default").predict_rows([(str(p), None)
                                                                                            for p in images])}
    for task in tasks:
        row = rows[Path(task["data"]["visent_path"])]
        assert task["predictions"][0]["result"][0]["value"]["choices"] == [row["label"].capitalize()]
        assert task["predictions"][0]["score"] == pytest.approx(max(row[c] for c in ("negative", "neutral",
                                                                                      "positive")), abs=1e-6)


def test_images_are_referenced_by_url_prefix_or_absolute_path(tmp_path):
    images = _images(tmp_path / "pics" / "a", ["positive", "negative"])
    out = tmp_path / "tasks.json"
    export_tasks("default", images, out, url_prefix="https://example.org/pics", root=tmp_path / "pics")
    assert [t["data"]["image"] for t in json.loads(out.read_text())] == [
        "https://example.org/pics/a/positive%200.jpg", "https://example.org/pics/a/negative%201.jpg"]
    export_tasks("default", images, out, url_prefix="https://example.org/a/")  # the images' own folder
    assert json.loads(out.read_text())[0]["data"]["image"] == "https://example.org/a/positive%200.jpg"
    export_tasks("default", images, out)
    assert [t["data"]["image"] for t in json.loads(out.read_text())] == [str(p.resolve()) for p in images]
    with pytest.raises(UsageError, match="not both"):
        export_tasks("default", images, out, url_prefix="https://example.org/", document_root=tmp_path)
    outside = export_tasks("default", images + [Path(__file__)], out, document_root=tmp_path / "pics" / "a")
    assert outside["tasks"] == 2 and len(outside["skipped"]) == 1


def test_a_label_studio_export_of_the_tasks_adapts_the_student(tmp_path, monkeypatch):
    """The round trip: tasks exported, a person's choices in Label Studio's JSON export, visent adapt on it."""
    from visent.train.adapt import adapt_model

    root = tmp_path / "served"
    moods = ["positive", "negative"] * 4
    _images(root / "batch", moods)
    tasks_file = tmp_path / "tasks.json"
    export_tasks("default", [root / "batch"], tasks_file, document_root=root)
    tasks = json.loads(tasks_file.read_text())

    exported, truth = [], {}
    for number, task in enumerate(tasks, start=1):
        data = dict(task["data"])
        if number % 2:
            del data["visent_path"]  # a task made elsewhere: its local-files URL is resolved instead
        mood = "positive" if "positive" in data["image"] else "negative"
        truth[number] = mood
        annotations = [_annotation(100 + number, number, mood.capitalize())]
        if number == 3:  # a cancelled (skipped) annotation is ignored, whatever it chose
            annotations.insert(0, _annotation(200, number, "Neutral", cancelled=True, day=5))
        exported.append(_exported(number, data, annotations, task["predictions"]))
    exported.append(_exported(90, {"image": "/data/upload/3/5d1a6c2e-holiday.jpg"},
                              [_annotation(300, 90, "Positive")]))
    exported.append(_exported(91, {"image": tasks[0]["data"]["image"]},
                              [_annotation(301, 91, None, cancelled=True)]))
    exported.append(_exported(92, {"image": tasks[1]["data"]["image"]}, []))  # exported with all tasks: unlabelled
    export = tmp_path / "project-3-at-2024-05-09-10-00-1a2b3c4d.json"
    export.write_text(json.dumps(exported, indent=2))

    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(root))
    paths, labels, skipped = read_labelled_images(export)
    assert labels == [truth[n] for n in range(1, len(tasks) + 1)]
    assert [Path(p).resolve() for p in paths] == [Path(t["data"]["visent_path"]) for t in tasks]
    assert len(skipped) == 3
    assert "task 90" in skipped[0] and "/data/upload/" in skipped[0] and "uploaded into Label Studio" in skipped[0]
    assert "task 91" in skipped[1] and "cancelled" in skipped[1]
    assert "task 92" in skipped[2] and "not labelled" in skipped[2]

    record = adapt_model("default", export, tmp_path / "adapted")
    assert record["labels"] == len(tasks)
    assert record["per_class"]["positive"] == moods.count("positive") == 4
    assert record["per_class"]["negative"] == moods.count("negative") == 4
    assert record["per_class"]["neutral"] == 0
    assert any("uploaded into Label Studio" in reason for reason in record["skipped"])
    assert (tmp_path / "adapted" / "head.npz").is_file()


def test_json_min_exports_are_read_one_object_per_annotation(tmp_path):
    images = _images(tmp_path / "imgs", ["positive", "negative", "positive"])
    root = tmp_path
    refs = [f"/data/local-files/?d=imgs/{p.name.replace(' ', '%20')}" for p in images]

    def row(task, ref, choice, number, day):  # export.md, JSON_MIN: the data's fields beside the control's value
        return {"image": ref, "id": task, "sentiment": choice, "annotator": number % 3 + 1, "annotation_id": number,
                "created_at": STAMP.format(day), "updated_at": STAMP.format(day), "lead_time": 2.5}

    records = [row(1, refs[0], "Positive", 1, 1),
               row(2, refs[1], "Negative", 2, 1), row(2, refs[1], "neutral", 3, 2), row(2, refs[1], "Negative", 4, 3),
               row(3, refs[2], "Positive", 5, 1), row(3, refs[2], "Neutral", 6, 4),  # a tie: the latest decides
               {"image": refs[0], "id": 4}]  # a task without annotations, exported with all tasks
    export = tmp_path / "exports" / "project-1-at-2024-05-09.json"
    export.parent.mkdir()
    export.write_text(json.dumps(records))
    paths, labels, skipped = read_labelled_images(export, document_root=root)
    assert labels == ["positive", "negative", "neutral"]
    assert paths == [str(root / "imgs" / p.name) for p in images]
    assert len(skipped) == 1 and "task 4" in skipped[0] and "not labelled" in skipped[0]


def test_cancelled_annotations_are_ignored_and_ground_truth_or_the_majority_decides(tmp_path):
    [image] = _images(tmp_path, ["negative"])
    data = {"image": str(image)}
    tasks = [
        _exported(1, data, [_annotation(1, 1, "Positive", cancelled=True, day=9), _annotation(2, 1, "Negative")]),
        _exported(2, data, [_annotation(3, 2, "Positive", day=1), _annotation(4, 2, "Positive", day=2),
                            _annotation(5, 2, "Negative", day=3)]),
        _exported(3, data, [_annotation(6, 3, "Positive", day=1), _annotation(7, 3, "Positive", day=2),
                            _annotation(8, 3, "Neutral", day=3, ground_truth=True)]),
        _exported(4, data, [_annotation(9, 4, "Positive", cancelled=True), _annotation(10, 4, "Neutral",
                                                                                       cancelled=True)]),
        _exported(5, data, [_annotation(11, 5, "Funny")]),
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    paths, labels, skipped = read_labelled_images(export)
    assert labels == ["negative", "positive", "neutral"] and paths == [str(image)] * 3
    assert "task 4" in skipped[0] and "every annotation was cancelled" in skipped[0]
    assert "task 5" in skipped[1] and "'Funny'" not in skipped[1] and "Funny" in skipped[1]


def test_image_references_resolve_to_local_files_or_say_why_not(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    [image] = _images(tmp_path / "root" / "set", ["positive"])
    local = "/data/local-files/?d=set/positive%200.jpg"
    refs = {
        1: local,                                      # storage.md: relative to the document root
        2: "http://localhost:8080" + local,            # with Label Studio's host before it
        3: "/data/upload/7/0f3e-photo.jpg",            # uploaded into Label Studio
        4: "https://example.org/photo.jpg",            # a web URL visent did not export
        5: "set/positive 0.jpg",                       # a plain relative path: from the export's folder
        6: "/data/local-files/?d=set/missing.jpg",
    }
    export = tmp_path / "root" / "export.json"
    export.write_text(json.dumps([_exported(n, {"image": ref}, [_annotation(n, n, "Positive")])
                                  for n, ref in refs.items()]))
    paths, _, skipped = read_labelled_images(export, document_root=tmp_path / "root")
    assert paths == [str(image)] * 3
    assert [reason.split(": ")[1] for reason in skipped] == ["task 3", "task 4", "task 6"]
    assert "uploaded into Label Studio" in skipped[0] and "a URL, not a file here" in skipped[1]
    assert "no file" in skipped[2] and "missing.jpg" in skipped[2]

    # without a document root, the export's folder; the variable Label Studio itself reads comes first
    moved = tmp_path / "elsewhere" / "export.json"
    moved.parent.mkdir()
    moved.write_text(export.read_text())
    paths, _, skipped = read_labelled_images(moved)
    assert paths == [str(moved.parent / "set" / "positive 0.jpg")]  # task 5 only
    assert "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT" in skipped[0]
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path / "root"))
    paths, _, _ = read_labelled_images(moved)
    assert paths[:2] == [str(image)] * 2


def test_evaluate_reads_an_export_as_a_benchmark_and_bad_files_say_what_is_expected(tmp_path):
    from visent.evaluate.benchmarks import load_benchmark

    [image] = _images(tmp_path, ["positive"])
    export = tmp_path / "export.json"
    export.write_text(json.dumps([_exported(1, {"image": str(image)}, [_annotation(1, 1, "Positive")])]))
    benchmark = load_benchmark(export)
    assert benchmark.paths == [str(image)] and benchmark.labels == ["positive"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="JSON or JSON_MIN"):
        read_labelled_images(bad)
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(InputError, match="not a Label Studio export"):
        read_labelled_images(bad)
