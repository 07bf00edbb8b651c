"""Predict the sentiment of images with a trained student: rows in input order, here or on an engine's workers,
and their CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from visent.core.labels import CLASSES
from visent.core.status import STATUS_COLUMNS, status_columns, statuses_from_columns
from visent.core.store import atomic_open
from visent.model import CHUNK, VisentModel
from visent.model.inputs import expand_inputs
from visent.model.student import prediction_rows

__all__ = ["CSV_COLUMNS", "ENGINE_CHUNK", "PredictWorker", "iter_predict", "predict", "write_csv"]

CSV_COLUMNS = ["path", *CLASSES, "label", "status", "error"]

ENGINE_CHUNK = 128  # images per task of an engine other than the local one


def predict(model: VisentModel | str | Path, inputs: Sequence[str | Path], *, batch_size: int = 32,
            cache: bool = True, engine: Any = None) -> list[dict[str, Any]]:
    """One row per input: path, P(negative), P(neutral), P(positive), label, status, error."""
    return list(iter_predict(model, inputs, batch_size=batch_size, cache=cache, engine=engine))


def iter_predict(model: VisentModel | str | Path, inputs: Sequence[str | Path], *, batch_size: int = 32,
                 cache: bool = True, chunk_size: int = CHUNK, engine: Any = None) -> Iterator[dict[str, Any]]:
    """The rows of :func:`predict`, in input order, computed ``chunk_size`` images at a time.

    ``engine`` runs the chunks: "local" (default, here) or "ray" (actors that each load the model from its
    directory; see :func:`visent.engine.get_engine`). The rows are the same either way."""
    if engine is not None and engine != "local":
        yield from _engine_predict(model, inputs, batch_size=batch_size, cache=cache, chunk_size=chunk_size,
                                   engine=engine)
        return
    model = model if isinstance(model, VisentModel) else VisentModel.load(model)
    items = expand_inputs(inputs)
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    for chunk in chunks:  # each chunk shows its own embedding progress
        yield from model.predict_rows(chunk, batch_size=batch_size, cache=cache)


# what a worker sends back: per item its probabilities and its status (ImageStatus as columns); the rows are made
# here, where the inputs' own names are known
_SCORES = pa.schema([*[(name, pa.float64()) for name in CLASSES],
                     *[(name, pa.string()) for name in STATUS_COLUMNS]])


class PredictWorker:
    """Probabilities and statuses for a chunk of ``(path, problem)`` items (as :func:`expand_inputs` gives them):
    what an engine runs, the model loaded once per process from its directory (or the name of a shipped model)."""

    def __init__(self, model: str, batch_size: int = 32, cache: bool = True):
        self.model = VisentModel.load(model)
        self.batch_size = batch_size
        self.cache = cache

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = list(zip(batch.column("path").to_pylist(), batch.column("problem").to_pylist()))
        probs, statuses = self.model.score_items(items, batch_size=self.batch_size, cache=self.cache)
        columns = {name: probs[:, j] for j, name in enumerate(CLASSES)} | status_columns(statuses)
        return pa.table({field.name: pa.array(columns[field.name], field.type) for field in _SCORES})


def _engine_predict(model: VisentModel | str | Path, inputs: Sequence[str | Path], *, batch_size: int, cache: bool,
                    chunk_size: int, engine: Any) -> Iterator[dict[str, Any]]:
    from visent.engine import get_engine
    from visent.model import ModelError, resolve_model_dir

    run = get_engine(engine)
    if isinstance(model, VisentModel):
        if model.directory is None:
            raise ModelError(f"the {run.name} engine loads the model in its workers: save it to a directory first")
        model = model.directory
    directory = str(resolve_model_dir(model).resolve())
    items = expand_inputs(inputs)
    given = iter([path for path, _ in items])
    # the workers get absolute paths (their working directory is not this one); the rows name the inputs as given
    table = pa.table({"path": pa.array([os.path.abspath(path) for path, _ in items], pa.string()),
                      "problem": pa.array([problem for _, problem in items], pa.string())})
    # chunks small enough to spread over the workers, large enough that a chunk's overhead does not count
    chunk_size = min(chunk_size, ENGINE_CHUNK)
    for scores in run.map_batches(PredictWorker, (directory, batch_size, cache), table, batch_size=chunk_size):
        scores = scores.cast(_SCORES)
        paths = [next(given) for _ in range(scores.num_rows)]
        probs = np.column_stack([scores.column(name).to_numpy() for name in CLASSES])
        statuses = statuses_from_columns(*(scores.column(name).to_pylist() for name in STATUS_COLUMNS))
        # a status names the worker's absolute path; the row names the input as given
        yield from prediction_rows(paths, probs, [status.renamed(path) for status, path in zip(statuses, paths)])


def write_csv(rows: Iterable[dict[str, Any]], out: str | Path) -> int:
    """Write prediction rows as CSV (header ``path,negative,neutral,positive,label,status,error``), streaming
    into a temporary file that replaces ``out`` once every row is written. Returns the number of rows."""
    count = 0
    with atomic_open(Path(out), "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None
                                 else (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k]))
                             for k in CSV_COLUMNS})
            count += 1
    return count
