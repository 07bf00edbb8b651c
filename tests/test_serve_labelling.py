"""visent serve's labelling mode: the images a person should label next, one after another, each label saved to
the labels file as it is given, read back as ``visent adapt --labels`` reads it, and never asked twice, even by a
restarted server. The shipped model over a small pool of generated images, through FastAPI's TestClient."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import visent
from test_pipeline import make_image
from visent.core.errors import UsageError
from visent.core.labels import CLASSES, read_labelled_images
from visent.label import suggest
from visent.serve import create_app

POOL_SIZE = 8


@pytest.fixture(scope="module")
def model():
    return visent.load("default")


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pool")
    for i in range(POOL_SIZE):
        make_image(folder / f"img{i:02d}.jpg", "positive" if i % 2 else "negative", seed=100 + i)
    return folder


def ready(client: TestClient) -> dict:
    """GET /label/next once the images to label are chosen (202 while the pool is scored)."""
    deadline = time.monotonic() + 120
    while True:
        response = client.get("/label/next", params={"wait": 5})
        if response.status_code != 202:
            assert response.status_code == 200, response.text
            return response.json()
        assert response.json()["status"] == "preparing"
        assert time.monotonic() < deadline, "the images to label were not chosen within 2 minutes"


def label(client: TestClient, rank: int, value: str) -> dict:
    response = client.post("/label", json={"rank": rank, "label": value})
    assert response.status_code == 200, response.text
    return response.json()


def test_next_label_next_and_the_labels_file_reads_back(model, pool, tmp_path):
    labels = tmp_path / "labels.csv"
    client = TestClient(create_app(model, label_pool=str(pool), labels_file=labels, label_n=5))
    first = ready(client)
    expected = suggest(model, pool, 5)  # the page shows the order of `visent label suggest`
    assert first["status"] == "ready" and first["image"]["rank"] == 1
    assert first["image"]["name"] == Path(expected.rows[0].path).name
    assert first["image"]["predicted"] == expected.rows[0].predicted
    assert sum(first["image"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert (first["labelled"], first["total"], first["left"]) == (0, 5, 5)
    assert not labels.exists()  # nothing written before a label is given

    image = client.get("/" + first["image"]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == Path(expected.rows[0].path).read_bytes()

    second = label(client, 1, "positive")
    # an image outside the labels file's folder is written in full (inside it: relative, as adapt reads it)
    assert second["saved"] == {"rank": 1, "label": "positive", "path": Path(expected.rows[0].path).resolve().as_posix()}
    assert second["image"]["rank"] == 2 and (second["labelled"], second["total"]) == (1, 5)
    assert read_labelled_images(labels)[:2] == ([expected.rows[0].path], ["positive"])  # saved before the answer
    third = label(client, 2, "negative")
    assert third["image"]["rank"] == 3 and third["labelled"] == 2
    assert client.get("/label/next").json() == {k: v for k, v in third.items() if k != "saved"}  # a reload: same

    label(client, 1, "neutral")  # changed its mind: replaces, never a second row
    paths, given, skipped = read_labelled_images(labels)
    assert [Path(p).resolve() for p in paths] == [Path(r.path).resolve() for r in expected.rows[:2]]
    assert given == ["neutral", "negative"] and skipped == []
    assert labels.read_text().splitlines()[0] == "path,label"


def test_skip_and_the_end_of_the_picks(model, pool, tmp_path):
    labels = tmp_path / "labels.csv"
    client = TestClient(create_app(model, label_pool=str(pool), labels_file=labels, label_n=3))
    assert ready(client)["image"]["rank"] == 1
    after = label(client, 1, "skip")
    assert after["image"]["rank"] == 2 and after["skipped"] == 1 and after["labelled"] == 0
    assert not labels.exists()  # a skip writes nothing
    label(client, 2, "positive")
    done = label(client, 3, "negative")
    assert done["status"] == "done" and done["image"] is None
    assert (done["labelled"], done["total"], done["skipped"], done["left"]) == (2, 3, 1, 0)
    assert read_labelled_images(labels)[1] == ["positive", "negative"]


def test_a_restarted_server_does_not_ask_again(model, pool, tmp_path):
    labels = tmp_path / "labels.csv"
    first = TestClient(create_app(model, label_pool=str(pool), labels_file=labels, label_n=POOL_SIZE))
    shown = ready(first)
    asked = []
    for value in ("positive", "negative", "neutral"):
        asked.append(Path(shown["image"]["name"]).name)
        shown = label(first, shown["image"]["rank"], value)

    again = TestClient(create_app(model, label_pool=str(pool), labels_file=labels, label_n=POOL_SIZE))
    state = ready(again)
    assert (state["labelled"], state["earlier"], state["total"]) == (3, 3, POOL_SIZE)  # the count continues
    names = []
    while state["status"] == "ready":
        names.append(state["image"]["name"])
        state = label(again, state["image"]["rank"], "skip")
    assert len(names) == POOL_SIZE - 3 and not set(names) & set(asked)  # nothing is asked twice
    assert sorted(asked + names) == sorted(p.name for p in pool.iterdir())


def test_labels_file_rows_are_kept_and_its_images_not_asked(model, pool, tmp_path):
    """A CSV of `visent label suggest` as the labels file: its rows stay, its filled-in ones are not asked."""
    labels = tmp_path / "to-label.csv"
    labels.write_text(f"path,label,predicted\n{pool / 'img00.jpg'},positive,positive\n"
                      f"{pool / 'img01.jpg'},,negative\n")
    client = TestClient(create_app(model, label_pool=str(pool), labels_file=labels, label_n=POOL_SIZE))
    state = ready(client)
    assert state["earlier"] == 1 and state["total"] == POOL_SIZE
    ranks = {}
    while state["status"] == "ready":
        ranks[state["image"]["name"]] = state["image"]["rank"]
        state = label(client, state["image"]["rank"], "skip")
    assert "img00.jpg" not in ranks and "img01.jpg" in ranks
    label(client, ranks["img01.jpg"], "negative")
    lines = labels.read_text().splitlines()
    assert lines[0] == "path,label,predicted" and lines[1].endswith(",positive,positive")
    assert lines[2] == f"{pool / 'img01.jpg'},negative,negative" and len(lines) == 3  # filled in where it was
    assert read_labelled_images(labels)[1] == ["positive", "negative"]


def test_bad_requests(model, pool, tmp_path):
    client = TestClient(create_app(model, label_pool=str(pool), labels_file=tmp_path / "labels.csv", label_n=2))
    ready(client)
    response = client.post("/label", json={"rank": 1, "label": "happy"})
    assert response.status_code == 422
    assert "unknown label 'happy'" in response.json()["detail"] and "skip" in response.json()["detail"]
    assert client.post("/label", json={"rank": 1}).status_code == 422
    for rank in (0, 3, 99):
        response = client.post("/label", json={"rank": rank, "label": "positive"})
        assert response.status_code == 404 and "ranks run from 1 to 2" in response.json()["detail"]
        assert client.get(f"/label/image/{rank}").status_code == 404
    for path in ("/label/image/-1", "/label/image/..%2F..%2Fetc%2Fpasswd", "/label/image/%2Fetc%2Fpasswd",
                 "/label/image/1/../../../etc/passwd"):
        assert client.get(path).status_code in (404, 422), path  # a rank or nothing: never a path
    assert client.get("/label/image/1").status_code == 200
    assert not (tmp_path / "labels.csv").exists()


def test_without_a_pool_the_mode_is_absent(model):
    client = TestClient(create_app(model))
    for response in (client.get("/label/next"), client.get("/label/image/1"),
                     client.post("/label", json={"rank": 1, "label": "positive"})):
        assert response.status_code == 404
        assert "--label-pool" in response.json()["detail"]


def test_a_pool_without_images_is_refused_at_once(model, pool, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no image to label"):
        create_app(model, label_pool=str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="unknown suggestion strategy"):
        create_app(model, label_pool=str(tmp_path), label_strategy="vibes")
    with pytest.raises(UsageError, match="CSV"):
        create_app(model, label_pool=str(pool), labels_file=tmp_path / "labels.json")


def test_predict_still_works_beside_labelling(model, pool, tmp_path):
    client = TestClient(create_app(model, label_pool=str(pool), labels_file=tmp_path / "labels.csv", label_n=2))
    data = (pool / "img03.jpg").read_bytes()
    response = client.post("/predict", files=[("files", ("img03.jpg", data, "image/jpeg"))])
    assert response.status_code == 200, response.text  # waits for the pool's scoring, never fails for it
    assert set(response.json()["predictions"][0]["probabilities"]) == set(CLASSES)
    assert ready(client)["total"] == 2
