"""What a model is asked to predict: paths, folders and ``@list.txt`` files expanded to image files, and
in-memory images (PIL images, arrays, file bytes) written to temporary files for the length of a call."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from visent.core.images import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "expand_inputs", "image_files"]


def expand_inputs(items: Sequence[str | Path]) -> list[tuple[str, str | None]]:
    """Turn files, folders (searched recursively for images) and ``@list.txt`` files into (path, problem) pairs.

    A list file holds one path per line (blank lines and ``#`` comments skipped); a relative one is taken from the
    list file's folder, or from the working directory when it is not there but is here. ``problem`` is None for a
    file to predict, else why the item cannot be read (it still gets a row).
    """
    expanded: list[tuple[str, str | None]] = []
    for item in items:
        text = str(item)
        if text.startswith("@"):
            list_file = Path(text[1:])
            if not list_file.is_file():
                expanded.append((text, f"list file {list_file} not found"))
                continue
            lines = list_file.read_text(encoding="utf-8", errors="replace").splitlines()
            entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
            expanded.extend(expand_inputs([_listed(entry, list_file.parent) for entry in entries]))
        elif Path(text).is_dir():
            found = sorted(p for p in Path(text).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                expanded.append((text, "folder holds no image files (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ")"))
            expanded.extend((str(p), None) for p in found)
        elif Path(text).is_file():
            expanded.append((text, None))
        else:
            expanded.append((text, "file not found"))
    return expanded


def _listed(entry: str, folder: Path) -> str:
    """A path of a list file in ``folder``: relative to that folder, unless it is only found from here."""
    path = Path(entry)
    if path.is_absolute():
        return entry
    beside = folder / path
    return entry if not beside.exists() and path.exists() else str(beside)


@contextlib.contextmanager
def image_files(images: Sequence[Any]) -> Iterator[list[tuple[str, str | None, str | None]]]:
    """Per image ``(name, path, problem)``: paths as given; PIL images, arrays and file bytes written to a
    temporary folder (PNG, lossless; bytes as they are) that lives as long as the context. ``problem`` says why
    an in-memory image cannot be used (its path is then None)."""
    out: list[tuple[str, str | None, str | None]] = []
    with contextlib.ExitStack() as stack:
        folder: Path | None = None
        for index, image in enumerate(images):
            if isinstance(image, (str, Path)):
                out.append((str(image), str(image), None))
                continue
            name = f"<image {index}>"
            try:
                data = _image_bytes(image)
            except (TypeError, ValueError, OSError) as error:
                out.append((name, None, str(error)))
                continue
            if folder is None:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="visent-images-")))
            path = folder / f"{index}.img"
            path.write_bytes(data)
            out.append((name, str(path), None))
        yield out


def _image_bytes(image: Any) -> bytes:
    """The bytes of an image file for a PIL image, an array or bytes."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray, memoryview)):
        if not len(image):
            raise ValueError("empty bytes: no image")
        return bytes(image)
    if isinstance(image, np.ndarray):
        image = _array_image(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"{type(image).__name__} is not an image: give a path, a PIL image, an array or file bytes")
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _array_image(array: np.ndarray):
    from PIL import Image

    shape = array.shape
    if array.ndim == 3 and shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))) or min(array.shape[:2]) < 1:
        raise ValueError(f"an array of shape {shape} is not an image: expected (H, W), (H, W, 3) or (H, W, 4)")
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("a float image array must hold finite values in 0..1 (or give uint8 0..255)")
        array = np.round(array * 255).astype(np.uint8)
    else:
        raise ValueError(f"an image array must be uint8 (0..255) or float (0..1), not {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))
