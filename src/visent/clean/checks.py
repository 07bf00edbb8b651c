"""Per-image checks and perceptual hashes for the clean stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from visent.core.images import ImageError, as_image_error, decode, open_image

# Bumped whenever the decode or hash recipe or the wording of the reasons changes, so cached results from an
# older recipe are redone (v2: the reasons of visent.core.images).
METHOD = "phash8-draftL64-v2"
_DRAFT_SIZE = (64, 64)


@dataclass(slots=True)
class ImageCheck:
    """Outcome of checking one image file: ``ok`` or the ``reason`` it is unusable."""

    ok: bool
    reason: str
    width: int | None = None
    height: int | None = None
    format: str | None = None


def phash_hex(value: int) -> str:
    """A 64-bit hash as 16 hex digits (the spelling imagehash uses)."""
    return f"{value:016x}"


def _phash_of_loaded(image: Image.Image) -> int:
    bits = imagehash.phash(image).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def analyse_image(path: Path) -> tuple[ImageCheck, int | None]:
    """Decode ``path`` fully once and hash it; never raises for bad input.

    The reasons are ``visent.core.images``'s, worded as everywhere else in visent. The check here does not
    apply a minimum size (see :func:`size_check`), so the result can be cached per image and reused with any
    ``min_side``.
    """
    fmt = None
    try:
        with open_image(Path(path)) as image:
            fmt = image.format
            width, height = image.size
            value = _phash_of_loaded(decode(image, draft=("L", _DRAFT_SIZE)))
    except ImageError as error:
        return ImageCheck(False, error.reason), None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
        return ImageCheck(False, as_image_error(exc, fmt).reason), None
    return ImageCheck(True, "", int(width), int(height), fmt), value


def size_check(check: ImageCheck, min_side: int) -> ImageCheck:
    """``check`` failed as a tiny image when its shorter side is below ``min_side`` pixels."""
    if check.ok and min(check.width or 0, check.height or 0) < min_side:
        reason = f"tiny image ({check.width}x{check.height} < {min_side} px)"
        return ImageCheck(False, reason, check.width, check.height, check.format)
    return check
