"""Tests of the clean stage: image checks, pHash, near-duplicate index and the keep/drop rules."""

from __future__ import annotations

import io
import json
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import MVSA, needs_mvsa
from visent.clean import (
    DEFAULT_THRESHOLDS,
    STEPS,
    HammingIndex,
    ImageCheck,
    analyse_image,
    clean,
    size_check,
    summarise,
)
from visent.clean import checks as clean_images
from visent.core import schema
from visent.core.store import Dataset, DatasetError


# --------------------------------------------------------------------------- fixtures
def check_image(path: Path, *, min_side: int = 32) -> ImageCheck:
    """The clean stage's verdict on one file: the decode check, then the size rule."""
    return size_check(analyse_image(path)[0], min_side)


def pairs_within(index: HammingIndex, distance: int) -> list[tuple[int, int, int]]:
    i, j, d = index.pair_arrays(distance)
    return list(zip(i.tolist(), j.tolist(), d.tolist()))


def smooth_image(seed: int, size: int = 256) -> Image.Image:
    """A photo-like image: a random 6x6 colour grid upsampled smoothly (stable pHash)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    noise = np.random.default_rng(5).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = jpeg(Image.fromarray(noise))
    return data[:len(data) // 2]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def teach(label: str | None, confidence: float = 0.95) -> dict:
    """Teacher output whose argmax is ``label`` with probability ``confidence`` (None: skipped)."""
    if label is None:
        return {"teach_status": "skipped", "teach_reason": "no text"}
    rest = (1.0 - confidence) / 2
    probs = {f"p_{c}": (confidence if c == label else rest) for c in ("negative", "neutral", "positive")}
    return {**probs, "teach_label": label, "teach_confidence": confidence, "teach_status": "ok", "teach_reason": ""}


def build(root: Path, posts: list[tuple[str, bytes | None, dict]], ingest_errors: dict[str, str] | None = None) -> Dataset:
    """A dataset with finished ingest and teach stages; posts are (post_id, image bytes, teacher output)."""
    ds = Dataset(root, create=True)
    ingest_errors = ingest_errors or {}
    post_rows, teach_rows = [], []
    for post_id, data, teacher in posts:
        sha = rel = None
        if data is not None:
            sha, rel = ds.put_image(data, "jpg")
        error = ingest_errors.get(post_id)
        post_rows.append({"post_id": post_id, "source": f"test:{post_id}", "text": "some text", "image_ref": f"{post_id}.jpg",
                          "image_sha256": None if error else sha, "image_file": None if error else rel,
                          "ingest_status": "error" if error else "ok", "ingest_reason": error or ""})
        teach_rows.append({"post_id": post_id, "teacher": "test", **teacher})
    ds.write_table("posts", post_rows, schema.POSTS)
    ds.finish_stage("ingest", {"source": "test"}, {"posts": len(post_rows)})
    ds.write_table("teach", teach_rows, schema.TEACH)
    ds.finish_stage("teach", {"teacher": "test"}, {"posts": len(teach_rows)}, thresholds=dict(DEFAULT_THRESHOLDS))
    return ds


def rows_by_id(ds: Dataset) -> dict[str, dict]:
    return {row["post_id"]: row for row in ds.read_table("clean").to_pylist()}


@pytest.fixture
def images() -> dict[str, bytes]:
    base = smooth_image(1)
    good = jpeg(base)
    return {
        "good": good,
        "near_quality": jpeg(base, quality=40),
        "near_bright": jpeg(ImageEnhance.Brightness(base).enhance(1.1)),
        "near_resized": jpeg(base.resize((180, 180))),
        "other": jpeg(smooth_image(2)),
        "third": jpeg(smooth_image(3)),
        "fourth": png(smooth_image(4)),
        "truncated": truncated_jpeg(),
        "text": b"this is not an image at all\n",
        "tiny": jpeg(smooth_image(6, 10)),
        "wide": jpeg(smooth_image(7).resize((300, 20))),
    }


# --------------------------------------------------------------------------- image checks
def test_check_image_reasons(tmp_path, images):
    for name, data in images.items():
        (tmp_path / f"{name}.jpg").write_bytes(data)
    assert check_image(tmp_path / "good.jpg") == ImageCheck(True, "", 256, 256, "JPEG")
    assert check_image(tmp_path / "fourth.jpg") == ImageCheck(True, "", 256, 256, "PNG")
    assert check_image(tmp_path / "truncated.jpg").reason == "truncated JPEG image"
    assert check_image(tmp_path / "text.jpg").reason == "not an image (text)"
    assert check_image(tmp_path / "tiny.jpg") == ImageCheck(False, "tiny image (10x10 < 32 px)", 10, 10, "JPEG")
    assert check_image(tmp_path / "wide.jpg").reason == "tiny image (300x20 < 32 px)"
    assert check_image(tmp_path / "wide.jpg", min_side=16).ok
    assert check_image(tmp_path / "missing.jpg").reason == "file missing"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert check_image(tmp_path / "empty.jpg").reason == "empty file"


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # visent says it, Pillow does not warn
def test_check_image_decompression_bomb(tmp_path, images, monkeypatch):
    path = tmp_path / "good.jpg"
    path.write_bytes(images["good"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 256x256 exceeds twice the limit: an error
    check = check_image(path)
    assert not check.ok and check.reason == "too many pixels (256 x 256 = 65,536 pixels, more than the limit 20,000)"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60_000)  # over the limit only: Pillow warns, visent drops
    assert check_image(path).reason == "too many pixels (256 x 256 = 65,536 pixels, more than the limit 60,000)"


def test_perceptual_hash(tmp_path, images):
    def phash(name: str) -> int:
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(images[name])
        return analyse_image(path)[1]

    value = phash("good")
    assert 0 <= value < 2**64
    exact = int(str(imagehash.phash(Image.open(io.BytesIO(images["good"])))), 16)
    assert bin(value ^ exact).count("1") <= 2  # the reduced-size decode barely moves imagehash's pHash
    for near in ("near_quality", "near_bright", "near_resized"):
        assert bin(phash(near) ^ value).count("1") <= 4, near
    assert bin(phash("other") ^ value).count("1") > 10


# --------------------------------------------------------------------------- Hamming index
def brute_force_pairs(hashes: np.ndarray, distance: int) -> list[tuple[int, int, int]]:
    out = []
    for i in range(len(hashes)):
        d = np.bitwise_count(hashes[i] ^ hashes[i + 1:]) if hasattr(np, "bitwise_count") else \
            np.array([bin(int(x)).count("1") for x in hashes[i] ^ hashes[i + 1:]])
        for j in np.flatnonzero(d <= distance):
            out.append((i, i + 1 + int(j), int(d[j])))
    return out


def planted_hashes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    for k in range(n // 4):  # copies of earlier hashes with 0..9 flipped bits, some chained
        src, dst = rng.integers(0, n, size=2)
        value = int(hashes[src])
        for bit in rng.choice(64, size=k % 10, replace=False):
            value ^= 1 << int(bit)
        hashes[dst] = value
    hashes[:3] = hashes[3]  # a run of identical hashes
    return hashes


@pytest.mark.parametrize("distance", [0, 1, 3, 4, 6, 9])
def test_hamming_index_equals_brute_force(distance):
    hashes = planted_hashes(1500, seed=distance)
    expected = brute_force_pairs(hashes, distance)
    assert len(expected) > 10
    assert pairs_within(HammingIndex(hashes), distance) == expected


def test_hamming_index_edges():
    assert pairs_within(HammingIndex(np.array([], dtype=np.uint64)), 4) == []
    assert pairs_within(HammingIndex(np.array([5], dtype=np.uint64)), 4) == []
    top = np.array([2**64 - 1, 2**64 - 2, 0], dtype=np.uint64)
    assert pairs_within(HammingIndex(top), 1) == [(0, 1, 1)]
    with pytest.raises(ValueError):
        pairs_within(HammingIndex(top), -1)


# --------------------------------------------------------------------------- the stage
@pytest.fixture
def dataset(tmp_path, images) -> Dataset:
    posts = [
        ("p01", images["good"], teach("positive", 0.95)),
        ("p02", images["good"], teach("positive", 0.97)),        # exact duplicate, more confident: kept instead
        ("p03", images["near_quality"], teach("negative", 0.96)),  # near duplicate, conflicting label
        ("p04", images["near_bright"], teach("positive", 0.91)),
        ("p05", images["near_resized"], teach("positive", 0.96)),
        ("p06", images["truncated"], teach("positive", 0.99)),
        ("p07", images["text"], teach("positive", 0.99)),
        ("p08", images["tiny"], teach("positive", 0.99)),
        ("p09", images["other"], teach(None)),
        ("p10", images["third"], teach("positive", 0.72)),
        ("p11", images["fourth"], teach("negative", 0.70)),       # exactly at its threshold: kept
        ("p12", images["good"], teach("neutral", 0.99)),          # ingest error wins over everything
        ("p13", None, teach("neutral", 0.95)),
        ("p14", jpeg(smooth_image(14)), teach("neutral", 0.95)),
        ("p15", jpeg(smooth_image(15)), teach("negative", 0.69)),
    ]
    return build(tmp_path / "ds", posts, ingest_errors={"p12": "download failed: HTTP 404"})


def test_clean_rows_and_counts(dataset):
    counts = clean(dataset)
    assert list(counts) == ["posts", *STEPS, "kept"]
    assert counts == {"posts": 15, "ingest_error": 1, "bad_image": 4, "exact_duplicate": 1, "near_duplicate": 3,
                      "no_teacher_label": 1, "low_confidence": 2, "neutral_dropped": 0, "balanced_out": 0,
                      "kept": 3}
    rows = rows_by_id(dataset)
    assert list(rows) == [f"p{i:02d}" for i in range(1, 16)]  # one row per post, in post order
    reasons = {post_id: row["clean_reason"] for post_id, row in rows.items()}
    assert reasons == {
        "p01": "exact duplicate of p02",
        "p02": "",
        "p03": reasons["p03"], "p04": reasons["p04"], "p05": reasons["p05"],
        "p06": "truncated JPEG image",
        "p07": "not an image (text)",
        "p08": "tiny image (10x10 < 32 px)",
        "p09": "no teacher label (no text)",
        "p10": "low teacher confidence (positive 0.72 < 0.90)",
        "p11": "",
        "p12": "ingest: download failed: HTTP 404",
        "p13": "no image",
        "p14": "",
        "p15": "low teacher confidence (negative 0.69 < 0.70)",
    }
    for near in ("p03", "p04", "p05"):
        assert reasons[near].startswith("near duplicate of p02 (distance "), reasons[near]
        assert int(reasons[near].split("distance ")[1].rstrip(")")) <= 4
        assert rows[near]["duplicate_of"] == "p02"
    assert rows["p01"]["duplicate_of"] == "p02"
    assert {post_id for post_id, row in rows.items() if row["clean_status"] == "kept"} == {"p02", "p11", "p14"}
    assert all(row["clean_status"] == "dropped" for post_id, row in rows.items() if reasons[post_id])
    steps = {post_id: row["clean_step"] for post_id, row in rows.items()}
    assert steps == {"p01": "exact_duplicate", "p02": None, "p03": "near_duplicate", "p04": "near_duplicate",
                     "p05": "near_duplicate", "p06": "bad_image", "p07": "bad_image", "p08": "bad_image",
                     "p09": "no_teacher_label", "p10": "low_confidence", "p11": None, "p12": "ingest_error",
                     "p13": "bad_image", "p14": None, "p15": "low_confidence"}
    assert {step: list(steps.values()).count(step) for step in STEPS} == {step: counts[step] for step in STEPS}
    assert rows["p02"]["label"] == "positive" and rows["p03"]["label"] == "negative"
    assert rows["p09"]["label"] is None
    assert (rows["p02"]["width"], rows["p02"]["height"]) == (256, 256)
    assert (rows["p08"]["width"], rows["p08"]["height"]) == (10, 10)  # tiny but readable: measured
    assert len(rows["p02"]["phash"]) == 16 and rows["p01"]["phash"] == rows["p02"]["phash"]
    assert rows["p06"]["phash"] is None and rows["p12"]["width"] is None
    assert summarise(dataset) == {"negative": 1, "neutral": 1, "positive": 1}
    assert Dataset(dataset.root).stage_done("clean")


def test_near_duplicate_distance_zero_groups_identical_hashes_only(dataset):
    counts = clean(dataset, near_dup_distance=0)
    rows = rows_by_id(dataset)
    near = [p for p in ("p03", "p04", "p05") if rows[p]["clean_reason"].startswith("near duplicate")]
    assert counts["exact_duplicate"] == 1 and counts["near_duplicate"] == len(near) < 3
    assert all(rows[p]["phash"] == rows[rows[p]["duplicate_of"]]["phash"] for p in near)
    assert all(rows[p]["clean_reason"].endswith("(distance 0)") for p in near)


def test_thresholds_config(dataset):
    counts = clean(dataset, thresholds={"positive": 0.7, "neg": 0.95})
    rows = rows_by_id(dataset)
    assert rows["p10"]["clean_status"] == "kept"
    assert rows["p11"]["clean_reason"] == "low teacher confidence (negative 0.70 < 0.95)"
    assert dataset.stage_info("clean")["params"]["thresholds"] == {"negative": 0.95, "neutral": 0.9, "positive": 0.7}
    assert counts["low_confidence"] == 2
    with pytest.raises(ValueError, match="unknown class"):
        clean(dataset, thresholds={"happy": 0.5})
    with pytest.raises(ValueError, match="between 0 and 1"):
        clean(dataset, thresholds={"positive": 1.5})
    assert DEFAULT_THRESHOLDS == {"negative": 0.7, "neutral": 0.9, "positive": 0.9}


def test_drop_neutral_and_balance(tmp_path):
    posts = [(f"n{i}", jpeg(smooth_image(100 + i)), teach("negative")) for i in range(3)]
    posts += [(f"u{i}", jpeg(smooth_image(200 + i)), teach("neutral")) for i in range(2)]
    posts += [(f"p{i}", jpeg(smooth_image(300 + i)), teach("positive")) for i in range(6)]
    ds = build(tmp_path / "ds", posts)

    counts = clean(ds, balance=True)
    assert counts["balanced_out"] == 1 + 4 and summarise(ds) == {"negative": 2, "neutral": 2, "positive": 2}
    first = {p: r["clean_status"] for p, r in rows_by_id(ds).items()}
    assert {r["clean_reason"] for r in rows_by_id(ds).values()} == {"", "balanced out"}

    counts = clean(ds, balance=True, drop_neutral=True)
    assert counts["neutral_dropped"] == 2 and counts["balanced_out"] == 3
    assert summarise(ds) == {"negative": 3, "neutral": 0, "positive": 3}
    assert rows_by_id(ds)["u0"]["clean_reason"] == "neutral dropped"

    clean(ds, balance=True, seed=0)
    assert {p: r["clean_status"] for p, r in rows_by_id(ds).items()} == first  # seeded: same choice
    picks = set()
    for seed in range(1, 6):
        clean(ds, balance=True, seed=seed)
        picks.add(frozenset(p for p, r in rows_by_id(ds).items() if r["clean_status"] == "kept"))
    assert len(picks) > 1  # the seed changes which posts are kept


def test_rerun_is_noop_and_new_thresholds_reuse_image_cache(dataset, monkeypatch):
    calls = []
    real = clean_images.analyse_image
    monkeypatch.setattr(clean_images, "analyse_image", lambda path: calls.append(path) or real(path))

    first = clean(dataset)
    decoded = len(calls)
    assert decoded == 12  # each distinct image once (ingest errors and exact duplicates skipped)
    mtime = dataset.table_path("clean").stat().st_mtime_ns

    assert clean(dataset) == first
    assert clean(Dataset(dataset.root)) == first  # order survives the manifest round trip
    assert dataset.table_path("clean").stat().st_mtime_ns == mtime

    second = clean(dataset, thresholds={"positive": 0.5})
    assert len(calls) == decoded  # new thresholds: nothing decoded again
    assert second["low_confidence"] == first["low_confidence"] - 1
    assert dataset.table_path("clean").stat().st_mtime_ns != mtime
    assert (dataset.root / "work" / "clean-images.parquet").exists()


def test_a_clean_table_of_an_older_visent_is_made_again(dataset, monkeypatch):
    """A table without clean_step, and image checks cached under an older METHOD (with the old wording of the
    reasons), are redone when the stage runs with the same options."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    first = clean(dataset)
    old = dataset.read_table("clean").drop_columns(["clean_step"])
    pq.write_table(old, dataset.table_path("clean"))
    manifest = json.loads((dataset.root / "manifest.json").read_text())
    manifest.pop("tables")  # an older visent recorded no tables
    (dataset.root / "manifest.json").write_text(json.dumps(manifest))
    cache = dataset.root / "work" / "clean-images.parquet"
    images = pq.read_table(cache)
    stale = images.set_column(images.schema.get_field_index("method"), "method",
                              pa.array(["phash8-draftL64-v1"] * images.num_rows))
    stale = stale.set_column(stale.schema.get_field_index("reason"), "reason",
                             pc.replace_substring(stale.column("reason"), "not an image (text)",
                                                  "unreadable image: not an image"))
    pq.write_table(stale, cache)
    calls = []
    real = clean_images.analyse_image
    monkeypatch.setattr(clean_images, "analyse_image", lambda path: calls.append(path) or real(path))

    assert clean(Dataset(dataset.root)) == first
    assert len(calls) == 12  # the old cache's results were not reused
    rows = rows_by_id(dataset)
    assert rows["p07"]["clean_step"] == "bad_image" and rows["p07"]["clean_reason"] == "not an image (text)"
    assert dataset.read_table("clean").schema.names == schema.CLEAN.names


def test_interrupted_image_pass_resumes(dataset, monkeypatch):
    from visent.clean import stage

    monkeypatch.setattr(stage, "_CACHE_BATCH", 4)
    real = clean_images.analyse_image
    calls = []

    def flaky(path):
        if len(calls) == 6:
            raise KeyboardInterrupt
        calls.append(path)
        return real(path)

    monkeypatch.setattr(clean_images, "analyse_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        clean(dataset)
    assert not Dataset(dataset.root).stage_done("clean")
    calls.clear()
    monkeypatch.setattr(clean_images, "analyse_image", lambda path: calls.append(path) or real(path))
    clean(dataset)
    assert len(calls) == 12 - 4  # the first finished batch of 4 came from the checkpoint


def test_requires_teach(tmp_path, images):
    ds = Dataset(tmp_path / "ds", create=True)
    ds.write_table("posts", [{"post_id": "a", "ingest_status": "ok", "ingest_reason": ""}], schema.POSTS)
    ds.finish_stage("ingest", {}, {})
    with pytest.raises(DatasetError, match="teach"):
        clean(ds)


def test_teacher_output_without_probabilities(tmp_path, images):
    ds = build(tmp_path / "ds", [
        ("a", images["good"], {"teach_status": "ok", "teach_label": "pos", "teach_confidence": 0.95}),
        ("b", images["other"], {"teach_status": "ok"}),
    ])
    clean(str(ds.root))
    rows = rows_by_id(ds)
    assert rows["a"]["clean_status"] == "kept" and rows["a"]["label"] == "positive"
    assert rows["b"]["clean_reason"] == "no teacher label (no usable teacher output)"


# --------------------------------------------------------------------------- real data
@needs_mvsa
def test_real_mvsa_sample(tmp_path):
    files = sorted((MVSA / "data").glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)[:120]
    rng = np.random.default_rng(0)
    posts = []
    for path in files:
        label = ("negative", "neutral", "positive")[int(rng.integers(0, 3))]
        posts.append((path.stem, path.read_bytes(), teach(label, float(rng.uniform(0.5, 1.0)))))
    ds = build(tmp_path / "ds", posts)
    counts = clean(ds)
    rows = ds.read_table("clean").to_pylist()
    assert len(rows) == len(files) == counts["posts"]
    assert sum(v for k, v in counts.items() if k not in ("posts",)) == len(files)
    assert counts["bad_image"] <= len(files) // 10
    assert all(row["clean_status"] in ("kept", "dropped") for row in rows)
    assert all((row["clean_status"] == "kept") == (row["clean_reason"] == "") for row in rows)
    assert all(row["phash"] for row in rows if row["clean_step"] != "bad_image" or row["clean_reason"].startswith("tiny"))
