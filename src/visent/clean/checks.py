"""Per-image checks and perceptual hashes for the clean stage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

# Bumped whenever the decode or hash recipe changes, so cached results from an older recipe are redone.
METHOD = "phash8-draftL64-v1"
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


def perceptual_hash(path_or_image: str | Path | Image.Image) -> int:
    """The 64-bit pHash (imagehash.phash) of an image file or a PIL image, as an unsigned int.

    Files are decoded at a reduced size (Pillow ``draft``), as the clean stage does.
    """
    if isinstance(path_or_image, Image.Image):
        return _phash_of_loaded(path_or_image)
    with Image.open(path_or_image) as image:
        image.draft("L", _DRAFT_SIZE)
        return _phash_of_loaded(image)


def analyse_image(path: Path) -> tuple[ImageCheck, int | None]:
    """Decode ``path`` fully once and hash it; never raises for bad input.

    The check here does not apply a minimum size (see :func:`size_check`), so the result can be
    cached per image and reused with any ``min_side``.
    """
    path = Path(path)
    if not path.is_file():
        return ImageCheck(False, "unreadable image: file missing"), None
    try:
        with Image.open(path) as image:
            fmt = image.format
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:  # Pillow only warns below twice the limit
                return ImageCheck(False, f"decompression bomb ({width * height} pixels > limit {limit})"), None
            image.draft("L", _DRAFT_SIZE)
            image.load()  # reads the whole stream: truncated files fail here
            value = _phash_of_loaded(image)
    except Image.DecompressionBombError as exc:
        return ImageCheck(False, f"decompression bomb ({_bomb_size(exc)})"), None
    except UnidentifiedImageError:
        return ImageCheck(False, "unreadable image: not an image"), None
    except OSError as exc:
        if "truncated" in str(exc).lower():  # Pillow says "image file is truncated" or "Truncated File Read"
            return ImageCheck(False, "truncated image"), None
        return ImageCheck(False, f"unreadable image: {_one_line(exc)}"), None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
        return ImageCheck(False, f"unreadable image: {type(exc).__name__}: {_one_line(exc)}"), None
    return ImageCheck(True, "", int(width), int(height), fmt), value


def size_check(check: ImageCheck, min_side: int) -> ImageCheck:
    """``check`` failed as a tiny image when its shorter side is below ``min_side`` pixels."""
    if check.ok and min(check.width or 0, check.height or 0) < min_side:
        reason = f"tiny image ({check.width}x{check.height} < {min_side} px)"
        return ImageCheck(False, reason, check.width, check.height, check.format)
    return check


def check_image(path: Path, *, min_side: int = 32) -> ImageCheck:
    """Check that ``path`` is a complete, decodable image of at least ``min_side`` px per side."""
    return size_check(analyse_image(path)[0], min_side)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _bomb_size(exc: BaseException) -> str:
    # Pillow's message reads "Image size (N pixels) exceeds limit of L pixels, ..."
    numbers = re.findall(r"\d+", str(exc))
    return f"{numbers[0]} pixels > limit {numbers[1]}" if len(numbers) >= 2 else "too many pixels"
