"""TEACH stage: a textual teacher gives each post calibrated negative/neutral/positive probabilities."""

from visent.teach.base import TEACHER_THRESHOLDS, TEACHERS, Teacher, load_teacher
from visent.teach.stage import teach
from visent.teach.text import preprocess_tweet
from visent.teach import ensemble as _ensemble  # noqa: F401  (registers the "default" teacher)
from visent.teach import vader as _vader  # noqa: F401  (registers the "vader" teacher)

__all__ = ["TEACHER_THRESHOLDS", "TEACHERS", "Teacher", "load_teacher", "preprocess_tweet", "teach"]
