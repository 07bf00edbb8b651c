"""The head's solutions of a dataset's last training, kept under its ``work/``: the next training with the same
options (a grown crawl) starts each fit from them."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from visent.core.store import atomic_write_bytes
from visent.model.head import StudentHead

__all__ = ["WARM_FILE", "final_start", "load_warm", "save_warm", "warm_key"]

WARM_FILE = "head-solutions.npz"  # under the dataset's work/: the head's solutions of its last training


def warm_key(params: dict[str, Any], dim: int) -> str:
    """What the solutions depend on besides the posts: the options and the features' width."""
    kept = {k: v for k, v in params.items() if k not in ("posts", "dataset", "visent")}
    return hashlib.sha256(json.dumps([kept, dim], sort_keys=True, default=str).encode()).hexdigest()


def load_warm(path: Path, key: str) -> dict[Any, Any]:
    """The solutions a previous training of the dataset with the same options left (empty when there are none,
    or they belong to other options or are damaged: the fits then start from scratch, and a damaged file is said
    and written again after the fit)."""
    import zipfile

    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return {}
            warm: dict[Any, Any] = {}
            for i, name in enumerate(data["names"].tolist()):
                kind, _, value = name.partition(":")
                solution = ((tuple(int(c) for c in data[f"seen{i}"]), int(data[f"coef{i}"].shape[1])),
                            data[f"coef{i}"], data[f"intercept{i}"])
                warm[float(value) if kind == "C" else ("final", float(value))] = solution
            return warm
    except (OSError, KeyError, ValueError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"{path}: damaged ({type(exc).__name__}: {exc}); the head's fits start from scratch and the "
                      "file is written again", RuntimeWarning, stacklevel=2)
        return {}


def save_warm(path: Path, key: str, warm: dict[Any, Any]) -> None:
    import io

    arrays: dict[str, np.ndarray] = {"key": np.array(key)}
    names = []
    for i, (name, ((seen, _), coef, intercept)) in enumerate(warm.items()):
        names.append(f"final:{name[1]!r}" if isinstance(name, tuple) else f"C:{name!r}")
        arrays.update({f"seen{i}": np.array(seen, dtype=np.int64), f"coef{i}": np.asarray(coef),
                       f"intercept{i}": np.asarray(intercept)})
    arrays["names"] = np.array(names)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def final_start(warm: dict[Any, Any] | None, C: float, split_head: StudentHead | None) -> tuple | None:
    """Where the head of every row starts: its previous solution for this C, else the split head's."""
    previous = (warm or {}).get(("final", C))
    if previous is not None:
        return previous
    return split_head.solution if split_head is not None else None
