"""What the backbones do to a decoded image: the centre square, the five test-time crops and the training crops.

Decoding itself (with its checks, EXIF orientation and RGB conversion) is ``visent.core.images.load_image``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def center_square(image: Image.Image, size: int, resample: str) -> Image.Image:
    """Resize the shorter side to ``size`` and crop the central ``size`` x ``size`` square (one resampling pass)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return image.resize((size, size), RESAMPLE[resample], box=(left, top, left + side, top + side), reducing_gap=3.0)


def five_crops(image: Image.Image, size: int, resample: str, crop_fraction: float = 0.875) -> list[Image.Image]:
    """Campos et al.'s test-time crops: the centre square resized to ``size / crop_fraction`` (256 for 224),
    then its four corner crops and its central crop of ``size``."""
    big = center_square(image, round(size / crop_fraction), resample)
    edge = big.width - size
    middle = edge // 2
    corners = [(0, 0), (edge, 0), (0, edge), (edge, edge), (middle, middle)]
    return [big.crop((x, y, x + size, y + size)) for x, y in corners]


def random_resized_crop(image: Image.Image, size: int, resample: str, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.35, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        flip: bool = True) -> Image.Image:
    """Training augmentation: a random crop of ``scale`` of the area and ``ratio`` aspect, resized to a square."""
    width, height = image.size
    area = width * height * rng.uniform(*scale)
    aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
    crop_w = min(width, max(1.0, (area * aspect) ** 0.5))
    crop_h = min(height, max(1.0, (area / aspect) ** 0.5))
    left = rng.uniform(0, width - crop_w)
    top = rng.uniform(0, height - crop_h)
    out = image.resize((size, size), RESAMPLE[resample], box=(left, top, left + crop_w, top + crop_h),
                       reducing_gap=3.0)
    if flip and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out
