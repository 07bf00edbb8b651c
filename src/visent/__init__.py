"""visent: image-sentiment classifiers built without human labels.

A textual teacher reads the text of social-media posts, the weak labels are cleaned, and a
visual student learns to predict the sentiment from the image alone (the T4SA method).
"""

from visent.core.labels import CLASSES
from visent.core.store import Dataset
from visent.core.version import __version__


def load(model="default"):
    """A trained student with ``predict(images)`` (a table of probabilities), ``predict_proba`` and
    ``explain(image)`` (sentiment maps): a model directory, or ``"default"`` for the model shipped with visent.
    See :class:`visent.api.Model`."""
    from visent.api import load as load_model

    return load_model(model)


__all__ = ["CLASSES", "Dataset", "load", "__version__"]
