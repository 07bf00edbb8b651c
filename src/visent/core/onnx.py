"""ONNX Runtime conventions shared by the layers that export models: where exports are cached, and CPU sessions.

Exports live under ``$VISENT_CACHE/onnx`` (else ``~/.cache/visent/onnx``), named after a hash of the weights
and the export recipe, written atomically. Sessions use every core the process may run on, one inter-op thread,
all graph optimisations, and threads that sleep when idle (other work gets the cores between batches).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from visent.core.cache import ONNX, cache_root

SESSIONS_KEPT = 4  # the most recently used sessions kept for reuse within the process


def onnx_cache_root() -> Path:
    """``$VISENT_CACHE/onnx``, else ``~/.cache/visent/onnx``."""
    return cache_root() / ONNX


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def cpu_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path``, kept for reuse within the process (the last few). A file written
    again since (a model retrained into the same directory) gets a new session: the cache knows a file by its
    path, size and modification time, never by its path alone."""
    stat = os.stat(path)
    return _cpu_session(str(path), max(1, threads or usable_cores()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=SESSIONS_KEPT)
def _cpu_session(path: str, threads: int, size: int, mtime_ns: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
