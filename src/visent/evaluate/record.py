"""The result of :func:`visent.evaluate.evaluate`: an :class:`Evaluation`, typed, and its JSON.

The JSON (``visent evaluate --out``, :meth:`Evaluation.save`) is what users read: :meth:`Evaluation.to_json`
gives it key for key, and :meth:`Evaluation.from_json` reads it back, also as older visent versions wrote it
(the parts added since, such as the bootstrap intervals, the reliability bins, the subsets, are then None)::

    {"benchmark", "model", "n", "n_scored", "n_unreadable", "unreadable", "n_skipped_labels", "kind",
     "training_overlap"?, "binary"?, "three_class", "subsets"?, "published"?, "kfold"?}

A key marked ``?`` is written only when there is something in it (``subsets`` when the benchmark names subsets,
even if none of their images could be read).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from visent.core.errors import InputError
from visent.core.store import atomic_write_json
from visent.evaluate.published import PublishedFigure

__all__ = ["BinaryFigures", "Confusion", "Evaluation", "FoldScore", "KFold", "ReliabilityBin", "SubsetEvaluation",
           "ThreeClassFigures", "TrainingOverlap"]


def _need(data: Mapping[str, Any], key: str, where: str) -> Any:
    """``data[key]``, or an :class:`InputError` saying which entry the JSON lacks."""
    try:
        return data[key]
    except (KeyError, TypeError):
        raise InputError(f"not a report of `visent evaluate --out`: no {key!r} entry in {where}") from None


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """``out[key] = value`` unless the value is None (the key is then left out, as evaluate leaves it out)."""
    if value is not None:
        out[key] = value


@dataclass
class Confusion:
    """A confusion matrix: ``rows_true_cols_predicted[i][j]`` images of class ``labels[i]`` predicted ``labels[j]``."""

    labels: list[str]
    rows_true_cols_predicted: list[list[int]]

    def to_json(self) -> dict[str, Any]:
        return {"labels": self.labels, "rows_true_cols_predicted": self.rows_true_cols_predicted}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Confusion:
        return cls(_need(data, "labels", "a confusion matrix"),
                   _need(data, "rows_true_cols_predicted", "a confusion matrix"))


@dataclass
class BinaryFigures:
    """Positive vs negative (neutral images left out; the decision is the larger of P(positive) and P(negative)):
    T4SA's protocol. The intervals are 95% bootstrap intervals over the images, ``[low, high]``."""

    n: int
    n_positive: int
    n_negative: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    confusion: Confusion
    accuracy_ci95: list[float] | None = None  # None: written before visent computed the intervals
    balanced_accuracy_ci95: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "n_positive": self.n_positive, "n_negative": self.n_negative,
                               "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy}
        _put(out, "accuracy_ci95", self.accuracy_ci95)
        _put(out, "balanced_accuracy_ci95", self.balanced_accuracy_ci95)
        out["macro_f1"] = self.macro_f1
        out["confusion"] = self.confusion.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BinaryFigures:
        where = "the binary figures"
        return cls(n=_need(data, "n", where), n_positive=_need(data, "n_positive", where),
                   n_negative=_need(data, "n_negative", where), accuracy=_need(data, "accuracy", where),
                   balanced_accuracy=_need(data, "balanced_accuracy", where), macro_f1=_need(data, "macro_f1", where),
                   confusion=Confusion.from_json(_need(data, "confusion", where)),
                   accuracy_ci95=data.get("accuracy_ci95"), balanced_accuracy_ci95=data.get("balanced_accuracy_ci95"))


@dataclass
class ReliabilityBin:
    """One equal-width confidence bin of the reliability diagram: its edges, how many predictions fall in it,
    their mean top-label confidence and their accuracy (None for an empty bin)."""

    lo: float
    hi: float
    count: int
    confidence: float | None
    accuracy: float | None

    def to_json(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "count": self.count, "confidence": self.confidence,
                "accuracy": self.accuracy}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReliabilityBin:
        where = "a reliability bin"
        return cls(_need(data, "lo", where), _need(data, "hi", where), _need(data, "count", where),
                   data.get("confidence"), data.get("accuracy"))


@dataclass
class ThreeClassFigures:
    """Negative / neutral / positive by argmax, with the top-label ECE and its reliability bins. Macro-F1 and
    balanced accuracy only when the benchmark has neutral images (else None)."""

    n: int
    accuracy: float
    confusion: Confusion
    ece: float
    reliability: list[ReliabilityBin] | None = None  # None: written before visent kept the bins
    macro_f1: float | None = None
    balanced_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "accuracy": self.accuracy, "confusion": self.confusion.to_json(),
                               "ece": self.ece}
        if self.reliability is not None:
            out["reliability"] = {"bins": [b.to_json() for b in self.reliability]}
        _put(out, "macro_f1", self.macro_f1)
        _put(out, "balanced_accuracy", self.balanced_accuracy)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThreeClassFigures:
        where = "the 3-class figures"
        bins = (data.get("reliability") or {}).get("bins")
        return cls(n=_need(data, "n", where), accuracy=_need(data, "accuracy", where),
                   confusion=Confusion.from_json(_need(data, "confusion", where)), ece=_need(data, "ece", where),
                   reliability=None if bins is None else [ReliabilityBin.from_json(b) for b in bins],
                   macro_f1=data.get("macro_f1"), balanced_accuracy=data.get("balanced_accuracy"))


def _figures_json(out: dict[str, Any], binary: BinaryFigures | None, three_class: ThreeClassFigures) -> None:
    if binary is not None:
        out["binary"] = binary.to_json()
    out["three_class"] = three_class.to_json()


def _figures(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``binary`` and ``three_class`` entries of ``data`` (what ``compute_metrics`` gives), typed."""
    return {"binary": BinaryFigures.from_json(data["binary"]) if data.get("binary") is not None else None,
            "three_class": ThreeClassFigures.from_json(_need(data, "three_class", where))}


@dataclass
class FoldScore:
    """One head scored on one test fold of the k-fold protocol: the fold, the penalty C the fine-tuned heads chose
    (None for the student as it is), and its figures on the fold."""

    fold: int
    three_class: ThreeClassFigures
    binary: BinaryFigures | None = None
    C: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fold": self.fold}
        _put(out, "C", self.C)
        _figures_json(out, self.binary, self.three_class)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FoldScore:
        return cls(fold=_need(data, "fold", "a fold's figures"), C=data.get("C"), **_figures(data, "a fold's figures"))


@dataclass
class KFold:
    """The k-fold protocol (:mod:`visent.evaluate.kfold`): how the images were split, every head's figures per
    fold (``runs``: "student", and with fine-tuning "from_student" and "from_imagenet"), and per head the mean and
    standard deviation over folds of the headline figures (``summary[head][figure] == (mean, std)``)."""

    folds: int
    seed: int
    n: int
    runs: dict[str, list[FoldScore]]
    summary: dict[str, dict[str, tuple[float, float]]]
    split: str | None = None  # "stratified, seed 0" or "the benchmark's own folds"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"folds": self.folds, "seed": self.seed}
        _put(out, "split", self.split)
        out.update({"n": self.n, "runs": {name: [row.to_json() for row in rows] for name, rows in self.runs.items()},
                    "summary": {name: {key: list(value) for key, value in figures.items()}
                                for name, figures in self.summary.items()}})
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KFold:
        where = "the k-fold protocol"
        return cls(folds=_need(data, "folds", where), seed=_need(data, "seed", where), split=data.get("split"),
                   n=_need(data, "n", where),
                   runs={name: [FoldScore.from_json(row) for row in rows]
                         for name, rows in (data.get("runs") or {}).items()},
                   summary={name: {key: (value[0], value[1]) for key, value in figures.items()}
                            for name, figures in (data.get("summary") or {}).items()})


@dataclass
class SubsetEvaluation:
    """The figures of one named subset of a benchmark (Twitter-I's 5-, 4- and 3-agree images), and with the k-fold
    protocol its own (``kfold_is_all``: the subset is every scored image, and ``kfold`` the whole benchmark's;
    ``kfold_skipped``: why it has none, e.g. too few images of a class)."""

    n: int
    three_class: ThreeClassFigures
    binary: BinaryFigures | None = None
    kfold: KFold | None = None
    kfold_is_all: bool = False
    kfold_skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n}
        _figures_json(out, self.binary, self.three_class)
        if self.kfold is not None:
            out["kfold"] = self.kfold.to_json()
        if self.kfold_is_all:
            out["kfold_is_all"] = True
        _put(out, "kfold_skipped", self.kfold_skipped)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SubsetEvaluation:
        where = "a subset's figures"
        return cls(n=_need(data, "n", where), **_figures(data, where),
                   kfold=KFold.from_json(data["kfold"]) if data.get("kfold") is not None else None,
                   kfold_is_all=bool(data.get("kfold_is_all", False)), kfold_skipped=data.get("kfold_skipped"))


@dataclass
class TrainingOverlap:
    """How many of the benchmark's ``n`` images are among the images the model learnt from (its ``dataset``'s kept
    images, with the teacher's labels): on those the figures are not held out."""

    shared: int
    n: int
    dataset: str

    def to_json(self) -> dict[str, Any]:
        return {"shared": self.shared, "n": self.n, "dataset": self.dataset}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingOverlap:
        where = "the training overlap"
        return cls(_need(data, "shared", where), _need(data, "n", where), _need(data, "dataset", where))


def _published(row: Mapping[str, Any]) -> PublishedFigure:
    return PublishedFigure(**{f.name: row.get(f.name) for f in fields(PublishedFigure)})


@dataclass
class Evaluation:
    """A student scored on a human-labelled benchmark (:func:`visent.evaluate.evaluate`).

    ``n`` images with a usable label, of which ``n_scored`` could be read (``unreadable``: the first 50 others,
    ``"path: reason"``); ``n_skipped_labels`` rows of the benchmark had no usable label. ``binary`` (None when the
    benchmark has no positive or negative image) and ``three_class`` are the figures over the scored images;
    ``subsets`` the same per named subset (None when the benchmark names none); ``published`` the papers' own figures
    for this benchmark (None when there are none), shown beside visent's, never re-measured; ``kfold`` the k-fold
    protocol when it was asked for."""

    benchmark: str
    model: str
    n: int
    n_scored: int
    n_unreadable: int
    unreadable: list[str]
    n_skipped_labels: int
    three_class: ThreeClassFigures
    binary: BinaryFigures | None = None
    kind: str | None = None  # the benchmark's registry name; None: written before visent recorded it
    training_overlap: TrainingOverlap | None = None
    subsets: dict[str, SubsetEvaluation] | None = None
    published: list[PublishedFigure] | None = None
    kfold: KFold | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # entries of a JSON this visent does not know

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``visent evaluate --out`` (plain dicts, lists and numbers)."""
        out: dict[str, Any] = {"benchmark": self.benchmark, "model": self.model, "n": self.n,
                               "n_scored": self.n_scored, "n_unreadable": self.n_unreadable,
                               "unreadable": self.unreadable, "n_skipped_labels": self.n_skipped_labels}
        _put(out, "kind", self.kind)
        if self.training_overlap is not None:
            out["training_overlap"] = self.training_overlap.to_json()
        _figures_json(out, self.binary, self.three_class)
        if self.subsets is not None:
            out["subsets"] = {name: subset.to_json() for name, subset in self.subsets.items()}
        if self.published:
            out["published"] = [asdict(row) for row in self.published]
        if self.kfold is not None:
            out["kfold"] = self.kfold.to_json()
        out.update({key: value for key, value in self.extra.items() if key not in out})
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evaluation:
        """The evaluation of a JSON object written by :meth:`to_json` (or by an older visent); an
        :class:`~visent.core.errors.InputError` names the first entry it lacks."""
        if not isinstance(data, Mapping):
            raise InputError("not a report of `visent evaluate --out`: not a JSON object")
        where = "the report"
        evaluation = cls(
            benchmark=_need(data, "benchmark", where), model=_need(data, "model", where), n=_need(data, "n", where),
            n_scored=_need(data, "n_scored", where), n_unreadable=_need(data, "n_unreadable", where),
            unreadable=list(data.get("unreadable") or []), n_skipped_labels=_need(data, "n_skipped_labels", where),
            kind=data.get("kind"), **_figures(data, where),
            training_overlap=(TrainingOverlap.from_json(data["training_overlap"])
                              if data.get("training_overlap") is not None else None),
            subsets=({name: SubsetEvaluation.from_json(subset) for name, subset in data["subsets"].items()}
                     if data.get("subsets") is not None else None),
            published=[_published(row) for row in data["published"]] if data.get("published") else None,
            kfold=KFold.from_json(data["kfold"]) if data.get("kfold") is not None else None)
        known = {"benchmark", "model", "n", "n_scored", "n_unreadable", "unreadable", "n_skipped_labels", "kind",
                 "training_overlap", "binary", "three_class", "subsets", "published", "kfold"}
        evaluation.extra = {key: value for key, value in data.items() if key not in known}
        return evaluation

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically, keys sorted, two-space indents); returns the path."""
        path = Path(path)
        atomic_write_json(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Evaluation:
        """The evaluation a :meth:`save` (``visent evaluate --out``) wrote to ``path``."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
