"""Train the visual student on the cleaned teacher labels of a dataset.

Public surface: :func:`train` (dataset → model directory) with its :class:`TrainOptions`, and
:class:`StudentHead` (fit / predict_proba). Training reads the ``posts``, ``teach`` and ``clean`` tables only; the
``human_labels`` table is never opened.

Modules: :mod:`~visent.train.stage` (:func:`train`, :func:`check_options`), :mod:`~visent.train.options`
(:class:`TrainOptions`), :mod:`~visent.train.rows` (the kept posts it reads), :mod:`~visent.train.features` (their
features within a memory budget), :mod:`~visent.train.select` (C chosen on the teacher's labels),
:mod:`~visent.train.fit` (the head, its self-training and temperature), :mod:`~visent.train.streamed` (fits a block
of rows at a time), :mod:`~visent.train.warm` (the solutions a grown crawl starts from), :mod:`~visent.train.backbone`
(the backbone the model directory carries), :mod:`~visent.train.card` (its model card), :mod:`~visent.train.weak`
(why a student is likely of no use), and :mod:`~visent.train.noisy`, :mod:`~visent.train.finetune`,
:mod:`~visent.train.adapt`.
"""

from __future__ import annotations

from visent.embed.spec import DEFAULT_BACKBONE  # defined beside the backbones, so `visent --help` needs no sklearn
from visent.model.head import StudentHead
from visent.train.backbone import GRAPH_FILE
from visent.train.card import model_card
from visent.train.features import DEFAULT_MEMORY_MB, MEMORY_ENV, memory_budget
from visent.train.options import TrainOptions
from visent.train.select import C_GRID, C_PATIENCE, select_C
from visent.train.stage import TrainError, check_options, train
from visent.train.weak import MIN_CLASS_POSTS, WeakModelWarning, weak_model_notes

__all__ = ["C_GRID", "C_PATIENCE", "DEFAULT_BACKBONE", "DEFAULT_MEMORY_MB", "GRAPH_FILE", "MEMORY_ENV",
           "MIN_CLASS_POSTS", "StudentHead", "TrainError", "TrainOptions", "WeakModelWarning", "check_options",
           "memory_budget", "model_card", "select_C", "train", "weak_model_notes"]
