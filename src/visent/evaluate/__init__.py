"""Prove a student on human-labelled images.

Public surface: :func:`load_benchmark`, :func:`compute_metrics`, :func:`evaluate` (with ``folds``: the k-fold
protocol, and with ``finetune`` heads fine-tuned on the human labels from the student and from ImageNet
features, see :mod:`visent.evaluate.kfold`), which gives an :class:`Evaluation` (typed, with its JSON:
:mod:`visent.evaluate.record`), and :func:`print_evaluation`, its drawing for the terminal.

Modules: :mod:`~visent.evaluate.stage` (:func:`evaluate` and the training overlap), :mod:`~visent.evaluate.record`
(the :class:`Evaluation` record), :mod:`~visent.evaluate.console` (``visent evaluate``'s tables),
:mod:`~visent.evaluate.metrics`, :mod:`~visent.evaluate.kfold`, :mod:`~visent.evaluate.benchmarks` (the readers)
and :mod:`~visent.evaluate.published` (the papers' own figures).

The protocol (T4SA's, Serra et al.'s) is described in :mod:`~visent.evaluate.stage`.
"""

from __future__ import annotations

from visent.evaluate.benchmarks import BENCHMARKS, Benchmark, BenchmarkError, load_benchmark
from visent.evaluate.console import print_evaluation
from visent.evaluate.metrics import compute_metrics
from visent.evaluate.published import PUBLISHED, PublishedFigure, published_for
from visent.evaluate.record import (
    BinaryFigures,
    Confusion,
    Evaluation,
    FoldScore,
    KFold,
    ReliabilityBin,
    SubsetEvaluation,
    ThreeClassFigures,
    TrainingOverlap,
)
from visent.evaluate.stage import evaluate, shared_with_kept, training_overlap

__all__ = ["BENCHMARKS", "PUBLISHED", "Benchmark", "BenchmarkError", "BinaryFigures", "Confusion", "Evaluation",
           "FoldScore", "KFold", "PublishedFigure", "ReliabilityBin", "SubsetEvaluation", "ThreeClassFigures",
           "TrainingOverlap", "compute_metrics", "evaluate", "load_benchmark", "print_evaluation", "published_for",
           "shared_with_kept", "training_overlap"]
