"""The visent HTTP service: a web page to drop images on, ``/predict``, ``/explain`` and ``/health``.

Every upload is checked before the model sees it: the request body is counted while it arrives (413
above ``max_upload_bytes``), each file's format is sniffed from its bytes with Pillow (415 outside
``formats``), its pixel count is read from the header before anything is decoded (413 above
``max_pixels``) and then it is decoded in full (422 when empty, truncated or corrupt); the faults are worded
as everywhere in visent (``visent.core.images``). A batch with one
bad file is rejected as a whole, with every problem listed. The service reads uploaded bytes only; it
never fetches a URL a client sends.

With a pool of images (``label_pool``) the app has a labelling mode too (:mod:`visent.serve.labelling`):
``GET /label/next`` the next image a person should label (best first, as ``visent label suggest`` orders them) and
the running count, ``GET /label/image/{rank}`` its bytes (only the pool's picks are served), ``POST /label`` a label
for it, saved to ``labels_file`` before the answer. Without a pool these answer 404.

The work is bounded too: at most ``max_concurrent`` /predict and /explain requests (one per core) decode and score
at once, ``max_queued`` more wait for their turn before their body is read, and a request beyond those gets a prompt
503 with ``Retry-After`` (:class:`AdmissionMiddleware`). ``/health`` and the page never wait behind them.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, List, Literal, Sequence

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from visent.core.errors import UsageError, VisentError
from visent.core.onnx import usable_cores
from visent.core.images import ImageError, as_image_error, decode, open_image
from visent.core.quiet import quiet_warnings
from visent.core.labels import CLASSES
from visent.core.version import __version__
from visent.serve.labelling import DEFAULT_LABEL_N, Labelling, media_type

log = logging.getLogger("visent.serve")

# Defaults of the limits. A request's bytes are held whole (max_upload_bytes); its images are decoded one at a
# time to check them, and a decoded image takes 3-4 bytes per pixel (25 MP: about 100 MB).
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 25_000_000
DEFAULT_MAX_FILES = 10
DEFAULT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
RETRY_AFTER = 2  # seconds, in the 503 of a busy server

TARGETS = ("predicted", *CLASSES, "all")
Target = Literal["predicted", "negative", "neutral", "positive", "all"]
assert set(Target.__args__) == set(TARGETS)  # the query's choices follow visent.core.labels.CLASSES

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError)


class RequestRejected(Exception):
    """An upload visent will not score: the status, one line for ``detail`` and the per-file problems."""

    def __init__(self, status: int, detail: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.problems = problems or []


# Response models --------------------------------------------------------------------------------------
class Prediction(BaseModel):
    file: str = Field(description="The uploaded file's name (or `file N` when the upload had none).")
    label: str = Field(description="The most probable class.")
    probabilities: dict[str, float] = Field(description="Probability per class (negative, neutral, positive); they sum to 1.")
    format: str = Field(description="The image format sniffed from the bytes (not from the name).")
    width: int
    height: int


class PredictResponse(BaseModel):
    model: str = Field(description="The model that scored the images.")
    classes: List[str]
    predictions: List[Prediction] = Field(description="One entry per uploaded file, in upload order.")


class LabelImage(BaseModel):
    rank: int = Field(description="Its place among the suggested images (1: the most worth a label).")
    url: str = Field(description="Where to fetch the image's bytes, relative to the service: `label/image/{rank}`.")
    name: str = Field(description="The image's file name.")
    predicted: str = Field(description="The model's guess.")
    probabilities: dict[str, float] = Field(description="The model's probability per class.")
    why: str = Field(description="Why it was suggested, in words.")


class LabelProgress(BaseModel):
    status: Literal["ready", "done"] = Field(description="`ready`: `image` is the next to label; `done`: every "
                                                         "suggested image is labelled or skipped.")
    image: LabelImage | None = Field(description="The next image to label (none when done).")
    labelled: int = Field(description="Images of the pool labelled so far, earlier sessions included.")
    total: int = Field(description="Images of the pool to label in all: the labelled ones and the suggestions.")
    earlier: int = Field(description="Images of the pool the labels file held before this server started.")
    skipped: int = Field(description="Suggested images skipped (not offered again while this server runs).")
    left: int = Field(description="Suggested images not labelled or skipped yet.")
    labels_file: str = Field(description="The CSV the labels are saved to (`visent adapt --labels` reads it).")
    strategy: str = Field(description="How the images were chosen (`visent label suggest --strategy`).")
    saved: dict[str, Any] | None = Field(None, description="After POST /label: the rank, label and path just saved.")


class LabelRequest(BaseModel):
    rank: int = Field(description="The rank of the image labelled, as GET /label/next gave it.")
    label: Literal["negative", "neutral", "positive", "skip"] = Field(
        description="What the person sees: negative, neutral or positive; or skip to leave the image unlabelled.")


class Limits(BaseModel):
    max_upload_bytes: int = Field(description="Largest request body, in bytes (all files of a request together).")
    max_pixels: int = Field(description="Largest image, in pixels (width x height).")
    max_files: int = Field(description="Most images in one /predict request.")
    formats: List[str] = Field(description="Accepted image formats, sniffed from the content.")


class Health(BaseModel):
    status: str
    model: str = Field(description="The model's name (its directory name).")
    model_dir: str
    visent_version: str
    classes: List[str]
    limits: Limits


class ErrorBody(BaseModel):
    detail: str = Field(description="What is wrong and what to do about it.")
    problems: List[dict] = Field(default_factory=list, description="One entry per rejected file (index, file, status, detail).")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The request body or an image's pixel count is above the limit."},
    415: {"model": ErrorBody, "description": "A file is not an image in an accepted format."},
    422: {"model": ErrorBody, "description": "No file, a wrong field, an empty, truncated or corrupt image, too many "
                                             "files (more than one to /explain)."},
}


# The body limit -----------------------------------------------------------------------------------------
class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Rejects request bodies above ``max_bytes`` with 413 while they arrive.

    A declared Content-Length above the limit is refused before any byte is read; a body without one
    (chunked) or longer than it declared is counted chunk by chunk and cut off as soon as it passes the
    limit, so no request can make visent hold more than ``max_bytes`` of upload.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, declared: int | None = None) -> JSONResponse:
        size = f" ({declared:,} bytes)" if declared is not None else ""
        return JSONResponse(
            {"detail": f"the request body{size} is larger than this server accepts ({self.max_bytes:,} bytes, "
                       f"{self.max_bytes / 2**20:.1f} MB): send fewer or smaller images per request"},
            status_code=413, headers={"Connection": "close"})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await JSONResponse({"detail": "the Content-Length header is not a number"}, status_code=400)(
                    scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(int(declared))(scope, receive, send)
                return

        state = {"received": 0, "exceeded": False, "started": False}

        async def counted_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["exceeded"] = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: dict) -> None:
            if state["exceeded"]:
                return  # whatever the app answers to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _BodyTooLarge:
            pass
        except Exception:
            if not state["exceeded"]:
                raise
        if state["exceeded"] and not state["started"]:
            await self._too_large()(scope, receive, send)


# Admission ----------------------------------------------------------------------------------------------
class AdmissionMiddleware:
    """Lets at most ``limit`` requests to ``paths`` (POST /predict and /explain) in at once, those that decode and
    score (``_Service.work``) and those that wait for their turn; one more is answered 503 with ``Retry-After`` at
    once, before its body is read, and its connection closed. Other routes (/health, the page) always pass."""

    def __init__(self, app: Any, limit: int, paths: Sequence[str] = ("/predict", "/explain")):
        self.app = app
        self.limit = int(limit)
        self.paths = tuple(paths)
        self.inside = 0
        self.refused = 0
        self._count = threading.Lock()  # the app may run in several event loops at once (test clients)

    def _busy(self) -> JSONResponse:
        return JSONResponse(
            {"detail": f"visent serve is busy ({self.limit} requests in progress or waiting, its limit): retry in "
                       f"{RETRY_AFTER} s"},
            status_code=503, headers={"Retry-After": str(RETRY_AFTER), "Connection": "close"})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or \
                not scope.get("path", "").rstrip("/").endswith(self.paths):
            await self.app(scope, receive, send)
            return
        with self._count:
            admitted = self.inside < self.limit
            if admitted:
                self.inside += 1
            else:
                self.refused += 1
        if not admitted:
            log.warning("visent serve: %d requests in progress or waiting: 503", self.limit)
            await self._busy()(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._count:
                self.inside -= 1


# Reading uploads ----------------------------------------------------------------------------------------
def _display_name(upload: UploadFile, index: int) -> str:
    name = (upload.filename or "").strip().replace("\n", " ").replace("\r", " ")
    if not name:
        return f"file {index + 1}"
    return name if len(name) <= 200 else name[:197] + "..."


def _format_list(formats: Sequence[str]) -> str:
    return ", ".join(formats[:-1]) + " or " + formats[-1] if len(formats) > 1 else formats[0]


@dataclass
class Checked:
    """An upload that passed every check: its bytes go to the model as they are (as a file would)."""

    name: str
    data: bytes
    format: str
    width: int
    height: int


class ImageChecker:
    """Checks one upload: format sniffed, pixel count from the header, then a full decode; a problem becomes
    ``RequestRejected`` with a status and a message naming the file.

    The checks and the wording of each fault are ``visent.core.images``'s, as everywhere in visent (with
    ``max_pixels`` as the pixel limit when it is below Pillow's); the status and what to do about it are the
    service's."""

    def __init__(self, max_pixels: int, formats: Sequence[str]):
        self.max_pixels = max_pixels
        self.formats = tuple(formats)

    def _describe_other(self, data: bytes) -> str | None:
        """The format of bytes visent does not accept, when Pillow can name it (header only, nothing decoded)."""
        try:
            with quiet_warnings(), Image.open(io.BytesIO(data)) as other:
                return other.format
        except Exception:  # noqa: BLE001 - only used to word the message
            return None

    def check(self, name: str, data: bytes) -> "Checked":
        accepted = _format_list(self.formats)
        again = "re-export or re-download it and upload again"
        try:
            image = open_image(data, max_pixels=self.max_pixels, formats=self.formats)
        except ImageError as error:
            fault = f"'{name}': {error.reason}"
            if error.fault == "empty":
                raise RequestRejected(422, f"{fault}; choose an image file ({accepted})")
            if error.fault == "not_image":
                other = self._describe_other(data)
                if other:  # an image, in a format this server does not take
                    fault = f"'{name}' is a {other} image"
                raise RequestRejected(415, f"{fault}; this server accepts {accepted} images "
                                           "(the format is read from the content, not the name): convert it and upload again")
            if error.fault == "too_many_pixels":
                raise RequestRejected(413, f"{fault}; downscale it and upload again")
            raise RequestRejected(422, f"{fault}; {again}")
        with image:  # the model decodes the bytes again; only what is learnt here is kept
            width, height = image.size
            if width < 1 or height < 1:
                raise RequestRejected(422, f"'{name}' has no pixels ({width} x {height}): choose another image")
            try:
                decode(image)  # every pixel: a truncated or corrupt file fails here, not in the model
                if image.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientation: shown (and scored) turned a quarter
                    width, height = height, width
            except ImageError as error:
                raise RequestRejected(422, f"'{name}': {error.reason}; {again}")
            except _DECODE_ERRORS as error:  # a broken EXIF block
                raise RequestRejected(422, f"'{name}': {as_image_error(error, image.format).reason}; {again}")
        # Pillow opens multi-picture camera JPEGs as MPO; to the user they are JPEGs.
        return Checked(name=name, data=data, format="JPEG" if image.format == "MPO" else image.format,
                       width=width, height=height)


# The app ------------------------------------------------------------------------------------------------
def _model_name(model: Any) -> tuple[str, str]:
    directory = getattr(model, "directory", None)
    name = getattr(model, "name", None) or (Path(directory).name if directory else "in-memory model")
    return str(name), str(directory) if directory else ""


def _upload_field(request: Request) -> str:
    """The field the documentation of the request's endpoint names; both endpoints take ``files`` and ``file``."""
    return "file" if request.url.path.rstrip("/").endswith("/explain") else "files"


def _no_upload(field: str, path: str) -> str:
    other = "file" if field == "files" else "files"
    many = " (one part per image)" if field == "files" else ""
    return (f"no image uploaded: send it as multipart/form-data in the field `{field}` (or `{other}`){many}, "
            f"e.g. curl -F {field}=@photo.jpg {path}")


def _uploads(request: Request, files: Sequence[UploadFile] | None,
             file: Sequence[UploadFile] | None) -> list[UploadFile]:
    """The uploaded parts of either field, ``files`` or ``file`` (the same to both endpoints), in upload order."""
    if files and file:  # the order of parts across two fields is lost in parsing: the answers could not follow it
        raise RequestRejected(422, f"images came in both fields `files` ({len(files)}) and `file` ({len(file)}): "
                                   "send every image of a request in one of them")
    uploads = list(files or file or [])
    if not uploads:
        raise RequestRejected(422, _no_upload(_upload_field(request), request.url.path))
    return uploads


def _validation_message(request: Request, errors: Sequence[dict]) -> str:
    """One readable line for FastAPI's validation errors (text instead of files, a bad target)."""
    field = _upload_field(request)
    parts: list[str] = []
    for error in errors:
        loc = [str(x) for x in error.get("loc", ())]
        value = error.get("input")
        if loc[:2] == ["body", "label"] and request.url.path.rstrip("/").endswith("/label"):
            parts.append(f"unknown label {value!r}: give negative, neutral, positive or skip")
        elif loc[:1] == ["query"] and loc[1:2] == ["target"]:
            parts.append(f"unknown target {value!r}: use one of {', '.join(TARGETS)}")
        elif loc[:1] == ["body"] and isinstance(value, str):
            name = loc[1] if len(loc) > 1 else field
            if value.isprintable() and len(value) <= 2000:
                shown = value if len(value) <= 80 else value[:77] + "..."
                parts.append(f"the field `{name}` holds text ({shown!r}), not an uploaded file: visent serve scores "
                             "uploaded image bytes only and never fetches URLs; upload the image file itself")
            else:
                parts.append(f"the field `{name}` holds a value without a file name ({len(value):,} characters), not an "
                             f"uploaded file: send each image as a file part with a filename, e.g. curl -F {field}=@photo.jpg")
        else:
            where = ".".join(loc) or "request"
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


def create_app(model: Any, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_files: int = DEFAULT_MAX_FILES, formats: Iterable[str] = DEFAULT_FORMATS,
               max_concurrent: int | None = None, max_queued: int | None = None, label_pool: Any = None,
               labels_file: str | Path | None = None, label_strategy: str = "uncertainty",
               label_n: int = DEFAULT_LABEL_N, seed: int = 0) -> FastAPI:
    """The FastAPI app serving ``model`` (a ``visent.model.VisentModel``, a model directory or ``"default"``).

    ``max_upload_bytes`` bounds a request's body, ``max_pixels`` each image's width x height,
    ``max_files`` the images per /predict request; ``formats`` are Pillow format names. ``max_concurrent``
    /predict and /explain requests (default: one per core) decode and score at once and ``max_queued`` (default
    twice as many) wait; one more is a 503 with ``Retry-After``.

    With ``label_pool`` (a folder of images, an ``@list.txt``, a visent dataset directory, or a list of these) the
    app has a labelling mode: the ``label_n`` images of the pool most worth a label, picked by ``label_strategy``
    with ``seed`` as ``visent label suggest`` picks them, one after another, each label saved to ``labels_file``
    (default ``labels.csv`` in the working folder) as it is given; images the file labels already are not asked
    again (:mod:`visent.serve.labelling`). The picks are computed in a thread as the app starts.
    """
    if isinstance(model, (str, Path)):
        from visent.model import VisentModel

        model = VisentModel.load(model)
    formats = tuple(dict.fromkeys(f.upper() for f in formats))
    Image.init()
    unknown = [f for f in formats if f not in Image.OPEN]
    if not formats or unknown:
        raise UsageError(f"unknown image formats {unknown}: use Pillow format names such as {', '.join(DEFAULT_FORMATS)}")
    max_concurrent = usable_cores() if max_concurrent is None else max_concurrent
    max_queued = 2 * int(max_concurrent) if max_queued is None else max_queued
    for name, value in (("max_upload_bytes", max_upload_bytes), ("max_pixels", max_pixels), ("max_files", max_files),
                        ("max_concurrent", max_concurrent)):
        if int(value) < 1:
            raise UsageError(f"{name} must be at least 1 (got {value})")
    if int(max_queued) < 0:
        raise UsageError(f"max_queued must be at least 0 (got {max_queued})")
    model_name, model_dir = _model_name(model)
    checker = ImageChecker(int(max_pixels), formats)
    limits = Limits(max_upload_bytes=int(max_upload_bytes), max_pixels=int(max_pixels), max_files=int(max_files),
                    formats=list(formats))
    service = _Service(model, model_name, model_dir, limits, checker, threading.BoundedSemaphore(int(max_concurrent)))
    if label_pool is not None:
        service.labelling = Labelling(model, label_pool, labels_file if labels_file is not None else "labels.csv",
                                      strategy=label_strategy, n=label_n, seed=seed, lock=service.lock)

    # FastAPIOffline: the /docs (Swagger UI) and /redoc pages with their scripts served by this app, not a CDN
    app = FastAPIOffline(
        title="visent",
        version=__version__,
        summary="Image sentiment (negative / neutral / positive) from a model trained without human labels.",
        description=(
            f"Serves the visent model **{model_name}**. Upload images as multipart/form-data: `POST /predict` scores "
            "one or more images, `POST /explain` draws where the model sees each sentiment. Uploaded bytes only: "
            "the service never fetches URLs. Limits: "
            f"{limits.max_upload_bytes:,} bytes per request, {limits.max_pixels:,} pixels per image, "
            f"{limits.max_files} images per request, formats {', '.join(formats)}."
        ),
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(max_upload_bytes))
    app.add_middleware(AdmissionMiddleware, limit=int(max_concurrent) + int(max_queued))  # outermost: nothing read

    _add_error_handlers(app)
    _add_page_routes(app, service)
    _add_scoring_routes(app, service)
    _add_labelling_routes(app, service)
    if service.labelling is not None:
        service.labelling.start()
    return app


@dataclass
class _Service:
    """What the routes of one app share: the model, its name, the limits and the upload checker, the turns of the
    requests that decode and score (``work``, ``max_concurrent`` at once) and a lock that lets one inference run at
    a time (the model and its backbone are not shared across threads)."""

    model: Any
    model_name: str
    model_dir: str | None
    limits: Limits
    checker: ImageChecker
    work: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))
    lock: threading.Lock = field(default_factory=threading.Lock)
    labelling: Labelling | None = None

    def read_images(self, uploads: Sequence[UploadFile]) -> list[Checked]:
        """The uploads checked, or a RequestRejected listing every rejected file (nothing is scored then)."""
        if len(uploads) > self.limits.max_files:
            raise RequestRejected(422, f"{len(uploads)} files in one request; this server accepts at most "
                                       f"{self.limits.max_files}: split them over several requests")
        images, problems = [], []
        for index, upload in enumerate(uploads):
            name = _display_name(upload, index)
            try:
                images.append(self.checker.check(name, upload.file.read()))
            except RequestRejected as problem:
                problems.append({"index": index, "file": name, "status": problem.status, "detail": problem.detail})
        if problems:
            if len(uploads) == 1:
                raise RequestRejected(problems[0]["status"], problems[0]["detail"], problems)
            ok = len(uploads) - len(problems)
            raise RequestRejected(problems[0]["status"],
                                  f"{len(problems)} of {len(uploads)} files rejected, nothing was scored "
                                  f"({ok} fine): " + "; ".join(p["detail"] for p in problems), problems)
        return images


def _add_error_handlers(app: FastAPI) -> None:
    """Every answer that is not a success is JSON with a ``detail`` a person can act on."""
    @app.exception_handler(RequestRejected)
    async def _rejected(request: Request, error: RequestRejected) -> JSONResponse:
        body: dict[str, Any] = {"detail": error.detail}
        if error.problems:
            body["problems"] = error.problems
        return JSONResponse(body, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in error.errors()]
        return JSONResponse({"detail": _validation_message(request, error.errors()), "errors": errors},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 400 and request.url.path.rstrip("/").endswith(("/predict", "/explain")):
            if _header_too_long(error):  # the line of a part's headers that holds its file name
                return JSONResponse({"detail": "the file name of an uploaded image is too long (its part's header is "
                                               "over 4 KB, more than the multipart parser reads): rename the file "
                                               "to a shorter name and upload again"}, status_code=400)
            # the multipart parser's own words are kept; the user learns what a good upload looks like
            field = _upload_field(request)
            return JSONResponse({"detail": f"the request body is not valid multipart/form-data ({error.detail}): "
                                           f"send each image as a multipart part named `{field}`, e.g. "
                                           f"curl -F {field}=@photo.jpg {request.url.path}"}, status_code=400)
        return await http_exception_handler(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # The last safety net: every expected bad input is answered above with a 4xx.
        log.exception("visent serve: unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error in visent serve ({type(error).__name__}); "
                                       "the server log has the details"}, status_code=500)


def _header_too_long(error: BaseException) -> bool:
    """Whether the multipart parser gave up on a part's header line (python-multipart's "Maximum header size
    exceeded", found among the causes of the 400): in an upload that is the line with the file name."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if "maximum header size exceeded" in str(cause).lower():
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _add_page_routes(app: FastAPI, service: _Service) -> None:
    """GET / (the drop-and-paste page) and GET /health."""
    model_name, model_dir, limits = service.model_name, service.model_dir, service.limits

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        from visent.serve.page import PAGE_HTML

        # Everything the page needs is inline; the policy keeps the browser from loading anything else.
        return HTMLResponse(PAGE_HTML, headers={
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                       "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'"})

    @app.get("/health", response_model=Health, summary="Service status, model and limits",
             description="Whether the service is up, which model it serves, the visent version, the classes and "
                         "the upload limits a client must respect.")
    async def health() -> Health:  # async: it never waits for a worker thread behind the uploads
        return Health(status="ok", model=model_name, model_dir=model_dir, visent_version=__version__,
                      classes=list(CLASSES), limits=limits)


def _add_scoring_routes(app: FastAPI, service: _Service) -> None:
    """POST /predict and POST /explain."""
    model, model_name, read_images, lock, work = (service.model, service.model_name, service.read_images,
                                                  service.lock, service.work)

    @app.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES,
              summary="Sentiment probabilities for one or more images",
              description=(
                  "Upload one or more images as multipart/form-data, each part in the field `files` (or each in "
                  "`file`). The answer has "
                  "one prediction per file, in upload order, with the file name, the probabilities of negative, "
                  "neutral and positive (they sum to 1) and the most probable label. If any file is rejected "
                  "(413 too many pixels, 415 not an accepted format, 422 empty/corrupt/too many files), nothing is "
                  "scored and `problems` lists every rejected file."))
    def predict(request: Request,
                files: List[UploadFile] | None = File(None, description="The images: one multipart part per image."),
                file: List[UploadFile] | None = File(None, description="The same as `files`, for clients that name "
                                                                           "the field as /explain does.")
                ) -> PredictResponse:
        with work:
            images = read_images(_uploads(request, files, file))
            with lock:
                table = model.predict([image.data for image in images])
        rows = table.to_pylist()
        predictions, problems = [], []
        for index, (image, row) in enumerate(zip(images, rows)):
            name = image.name
            if row.get("status") != "ok":
                problems.append({"index": index, "file": name, "status": 422,
                                 "detail": f"'{name}' could not be scored: {row.get('error') or 'unreadable image'}"})
                continue
            predictions.append(Prediction(file=name, label=row["label"],
                                          probabilities={c: float(row[c]) for c in CLASSES},
                                          format=image.format, width=image.width, height=image.height))
        if problems:
            raise RequestRejected(422, "; ".join(p["detail"] for p in problems), problems)
        return PredictResponse(model=model_name, classes=list(CLASSES), predictions=predictions)

    @app.post("/explain", response_class=Response, responses={
        200: {"content": {"image/png": {}},
              "description": "A PNG: the image with the sentiment map of the target class, or the panel of all three.",
              "headers": {"X-Visent-Probabilities": {"description": "JSON object: probability per class.",
                                                     "schema": {"type": "string"}},
                          "X-Visent-Label": {"description": "The predicted class.", "schema": {"type": "string"}},
                          "X-Visent-Method": {"description": "How the map was computed (cam or gradcam).",
                                              "schema": {"type": "string"}}}},
        **ERROR_RESPONSES},
        summary="Where the model sees each sentiment in one image (PNG)",
        description=(
            "Upload one image as multipart/form-data in the field `file` (or `files`); more than one is refused "
            "(422). The answer is a PNG: the image overlaid "
            "with the evidence map of `target` (`predicted`: the predicted class; or `negative`, `neutral`, "
            "`positive`), or with `target=all` a panel of the image and its three maps with the probabilities. "
            "The probabilities are also in the header `X-Visent-Probabilities` (JSON), the label in `X-Visent-Label`."))
    def explain(request: Request,
                file: List[UploadFile] | None = File(None, description="The image (one part)."),
                files: List[UploadFile] | None = File(None, description="The same as `file`, for clients that name "
                                                                            "the field as /predict does."),
                target: Target = Query("predicted", description="Which map to draw: predicted, negative, neutral, "
                                                                "positive, or all (a panel of the three).")) -> Response:
        from visent.explain import ExplainError, to_png
        from visent.explain import explain as explain_image

        uploads = _uploads(request, files, file)
        if len(uploads) > 1:
            names = ", ".join(f"'{_display_name(upload, i)}'" for i, upload in enumerate(uploads))
            raise RequestRejected(422, f"{len(uploads)} files sent to /explain ({names}), which explains one image per "
                                       "request: send them one at a time, or to /predict for their probabilities")
        with work:
            image, = read_images(uploads)
            name = image.name
            try:
                with lock:
                    result = explain_image(model, image.data)
            except ExplainError as error:
                raise RequestRejected(422, f"'{name}' could not be explained: {error}")
            picture = result.panel() if target == "all" else result.overlay(None if target == "predicted" else target)
        probabilities = {c: float(result.probabilities[c]) for c in CLASSES}
        return Response(to_png(picture), media_type="image/png", headers={
            "X-Visent-Probabilities": json.dumps(probabilities), "X-Visent-Label": str(result.label),
            "X-Visent-Method": str(result.method), "Cache-Control": "no-store"})


NO_LABELLING = ("this server has no images to label: start it with a pool of them, e.g. visent serve MODEL "
                "--label-pool photos/ --labels-out labels.csv")
PREPARING_WAIT = 10.0  # seconds GET /label/next waits for the picks before answering 202


def _add_labelling_routes(app: FastAPI, service: _Service) -> None:
    """GET /label/next, GET /label/image/{rank} and POST /label: the labelling mode (404 without a pool)."""
    import asyncio
    import time

    def session() -> Labelling:
        if service.labelling is None:
            raise RequestRejected(404, NO_LABELLING)
        return service.labelling

    def preparing(labelling: Labelling) -> JSONResponse:
        return JSONResponse({"status": "preparing", "detail": "the model is still scoring the pool to choose the "
                                                              "images to label: ask again in a moment"},
                            status_code=202, headers={"Retry-After": "1"})

    def failed(labelling: Labelling) -> None:
        if labelling.error is not None:
            raise RequestRejected(500, labelling.error)

    @app.get("/label/next", response_model=LabelProgress, summary="The next image to label and the running count",
             responses={202: {"description": "The images to label are still being chosen: ask again."},
                        404: {"model": ErrorBody, "description": "This server has no pool of images to label."}},
             description="The next suggested image not labelled or skipped yet (the most worth a label first), "
                         "with the model's guess, and how many of the pool's suggested images are labelled. "
                         "While the pool is still being scored the answer is 202 `preparing` (after waiting up to "
                         "`wait` seconds).")
    async def label_next(wait: float = Query(PREPARING_WAIT, ge=0, le=60, description="Seconds to wait for the "
                                                                                       "images to be chosen.")) -> Any:
        labelling = session()
        deadline = time.monotonic() + wait
        while not labelling.ready.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # async: a waiting page holds no worker thread
        if not labelling.ready.is_set():
            return preparing(labelling)
        failed(labelling)
        return JSONResponse(labelling.progress(), headers={"Cache-Control": "no-store"})

    @app.get("/label/image/{rank}", response_class=FileResponse, summary="The bytes of a suggested image",
             responses={200: {"content": {"image/*": {}}, "description": "The image file, as it is in the pool."},
                        404: {"model": ErrorBody, "description": "No suggested image has this rank, or no pool."}},
             description="Only the images suggested for labelling are served, by their rank.")
    def label_image(rank: int) -> Any:
        labelling = session()
        if not labelling.ready.is_set():
            return preparing(labelling)
        failed(labelling)
        row = labelling.row(rank)
        if row is None:
            raise RequestRejected(404, f"no suggested image has rank {rank}: the ranks run from 1 to "
                                       f"{len(labelling.rows)}")
        if not Path(row.path).is_file():
            raise RequestRejected(404, f"{Path(row.path).name} is no longer in the pool (moved or deleted since "
                                       "this server started): skip it")
        return FileResponse(row.path, media_type=media_type(row.path), headers={
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @app.post("/label", response_model=LabelProgress, summary="Label a suggested image, and get the next",
              responses={404: {"model": ErrorBody, "description": "No suggested image has this rank, or no pool."},
                         422: {"model": ErrorBody, "description": "The label is not negative, neutral, positive "
                                                                  "or skip."}},
              description="Saves the label of the image of `rank` to the labels file before answering (`skip` "
                          "leaves it unlabelled and it is not offered again while the server runs); a label given "
                          "again replaces the earlier one. The answer is GET /label/next's, with `saved`.")
    def label(request: LabelRequest) -> Any:
        labelling = session()
        if not labelling.ready.is_set():
            return preparing(labelling)
        failed(labelling)
        try:
            shown = labelling.give(request.rank, request.label)
        except LookupError:
            raise RequestRejected(404, f"no suggested image has rank {request.rank}: the ranks run from 1 to "
                                       f"{len(labelling.rows)}") from None
        except (OSError, VisentError) as error:  # a full disk, a folder made read-only: the label is not saved
            log.error("visent serve: a label could not be saved: %s", error)
            raise RequestRejected(500, f"the label was not saved to {labelling.file.path}: {error}") from None
        return JSONResponse({**labelling.progress(), "saved": {"rank": request.rank, "label": request.label,
                                                                "path": shown}},
                            headers={"Cache-Control": "no-store"})
