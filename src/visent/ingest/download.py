"""Image fetching: local files and http(s) downloads, size-capped, retried, and checked to be images.

:class:`ImageFetcher` is safe to share between threads (one pooled ``httpx.Client``, one
semaphore of ``per_host`` slots per host); the ingest stage calls :meth:`ImageFetcher.fetch` from a
thread pool of ``workers`` threads.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx

from visent.core.errors import UsageError
from visent.core.images import ImageError, decode, open_image
from visent.core.version import __version__

_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}
_RETRY_STATUS = frozenset({408, 425, 429})  # and every 5xx
_DRAFT_SIZE = (64, 64)


@dataclass(frozen=True)
class Fetched:
    """The bytes of one image and its file extension, or the reason there are none."""

    data: bytes | None = None
    ext: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.data is not None


def sniff_image(data: bytes, declared: str | None = None) -> tuple[str | None, str]:
    """``(extension, "")`` when ``data`` decodes as an image, else ``(None, reason)``.

    The format comes from the bytes, never from a file name; the image is decoded (at reduced size
    where the format allows) so truncated and corrupt files are caught here, and images over Pillow's pixel
    limit are refused from the header, as the clean stage refuses them (the reasons are
    ``visent.core.images``'s). ``declared`` is the content type a server announced, quoted in the reason when
    the bytes are not an image and do not say what they are.
    """
    try:
        with open_image(data) as image:
            kind = image.format or "unknown"
            decode(image, draft=("RGB", _DRAFT_SIZE))
    except ImageError as error:
        if error.reason == "not an image" and declared:
            return None, f"not an image (served as {declared})"
        return None, error.reason
    return _EXTENSIONS.get(kind, kind.lower()), ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Failed(Exception):
    """A download that must not be retried."""


class _Retry(Exception):
    """A download that failed in a way worth another try."""

    def __init__(self, reason: str, after: float | None):
        super().__init__(reason)
        self.reason = reason
        self.after = after


def local_file(ref: str, base: Path | None = None) -> tuple[Path | None, str]:
    """The local file an image reference names, as :meth:`ImageFetcher.fetch` reads it: ``(path, "")`` for a path
    (a relative one taken from ``base``) or a ``file:`` URL, ``(None, "")`` for an http(s) URL, ``(None, reason)``
    for a reference that names neither."""
    try:
        parts = urlsplit(ref)
    except ValueError as exc:
        return None, f"invalid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return None, ""
    if scheme == "file":
        return Path(url2pathname(parts.path)), ""
    if len(scheme) > 1:  # one letter is a Windows drive
        return None, f"unsupported URL scheme '{scheme}'"
    try:
        path = Path(ref).expanduser()
    except RuntimeError:  # "~user/..." of a user this machine does not have
        return None, f"image file not found ({ref}: no such home directory)"
    return (path if path.is_absolute() or base is None else base / path), ""


class ImageFetcher:
    """Reads images from local paths, ``file://`` and ``http(s)://`` URLs.

    ``timeout``: seconds allowed to connect and for each read; one try never runs longer than
    ``10 * timeout`` in all (a body that trickles in forever ends as "too slow", not retried). ``retries``:
    further tries after a connection error, a timeout, HTTP 5xx, 408 or 429, with exponential
    backoff from ``backoff`` seconds plus jitter; a ``Retry-After`` of at most ``max_retry_after``
    seconds is honoured, a longer one ends the download. Other HTTP errors (404, 403, ...), bodies
    that are not images and redirect loops are not retried. Bodies are streamed and cut off past
    ``max_bytes``. At most ``per_host`` requests run against one host at a time (a slow host
    cannot hold every worker); waiting between tries holds no slot.

    Reasons are short and stable (the same fault always gives the same text), so a dataset
    ingested twice from the same crawl has the same tables.
    """

    def __init__(self, *, workers: int = 16, timeout: float = 10.0, retries: int = 3,
                 max_bytes: int = 20_000_000, backoff: float = 0.5, max_retry_after: float = 30.0,
                 per_host: int = 8):
        if per_host < 1:
            raise UsageError(f"per_host must be at least 1, got {per_host}")
        self.workers = workers
        self.per_host = per_host
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self.timeout = timeout
        self.retries = retries
        self.max_bytes = max_bytes
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ImageFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def fetch(self, ref: str, base: Path | None = None) -> Fetched:
        """The image named by ``ref`` (a relative path is taken from ``base``); never raises on bad input."""
        path, reason = local_file(ref, base)
        if path is not None:
            return self._read(path, ref)
        return Fetched(reason=reason) if reason else self._download(ref)

    # ------------------------------------------------------------------ local files
    def _read(self, path: Path, ref: str) -> Fetched:
        try:
            if not path.is_file():
                return Fetched(reason=f"image file not found ({ref})" if not path.exists() else f"not a file ({ref})")
            if path.stat().st_size > self.max_bytes:
                return Fetched(reason=f"larger than {self.max_bytes} bytes")
            data = path.read_bytes()
        except (OSError, ValueError) as exc:
            return Fetched(reason=f"cannot read image ({getattr(exc, 'strerror', None) or exc})")
        return _checked(data, None)

    # ------------------------------------------------------------------ downloads
    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout),
                    follow_redirects=True,
                    max_redirects=5,
                    limits=httpx.Limits(max_connections=self.workers, max_keepalive_connections=self.workers),
                    headers={"User-Agent": f"visent/{__version__} (image ingest)"},
                )
            return self._client

    def _host_slot(self, url: str) -> threading.BoundedSemaphore:
        host = (urlsplit(url).netloc or "").lower()
        with self._lock:
            slot = self._hosts.get(host)
            if slot is None:
                slot = self._hosts[host] = threading.BoundedSemaphore(self.per_host)
            return slot

    def _download(self, url: str) -> Fetched:
        tries = self.retries + 1
        last = ""
        slot = self._host_slot(url)
        for attempt in range(tries):
            wait = self.backoff * (2 ** attempt) * (1 + random.random())
            try:
                with slot:
                    data, content_type = self._get(url)
                return _checked(data, content_type)
            except _Failed as exc:
                return Fetched(reason=str(exc))
            except _Retry as exc:
                last = exc.reason
                if exc.after is not None:
                    if exc.after > self.max_retry_after:
                        # the limit, not the asked wait: an HTTP date makes that wait change with the clock, and the
                        # same fault must give the same reason
                        return Fetched(reason=f"{exc.reason} (asked to retry later than the "
                                              f"{self.max_retry_after:g} s the crawl allows)")
                    wait = exc.after
            except httpx.TimeoutException:
                last = "timeout"
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                return Fetched(reason=f"invalid URL ({exc})")
            except httpx.TooManyRedirects:
                return Fetched(reason="too many redirects")
            except httpx.ConnectError:
                last = "cannot connect"
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError):
                # a reset and a close before the answer is complete are one fault to the user; which
                # of them the client sees first depends on timing, so they share one reason
                last = "connection closed by the server"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                return Fetched(reason=f"download failed ({type(exc).__name__}: {exc})")
            if attempt + 1 < tries:
                time.sleep(wait)
        return Fetched(reason=f"{last} after {tries} {'try' if tries == 1 else 'tries'}")

    def _get(self, url: str) -> tuple[bytes, str | None]:
        limit = 10 * self.timeout
        deadline = time.monotonic() + limit
        with self._http().stream("GET", url) as response:
            status = response.status_code
            if status >= 500 or status in _RETRY_STATUS:
                raise _Retry(f"HTTP {status}", _retry_after(response))
            if status >= 400:
                raise _Failed(f"HTTP {status}")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_bytes:
                raise _Failed(f"larger than {self.max_bytes} bytes")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise _Failed(f"larger than {self.max_bytes} bytes")
                if time.monotonic() > deadline:
                    # not retried: each try would cost the whole deadline again
                    raise _Failed(f"too slow (body not complete within {limit:g} s)")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            return bytes(body), content_type or None


def _checked(data: bytes, content_type: str | None) -> Fetched:
    ext, reason = sniff_image(data, content_type)
    return Fetched(data=data, ext=ext) if ext else Fetched(reason=reason)
