"""The registry of readers and the detection of a source's format.

A reader is a function ``(source: Path, ...) -> Iterator[RawPost]`` registered with :func:`register_reader`, in
the module of its format, with its own ``detect`` test: :func:`detect_format` tries the readers' tests by their
``order`` (lowest first) and names the first that holds. The orders of the readers visent ships: ``csv`` 10,
``tweets`` 20, ``jsonl`` 30, ``archive`` 40, ``bluesky-crawl`` 50, ``mvsa`` 60, ``folder`` last (1000: any folder).
A reader that names no order is tried at 100: after those, before the catch-all ``folder``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from visent.core.errors import InputError, PathNotFound
from visent.core.registry import DEFAULT_ORDER, Registry
from visent.ingest.readers.records import RawPost, _unicode_safe

READERS: Registry[Iterator[RawPost]] = Registry("reader")

Reader = Callable[..., Iterator[RawPost]]


def register_reader(name: str, description: str = "", *, detect: Callable[[Path], bool] | None = None,
                    order: int = DEFAULT_ORDER, unicode_safe: bool = True) -> Callable[[Reader], Reader]:
    """Register the decorated reader as ``name`` in :data:`READERS`, with its detection.

    ``detect(path)`` is True when ``path`` (an existing file or folder) is in this format; it must be cheap and
    never raise. ``order`` places it among the other readers' tests (see the module docstring). With
    ``unicode_safe`` (the default) every post the reader yields has its lone surrogates replaced (the dataset's
    tables hold UTF-8 only); the decorated function is returned so wrapped.
    """
    def decorator(function: Reader) -> Reader:
        registered = _unicode_safe(function) if unicode_safe else function
        READERS.register(name, description, detect=detect, order=order)(registered)
        return registered

    return decorator


def detect_format(source: str | os.PathLike[str]) -> str:
    """Name of the reader in :data:`READERS` for ``source`` (a file, a folder or an archive)."""
    path = Path(source)
    if not path.exists():
        raise PathNotFound(f"{path} does not exist")
    name = READERS.detect(path)
    if name is None:
        raise InputError(f"cannot tell the format of {path}; give a folder, a .jsonl/.json/.csv/.tsv file, "
                         f"a .zip/.tar/.tar.gz archive of them, or pass format=")
    return name
