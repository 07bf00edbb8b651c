"""The clean stage: drop posts whose image or weak label is unfit to train on, with a reason each."""

from visent.clean.checks import ImageCheck, check_image, perceptual_hash
from visent.clean.hamming import HammingIndex
from visent.clean.stage import DEFAULT_THRESHOLDS, STEPS, clean, default_thresholds, summarise

__all__ = ["DEFAULT_THRESHOLDS", "default_thresholds", "STEPS", "HammingIndex", "ImageCheck", "check_image", "clean",
           "perceptual_hash", "summarise"]
