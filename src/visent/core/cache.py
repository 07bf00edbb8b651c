"""visent's cache on disk: ``$VISENT_CACHE``, else ``~/.cache/visent``.

One folder per kind of file (:data:`KINDS`): ``features`` (image features, per backbone key and image SHA-256:
:class:`~visent.embed.cache.FeatureCache`) and ``onnx`` (ONNX exports of image backbones and teachers, with their
int8 calibrations: :mod:`visent.core.onnx`). Everything in them is rebuilt when needed, so the cache is safe to
delete: :func:`clear_cache` removes these folders and nothing else.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from visent.core.errors import VisentError

FEATURES = "features"
ONNX = "onnx"
KINDS = {
    FEATURES: "image features (and image-signal values) per backbone key and image",
    ONNX: "ONNX exports of image backbones and teachers (fp32, int8) and int8 calibrations",
}


def cache_root() -> Path:
    """``$VISENT_CACHE``, else ``~/.cache/visent``."""
    base = os.environ.get("VISENT_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "visent"


class CacheError(VisentError):
    """A folder of the cache cannot be deleted."""


@dataclass(frozen=True)
class CacheFolder:
    """One folder of the cache root: its name, path, bytes and files; ``what`` it holds ("" when not visent's)."""

    name: str
    path: Path
    size: int
    files: int
    what: str

    @property
    def visent(self) -> bool:
        return self.name in KINDS


def _usage(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``, symbolic links not followed; files that vanish meanwhile are skipped."""
    size = files = 0
    for directory, _, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
            files += 1
    return size, files


def cache_usage(root: Path | None = None) -> list[CacheFolder]:
    """The folders of the cache root with their sizes: visent's kinds first (present or not), then any other
    entry found there (which visent did not write and never removes)."""
    root = root or cache_root()
    folders = []
    for name, what in KINDS.items():
        folders.append(CacheFolder(name, root / name, *_usage(root / name), what))
    try:
        others = sorted(entry.name for entry in os.scandir(root) if entry.name not in KINDS)
    except OSError:  # no cache yet
        others = []
    for name in others:
        path = root / name
        try:
            size, files = _usage(path) if path.is_dir() and not path.is_symlink() else (path.lstat().st_size, 1)
        except OSError:  # removed meanwhile
            continue
        folders.append(CacheFolder(name, path, size, files, ""))
    return folders


def clear_cache(root: Path | None = None) -> int:
    """Delete visent's folders of the cache root (:data:`KINDS`); returns the bytes freed. Other entries of the
    root stay. Raises a :class:`CacheError` naming the folder that cannot be deleted."""
    folders = [folder for folder in cache_usage(root) if folder.visent and
               (folder.path.exists() or folder.path.is_symlink())]
    for folder in folders:  # refuse before deleting anything
        if folder.path.is_symlink() or not folder.path.is_dir():
            kind = "a symbolic link" if folder.path.is_symlink() else "not a folder"
            raise CacheError(f"cannot clear {folder.path}: it is {kind}, which visent does not delete; delete "
                             "it (or what it points to) yourself")
    for folder in folders:
        shutil.rmtree(folder.path, ignore_errors=True)  # a file another process removed first is no error
        if folder.path.exists():
            raise CacheError(f"cannot clear {folder.path}: some of it could not be deleted; check its "
                             "permissions, or whether another visent is writing there, and try again")
    return sum(folder.size for folder in folders)
