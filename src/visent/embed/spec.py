"""What a backbone expects of an image and gives back, and the image-to-array step: no PyTorch needed, so that a
model that carries its network as an ONNX graph predicts without importing it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from visent.core.errors import VisentError
from visent.embed.preprocess import center_square

PIPELINE_VERSION = 1  # bump when decoding or preprocessing changes, so cached features are recomputed

# The student's backbone when none is named (`visent build`, `train`, `embed`, and the label of `visent backbones`):
# features of every stage of EfficientNet-Lite0 (run in int8 by default), on the MVSA zero-label protocol as good
# as these beside Lite2's pooled features, the earlier default, at a third of the cost (docs/results.md).
DEFAULT_BACKBONE = "efficientnet-lite0-ms"


class BackboneError(VisentError):
    """A backbone cannot be built: unknown name, missing library, or weights that do not fit."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone expects and returns. ``mean``/``std`` are per RGB channel on the 0..255 scale."""

    name: str
    dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"

    @property
    def preprocessing(self) -> str:
        mean = ",".join(f"{v:g}" for v in self.mean)
        std = ",".join(f"{v:g}" for v in self.std)
        return f"v{PIPELINE_VERSION}:{self.image_size}px:{self.resample}:center-square:mean={mean}:std={std}"


def to_array(image: Image.Image, spec: BackboneSpec) -> np.ndarray:
    """Normalise an RGB image that already has the input size: float32 (3, S, S)."""
    array = np.asarray(image, dtype=np.float32)
    array = (array - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def preprocess_array(image: Image.Image, spec: BackboneSpec) -> np.ndarray:
    """An RGB image → normalised float32 (3, S, S): shorter side resized to the input size, centre cropped."""
    return to_array(center_square(image, spec.image_size, spec.resample), spec)
