"""The error every user-facing failure of visent derives from.

A :class:`VisentError` says what went wrong with which file or option and what to do about it, in one line; the
command line prints that line and exits with status 1, never a traceback. Each stage keeps its own subclass
(``DatasetError``, ``ModelError``, ``BackboneError``, ...) next to the code that raises it.
"""

from __future__ import annotations


class VisentError(Exception):
    """A failure the user can act on: bad input, a missing file, an option out of range, a missing extra."""


class UsageError(VisentError, ValueError):
    """An option or argument out of range, or a name that is not registered (it lists the valid ones)."""
