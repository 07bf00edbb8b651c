"""On-disk cache of image features, keyed by backbone identity and image SHA-256.

Layout: ``<root>/<backbone-slug>-<hash of key>/shard-<uuid>.npz``, each shard holding arrays ``hashes``
and ``features`` for one batch group and ``checksum`` (the SHA-256 of both), written atomically. ``key.txt`` in
the directory records the full backbone key. An in-memory index (hash → shard, row) is built lazily from the
``hashes`` arrays only; inside :func:`shared_indexes`, the caches of one root share it.

A shard is checked when its features are read: its checksum (shards written before checksums have none), its
shape and dtype, and its values (finite; for the backbones visent ships, see :data:`NEVER_ZERO`, no vector all
zero). A shard that fails is deleted with a warning naming it: its images' features are computed
again, as if they had never been cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
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


_shared: dict[Path, tuple[dict, dict, set]] | None = None  # root → (index, shards seen, shards checked) meanwhile

# how the keys of the backbones visent ships begin: their pooled features are never all zero, so an all-zero vector
# of theirs is damage (an image signal's may be: no face found, no text read)
NEVER_ZERO = ("efficientnet-lite",)


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
        self._checked: set[tuple[str, int, int, int]] = set()  # shards found intact, in the state found
        if _shared is not None:
            self._index, self._shards, self._checked = _shared.setdefault(
                self.root.resolve(), (self._index, self._shards, self._checked))

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
                if hashes.ndim != 1 or hashes.dtype.kind != "U":
                    raise ValueError(f"its hashes are {hashes.dtype} of shape {hashes.shape}")
            except Exception as exc:  # noqa: BLE001 - a damaged shard only costs a recomputation
                _drop(shard, _brief(exc))
                continue
            for row, digest in enumerate(hashes.tolist()):
                index[digest] = (shard, row)
        return index

    def _load(self, backbone_key: str, shard: Path, dim: int | None) -> np.ndarray:
        """The features of ``shard``, checked (see the module's docstring); raises ValueError saying what is wrong."""
        stamp = _stamp(shard)
        with np.load(shard, allow_pickle=False) as data:
            hashes = data["hashes"]
            features = data["features"]
            checksum = str(data["checksum"]) if "checksum" in data.files else None
        if stamp is not None and stamp in self._checked:
            return features
        if features.dtype != np.float32 or features.ndim != 2 or hashes.ndim != 1 \
                or features.shape[0] != hashes.shape[0]:
            raise ValueError(f"{features.dtype} features of shape {features.shape} for {hashes.shape[0]} images")
        if dim is not None and features.shape[1] != dim:
            raise ValueError(f"vectors of {features.shape[1]} values where the key's have {dim}")
        if checksum is not None and checksum != _checksum(hashes, features):
            raise ValueError("its checksum is not that of its contents")
        if not np.isfinite(features).all():
            raise ValueError(f"{int((~np.isfinite(features)).any(axis=1).sum())} vectors hold NaN or infinite values")
        if backbone_key.startswith(NEVER_ZERO) and features.shape[1] and not features.any(axis=1).all():
            raise ValueError(f"{int((~features.any(axis=1)).sum())} vectors are all zero")
        if stamp is not None:
            self._checked.add(stamp)
        return features

    def get_many(self, backbone_key: str, hashes: Sequence[str], dim: int | None = None) -> dict[str, np.ndarray]:
        """Cached feature vectors for those of ``hashes`` that are present (``dim``: the length of a vector of this
        key, when the caller knows it). A damaged shard is deleted with a warning; its vectors are not found."""
        index = self._refresh(backbone_key)
        by_shard: dict[Path, list[tuple[str, int]]] = {}
        for digest in set(hashes):
            if digest in index:
                shard, row = index[digest]
                by_shard.setdefault(shard, []).append((digest, row))
        found: dict[str, np.ndarray] = {}
        for shard, wanted in by_shard.items():
            try:
                features = self._load(backbone_key, shard, dim)
            except Exception as exc:  # noqa: BLE001 - a damaged shard only costs a recomputation
                _drop(shard, _brief(exc))
                for digest in [d for d, (where, _) in index.items() if where == shard]:
                    del index[digest]
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
        np.savez(buffer, hashes=hashes, features=features, checksum=np.array(_checksum(hashes, features)))
        index = self._refresh(backbone_key)
        shard = directory / f"shard-{uuid.uuid4().hex}.npz"
        atomic_write_bytes(shard, buffer.getvalue())
        self._shards[backbone_key].add(shard)
        stamp = _stamp(shard)
        if stamp is not None:
            self._checked.add(stamp)
        for row, digest in enumerate(items):
            index[digest] = (shard, row)


def _checksum(hashes: np.ndarray, features: np.ndarray) -> str:
    """SHA-256 of a shard's contents: its hashes, its features' shape and bytes."""
    digest = hashlib.sha256("\n".join(hashes.tolist()).encode())
    digest.update(f"|{features.dtype.str}|{features.shape}|".encode())
    digest.update(np.ascontiguousarray(features).tobytes())
    return digest.hexdigest()


def _drop(shard: Path, problem: str) -> None:
    """Delete a damaged shard, saying so: the features it held are computed again when asked for."""
    with contextlib.suppress(OSError):
        shard.unlink()
    warnings.warn(f"{shard}: damaged feature cache shard ({problem}); dropped, its images' features are computed "
                  "again", stacklevel=4)


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _stamp(path: Path) -> tuple[str, int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino
