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
* ``too many progressive scans (N scans, more than the limit L)``: a JPEG whose scans, counted from its bytes
  before anything is decoded, are more than any encoder writes (:data:`MAX_JPEG_SCANS`); each scan is a pass over
  the whole image, so a small file of repeated scans would take minutes to decode. ``too many JPEG markers (more
  than L)`` is the same for segments (:data:`MAX_JPEG_MARKERS`)
* ``would need N MB to decode (more than the limit L MB)``: the memory the decode would take, estimated from the
  header (:func:`decode_estimate`) before anything is decoded, is over :func:`decode_limit`; a few bytes of WebP or
  PNG can declare an image of hundreds of megabytes

Decoding is bounded in a process as well as per image: :func:`decode` and :func:`load_image` hold their estimate
of :data:`DECODE_BUDGET` while they decode, so threads that decode at once (ingest's download workers, the
server's requests) wait for each other rather than adding up past it.

:func:`load_image` is what the backbones see: the full decode with a reduced-size JPEG decode, EXIF orientation
and RGB conversion.
"""

from __future__ import annotations

import codecs
import ctypes
import ctypes.util
import io
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visent.core.errors import VisentError
from visent.core.quiet import quiet_warnings

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})

FAULTS = ("missing", "empty", "not_image", "too_many_pixels", "too_costly", "truncated", "corrupt", "unreadable")
"""The values of :attr:`ImageError.fault`."""

Source = str | os.PathLike[str] | bytes | bytearray | memoryview

MAX_JPEG_SCANS = 100
"""The most scans a JPEG may have. libjpeg's and libjpeg-turbo's progressive script writes 10 scans for a colour
image (6 for grey) and mozjpeg's scan search picks at most a few more (about 20 for a colour image); a baseline
JPEG has one scan, or one per colour. libjpeg-turbo's own tools refuse files over 500 scans (``-maxscans``) as a
denial of service; visent allows 100, five times what an encoder writes, and a scan costs a pass over the whole
image, so 100 of them stay within seconds at the pixel limit."""

MAX_JPEG_MARKERS = 10_000
"""The most segments (markers with a length) a JPEG may have. A photo has a few dozen (metadata, tables, one
frame, its scans); metadata split over 64 KiB segments reaches a few hundred."""

MAX_DECODE_MB = 768
"""The most memory, in MB (2**20 bytes), one image may take to decode (see :func:`decode_estimate`); the
environment variable ``VISENT_MAX_DECODE_MB`` sets another (0: no limit). 768 MB lets through a photo at Pillow's
pixel limit (89.5 million pixels) however it is stored: a progressive JPEG with full-resolution colour decoded at
a reduced size, as visent's stages decode JPEGs (its coefficients alone take 512 MB), a PNG or a baseline JPEG
decoded at full size (341 MB); it refuses a lossless WebP of 9000 x 9000 (1,236 MB: libwebp decodes into two
buffers of its own besides the image)."""

DECODE_BUDGET_MB = 1024
"""The most memory, in MB, the images a process decodes at once may take together (:data:`DECODE_BUDGET`); the
environment variable ``VISENT_DECODE_BUDGET_MB`` sets another (0: no limit). An image whose estimate alone is
over it is refused."""

_MB = 1 << 20


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
    if _format_name(image.format) == "JPEG":
        try:
            _check_jpeg_work(source, name)
        except BaseException:
            image.close()
            raise
    return image


def decode(image: Image.Image, *, draft: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """Decode every pixel of ``image`` (from :func:`open_image`), at a reduced size where the format allows
    when ``draft`` (mode, size) is given; a truncated or corrupt file raises :class:`ImageError` here, as does one
    that would need more memory than :func:`decode_limit` (checked before anything is decoded). The decode holds
    its estimate of :data:`DECODE_BUDGET` while it runs."""
    with _decoding(image, draft):
        pass
    return image


def load_image(source: Source, size: int, *, max_pixels: int | None = None) -> Image.Image:
    """Open ``source`` as an RGB image whose shorter side is at least ``size`` pixels (or the original size).

    JPEGs are decoded at a reduced scale (``Image.draft``) when they are much larger than ``size``;
    EXIF orientation is applied, transparency is flattened onto white, 16-bit images are rescaled
    and an animation gives its first frame. Raises :class:`ImageError` (see :func:`open_image` and
    :func:`decode`); the memory estimate counts the turning and the conversion to RGB too.
    """
    with open_image(source, max_pixels=max_pixels) as image:
        fmt = image.format
        with _decoding(image, ("RGB", (size, size)) if fmt == "JPEG" else None, rgb=True):
            try:
                image = ImageOps.exif_transpose(image)
            except Exception as exc:  # noqa: BLE001 - a broken EXIF block
                raise as_image_error(exc, fmt, getattr(image, "filename", None) or None) from exc
            return to_rgb(image)


def decode_limit(max_mb: float | None = None) -> int | None:
    """The most bytes one image may take to decode: :data:`MAX_DECODE_MB` (or ``VISENT_MAX_DECODE_MB``), ``max_mb``
    when that is lower, and never more than the whole of :data:`DECODE_BUDGET` (None: no limit)."""
    budget = DECODE_BUDGET.total
    limits = [_mb_setting("VISENT_MAX_DECODE_MB", MAX_DECODE_MB), max_mb, budget / _MB if budget else None]
    limits = [value for value in limits if value]
    return int(min(limits) * _MB) if limits else None


def decode_estimate(image: Image.Image, full_size: tuple[int, int] | None = None, *, rgb: bool = False) -> int:
    """The bytes decoding ``image`` (from :func:`open_image`, after any ``draft``) takes at its peak, read from the
    header: the decoded pixels as Pillow stores them (4 bytes a pixel for colour, 1 for grey or a palette), and
    what the format's decoder needs besides them at ``full_size`` (the size before ``draft``: a progressive JPEG
    keeps every coefficient of the full image, 2 bytes each; libwebp decodes into two buffers of 4 bytes a pixel
    and hands over a third). ``rgb``: with the copies :func:`load_image` makes to turn the image and convert it
    to RGB."""
    width, height = image.size
    full_width, full_height = full_size or image.size
    pixels = width * height
    output = pixels * _pixel_bytes(image.mode)
    fmt = _format_name(image.format)
    extra = 0
    if fmt == "JPEG" and image.info.get("progressive"):
        layers = getattr(image, "layer", None) or [(0, 1, 1, 0)] * len(image.getbands())
        most = max(h * v for _, h, v, _ in layers) or 1
        blocks = sum(-(-full_width * full_height * h * v // (most * 64)) for _, h, v, _ in layers)
        extra = blocks * 64 * 2
    elif fmt == "WEBP":
        extra = full_width * full_height * 12
    elif fmt == "TIFF":
        extra = pixels * 4  # libtiff's RGBA buffer, for the layouts Pillow reads through it
    if rgb:
        converted = pixels * 4
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            copies = 4  # RGBA, a white ground, their composite and its RGB
        elif image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            copies = 3  # float values, 8-bit grey, RGB
        else:
            copies = 0 if image.mode == "RGB" else 1
        turned = _turned(image)
        extra = max(extra, converted * (copies + turned))
    return output + extra


class DecodeBudget:
    """Bytes of decoding a process allows at once: :meth:`hold` waits until its bytes fit beside what other
    threads hold, so concurrent decodes never add up past :attr:`total` (an image over the whole of it is refused
    by :func:`decode_limit` before it gets here; one alone is always let through, so nothing waits forever).
    ``total_mb`` None reads :data:`DECODE_BUDGET_MB` (or ``VISENT_DECODE_BUDGET_MB``) at each call."""

    def __init__(self, total_mb: float | None = None):
        self._total_mb = total_mb
        self._lock = threading.Condition()
        self.used = 0
        self.peak = 0

    @property
    def total(self) -> int | None:
        """The budget in bytes (None: no limit)."""
        mb = self._total_mb if self._total_mb is not None else _mb_setting("VISENT_DECODE_BUDGET_MB", DECODE_BUDGET_MB)
        return int(mb * _MB) if mb else None

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the duration of the ``with`` block."""
        nbytes = max(0, int(nbytes))
        with self._lock:
            while self.used and (total := self.total) and self.used + nbytes > total:
                self._lock.wait()
            self.used += nbytes
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._lock:
                self.used -= nbytes
                idle = self.used == 0
                self._lock.notify_all()
            if idle and nbytes >= _TRIM_BYTES:
                _return_memory()


DECODE_BUDGET = DecodeBudget()
"""The process's :class:`DecodeBudget`, which :func:`decode` and :func:`load_image` hold while they decode."""


def jpeg_segments(data: bytes | bytearray) -> Iterator[tuple[int, int, int]]:
    """``(marker, start, end)`` of each segment of the JPEG ``data`` (markers with a length), in order, up to the
    end-of-image marker, read from the bytes without decoding anything. A scan's segment ends past its
    entropy-coded data, at the next marker that is not a stuffed 0xFF00, a fill byte or a restart marker; fill
    bytes, stray restarts and garbage between segments are skipped."""
    size = len(data)
    position = 2 if data[:2] == b"\xff\xd8" else 0
    while position + 4 <= size:
        code = data[position + 1]
        if data[position] != 0xFF or code in (0x00, 0xFF) or 0xD0 <= code <= 0xD7 or code in (0x01, 0xD8):
            found = _NEXT_MARKER.search(data, position + 1)  # fill bytes, stray restarts, garbage: skipped
            if found is None:
                return
            position = found.start()
            continue
        if code == 0xD9:  # end of image
            return
        start = position
        position += 2 + ((data[position + 2] << 8) | data[position + 3])
        if code != 0xDA:
            yield code, start, position
            continue
        found = _NEXT_MARKER.search(data, position)
        yield code, start, size if found is None else found.start()
        if found is None:
            return
        position = found.start()


def jpeg_scans(data: bytes | bytearray, limit: int | None = None) -> tuple[int, int]:
    """``(scans, segments)`` of the JPEG ``data``: its start-of-scan markers and its segments
    (:func:`jpeg_segments`). Past ``limit`` scans the rest is counted by the bytes 0xFFDA alone (a count, not a
    parse, so the time stays a scan of the bytes however many there are); past :data:`MAX_JPEG_MARKERS` segments
    counting stops."""
    scans = segments = 0
    for code, _, end in jpeg_segments(data):
        segments += 1
        if segments > MAX_JPEG_MARKERS:
            break
        if code == 0xDA:
            scans += 1
            if limit is not None and scans > limit:
                return scans + data.count(b"\xff\xda", end), segments
    return scans, segments


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
# A marker in entropy-coded data: 0xFF then anything but a stuffed 0x00, another fill 0xFF or a restart marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_TRIM_BYTES = 32 * _MB


@contextmanager
def _decoding(image: Image.Image, draft: tuple[str, tuple[int, int]] | None, *,
              rgb: bool = False) -> Iterator[Image.Image]:
    """Apply ``draft``, refuse an image over :func:`decode_limit`, and decode it holding its estimate of
    :data:`DECODE_BUDGET` for the ``with`` block."""
    source = getattr(image, "filename", None) or None
    fmt = _format_name(image.format)
    full_size = image.size
    try:
        if draft is not None:
            image.draft(*draft)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
        raise as_image_error(exc, image.format, source) from exc
    need = decode_estimate(image, full_size, rgb=rgb)
    limit = decode_limit()
    if limit and need > limit:
        reason = f"would need {_in_mb(need)} MB to decode (more than the limit {_in_mb(limit)} MB)"
        raise ImageError("too_costly", reason,
                         source, format=fmt, width=full_size[0], height=full_size[1])
    with DECODE_BUDGET.hold(need):
        try:
            image.load()  # reads the whole stream: truncated files fail here
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
            raise as_image_error(exc, image.format, source) from exc
        yield image


def _check_jpeg_work(source: Source, name: str | None) -> None:
    """Refuse a JPEG with more scans than :data:`MAX_JPEG_SCANS` or more segments than :data:`MAX_JPEG_MARKERS`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        scans, segments = jpeg_scans(bytes(source) if isinstance(source, memoryview) else source, MAX_JPEG_SCANS)
    else:
        try:  # read, not mapped: a file cut short while mapped would end the process
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageError("unreadable", f"cannot read the file ({_os_reason(exc)})", name) from exc
        scans, segments = jpeg_scans(data, MAX_JPEG_SCANS)
    if scans > MAX_JPEG_SCANS:
        reason = f"too many progressive scans ({scans:,} scans, more than the limit {MAX_JPEG_SCANS:,})"
        raise ImageError("too_costly", reason, name, format="JPEG")
    if segments > MAX_JPEG_MARKERS:
        raise ImageError("too_costly", f"too many JPEG markers (more than {MAX_JPEG_MARKERS:,})", name, format="JPEG")


def _pixel_bytes(mode: str) -> int:
    """Bytes a pixel of ``mode`` takes in a Pillow image: 4 for any mode of several bands (RGB is stored as four)."""
    if mode.startswith("I;16"):
        return 2
    try:
        bands = Image.getmodebands(mode)
    except (KeyError, ValueError):
        bands = 4
    return 4 if bands > 1 or mode in ("I", "F") else 1


def _turned(image: Image.Image) -> bool:
    """Whether the EXIF block the header gave says the image is turned (``getexif`` would decode a whole PNG)."""
    exif = image.info.get("exif")
    if not exif:
        return False
    try:
        found = Image.Exif()
        found.load(exif)
        return found.get(0x0112) in (2, 3, 4, 5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - a broken EXIF block fails in load_image, worded there
        return False


def _in_mb(nbytes: int) -> str:
    return f"{-(-nbytes // _MB):,}"


def _mb_setting(variable: str, default: float) -> float | None:
    """A size in MB from the environment variable (0 or "none": no limit), else ``default``."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return default or None
    if value.lower() in ("none", "0"):
        return None
    try:
        return float(value) or None
    except ValueError:
        return default or None


def _return_memory() -> None:
    """Give freed decode buffers back to the system: glibc keeps large freed blocks in its arenas otherwise."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: ctypes.CDLL | bool | None = None


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
