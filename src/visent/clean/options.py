"""The options of the clean stage (:class:`CleanOptions`): what :func:`visent.clean.clean` takes, what it records as
its parameters, and what ``visent clean`` and ``visent build`` offer (see :mod:`visent.core.options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from visent.core.options import Flag, option, seed_option

_THRESHOLD_HELP = ("Minimum teacher confidence to keep a {} post (default: the teacher's measured threshold, else "
                   "Serra et al.'s).")
_THRESHOLD_FLAGS = tuple(Flag(f"{short}_threshold", (f"--{short}-threshold",), _THRESHOLD_HELP.format(label), None,
                              Optional[float], 0.0, 1.0)
                         for short, label in (("neg", "negative"), ("neu", "neutral"), ("pos", "positive")))


def _thresholds(values: dict[str, float | None]) -> dict[str, float] | None:
    """The thresholds of ``--neg-threshold``, ``--neu-threshold`` and ``--pos-threshold``, those given."""
    given = {label: values[f"{label[:3]}_threshold"] for label in ("negative", "neutral", "positive")}
    return {label: value for label, value in given.items() if value is not None} or None


@dataclass
class CleanOptions:
    """How the clean stage judges the posts. ``thresholds`` override, per class, the confidence thresholds of the
    teacher that labelled the dataset (:func:`visent.clean.default_thresholds`: the teacher's measured ones, else
    Serra et al.'s); ``near_dup_distance`` is the pHash Hamming distance of near duplicates; images whose shorter
    side is under ``min_side`` are dropped; ``drop_neutral`` drops the neutral posts and ``balance`` downsamples
    every class that still has posts to the size of the smallest, choosing with ``seed``."""

    thresholds: dict[str, float] | None = option(None, help="Minimum teacher confidence to keep a post, per class.",
                                                 flags=_THRESHOLD_FLAGS, value=_thresholds)
    near_dup_distance: int = option(4, help="pHash Hamming distance at or below which images are near duplicates.",
                                    min=0, max=32)
    min_side: int = option(32, help="Images whose shorter side is smaller are dropped as tiny.", min=1)
    balance: bool = option(False, help="Downsample classes to the smallest one (B-T4SA style).")
    drop_neutral: bool = option(False, help="Drop neutral posts (binary students).",
                                flag="--drop-neutral/--keep-neutral")
    seed: int = seed_option()

    def params(self, thresholds: dict[str, float]) -> dict[str, Any]:
        """The parameters the stage records: the ``thresholds`` it applies (the teacher's, overridden by the
        record's), beside the other options."""
        return {"thresholds": thresholds, "near_dup_distance": int(self.near_dup_distance),
                "min_side": int(self.min_side), "balance": bool(self.balance), "drop_neutral": bool(self.drop_neutral),
                "seed": int(self.seed)}
