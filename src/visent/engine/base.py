"""The engine contract and the local engine (see :mod:`visent.engine`)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

import pyarrow as pa

from visent.core.errors import UsageError, VisentError


class EngineError(VisentError):
    """An engine cannot run: unknown name, Ray missing, or a cluster that cannot be reached."""


class Engine(Protocol):
    name: str
    threads_per_worker: int | None

    def map_batches(self, worker: type, args: tuple[Any, ...], table: pa.Table, *, batch_size: int,
                    local: Callable[[pa.Table], pa.Table] | None = None) -> Iterator[pa.Table]: ...


class LocalEngine:
    """Runs the batches in this process, in order: what every stage did before engines existed."""

    name = "local"
    threads_per_worker = None  # a stage's worker may use every core

    def map_batches(self, worker: type, args: tuple[Any, ...], table: pa.Table, *, batch_size: int,
                    local: Callable[[pa.Table], pa.Table] | None = None) -> Iterator[pa.Table]:
        """``worker(*args)`` (or ``local``, a worker already built here) applied to each ``batch_size`` rows. A
        worker built here is closed (its ``close()``, when it has one: connections, threads) once the batches are
        done or the caller stops early; ``local`` is its caller's to close."""
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        function = local if local is not None else worker(*args)
        try:
            for start in range(0, table.num_rows, batch_size):
                yield function(table.slice(start, batch_size))
        finally:
            if local is None and callable(getattr(function, "close", None)):
                function.close()
