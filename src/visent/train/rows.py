"""The rows training learns from: a cleaned dataset's kept posts, column by column, and their digest."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from visent.core.labels import CLASSES
from visent.core.schema import PROB_COLUMNS
from visent.core.store import Dataset

__all__ = ["ImagePaths", "rows_fingerprint", "training_rows"]


class ImagePaths(SequenceABC):
    """The image path of each training row, made when asked for: a million paths held at once would cost as
    much memory as the rest of the training rows together."""

    def __init__(self, dataset: Dataset, files: list[str | None]):
        self._dataset, self._files = dataset, files

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._path(f) for f in self._files[index]]
        return self._path(self._files[index])

    def _path(self, rel: str | None) -> Path | None:
        return None if rel is None else self._dataset.image_path(rel)


def training_rows(dataset: Dataset) -> dict[str, Any]:
    """The kept posts, column by column: ids, image paths (:class:`ImagePaths`), image hashes, the teacher's
    probabilities (float32, n × 3) and labels, in the order of :meth:`Dataset.posts`."""
    dataset.require_stage("clean")
    table = dataset.posts()
    if "clean_status" in table.column_names:
        table = table.filter(pc.equal(table["clean_status"], "kept"))  # a null status is not kept
    else:
        table = table.slice(0, 0)
    names = ["post_id", "image_file", "image_sha256", "label", *PROB_COLUMNS]
    table = table.select([name for name in names if name in table.column_names])

    def column(name: str) -> list[Any]:
        return table[name].to_pylist() if name in table.column_names else [None] * table.num_rows

    soft = np.empty((table.num_rows, len(CLASSES)), dtype=np.float32)
    for k, name in enumerate(PROB_COLUMNS):
        soft[:, k] = table[name].to_numpy(zero_copy_only=False) if name in table.column_names else np.nan
    rows = {"post_id": column("post_id"), "path": ImagePaths(dataset, column("image_file")),
            "sha256": column("image_sha256"), "soft": soft, "label": column("label")}
    del table
    # Arrow's allocator keeps what the joined tables freed (1.25 GB of 1M posts) for later tables: give it back.
    pa.default_memory_pool().release_unused()
    return rows


def rows_fingerprint(rows: dict[str, Any]) -> str:
    """Digest of what training reads of a dataset: each kept post's id, image hash, teacher label and teacher
    probabilities, in order. A dataset taught or cleaned again with the same outcome digests the same."""
    digest = hashlib.sha256()
    for post_id, sha256, label in zip(rows["post_id"], rows["sha256"], rows["label"]):
        digest.update(f"{post_id}\x1f{sha256}\x1f{label}\x1e".encode("utf-8", "surrogatepass"))
    digest.update(np.ascontiguousarray(rows["soft"], dtype=np.float64).tobytes())
    return digest.hexdigest()
