"""Warnings silenced for a block, consistently across threads.

``warnings.catch_warnings`` saves and restores the process-wide filters, so two threads quieting at once can
restore each other's filters away (an image decoded in one thread while a network is exported in another let
the exporter's notes through). Every part of visent that silences warnings goes through :func:`quiet_warnings`,
which holds one lock for the block.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Iterator

_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_warnings(category: type[Warning] = Warning) -> Iterator[None]:
    """The warnings of ``category`` silenced for the block; other threads that quiet warnings wait for it."""
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield
