"""Image files: the suffixes visent looks for in folders, and the one way visent opens and decodes an image.

Every part of visent that reads an image (ingest's sniffing, the clean stage's checks, the backbones' decoding,
``visent serve``'s upload checks) goes through :func:`open_image` and :func:`decode`, so a file is refused for
the same reason, worded the same way, wherever it is read. A refused image raises :class:`ImageError`, whose
``reason`` is one of these (the words in brackets vary):

* ``file missing``
* ``empty file``
* ``not an image`` or ``not an image (HTML)`` (also ``XML``, ``SVG``, ``JSON``, ``PDF``, ``ZIP``, ``gzip``, ``video``,
  ``text``: what the bytes are, when that is obvious, see :func:`describe_bytes`)
* ``too many pixels (W x H = N pixels, more than the limit L)``: read from the header, before anything is
  decoded; the limit is Pillow's ``Image.MAX_IMAGE_PIXELS`` or a caller's lower one
* ``truncated image`` or ``truncated JPEG image`` (the format, when the header was read)
* ``corrupt image (<the decoder's message>)`` or ``corrupt PNG image (<the decoder's message>)``
* ``cannot read the file (<the system's message>)``: a file that is there but cannot be opened

:func:`load_image` is what the backbones see: the full decode with a reduced-size JPEG decode, EXIF orientation
and RGB conversion.
"""

from __future__ import annotations

import codecs
import io
import os
import re
from pathlib import Path
from typing import IO, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visent.core.errors import VisentError
from visent.core.quiet import quiet_warnings

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})

FAULTS = ("missing", "empty", "not_image", "too_many_pixels", "truncated", "corrupt", "unreadable")
"""The values of :attr:`ImageError.fault`."""

Source = str | os.PathLike[str] | bytes | bytearray | memoryview

class ImageError(VisentError, ValueError):
    """An image visent cannot use. ``fault`` is one of :data:`FAULTS`; ``reason`` says what is wrong in the
    wording every part of visent uses (without the file's name); ``source`` is the file as given (None for
    bytes). ``str()`` is ``"<source>: <reason>"``, or the reason alone for bytes."""

    def __init__(self, fault: str, reason: str, source: str | None = None, *, format: str | None = None,
                 width: int | None = None, height: int | None = None):
        super().__init__(f"{source}: {reason}" if source else reason)
        self.fault = fault
        self.reason = reason
        self.source = source
        self.format = format
        self.width = width
        self.height = height

    def __reduce__(self):  # keeps the fault and the details across processes (pickle)
        return (type(self), (self.fault, self.reason, self.source),
                {"format": self.format, "width": self.width, "height": self.height})


def pixel_limit(max_pixels: int | None = None) -> int | None:
    """The most pixels (width x height) an image may declare: Pillow's ``Image.MAX_IMAGE_PIXELS``, or
    ``max_pixels`` when that is lower (None: no limit)."""
    limits = [int(value) for value in (Image.MAX_IMAGE_PIXELS, max_pixels) if value]
    return min(limits) if limits else None


def open_image(source: Source, *, max_pixels: int | None = None,
               formats: Sequence[str] | None = None) -> Image.Image:
    """Open ``source`` (a file or its bytes) and read its header; nothing is decoded yet (see :func:`decode`).

    Refuses, with :class:`ImageError`, a missing or empty file, bytes that are not an image (in one of
    ``formats``, Pillow format names, when given), a header that cannot be read, and more pixels than
    :func:`pixel_limit` of ``max_pixels``, checked from the header before any pixel is decoded. The caller
    closes the image (``with open_image(...) as image:``).
    """
    name = None if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    if name is None:
        data = bytes(source)
        if not data:
            raise ImageError("empty", "empty file")
        fp: str | IO[bytes] = io.BytesIO(data)
    else:
        path = Path(name)
        try:
            if not path.is_file():
                raise ImageError("missing", "file missing", name)
            if path.stat().st_size == 0:
                raise ImageError("empty", "empty file", name)
        except OSError as exc:
            raise ImageError("unreadable", f"cannot read the file ({_os_reason(exc)})", name) from exc
        fp = name
    try:
        # Pillow warns about an image between its pixel limit and twice it; visent refuses it below, in its words
        with quiet_warnings(Image.DecompressionBombWarning):
            image = Image.open(fp, formats=list(formats) if formats is not None else None)
    except UnidentifiedImageError as exc:
        what = describe_bytes(_head(source))
        raise ImageError("not_image", f"not an image ({what})" if what else "not an image", name) from exc
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit: Pillow refuses in the header
        size = _declared_size(source, formats)
        raise _too_many_pixels(size, _pixels_in(exc), pixel_limit(max_pixels), name, None) from exc
    except OSError as exc:
        if name is not None and exc.errno is not None:  # the system's error (permissions, ...), not the decoder's
            raise ImageError("unreadable", f"cannot read the file ({_os_reason(exc)})", name) from exc
        raise as_image_error(exc, None, name) from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
        raise as_image_error(exc, None, name) from exc
    width, height = image.size
    limit = pixel_limit(max_pixels)
    if limit and width * height > limit:  # Pillow only warns between its limit and twice it
        image.close()
        raise _too_many_pixels((width, height), width * height, limit, name, _format_name(image.format))
    return image


def decode(image: Image.Image, *, draft: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """Decode every pixel of ``image`` (from :func:`open_image`), at a reduced size where the format allows
    when ``draft`` (mode, size) is given; a truncated or corrupt file raises :class:`ImageError` here."""
    try:
        if draft is not None:
            image.draft(*draft)
        image.load()  # reads the whole stream: truncated files fail here
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
        raise as_image_error(exc, image.format, getattr(image, "filename", None) or None) from exc
    return image


def load_image(source: Source, size: int, *, max_pixels: int | None = None) -> Image.Image:
    """Open ``source`` as an RGB image whose shorter side is at least ``size`` pixels (or the original size).

    JPEGs are decoded at a reduced scale (``Image.draft``) when they are much larger than ``size``;
    EXIF orientation is applied, transparency is flattened onto white, 16-bit images are rescaled
    and an animation gives its first frame. Raises :class:`ImageError` (see :func:`open_image`).
    """
    with open_image(source, max_pixels=max_pixels) as image:
        fmt = image.format
        decode(image, draft=("RGB", (size, size)) if fmt == "JPEG" else None)
        try:
            image = ImageOps.exif_transpose(image)
        except Exception as exc:  # noqa: BLE001 - a broken EXIF block
            raise as_image_error(exc, fmt, getattr(image, "filename", None) or None) from exc
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: 16-bit and float greys rescaled to their maximum, transparency flattened onto
    white."""
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


def as_image_error(exc: BaseException, format: str | None = None, source: str | None = None) -> ImageError:
    """The :class:`ImageError` for an exception a decoder raised while reading an image of ``format``."""
    if isinstance(exc, ImageError):
        return exc
    fmt = _format_name(format)
    kind = f"{fmt} image" if fmt else "image"
    if isinstance(exc, Image.DecompressionBombError):
        return _too_many_pixels(None, _pixels_in(exc), pixel_limit(), source, fmt)
    message = _one_line(exc)
    if "truncated" in message.lower():  # Pillow says "image file is truncated" or "Truncated File Read"
        return ImageError("truncated", f"truncated {kind}", source, format=fmt)
    return ImageError("corrupt", f"corrupt {kind} ({message})", source, format=fmt)


# Files often served where an image was expected (an archive, a clip standing in for an animated GIF); read from
# the bytes, never from a name or a Content-Type. ISO media files (an "ftyp" box) are videos unless their brand is
# an image one (HEIF, AVIF).
_SIGNATURES = ((b"PK\x03\x04", "ZIP"), (b"PK\x05\x06", "ZIP"), (b"\x1f\x8b", "gzip"), (b"\x1a\x45\xdf\xa3", "video"))
_IMAGE_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def describe_bytes(data: bytes) -> str | None:
    """What bytes that are not an image are, when it is obvious: ``"HTML"`` (an error page), ``"XML"``, ``"SVG"``,
    ``"JSON"``, ``"PDF"``, ``"ZIP"``, ``"gzip"``, ``"video"`` (MP4, QuickTime, WebM) or ``"text"``; else None."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[4:8] == b"ftyp" and data[8:12] not in _IMAGE_BRANDS:
        return "video"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "HTML"
    if head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in head:
        return "SVG"
    if head.startswith(b"<?xml"):
        return "XML"
    if head.startswith(b"%pdf-"):
        return "PDF"
    if head.startswith((b"{", b"[")):
        return "JSON"
    try:  # the first 4 KiB, where a character cut at the end does not count against it
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:4096], final=False)
    except UnicodeDecodeError:
        return None
    return "text" if text and "\x00" not in text else None


# --------------------------------------------------------------------------- helpers
def _format_name(fmt: str | None) -> str | None:
    return "JPEG" if fmt == "MPO" else fmt  # Pillow opens multi-picture camera JPEGs as MPO


def _too_many_pixels(size: tuple[int, int] | None, pixels: int | None, limit: int | None, source: str | None,
                     fmt: str | None) -> ImageError:
    width, height = size or (None, None)
    if size is not None:
        pixels = size[0] * size[1]
        count = f"{size[0]} x {size[1]} = {pixels:,} pixels"
    else:
        count = f"{pixels:,} pixels" if pixels else "more pixels than Pillow decodes"
    limit_text = f", more than the limit {limit:,}" if limit else ""
    return ImageError("too_many_pixels", f"too many pixels ({count}{limit_text})", source, format=fmt,
                      width=width, height=height)


def _pixels_in(exc: BaseException) -> int | None:
    # Pillow's message reads "Image size (N pixels) exceeds limit of L pixels, ..."
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


def _declared_size(source: Source, formats: Sequence[str] | None) -> tuple[int, int] | None:
    """The width and height the header declares, for the message about an image Pillow refused to open as a
    decompression bomb: its format plugins are asked directly (as ``Image.open`` does), without the check."""
    Image.init()
    try:
        with _binary(source) as fp:
            prefix = fp.read(16)
            for fmt in formats or Image.ID:
                factory, accept = Image.OPEN.get(fmt.upper(), (None, None))
                accepted = factory is not None and (accept is None or accept(prefix))
                if not accepted or isinstance(accepted, str):  # a string is Pillow's "maybe, but" warning
                    continue
                fp.seek(0)
                try:
                    opened = factory(fp, "")
                except Exception:  # noqa: BLE001 - not this format
                    continue
                width, height = opened.size
                return int(width), int(height)
    except OSError:
        return None
    return None


def _binary(source: Source) -> IO[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return open(source, "rb")


def _head(source: Source, size: int = 4096) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:size])
    try:
        with open(source, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _one_line(exc)
