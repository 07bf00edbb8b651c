"""``visent export``: a dataset in its released form, one row per post, with a dataset card beside it.

Public surface: :func:`export_dataset` (writes the table and the card, returns the counts),
:func:`dataset_card` (the card's Markdown), :func:`split_of` (the split of an image) and :func:`parse_split`.

Every post of the dataset is a row, kept or dropped (T4SA released its dropped posts too): the teacher's
probabilities and label, the cleaning decision, its step and its reason, the image's hashes and size. Kept rows carry
the training ``label`` and a ``split`` drawn from the image's SHA-256, so the split of an image never
changes when posts are added and identical images always share a split. The post text is left out unless
asked for (``with_text``): crawled text has licence limits that the images' hashes and ids do not.

Modules: :mod:`~visent.export.stage` (:func:`export_dataset`, the released table), :mod:`~visent.export.card` (the
card), :mod:`~visent.export.columns` (the columns) and :mod:`~visent.export.splits` (the splits).
"""

from __future__ import annotations

from visent.export.card import card_path, dataset_card
from visent.export.columns import COLUMNS
from visent.export.splits import SPLITS, parse_split, split_of
from visent.export.stage import FORMATS, export_dataset

__all__ = ["COLUMNS", "FORMATS", "SPLITS", "card_path", "dataset_card", "export_dataset", "parse_split", "split_of"]
