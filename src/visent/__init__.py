"""visent: image-sentiment classifiers built without human labels.

A textual teacher reads the text of social-media posts, the weak labels are cleaned, and a
visual student learns to predict the sentiment from the image alone (the T4SA method).
"""

__version__ = "0.1.0"

from visent.labels import CLASSES  # noqa: E402
from visent.store import Dataset  # noqa: E402


def load(model="default"):
    """A trained student with ``predict(images)`` (a table of probabilities) and ``explain(image)`` (sentiment
    maps): a model directory, or ``"default"`` for the model shipped with visent. See visent.model.VisentModel."""
    from visent.model import load as load_model

    return load_model(model)


__all__ = ["CLASSES", "Dataset", "load", "__version__"]
