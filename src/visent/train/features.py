"""The student's features of the training rows, within a memory budget: an array when they fit it, else a file
(:class:`FeatureFile`) that the head is fitted from block by block."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from visent.core.errors import UsageError
from visent.model import VisentModel

__all__ = ["DEFAULT_MEMORY_MB", "FEATURE_BLOCK_ROWS", "IN_MEMORY_FIT_FACTOR", "MEMORY_ENV", "FeatureFile",
           "embed_rows", "memory_budget"]

# Memory of the student's features (float32), in MB: beyond it they are kept in a file under the dataset's work/train
# and the head is fitted by StudentHead.fit_streamed, block by block.
MEMORY_ENV = "VISENT_TRAIN_MEMORY_MB"


DEFAULT_MEMORY_MB = 1024


# The in-memory fit while the float32 matrix times this fits the budget. Measured when StudentHead.fit ran
# scikit-learn's solver (a float64 copy, then the rows repeated once per class of the soft targets: 5.5 times the
# matrix, at 10,000 and 20,000 rows of 2,576 features); the block solver needs a copy of the split's rows, so the
# factor is now generous.
IN_MEMORY_FIT_FACTOR = 6


# Rows whose features are computed (or read from the cache) at a time: 169 MB of the default backbone's 2,576.
FEATURE_BLOCK_ROWS = 16384


def memory_budget() -> int:
    """Bytes the student's features may take in memory: ``$VISENT_TRAIN_MEMORY_MB`` megabytes (default
    :data:`DEFAULT_MEMORY_MB`)."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMORY_MB << 20
    try:
        megabytes = float(raw)
    except ValueError:
        raise UsageError(f"{MEMORY_ENV} must be a number of megabytes, not {raw!r}") from None
    if not megabytes >= 0:
        raise UsageError(f"{MEMORY_ENV} must be a number of megabytes, not {raw!r}")
    return int(megabytes * 2**20)


class FeatureFile:
    """Float32 feature rows (n, d) in a temporary file with no name (gone when closed, or when the process ends,
    however it ends): appended in order, read back by row slices and index arrays with plain reads. Not a memory
    map: the pages a map touches would count in the process's resident memory until it is unmapped. The bytes are
    those ``np.memmap(..., dtype=np.float32, shape=(n, d))`` would map."""

    dtype = np.dtype(np.float32)
    SPAN_ROWS = 4096  # rows read at once when gathering an index array
    GAP_ROWS = 64     # rows an index array may skip inside one read

    def __init__(self, directory: Path, n_features: int):
        directory.mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=directory, prefix="features-")
        self.n_features, self.n_rows = int(n_features), 0
        self._row_bytes = 4 * self.n_features

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.n_features

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.n_rows

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.n_features:
            raise ValueError(f"rows of {self.n_features} features expected, got shape {block.shape}")
        if not block.size:
            return
        view, offset = memoryview(block.reshape(-1)).cast("B"), self.n_rows * self._row_bytes
        while view:
            written = os.pwrite(self._file.fileno(), view, offset)
            view, offset = view[written:], offset + written
        self.n_rows += len(block)

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.n_features), dtype=np.float32)
        if not out.size:
            return out
        view, offset = memoryview(out.reshape(-1)).cast("B"), start * self._row_bytes
        while view:
            got = os.preadv(self._file.fileno(), [view], offset)
            if got <= 0:
                raise EOFError(f"the feature file ends before row {stop}")
            view, offset = view[got:], offset + got
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.n_rows)
            if step != 1:
                raise IndexError("feature file rows are read by slices of step 1")
            return self._read(start, max(start, stop))
        index = np.asarray(key)
        if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
            raise IndexError("feature file rows are read by slices or 1-D integer arrays")
        index = index.astype(np.int64)
        out = np.empty((len(index), self.n_features), dtype=np.float32)
        if not len(index):
            return out
        if index.min() < 0 or index.max() >= self.n_rows:
            raise IndexError(f"row index out of range for {self.n_rows} rows")
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        first = 0
        for i in range(1, len(ordered) + 1):  # one read per run of nearby rows, at most SPAN_ROWS long
            if (i < len(ordered) and ordered[i] - ordered[i - 1] <= self.GAP_ROWS
                    and ordered[i] - ordered[first] < self.SPAN_ROWS):
                continue
            low = int(ordered[first])
            span = self._read(low, int(ordered[i - 1]) + 1)
            out[order[first:i]] = span[ordered[first:i] - low]
            first = i
        return out

    def close(self) -> None:
        self._file.close()


def embed_rows(reader: VisentModel, rows: dict[str, Any], *, batch_size: int, budget: int,
           work: Path) -> tuple[Any, np.ndarray, list[str]]:
    """The features of the kept rows whose images could be embedded, float32 (n_usable, d), computed (or read from
    the feature cache) :data:`FEATURE_BLOCK_ROWS` rows at a time: an array when they fit the memory ``budget``, else a
    :class:`FeatureFile` under ``work``; with the mask of usable rows and the first 20 errors."""
    from visent.embed.cache import shared_indexes

    n = len(rows["sha256"])
    usable = np.zeros(n, dtype=bool)
    errors: list[str] = []
    store: Any = None
    filled = 0
    try:
        with shared_indexes():  # the cache's index is read once, not once per block
            for start in range(0, n, FEATURE_BLOCK_ROWS):
                stop = min(n, start + FEATURE_BLOCK_ROWS)
                features, statuses = reader.features(rows["path"][start:stop], rows["sha256"][start:stop],
                                                     batch_size=batch_size)
                ok = ~np.isnan(features).any(axis=1)
                usable[start:stop] = ok
                errors += [str(s) for s in statuses if s.failed][:20 - len(errors)]
                d = features.shape[1]
                if store is None:
                    if n * d * 4 <= budget:
                        if stop == n:  # every row at once, as training always embedded them
                            return features[ok], usable, errors
                        store = np.empty((n, d), dtype=np.float32)
                    else:
                        store = FeatureFile(work, d)
                kept = features if ok.all() else features[ok]
                if isinstance(store, np.ndarray):
                    store[filled:filled + len(kept)] = kept
                else:
                    store.append(kept)
                filled += len(kept)
                del features, statuses, kept
    except BaseException:
        if isinstance(store, FeatureFile):
            store.close()
        raise
    if store is None:
        return np.empty((0, 0), dtype=np.float32), usable, errors
    return (store[:filled] if isinstance(store, np.ndarray) else store), usable, errors
