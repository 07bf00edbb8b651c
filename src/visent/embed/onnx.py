"""Fast CPU inference for the backbones with ONNX Runtime: fp32, or int8 with static quantisation.

A backbone is exported once to ONNX (dynamic batch axis) and kept under ``$VISENT_CACHE/onnx``
(else ``~/.cache/visent/onnx``), named after the backbone's key so that other weights or preprocessing
give another file.

int8 is static quantisation (QDQ, per-channel int8 weights, uint8 activations, min-max ranges). Its
*calibration* is the activation ranges measured on up to 128 photos (the smallest content hashes: a stable random
sample); they are kept as a small JSON file (ONNX Runtime's calibration cache), and the int8 network is rebuilt
from the fp32 export and that file alone. For a backbone a model shipped with visent carries (the default backbone
with its packaged weights), that model's calibration and int8 network are used (:func:`packaged_int8`, measured on
128 photos of the MVSA crawl): every dataset, and a crawl as it grows, then runs one network, so an image's
features are computed once whatever dataset it is in, and a grown crawl embeds only its new images (a calibration
measured on each dataset changed as soon as new images came among the 128, and every image was embedded again).
Otherwise (another backbone, other weights, a fine-tuned backbone, or ``calibration="dataset"``) it is measured on
the dataset's images. A model directory carries the file (``int8-calibration.json``), so ``predict`` runs the
very network its student was trained on, on any machine, without the training images. The first convolutions stay fp32 (:data:`INT8_RECIPES`): quantising the
normalised input costs most of the fidelity (mean cosine to fp32 features 0.89 → 0.96 on MVSA photos) for little
speed, and keeping the stem and the first two blocks (six convolutions, at high resolution but with few channels)
cuts the error of the multi-stage features by a quarter (RMS error in units of each feature's spread 0.205 → 0.150
on 256 MVSA photos; the first stage's 0.40 → 0.11) for a few per cent of speed. Percentile and entropy ranges
measured no better than min-max here.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from visent.core.errors import InputError, PathNotFound, UnknownName, UsageError
from visent.core.onnx import cpu_session, onnx_cache_root
from visent.core.quiet import quiet_warnings
from visent.core.store import atomic_write_bytes
from visent.embed.spec import BackboneError

if TYPE_CHECKING:
    from visent.embed.backbones import Backbone

RUNTIMES = ("torch", "onnx", "onnx-int8")
DEFAULT_RUNTIME = "onnx-int8"  # what `visent build` / `train` use (a dataset too small to calibrate gets "onnx")
EXPORT_VERSION = 2  # bump when the export or quantisation recipe changes, so cached models are rebuilt
OPSET = 17
CALIBRATION_IMAGES = 128  # images drawn for int8 calibration (the smallest content hashes: a stable random sample)
MIN_CALIBRATION_IMAGES = 16
CALIBRATION_FILE = "int8-calibration.json"  # its name inside a model directory
INT8_RECIPES = {1: 1, 2: 6}  # recipe -> how many of the first convolutions (graph order) stay fp32
INT8_RECIPE = 2  # what new int8 models use; a model directory records its own (older ones: 1, the stem only)


class RuntimeNotAvailable(BackboneError):
    """ONNX Runtime (or onnx) is not installed, or a backbone cannot be exported."""


class ModelFileError(InputError):
    """A file a model directory's ``config.json`` names lies outside the directory, or is not a network ONNX
    Runtime can run: the message names the file and what to do."""


def model_file(directory: str | Path, name: object, field: str) -> Path:
    """The file ``name`` of the model directory ``directory``, as its ``config.json`` names it under ``field``
    (``graph.file``, ``int8_calibration``, ``backbone_weights``): a plain relative path that stays inside the
    directory once resolved. An absolute path, a ``..`` that climbs out or a symbolic link leading out is a
    :class:`ModelFileError` naming config.json and the path; a model directory only ever names its own files."""
    directory = Path(directory)
    config = directory / "config.json"
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise ModelFileError(f"{config}: {field} is {name!r}, not the name of a file of the model directory; "
                             "the config is damaged: copy the whole model directory again, or train it again")
    relative = Path(name)
    if relative.is_absolute() or relative.drive or ".." in relative.parts:
        raise ModelFileError(f"{config}: {field} {name!r} points outside the model directory; a model directory "
                             "names only its own files: copy the whole model directory again, or train it again")
    path = directory / relative
    try:
        root = directory.resolve()
        inside = path.resolve().is_relative_to(root)
    except (OSError, RuntimeError) as exc:  # a loop of symbolic links
        raise ModelFileError(f"{config}: {field} {name!r} cannot be resolved ({exc}); copy the whole model "
                             "directory again, or train it again") from None
    if not inside:
        raise ModelFileError(f"{config}: {field} {name!r} is a symbolic link leading outside the model directory "
                             f"(to {path.resolve()}); a model directory names only its own files: copy the files "
                             "into it, or train it again")
    return path


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of RUNTIMES, else a ValueError that lists them."""
    if runtime not in RUNTIMES:
        raise UnknownName(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    return runtime


def require_onnxruntime() -> None:
    """Raise RuntimeNotAvailable unless onnxruntime and onnx can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise RuntimeNotAvailable(f"the onnx runtimes need onnxruntime and onnx: `pip install onnxruntime onnx` "
                                  f"({exc})") from exc


def _stem(backbone: Backbone) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone.name)[:60]
    digest = hashlib.sha256(f"{backbone.key}|export=v{EXPORT_VERSION}:opset{OPSET}".encode()).hexdigest()[:20]
    return f"{slug}-{digest}"


def choose_calibration(digests: Sequence[str], n: int = CALIBRATION_IMAGES) -> list[str]:
    """The ``n`` smallest distinct content hashes: a uniform random sample that does not depend on order."""
    return sorted(set(digests))[:n]


def packaged_int8(key: str, recipe: int = INT8_RECIPE) -> tuple[Path, Path] | None:
    """The int8 network a model shipped with visent carries for the backbone whose key is ``key``, quantised with
    ``recipe``: (its calibration, its graph); None when no shipped model has one (other weights, another backbone).

    The shipped default model's calibration is measured on 128 photos of the MVSA crawl by its build command
    (DEVELOPMENT.md, *Shipped files*), with ``--int8-calibration dataset``."""
    from importlib import resources

    root = Path(str(resources.files("visent") / "resources" / "models"))
    for config in sorted(root.glob("*/config.json")):
        try:
            record = json.loads(config.read_text(encoding="utf-8"))
            graph = record.get("graph") or {}
            if (graph.get("key") != key or graph.get("runtime") != "onnx-int8" or record.get("backbone_weights")
                    or int(graph.get("int8_recipe", 1)) != recipe or not record.get("int8_calibration")):
                continue
            calibration = model_file(config.parent, record["int8_calibration"], "int8_calibration")
            network = model_file(config.parent, graph["file"], "graph.file")
            if network.is_file() and calibration_id(calibration) == graph.get("calib_id"):
                return calibration, network
        except (OSError, ValueError, TypeError, InputError):  # a damaged shipped model is not used
            continue
    return None


def canonical_ranges(calibration: Path) -> bytes:
    """The ranges file's content with its tensors in name order: ONNX Runtime writes them in the order of a set,
    which changes from run to run, so the same ranges would otherwise make other bytes."""
    if not Path(calibration).is_file():
        raise PathNotFound(f"{calibration}: int8 calibration file missing; train the model again or use "
                                "runtime='onnx'")
    try:
        return json.dumps(json.loads(Path(calibration).read_bytes()), sort_keys=True).encode()
    except ValueError as exc:
        raise InputError(f"{calibration}: not an int8 calibration (JSON) file: {exc}; train the model again") from exc


def calibration_id(calibration: Path) -> str:
    """Identity of an int8 calibration: a hash of its ranges, whatever order the file lists them in."""
    return hashlib.sha256(canonical_ranges(calibration)).hexdigest()[:16]


# --------------------------------------------------------------------------- export and quantisation
def _pooled(module):
    """The backbone's module with its output flattened to (N, dim), as ``Backbone.forward_features``."""
    from torch import nn

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, x):
            return self.inner(x).flatten(1)

    return Pooled()


def export_onnx(backbone: Backbone) -> bytes:
    """The backbone as an ONNX model: input ``images`` (N, 3, S, S) float32 → output ``features`` (N, dim)."""
    import torch

    backbone.module.eval()
    example = torch.zeros(2, 3, backbone.image_size, backbone.image_size, device=backbone.device)
    buffer = io.BytesIO()
    with torch.no_grad(), quiet_warnings():  # the exporter's deprecation and constant-folding notes
        try:
            # the exporter restores the wrapper's mode afterwards, and with it the backbone's: eval, as found
            torch.onnx.export(_pooled(backbone.module).eval(), (example,), buffer, input_names=["images"],
                              output_names=["features"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
        except Exception as exc:  # noqa: BLE001 - any exporter failure means the same to the user
            raise RuntimeNotAvailable(f"{backbone.name} cannot be exported to ONNX ({type(exc).__name__}: {exc}); "
                                      "use runtime='torch'") from exc
    return buffer.getvalue()


def onnx_model(backbone: Backbone, root: Path | None = None) -> Path:
    """The backbone's fp32 ONNX file, exported now unless it is already cached."""
    path = (root or onnx_cache_root()) / f"{_stem(backbone)}.fp32.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, export_onnx(backbone))
    return path


def check_int8_recipe(recipe: int) -> int:
    if recipe not in INT8_RECIPES:
        raise UnknownName(f"unknown int8 recipe {recipe!r}; this visent knows {sorted(INT8_RECIPES)}")
    return recipe


def int8_path(backbone: Backbone, calibration: Path, root: Path | None = None, recipe: int = INT8_RECIPE) -> Path:
    suffix = "" if check_int8_recipe(recipe) == 1 else f"-r{recipe}"  # recipe 1's files keep their names
    return (root or onnx_cache_root()) / f"{_stem(backbone)}.int8{suffix}-{calibration_id(calibration)}.onnx"


def _fp32_convolutions(model_path: Path, recipe: int) -> list[str]:
    """Names of the convolutions kept in fp32: those that read the network's input directly (recipe 1), or the
    first :data:`INT8_RECIPES` ``[recipe]`` in graph order."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    if check_int8_recipe(recipe) == 1:
        inputs = {i.name for i in graph.input}
        return [node.name for node in convolutions if inputs & set(node.input)]
    return [node.name for node in convolutions[:INT8_RECIPES[recipe]]]


def _prepared(backbone: Backbone, root: Path | None = None) -> Path:
    """The fp32 export after ONNX Runtime's quantisation pre-processing (shape inference, folding)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = (root or onnx_cache_root()) / f"{_stem(backbone)}.prepared.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".prepare-") as tmp:
            quant_pre_process(str(onnx_model(backbone, root)), str(Path(tmp) / "prepared.onnx"))
            atomic_write_bytes(path, (Path(tmp) / "prepared.onnx").read_bytes())
    return path


def _quantize(prepared: Path, out: Path, calibration: Path, reader=None, recipe: int = INT8_RECIPE) -> None:
    """ONNX Runtime's static quantisation of ``prepared`` into ``out``; the ranges come from ``calibration``
    (ONNX Runtime's calibration cache), measured first with ``reader`` when the file does not exist yet."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=_fp32_convolutions(prepared, recipe),
                    calibration_cache_path=str(calibration))


CALIBRATIONS = ("packaged", "dataset")  # where an int8 calibration comes from (see the module's docstring)


def check_calibration(calibration: str) -> str:
    """``calibration`` if it is one of :data:`CALIBRATIONS`, else an error that lists them."""
    if calibration not in CALIBRATIONS:
        raise UnknownName(f"unknown int8 calibration {calibration!r}; choose one of: {', '.join(CALIBRATIONS)}")
    return calibration


def calibrate_int8(backbone: Backbone, images: Callable[[], np.ndarray], digests: Sequence[str],
                   root: Path | None = None, recipe: int = INT8_RECIPE, calibration: str = "packaged") -> Path:
    """The int8 calibration (ranges file): with ``calibration="packaged"`` the shipped one for the backbone when
    there is one (:func:`packaged_int8`), else the one measured on the images with content hashes ``digests``.

    Measured ranges are cached by the identity of the chosen calibration images; ``images()`` gives them,
    preprocessed (n, 3, S, S), in ``choose_calibration(digests)`` order, and is only called when not cached yet.
    """
    from onnxruntime.quantization import CalibrationDataReader

    require_onnxruntime()
    if check_calibration(calibration) == "packaged" and (shipped := packaged_int8(backbone.key, recipe)) is not None:
        return shipped[0]
    chosen = choose_calibration(digests)
    image_set = hashlib.sha256("\n".join(chosen).encode()).hexdigest()[:16]
    root = root or onnx_cache_root()
    recipe_tag = "" if check_int8_recipe(recipe) == 1 else f"-r{recipe}"  # the ranges measured depend on the recipe
    path = root / f"{_stem(backbone)}.calibration{recipe_tag}-{image_set}.json"
    if path.exists():
        return path
    batch = images()
    if len(batch) < MIN_CALIBRATION_IMAGES:
        raise InputError(f"int8 quantisation of {backbone.name} needs at least {MIN_CALIBRATION_IMAGES} readable "
                         f"calibration images, got {len(batch)}: calibrate on a larger set (a model directory "
                         "carries its calibration), or use runtime='onnx'")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": batch[i:i + 16]} for i in range(0, len(batch), 16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    prepared = _prepared(backbone, root)  # creates root
    with tempfile.TemporaryDirectory(dir=root, prefix=".calibrate-") as tmp:
        ranges = Path(tmp) / "ranges.json"
        _quantize(prepared, Path(tmp) / "int8.onnx", ranges, Reader(), recipe)
        ranges.write_bytes(canonical_ranges(ranges))
        target = int8_path(backbone, ranges, root, recipe)
        if not target.exists():
            shutil.move(str(Path(tmp) / "int8.onnx"), target)  # same folder: an atomic rename
        shutil.move(str(ranges), path)
    return path


def quantize_int8(backbone: Backbone, calibration: Path, root: Path | None = None,
                  recipe: int = INT8_RECIPE) -> Path:
    """The backbone's int8 model for a calibration (ranges file) and recipe, built now from the fp32 export unless
    cached."""
    require_onnxruntime()
    shipped = packaged_int8(backbone.key, recipe)
    if shipped is not None and calibration_id(shipped[0]) == calibration_id(calibration):
        return shipped[1]  # the very network the shipped model runs: no export, no quantiser
    path = int8_path(backbone, calibration, root, recipe)
    if not path.exists():
        prepared = _prepared(backbone, root)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".quantize-") as tmp:
            ranges = Path(tmp) / "ranges.json"
            shutil.copyfile(calibration, ranges)  # the quantiser reads it (and never writes on a cache hit)
            _quantize(prepared, Path(tmp) / "int8.onnx", ranges, recipe=recipe)
            atomic_write_bytes(path, (Path(tmp) / "int8.onnx").read_bytes())
    return path


# --------------------------------------------------------------------------- inference
class OnnxEmbedder:
    """A backbone run by ONNX Runtime: ``embedder(batch)`` maps float32 (N, 3, S, S) to features (N, dim)."""

    def __init__(self, path: Path, threads: int | None = None):
        self.path = path
        self._session = cpu_session(path, threads)  # threads sleep when idle: decoding gets the cores

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self._session.run(["features"], {"images": batch})[0]


def onnx_embedder(backbone: Backbone, runtime: str, *, calibration: Path | None = None,
                  threads: int | None = None, root: Path | None = None, recipe: int = INT8_RECIPE) -> OnnxEmbedder:
    """The ONNX embedder for ``runtime`` ("onnx", or "onnx-int8" with its ``calibration`` ranges file and
    ``recipe``)."""
    require_onnxruntime()
    if check_runtime(runtime) == "onnx":
        return OnnxEmbedder(onnx_model(backbone, root), threads)
    if runtime != "onnx-int8" or calibration is None:
        raise UsageError(f"runtime {runtime!r} needs an int8 calibration file to run on ONNX Runtime")
    return OnnxEmbedder(quantize_int8(backbone, calibration, root, recipe), threads)
