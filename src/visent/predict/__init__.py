"""Predict the sentiment of images with a trained student.

Public surface: :func:`expand_inputs` (files, folders, ``@list.txt``), :func:`predict`, :func:`iter_predict`
(rows in input order, a chunk of images at a time: memory stays flat however many images) and
:func:`write_csv`. Every input gives one row: unreadable images get empty probabilities, ``status=error``
and the reason.

Module: :mod:`~visent.predict.stage`.
"""

from __future__ import annotations

from visent.model.inputs import IMAGE_SUFFIXES, expand_inputs
from visent.predict.stage import CSV_COLUMNS, iter_predict, predict, write_csv

__all__ = ["CSV_COLUMNS", "IMAGE_SUFFIXES", "expand_inputs", "iter_predict", "predict", "write_csv"]
