"""The error every user-facing failure of visent derives from.

A :class:`VisentError` says what went wrong with which file or option and what to do about it, in one line; the
command line prints that line and exits with status 1, never a traceback. Each stage keeps its own subclass
(``DatasetError``, ``ModelError``, ``BackboneError``, ...) next to the code that raises it; the few below are for
failures every stage shares. Where an error used to be a builtin one (``ValueError``, ``FileNotFoundError``,
``KeyError``, ...) it still is, so that existing ``except`` clauses keep working.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class VisentError(Exception):
    """A failure the user can act on: bad input, a missing file, an option out of range, a missing extra."""


class UsageError(VisentError, ValueError):
    """An option or argument out of range, or a name that is not registered (it lists the valid ones)."""


class UnknownName(UsageError, KeyError):
    """A name that is not registered (a backbone, teacher, signal, reader, ...); the message lists the valid ones.

    Also a ``KeyError`` for callers that look names up, but printed as its message (a bare ``KeyError`` prints
    the repr of its argument)."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InputError(VisentError, ValueError):
    """A file or folder the user gave is not what the command needs: wrong format, or malformed content."""


class PathNotFound(VisentError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class WriteError(VisentError, OSError):
    """A file could not be written: no space left on the device, the quota spent, a read-only filesystem, no
    permission. Its message names the file and what to do; it is also the ``OSError`` (same ``errno``) it was."""

    def __str__(self) -> str:
        return str(self.strerror)


# what each write failure is called, and what to do about it
_WRITE_FAILURES = {
    errno.ENOSPC: ("no space left on device", "free space there or write elsewhere, then run the command again: it "
                                              "goes on from what was written"),
    errno.EDQUOT: ("disk quota exceeded", "free space there or write elsewhere, then run the command again: it goes "
                                          "on from what was written"),
    errno.EFBIG: ("file too large for its filesystem", "write elsewhere"),
    errno.EROFS: ("read-only file system", "write elsewhere"),
    errno.EACCES: ("permission denied", "make it writable or write elsewhere"),
    errno.EPERM: ("operation not permitted", "make it writable or write elsewhere"),
}


def write_error(exc: BaseException, path: str | os.PathLike[str] | None = None,
                needed: int | None = None) -> WriteError | None:
    """The :class:`WriteError` of ``exc`` when it is an ``OSError`` of a failed write (disk full, quota, read-only,
    permission) of ``path`` (default: the file the error names), else None. ``needed``: the bytes the write takes,
    when known; a full disk's message gives them and the space left."""
    if isinstance(exc, WriteError):
        return exc
    if not isinstance(exc, OSError) or exc.errno not in _WRITE_FAILURES:
        return None
    what, advice = _WRITE_FAILURES[exc.errno]
    target = path if path is not None else exc.filename
    where = f" writing {target}" if target is not None else ""
    space = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(target)
        sizes = ([f"needs ~{_size(needed)}"] if needed else []) + ([f"{_size(free)} free"] if free is not None else [])
        space = f" ({', '.join(sizes)})" if sizes else ""
    return WriteError(exc.errno, f"{what}{where}{space}: {advice}", None if target is None else str(target))


def _free_bytes(path: str | os.PathLike[str] | None) -> int | None:
    """Bytes free on the filesystem of ``path`` (its nearest existing folder), None when unknown."""
    if path is None:
        return None
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder if folder.is_dir() else folder.parent).free
    except OSError:
        return None


def _size(n: int) -> str:
    if n >= 10 ** 9:
        return f"{n / 10 ** 9:.1f} GB"
    if n >= 10 ** 6:
        return f"{n / 10 ** 6:.0f} MB"
    return f"{max(1, round(n / 1000))} kB"
