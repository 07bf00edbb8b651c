"""Damage is detected, never trusted: a damaged table makes its stage run again (or stops the next stage with one
line naming the file and the command that writes it again), a damaged checkpoint part is dropped and its rows
computed again, a damaged manifest is refused in one line, a damaged feature cache shard is dropped and its
features computed again (never blamed on the image), and a full disk is one line, after which the command resumes."""

from __future__ import annotations

import errno
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from test_pipeline import make_crawl
from visent.cli import app
from visent.core.errors import WriteError
from visent.core.store import Checkpoint, DamagedTable, Dataset, DatasetError
from visent.embed import FeatureCache, embed_images
from visent.ingest import ingest

runner = CliRunner()


def cli(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def error_line(*args) -> str:
    """Run ``visent ARGS``, which must fail with exit status 1 and one error line (and no traceback)."""
    code, output = cli(*args)
    assert code == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, output
    return " ".join(" ".join(lines[errors[0]:]).split())  # the console wraps a long line


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def flip(path: Path) -> None:
    """Change bytes in the middle of a file, keeping its size."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def crawl(tmp_path_factory) -> Path:
    return make_crawl(tmp_path_factory.mktemp("damage") / "crawl", n_per_class=6)


@pytest.fixture(scope="module")
def reference(crawl, tmp_path_factory) -> Path:
    """The crawl ingested, taught (VADER) and cleaned without a disturbance."""
    out = tmp_path_factory.mktemp("reference") / "ds"
    for args in (["ingest", crawl, "--out", out, "--batch-size", "4"], ["teach", out, "--teacher", "vader"],
                 ["clean", out]):
        assert cli(*args)[0] == 0
    return out


def same_table(a: Path, b: Path) -> None:
    assert pq.read_table(a).equals(pq.read_table(b))


# --------------------------------------------------------------------------- tables
def test_a_finished_table_records_size_rows_and_checksum(reference: Path) -> None:
    tables = Dataset(reference).manifest["tables"]
    assert set(tables) == {"posts", "teach", "clean"}
    assert tables["posts"]["rows"] == pq.read_metadata(reference / "posts.parquet").num_rows
    assert tables["posts"]["size"] == (reference / "posts.parquet").stat().st_size
    assert len(tables["posts"]["sha256"]) == 64


@pytest.mark.parametrize("damage", [truncate, flip])
def test_a_damaged_posts_table_makes_ingest_run_again(crawl, reference, tmp_path, damage) -> None:
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    damage(out / "posts.parquet")
    with pytest.warns(UserWarning, match=r"posts\.parquet is damaged \(.+\): ingest runs again"):
        code, output = cli("ingest", crawl, "--out", out, "--batch-size", "4")
    assert code == 0, output
    same_table(out / "posts.parquet", reference / "posts.parquet")
    assert Dataset(out).stage_info("ingest")["status"] == "done"
    assert Dataset(out).stage_info("teach")["status"] == "stale"  # built on the damaged table's stage
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli("ingest", crawl, "--out", out, "--batch-size", "4")[0] == 0  # intact now: a no-op


def test_a_damaged_teach_table_read_by_clean_is_one_line(reference, tmp_path) -> None:
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    truncate(out / "teach.parquet")
    line = error_line("clean", out, "--neg-threshold", "0.3")
    assert f"{out / 'teach.parquet'} is damaged" in line
    assert f"`visent teach {out} --teacher vader`" in line
    with pytest.raises(DamagedTable):
        Dataset(out).read_table("teach")
    with pytest.warns(UserWarning, match=r"teach\.parquet is damaged .*: teach runs again"):
        assert cli("teach", out, "--teacher", "vader")[0] == 0  # the command the line names
    same_table(out / "teach.parquet", reference / "teach.parquet")


def test_a_table_of_a_dataset_without_records_is_checked_for_a_footer(reference, tmp_path) -> None:
    """Datasets written before the manifest recorded tables still open; a truncated table is still caught."""
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    manifest = Dataset(out).manifest
    manifest.pop("tables")
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert Dataset(out).read_table("posts").num_rows == pq.read_metadata(reference / "posts.parquet").num_rows
    assert cli("clean", out)[0] == 0  # a no-op, as before
    truncate(out / "clean.parquet")
    line = error_line("embed", out)
    assert f"{out / 'clean.parquet'} is damaged (unreadable" in line and f"`visent clean {out}`" in line


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"visent_dataset": 1, "stages": [1]}', "\xff\xfe"])
def test_a_damaged_manifest_is_refused_in_one_line(crawl, reference, tmp_path, garbage) -> None:
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    (out / "manifest.json").write_bytes(garbage.encode("latin-1"))
    for args in (["teach", out, "--teacher", "vader"], ["ingest", crawl, "--out", out], ["embed", out]):
        line = error_line(*args)
        assert f"{out / 'manifest.json'} is damaged" in line and "cannot be trusted" in line, line
        assert f"visent ingest SOURCE --out {out}" in line
    with pytest.raises(DatasetError):
        Dataset(out)


# --------------------------------------------------------------------------- checkpoints
def interrupted_ingest(crawl: Path, out: Path, monkeypatch) -> list[Path]:
    """Ingest ``crawl`` into ``out`` four posts a part, stopped as it writes its fourth part: its three parts."""
    write = Checkpoint.write

    def stop(self, *args, **kwargs):
        if len(list(self.directory.glob("part-*.parquet"))) == 3:
            raise KeyboardInterrupt
        return write(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoint, "write", stop)
        with pytest.raises(KeyboardInterrupt):
            ingest(crawl, out, batch_size=4)
    parts = sorted((out / "work" / "ingest").glob("part-*.parquet"))
    assert len(parts) == 3 and all(part.with_name(part.name + ".json").is_file() for part in parts)
    return parts


@pytest.mark.parametrize("damage", [truncate, flip])
def test_a_damaged_checkpoint_part_is_dropped_and_its_rows_computed_again(crawl, reference, tmp_path, monkeypatch,
                                                                          damage) -> None:
    out = tmp_path / "ds"
    parts = interrupted_ingest(crawl, out, monkeypatch)
    damage(parts[1])
    with pytest.warns(UserWarning, match=rf"{parts[1].name}: damaged checkpoint part .*computed again"):
        ingest(crawl, out, batch_size=4)
    same_table(out / "posts.parquet", reference / "posts.parquet")  # the rows of an undisturbed run, in its order


def test_a_checkpoint_part_written_before_records_is_kept(tmp_path) -> None:
    checkpoint = Checkpoint(tmp_path / "work")
    checkpoint.write([{"post_id": "a"}, {"post_id": "b"}])
    checkpoint.write([{"post_id": "c"}])
    (tmp_path / "work" / "part-000000.parquet.json").unlink()  # as an older visent wrote it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Checkpoint(tmp_path / "work").done_keys() == {"a", "b", "c"}
    checkpoint.write([{"post_id": "d"}])
    assert (tmp_path / "work" / "part-000002.parquet").is_file()
    truncate(tmp_path / "work" / "part-000001.parquet")
    with pytest.warns(UserWarning, match="part-000001.parquet: damaged checkpoint part .*the 1 written after it"):
        assert Checkpoint(tmp_path / "work").done_keys() == {"a", "b"}
    assert [p.name for p in sorted((tmp_path / "work").iterdir())] == ["part-000000.parquet"]


# --------------------------------------------------------------------------- feature cache
def cache_shard(cache: FeatureCache) -> Path:
    (shard,) = list(cache.root.glob("*/shard-*.npz"))
    return shard


def rewrite(shard: Path, change, checksum: bool) -> None:
    """Rewrite a shard with its features changed, keeping its checksum (or leaving it out, as older shards)."""
    with np.load(shard) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["features"] = change(arrays["features"].copy())
    if not checksum:
        arrays.pop("checksum")
    np.savez(shard, **arrays)


def with_nan(features: np.ndarray) -> np.ndarray:
    features[1, 7] = np.nan
    return features


def with_zeros(features: np.ndarray) -> np.ndarray:
    features[2] = 0.0
    return features


DAMAGES = {
    "NaN": lambda shard: rewrite(shard, with_nan, checksum=False),
    "zeros": lambda shard: rewrite(shard, with_zeros, checksum=False),
    "zeros, checksum kept": lambda shard: rewrite(shard, with_zeros, checksum=True),
    "other width": lambda shard: rewrite(shard, lambda f: f[:, :-1], checksum=False),
    "truncated": truncate,
    "flipped": flip,
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_a_damaged_cache_shard_is_dropped_and_computed_again(crawl, lite0, name) -> None:
    paths = sorted(crawl.parent.glob("*.jpg"))[:6]
    cache = FeatureCache()
    clean, status = embed_images(paths, None, lite0, cache=cache)
    assert [s.state for s in status] == ["ok"] * len(paths)
    shard = cache_shard(cache)
    DAMAGES[name](shard)
    with pytest.warns(UserWarning, match=rf"{shard.name}: damaged feature cache shard"):
        again, status = embed_images(paths, None, lite0, cache=FeatureCache())
    assert [s.state for s in status] == ["ok"] * len(paths)  # computed again; the images are fine
    np.testing.assert_allclose(again, clean, rtol=1e-5, atol=1e-6)
    assert not shard.exists()
    cached, status = embed_images(paths, None, lite0, cache=FeatureCache())  # the new shard is good
    assert [s.state for s in status] == ["cached"] * len(paths)
    np.testing.assert_allclose(cached, clean, rtol=1e-5, atol=1e-6)


def test_image_signals_may_cache_zero_vectors(tmp_path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put_many("faces|v1", {"a": np.zeros(9, np.float32)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(FeatureCache(tmp_path).get_many("faces|v1", ["a"], 9)) == {"a"}


# --------------------------------------------------------------------------- a full disk
def test_no_space_left_is_one_line_and_the_stage_resumes(crawl, reference, tmp_path, monkeypatch) -> None:
    out = tmp_path / "ds"
    writes = {"n": 0}
    original = pq.ParquetWriter.write_table

    def full_disk(self, *args, **kwargs):
        writes["n"] += 1
        if writes["n"] > 3:  # the disk fills after three tables
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    line = error_line("ingest", crawl, "--out", out, "--batch-size", "4")
    assert "no space left on device writing" in line and str(out / "work" / "ingest" / "part-") in line, line
    assert "free)" in line and "run the command again" in line
    assert len(list((out / "work" / "ingest").glob("part-*.parquet"))) >= 2  # what was written stays
    assert not list(out.rglob("*.tmp"))

    monkeypatch.setattr(pq.ParquetWriter, "write_table", original)  # space freed
    assert cli("ingest", crawl, "--out", out, "--batch-size", "4")[0] == 0
    same_table(out / "posts.parquet", reference / "posts.parquet")

    def replace_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:  # the disk fills as teach moves its table into place
        patch.setattr("visent.core.store.os.replace", replace_full)
        line = error_line("teach", out, "--teacher", "vader")
    assert f"no space left on device writing {out}" in line, line
    assert not list(out.rglob("*.tmp"))
    assert cli("teach", out, "--teacher", "vader")[0] == 0
    same_table(out / "teach.parquet", reference / "teach.parquet")


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_other_refused_writes_are_one_line(crawl, tmp_path, monkeypatch, code) -> None:
    def refused(*args, **kwargs):
        raise OSError(code, "refused")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", refused)
    line = error_line("ingest", crawl, "--out", tmp_path / "ds")
    assert f"writing {tmp_path / 'ds'}" in line
    with pytest.raises(WriteError) as caught:
        ingest(crawl, tmp_path / "ds")
    assert caught.value.errno == code and isinstance(caught.value, OSError)
