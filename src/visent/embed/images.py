"""Image decoding for the backbones: fast reduced-size JPEG decoding, EXIF orientation, RGB conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def load_image(path: str | Path, size: int) -> Image.Image:
    """Open ``path`` as an RGB image whose shorter side is at least ``size`` pixels (or the original size).

    JPEGs are decoded at a reduced scale (``Image.draft``) when they are much larger than ``size``;
    EXIF orientation is applied, transparency is flattened onto white, 16-bit images are rescaled
    and an animation gives its first frame. Raises ``OSError``/``ValueError`` (from Pillow) for files
    that are not readable images, and ``ValueError`` for more pixels than ``Image.MAX_IMAGE_PIXELS``
    (the limit the clean stage applies too).
    """
    name = Path(path).name
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError as exc:  # over twice the limit: Pillow refuses in the header
        raise ValueError(f"{name}: image too large to decode ({exc})") from exc
    except (SyntaxError, EOFError) as exc:  # what some Pillow decoders raise for broken files
        raise ValueError(f"{name}: corrupt image ({exc})") from exc
    with opened as image:
        width, height = image.size
        limit = Image.MAX_IMAGE_PIXELS
        if limit and width * height > limit:  # Pillow only warns below twice the limit
            raise ValueError(f"{name}: image too large to decode ({width}x{height} = "
                             f"{width * height} pixels > limit {limit})")
        try:
            if image.format == "JPEG":
                image.draft("RGB", (size, size))
            image.load()
            image = ImageOps.exif_transpose(image)
        except (SyntaxError, EOFError) as exc:
            raise ValueError(f"{name}: corrupt image ({exc})") from exc
        return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = float(values.max()) or 1.0
        image = Image.fromarray(np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


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
