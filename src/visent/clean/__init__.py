"""The clean stage: drop posts whose image or weak label is unfit to train on, with a reason each
(:func:`clean`, with its :class:`CleanOptions`)."""

from visent.clean.checks import ImageCheck, analyse_image, size_check
from visent.clean.hamming import HammingIndex
from visent.clean.options import CleanOptions
from visent.clean.stage import DEFAULT_THRESHOLDS, STEPS, clean, default_thresholds, summarise

__all__ = ["DEFAULT_THRESHOLDS", "default_thresholds", "STEPS", "CleanOptions", "HammingIndex", "ImageCheck",
           "analyse_image", "clean", "size_check", "summarise"]
