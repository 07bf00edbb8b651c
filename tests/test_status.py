"""Per-image statuses (visent.core.status) and the one cached per-image pass (visent.embed.cached) that gives them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visent.core.status import (
    CACHED,
    OK,
    ImageStatus,
    first_error,
    status_columns,
    statuses_from_columns,
)
from visent.embed.cache import FeatureCache
from visent.embed.cached import cached_image_pass, file_sha256


def test_a_status_reads_its_fields_and_names_its_file_once() -> None:
    assert OK.ok and not OK.failed and OK.message == "" and str(OK) == "ok"
    assert CACHED.ok and str(CACHED) == "cached"
    with pytest.raises(ValueError, match="unknown image state 'fine'"):
        ImageStatus("fine")  # type: ignore[arg-type]

    path = Path("/data/photos/cat 1.jpg")
    error = ImageStatus.from_exception(path, FileNotFoundError(2, "No such file or directory", str(path)))
    assert error.failed and not error.ok and error.file == str(path)
    assert error.reason == "FileNotFoundError: [Errno 2] No such file or directory"  # the file is not repeated
    assert error.message == f"{path}: {error.reason}" and str(error) == f"error: {error.message}"
    multi_line = ImageStatus.from_exception(path, ValueError("broken\n   header"))
    assert multi_line.reason == "ValueError: broken header"
    assert ImageStatus.from_exception(path, KeyError()).reason == "KeyError: KeyError"

    assert error.renamed("<image 0>").message == f"<image 0>: {error.reason}"
    assert error.renamed("<image 0>").reason == error.reason and error.file == str(path)  # frozen: a new record
    nameless = ImageStatus.failure("no image file")
    assert nameless.message == "no image file" and nameless.renamed("x.jpg") == nameless


def test_an_image_fault_reads_as_everywhere_in_visent(tmp_path: Path) -> None:
    """A status words an image fault as ingest, clean and serve do (visent.core.images), without the type of the
    exception: predict and explain show "not an image (HTML)", never "ImageError: ..." or Pillow's words."""
    from visent.core.errors import PathNotFound
    from visent.core.images import ImageError, open_image
    from visent.ingest.download import sniff_image

    for name, data in (("page.jpg", b"<!doctype html><html><body>not found</body></html>"), ("empty.jpg", b"")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError) as raised:
            open_image(path)
        status = ImageStatus.from_exception(path, raised.value)
        assert status.reason == sniff_image(data)[1] == raised.value.reason  # ingest's wording
        assert status.message == f"{path}: {status.reason}"
    assert ImageStatus.from_exception(tmp_path / "page.jpg", raised.value).reason == "empty file"
    # another error worded for users keeps its words; anything else says what it is
    graph = "model/backbone.onnx"
    assert ImageStatus.from_exception(graph, PathNotFound(f"{graph}: the network graph is missing")).reason == \
        "the network graph is missing"
    assert ImageStatus.from_exception(graph, ValueError(f"{graph}: no")).reason == "ValueError: no"


def test_first_error_keeps_the_first_failure_of_each_image() -> None:
    a, b = ImageStatus.failure("first", "a.jpg"), ImageStatus.failure("second", "a.jpg")
    assert first_error([OK, CACHED, a, a, OK], [OK, b, OK, b, CACHED]) == [OK, b, a, a, OK]


def test_statuses_survive_columns() -> None:
    statuses = [OK, CACHED, ImageStatus.failure("no image file"), ImageStatus.failure("OSError: truncated", "b.jpg")]
    columns = status_columns(statuses)
    assert columns["state"] == ["ok", "cached", "error", "error"] and columns["file"] == [None, None, None, "b.jpg"]
    assert statuses_from_columns(columns["state"], columns["reason"], columns["file"]) == statuses


def _files(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i}.bin")
        paths[-1].write_bytes(bytes([i]) * (i + 1))
    return paths


def test_batched_pass_computes_each_distinct_image_once_and_reads_the_cache(tmp_path: Path) -> None:
    files = _files(tmp_path, 5)
    duplicate = tmp_path / "dup.bin"
    duplicate.write_bytes(files[1].read_bytes())
    paths = [*files, duplicate, None, tmp_path / "gone.bin"]
    batches: list[int] = []

    def compute(items: list[bytes]) -> np.ndarray:  # a backbone: the whole batch at once
        batches.append(len(items))
        return np.array([[len(x), x[0]] for x in items], dtype=np.float32)

    cache = FeatureCache(tmp_path / "cache")
    rows, status = cached_image_pass(paths, "test|batch", 2, load=Path.read_bytes, compute=compute, cache=cache,
                                     batch_size=2)
    assert batches == [2, 2, 1]  # five distinct readable images
    assert [s.state for s in status] == ["ok"] * 6 + ["error", "error"]
    assert rows[1].tolist() == rows[5].tolist() == [2, 1]
    assert status[6].message == "no image file" and status[7].file == str(tmp_path / "gone.bin")
    assert np.isnan(rows[6:]).all()

    # what is on disk is read back under the same key by content hash; a row of another width is recomputed
    hashes = [file_sha256(p) for p in files]
    assert sorted(cache.get_many("test|batch", hashes)) == sorted(hashes)
    again, status = cached_image_pass(files, "test|batch", 2, load=Path.read_bytes, compute=compute,
                                      cache=FeatureCache(tmp_path / "cache"), hashes=hashes)
    assert status == [CACHED] * 5 and np.array_equal(again, rows[:5]) and batches == [2, 2, 1]
    _, status = cached_image_pass(files[:1], "test|batch", 3, load=Path.read_bytes,
                                  compute=lambda items: np.zeros((len(items), 3)), cache=cache)
    assert status == [OK]


def test_a_failing_batch_stops_the_pass_and_keeps_finished_work(tmp_path: Path) -> None:
    files = _files(tmp_path, 4)

    def compute(items: list[bytes]) -> np.ndarray:
        if any(x[0] == 3 for x in items):
            raise RuntimeError("out of memory")
        return np.ones((len(items), 1), dtype=np.float32)

    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(RuntimeError, match="out of memory"):
        cached_image_pass(files, "test|fail", 1, load=Path.read_bytes, compute=compute, cache=cache, batch_size=2)
    assert len(cache.get_many("test|fail", [file_sha256(p) for p in files])) == 2  # the first batch was kept
    with pytest.raises(ValueError, match="1 results for a batch of 2"):
        cached_image_pass(files, "test|short", 1, load=Path.read_bytes, compute=lambda items: [np.ones(1)],
                          cache=None, batch_size=2)
