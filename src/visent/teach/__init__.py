"""TEACH stage: a textual teacher gives each post calibrated negative/neutral/positive probabilities.

``load_teacher(name)`` builds a registered teacher (``TEACHERS``: ``default``, ``vader``) or loads a teacher
directory; :func:`teach` runs it over a dataset's posts, with its :class:`TeachOptions`. Training a teacher of one's
own: :func:`visent.teach.recipe.train_teacher` (``visent teacher train``) and the
:class:`~visent.teach.classifier.TextClassifier` estimator it fits.
"""

from visent.teach.base import SERRA_THRESHOLDS, Teacher
from visent.teach.options import TeachOptions
from visent.teach.stage import teach
from visent.teach.teachers import TEACHERS, load_teacher
from visent.teach.text import preprocess_tweet

__all__ = ["SERRA_THRESHOLDS", "TEACHERS", "TeachOptions", "Teacher", "load_teacher", "preprocess_tweet", "teach"]
