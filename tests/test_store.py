import os
import stat

import pyarrow as pa
import pytest

from visent.core.store import FILE_MODE, Dataset, DatasetError, atomic_write_bytes, atomic_write_table


def test_missing_dataset_says_how_to_make_one(tmp_path):
    with pytest.raises(DatasetError, match="visent ingest"):
        Dataset(tmp_path / "none")


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "t.parquet"
    atomic_write_table(target, pa.table({"a": [1]}))

    with pytest.raises(Exception):
        atomic_write_table(target, "not a table")  # fails inside the write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
    assert stat.S_IMODE(os.stat(target).st_mode) == FILE_MODE
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    assert stat.S_IMODE(os.stat(tmp_path / "b.bin").st_mode) == FILE_MODE


def test_stage_bookkeeping_resume_and_invalidation(tmp_path):
    ds = Dataset(tmp_path / "ds", create=True)
    checkpoint = ds.begin_stage("ingest", {"source": "a"})
    checkpoint.write([{"post_id": "1"}])
    # interrupted: a new run with the same parameters sees the finished part
    again = Dataset(tmp_path / "ds").begin_stage("ingest", {"source": "a"})
    assert again.done_keys() == {"1"}
    ds.finish_stage("ingest", {"source": "a"}, {"posts": 1})
    ds.begin_stage("teach", {"teacher": "x"})
    ds.finish_stage("teach", {"teacher": "x"}, {})
    assert ds.stage_done("teach", {"teacher": "x"}) and not ds.stage_done("teach", {"teacher": "y"})
    # other parameters: the checkpoint starts over and later stages become stale
    fresh = ds.begin_stage("ingest", {"source": "b"})
    assert fresh.done_keys() == set()
    assert Dataset(tmp_path / "ds").stage_info("teach")["status"] == "stale"
    with pytest.raises(DatasetError, match="visent teach"):
        ds.require_stage("teach")


def test_images_are_content_addressed(tmp_path):
    ds = Dataset(tmp_path / "ds", create=True)
    digest, rel = ds.put_image(b"abc", "JPEG")
    assert rel == f"images/{digest[:2]}/{digest}.jpeg"
    assert ds.put_image(b"abc", "jpeg") == (digest, rel)
    assert ds.image_path(rel).read_bytes() == b"abc"
