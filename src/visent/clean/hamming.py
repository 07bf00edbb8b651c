"""Near-duplicate search over 64-bit hashes by multi-index hashing (no all-pairs comparison).

Split the 64 bits into ``d + 1`` chunks. Two hashes within Hamming distance ``d`` differ in at most
``d`` chunks, so by pigeonhole they agree exactly on at least one. For each chunk the hashes are
sorted by that chunk's value; only hashes in the same run (equal chunk) become candidates, which are
verified with a popcount. A pair is reported by the first chunk it agrees on, so never twice.
"""

from __future__ import annotations

import numpy as np

from visent.core.errors import UsageError

_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount64(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 value."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values).astype(np.int64)
    return _BYTE_POPCOUNT[values.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.int64)


def _chunk_masks(n_chunks: int) -> list[tuple[int, np.uint64]]:
    """(shift, mask) of ``n_chunks`` bit ranges covering 64 bits as evenly as possible."""
    widths = [64 // n_chunks + (1 if i < 64 % n_chunks else 0) for i in range(n_chunks)]
    out, shift = [], 0
    for width in widths:
        out.append((shift, np.uint64((1 << width) - 1)))
        shift += width
    return out


class HammingIndex:
    """Finds all pairs of 64-bit hashes within a Hamming distance, without comparing all pairs."""

    def __init__(self, hashes: np.ndarray):
        self.hashes = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint64).ravel())

    def __len__(self) -> int:
        return len(self.hashes)

    def pair_arrays(self, distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arrays ``(i, j, d)`` of every pair ``i < j`` with Hamming distance ``d <= distance``,
        sorted by ``(i, j)``."""
        if not 0 <= distance <= 63:
            raise UsageError(f"distance must be between 0 and 63, got {distance}")
        n = len(self.hashes)
        empty = np.empty(0, dtype=np.int64)
        if n < 2:
            return empty, empty.copy(), empty.copy()
        chunks = _chunk_masks(distance + 1)
        keys = [(self.hashes >> np.uint64(shift)) & mask for shift, mask in chunks]
        found_i, found_j, found_d = [], [], []
        for c, key in enumerate(keys):
            order = np.argsort(key, kind="stable")
            sorted_key = key[order]
            sorted_hash = self.hashes[order]
            # end (exclusive) of the run of equal chunk values each sorted position belongs to
            starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
            lengths = np.diff(np.r_[starts, n])
            run_end = np.repeat(starts + lengths, lengths)
            active = np.flatnonzero(run_end - np.arange(n) > 1)
            step = 1
            while active.size:
                active = active[active + step < run_end[active]]
                if not active.size:
                    break
                dist = popcount64(sorted_hash[active] ^ sorted_hash[active + step])
                hit = dist <= distance
                if hit.any():
                    a, b = order[active[hit]], order[active[hit] + step]
                    d = dist[hit]
                    # report each pair only from the first chunk it agrees on
                    first = np.ones(a.size, dtype=bool)
                    for earlier in keys[:c]:
                        first &= earlier[a] != earlier[b]
                    a, b, d = a[first], b[first], d[first]
                    found_i.append(np.minimum(a, b))
                    found_j.append(np.maximum(a, b))
                    found_d.append(d)
                step += 1
        if not found_i:
            return empty, empty.copy(), empty.copy()
        i, j, d = (np.concatenate(x).astype(np.int64) for x in (found_i, found_j, found_d))
        order = np.lexsort((j, i))
        return i[order], j[order], d[order]
