"""The error every user-facing failure of visent derives from.

A :class:`VisentError` says what went wrong with which file or option and what to do about it, in one line; the
command line prints that line and exits with status 1, never a traceback. Each stage keeps its own subclass
(``DatasetError``, ``ModelError``, ``BackboneError``, ...) next to the code that raises it; the few below are for
failures every stage shares. Where an error used to be a builtin one (``ValueError``, ``FileNotFoundError``,
``KeyError``, ...) it still is, so that existing ``except`` clauses keep working.
"""

from __future__ import annotations


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
