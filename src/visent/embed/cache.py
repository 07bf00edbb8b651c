"""On-disk cache of image features, keyed by backbone identity and image SHA-256.

Layout: ``<root>/<backbone-slug>-<hash of key>/shard-<uuid>.npz``, each shard holding arrays ``hashes``
and ``features`` for one batch group, written atomically. ``key.txt`` in the directory records the full
backbone key. An in-memory index (hash → shard, row) is built lazily from the ``hashes`` arrays only; inside
:func:`shared_indexes`, the caches of one root share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import uuid
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from visent.core.cache import FEATURES, cache_root
from visent.core.store import atomic_write_bytes, atomic_write_text


def default_cache_root() -> Path:
    """``$VISENT_CACHE/features``, else ``~/.cache/visent/features``."""
    return cache_root() / FEATURES


_shared: dict[Path, tuple[dict, dict]] | None = None  # root → (index, shards seen) while shared_indexes() runs


@contextlib.contextmanager
def shared_indexes() -> Iterator[None]:
    """While the block runs, the :class:`FeatureCache` objects of one root made in this process share their index,
    so that each looks only at the shards written since the last look: reading a million cached vectors a block
    of rows at a time (a new cache object per block, as ``VisentModel.features`` makes) indexes the shards once,
    not once per block. The index is dropped when the outermost block ends."""
    global _shared
    outermost = _shared is None
    if outermost:
        _shared = {}
    try:
        yield
    finally:
        if outermost:
            _shared = None


class FeatureCache:
    """Features per (backbone key, image SHA-256); safe to share between runs and processes."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_root()
        self._index: dict[str, dict[str, tuple[Path, int]]] = {}
        self._shards: dict[str, set[Path]] = {}
        if _shared is not None:
            self._index, self._shards = _shared.setdefault(self.root.resolve(), (self._index, self._shards))

    def directory(self, backbone_key: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone_key.split("|", 1)[0])[:60]
        return self.root / f"{slug}-{hashlib.sha256(backbone_key.encode()).hexdigest()[:20]}"

    def _refresh(self, backbone_key: str) -> dict[str, tuple[Path, int]]:
        """Index shards written since the last look (by this or another process)."""
        index = self._index.setdefault(backbone_key, {})
        known = self._shards.setdefault(backbone_key, set())
        directory = self.directory(backbone_key)
        if not directory.is_dir():
            return index
        for shard in sorted(directory.glob("shard-*.npz")):
            if shard in known:
                continue
            known.add(shard)
            try:
                with np.load(shard, allow_pickle=False) as data:
                    hashes = data["hashes"]
            except Exception as exc:  # noqa: BLE001 - a damaged shard only costs a recomputation
                warnings.warn(f"ignoring unreadable feature cache shard {shard}: {exc}", stacklevel=3)
                continue
            for row, digest in enumerate(hashes.tolist()):
                index[digest] = (shard, row)
        return index

    def get_many(self, backbone_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached feature vectors for those of ``hashes`` that are present."""
        index = self._refresh(backbone_key)
        by_shard: dict[Path, list[tuple[str, int]]] = {}
        for digest in set(hashes):
            if digest in index:
                shard, row = index[digest]
                by_shard.setdefault(shard, []).append((digest, row))
        found: dict[str, np.ndarray] = {}
        for shard, wanted in by_shard.items():
            try:
                with np.load(shard, allow_pickle=False) as data:
                    features = data["features"]
            except Exception as exc:  # noqa: BLE001
                warnings.warn(f"ignoring unreadable feature cache shard {shard}: {exc}", stacklevel=2)
                for digest, _ in wanted:
                    index.pop(digest, None)
                continue
            for digest, row in wanted:
                found[digest] = features[row]
        return found

    def put_many(self, backbone_key: str, items: dict[str, np.ndarray]) -> None:
        """Store features (one shard file for the whole group)."""
        if not items:
            return
        directory = self.directory(backbone_key)
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / "key.txt").exists():
            atomic_write_text(directory / "key.txt", backbone_key + "\n")
        hashes = np.array(list(items), dtype=f"U{max(len(h) for h in items)}")
        features = np.stack([np.asarray(v, dtype=np.float32) for v in items.values()])
        buffer = io.BytesIO()
        np.savez(buffer, hashes=hashes, features=features)
        index = self._refresh(backbone_key)
        shard = directory / f"shard-{uuid.uuid4().hex}.npz"
        atomic_write_bytes(shard, buffer.getvalue())
        self._shards[backbone_key].add(shard)
        for row, digest in enumerate(items):
            index[digest] = (shard, row)
