"""Image signals beyond the scene, fused with the backbone's features in the student (each switchable).

``SIGNALS`` is the registry: a signal maps image paths to a small float32 matrix and a status per image
(:class:`~visent.core.status.ImageStatus`).

- ``ocr``: the text written inside the image, read by RapidOCR and scored by the text teacher
  (:mod:`visent.signals.ocr`);
- ``faces``: faces found by a packaged detector and their expressions (:mod:`visent.signals.faces`).

A model lists its signals in ``ModelConfig.signals``; training and prediction compute them the same way,
through :func:`signal_features`.
"""

from visent.signals.registry import SIGNALS, SignalFunction, check_signals, signal_features

__all__ = ["SIGNALS", "SignalFunction", "check_signals", "signal_features"]
