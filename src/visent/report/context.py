"""What a report is about: the dataset and the model of its target, the evaluation it shows, the dataset's posts."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visent.core.errors import InputError, PathNotFound, UsageError
from visent.core.store import Dataset, DatasetError
from visent.evaluate.record import Evaluation

__all__ = ["Posts", "ReportContext", "load_evaluation", "resolve_target"]


@dataclass
class ReportContext:
    """What the report is about: the dataset, the model and the evaluation it found, and why a part is missing."""

    target: str
    dataset: Dataset | None = None
    model: Any = None  # visent.model.VisentModel
    notes: list[str] = field(default_factory=list)
    dataset_note: str = ""
    model_note: str = ""
    evaluation: Evaluation | None = None
    evaluation_note: str = ""


def resolve_target(target: str | os.PathLike[str], model: str | os.PathLike[str] | None) -> ReportContext:
    """The dataset and model of ``target`` (a dataset directory, with ``model`` or not, or a model directory)."""
    from visent.model import ModelError, VisentModel

    context = ReportContext(target=str(target))
    path = Path(target)
    if (path / "manifest.json").exists():
        context.dataset = Dataset(path)
        if model is not None:
            context.model = VisentModel.load(model)
            trained_on = context.model.metrics.get("dataset")
            if trained_on and not _same_path(trained_on, path):
                context.notes.append(f"The model was trained on {trained_on}, not on this dataset: its grid shows "
                                     "how it sees these images.")
        else:
            context.model_note = ("No model given: add one with `--model MODEL` (or report on the model directory) "
                                  "to see the images it is most confident about.")
        return context
    if model is not None:
        raise UsageError(f"{target}: --model goes with a dataset directory, and this is not one (no manifest.json)")
    try:
        context.model = VisentModel.load(target)
    except ModelError:
        raise DatasetError(f"{target}: neither a visent dataset (manifest.json) nor a model directory (config.json); "
                           "give a dataset made by `visent ingest`/`visent build`, or a model") from None
    context.dataset, context.dataset_note = context.model.trained_on()
    return context


def _same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def load_evaluation(context: ReportContext, benchmark: Any,
                    evaluation: Evaluation | Mapping[str, Any] | str | os.PathLike[str] | None,
                    ) -> tuple[Evaluation | None, str]:
    """The evaluation the report shows: ``benchmark`` scored now, or ``evaluation`` (an :class:`Evaluation`, its
    JSON object, or the file ``visent evaluate --out`` wrote); else None and a note that says how to add one."""
    how = ("No evaluation given: add `--benchmark SPEC` (a CSV of path,label or an MVSA folder) to score the model "
           "on human-labelled images now, or `--evaluation FILE` to reuse a `visent evaluate --out FILE` report.")
    if benchmark is not None:
        if context.model is None:
            raise UsageError("--benchmark needs a model: report on a model directory, or give `--model MODEL`")
        from visent.evaluate import evaluate

        return evaluate(context.model, benchmark), ""
    if evaluation is None:
        return None, how
    if isinstance(evaluation, Evaluation):
        return evaluation, ""
    if isinstance(evaluation, Mapping):
        report = evaluation
    else:
        try:
            report = json.loads(Path(evaluation).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"{evaluation}: not a JSON report of `visent evaluate --out` ({error})") from None
        except FileNotFoundError:
            raise PathNotFound(f"{evaluation}: no such file (--evaluation takes the JSON of "
                               "`visent evaluate --out`)") from None
    if not isinstance(report, Mapping) or "three_class" not in report:
        raise InputError(f"{evaluation}: not a report of `visent evaluate --out` (no 'three_class' entry)")
    try:
        return Evaluation.from_json(report), ""
    except InputError as error:
        raise InputError(f"{evaluation}: {error}") from None


@dataclass
class Posts:
    """The columns of the dataset the report reads, one list per column (None where a stage has not run)."""

    n: int
    columns: dict[str, list[Any]]
    stages: dict[str, str]  # stage -> status ("done", "stale", "running", "missing")

    NAMES = ("post_id", "ingest_status", "ingest_reason", "image_file", "image_sha256", "teacher", "teach_status",
             "teach_reason", "teach_label", "teach_confidence", "clean_status", "clean_step", "clean_reason", "label")

    @classmethod
    def read(cls, dataset: Dataset) -> Posts:
        """The columns of ``dataset``'s posts, and the status of its stages."""
        stages = {name: (dataset.stage_info(name) or {}).get("status", "missing")
                  for name in ("ingest", "teach", "clean")}
        if stages["ingest"] != "done" or not dataset.has_table("posts"):
            return cls(0, {name: [] for name in cls.NAMES}, stages)
        table = dataset.posts()
        columns = {name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
                   for name in cls.NAMES}
        for name in ("teach", "clean"):  # posts() joins finished stages only
            if stages[name] == "done" and not dataset.has_table(name):
                stages[name] = "missing"
        return cls(table.num_rows, columns, stages)

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]

    @property
    def taught(self) -> bool:
        return self.stages["teach"] == "done"

    @property
    def cleaned(self) -> bool:
        return self.stages["clean"] == "done"
