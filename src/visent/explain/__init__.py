"""EXPLAIN: sentiment maps of a student's prediction, as Campos et al. showed for fine-tuned networks.

Public surface::

    explanation = explain(model, "photo.jpg")          # or model.explain(...): a path, PIL image or array
    explanation.probabilities, explanation.label     # as model.predict gives them
    explanation.maps                                 # (3, GRID, GRID): evidence per class over the model's square
    explanation.overlay("positive")                  # PIL image: the map over the photo
    explanation.panel()                              # the photo and its three maps side by side
    explanation.save("out/", "photo")                # photo.negative.png, ..., photo.panel.png

``method`` is ``"cam"`` (class activation maps through the linear head: exact for visent's EfficientNet-Lite
backbones), ``"gradcam"`` (any backbone with a spatial activation: torchvision, timm, ViT) or ``"auto"`` (CAM
where every backbone of the model allows it). See :mod:`visent.explain.cam`.

The maps come from the PyTorch network of the model's weights (an ONNX graph gives pooled features only). For a
model that predicts with an int8 network (the default), the probabilities are the int8 network's, as ``predict``
gives them, and the maps add up to the fp32 network's logits, which the int8 ones follow within quantisation error.

Modules: :mod:`~visent.explain.maps` (:func:`explain`, :func:`explain_images`), :mod:`~visent.explain.explanation`
(:class:`Explanation`), :mod:`~visent.explain.cam` (the maps' methods) and :mod:`~visent.explain.render` (drawing).
"""

from __future__ import annotations

from visent.explain.cam import METHODS, ExplainError
from visent.explain.explanation import DISPLAY_SIZE, Explanation, to_png
from visent.explain.maps import explain, explain_images

__all__ = ["DISPLAY_SIZE", "METHODS", "ExplainError", "Explanation", "explain", "explain_images", "to_png"]
