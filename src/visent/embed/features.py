"""Embed images with a backbone: parallel decoding overlapped with batched inference, cached by content."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, Union

import numpy as np

from visent.core.errors import UnknownName, UsageError
from visent.core.images import load_image
from visent.core.onnx import usable_cores
from visent.core.status import ImageStatus
from visent.embed.cache import FeatureCache
from visent.embed.cached import attempt, cached_image_pass, file_hashes
from visent.embed.graph import GraphBackbone
from visent.embed.onnx import (INT8_RECIPE, calibrate_int8, calibration_id, check_runtime, choose_calibration,
                               onnx_embedder)
from visent.embed.preprocess import five_crops
from visent.embed.spec import preprocess_array, to_array

if TYPE_CHECKING:
    from visent.embed.backbones import Backbone

AnyBackbone = Union["Backbone", GraphBackbone]

TTA_MODES = ("none", "flip", "crops")


def tta_mode(tta: bool | str) -> str:
    """The test-time augmentation: ``"none"`` (False), ``"flip"`` (True: the image and its mirror image) or
    ``"crops"`` (Campos et al.: five crops of the image and of its mirror image, ten views)."""
    mode = {False: "none", True: "flip"}.get(tta, tta) if isinstance(tta, bool) else str(tta)
    if mode not in TTA_MODES:
        raise UnknownName(f"unknown test-time augmentation {tta!r}; choose one of: {', '.join(TTA_MODES)}")
    return mode


def feature_key(backbone: AnyBackbone, tta: bool | str, runtime: str = "torch", calib_id: str | None = None,
                int8_recipe: int = INT8_RECIPE) -> str:
    """Cache key of the features: backbone identity, test-time augmentation and, for the ONNX runtimes, the
    runtime (with the int8 calibration's identity and recipe), since their features differ slightly from
    PyTorch's."""
    mode = tta_mode(tta)
    if isinstance(backbone, GraphBackbone):  # the network it carries is the one these name
        runtime, calib_id, int8_recipe = backbone.runtime, backbone.calib_id, backbone.int8_recipe
    key = f"{backbone.key}|tta=" + {"none": "0", "flip": "1"}.get(mode, mode)
    if runtime != "torch":
        key += f"|runtime={runtime}" + (f":{calib_id}" if calib_id else "")
        if runtime == "onnx-int8" and int8_recipe != 1:  # recipe 1's keys are those of the features cached before
            key += f":r{int8_recipe}"
    return key


def embed_images(paths: Sequence[Path | None], hashes: Sequence[str | None] | None, backbone: AnyBackbone, *,
                 cache: FeatureCache | None = None, batch_size: int = 32, workers: int = 2,
                 tta: bool | str = False, runtime: str = "torch", int8_calibration: Path | None = None,
                 int8_recipe: int = INT8_RECIPE, threads: int | None = None) -> tuple[np.ndarray, list[ImageStatus]]:
    """Pooled features of images, float32 (n, dim), and an :class:`~visent.core.status.ImageStatus` per image.

    Status is ok (computed now), cached or an error naming the file and the reason (row is NaN).
    ``hashes`` are the SHA-256 of the files' bytes (computed when None); identical images are embedded
    once. ``tta`` averages the features of several views (see :func:`tta_mode`): ``True`` or ``"flip"``
    the image and its mirror image, ``"crops"`` ten views as Campos et al.

    ``runtime`` runs the backbone with PyTorch (``"torch"``) or, on CPU, with ONNX Runtime in fp32
    (``"onnx"``, several times faster) or int8 (``"onnx-int8"``, faster still) with the calibration file
    ``int8_calibration`` (a model directory's), else one measured on up to 128 of these images, and the
    quantisation ``int8_recipe`` (see ``visent.embed.onnx``). A :class:`~visent.embed.graph.GraphBackbone` (a
    network carried as an ONNX graph) runs its graph, and PyTorch is not imported. ``threads`` is the number of
    inference threads (default: every core); ``workers`` threads decode images meanwhile.
    """
    check_runtime(runtime)
    carried = isinstance(backbone, GraphBackbone)
    mode = tta_mode(tta)
    if batch_size < 1:
        raise UsageError("batch_size must be at least 1")

    # content hashes first (read from disk only where the caller has none): the int8 calibration is chosen by them
    digests, errors = file_hashes(paths, hashes, workers)
    if runtime == "onnx-int8" and int8_calibration is None and not carried:
        int8_calibration = calibrate_int8(backbone, lambda: calibration_images(backbone, paths, digests, workers),
                                          [d for d in digests if d], recipe=int8_recipe)
    calib_id = calibration_id(Path(int8_calibration)) if runtime == "onnx-int8" and not carried else None
    key = feature_key(backbone, tta, runtime, calib_id, int8_recipe)
    spec = backbone.spec

    def load(path: Path) -> np.ndarray:
        """(3, S, S), or (5, 3, S, S) for the crops."""
        image = load_image(path, spec.image_size)
        if mode == "crops":
            return np.stack([to_array(crop, spec) for crop in five_crops(image, spec.image_size, spec.resample)])
        return preprocess_array(image, spec)

    @functools.cache
    def network() -> Callable[[np.ndarray], np.ndarray]:
        """The network, set up on the first batch only: nothing is loaded when every image is cached."""
        if carried:
            return backbone.embedder(threads)
        if runtime != "torch":
            return onnx_embedder(backbone, runtime, calibration=int8_calibration, threads=threads,
                                 recipe=int8_recipe)
        import torch

        backbone.module.eval()  # inference: batch norm and dropout as in evaluation

        def run(batch: np.ndarray) -> np.ndarray:
            torch_threads = torch.get_num_threads()
            torch.set_num_threads(threads or usable_cores())
            try:
                with torch.inference_mode():
                    return backbone.forward_features(torch.from_numpy(batch)).float().cpu().numpy()
            finally:
                torch.set_num_threads(torch_threads)

        return run

    def compute(items: list[np.ndarray]) -> np.ndarray:
        """Features (B, dim) of B images (3, S, S) or (V, 3, S, S), averaged over the views."""
        run = network()
        batch = np.stack(items)
        views = batch.reshape(-1, *batch.shape[-3:])
        if mode != "none":
            views = np.concatenate([views, np.ascontiguousarray(views[..., ::-1])])
        return _mean_views(run(views), len(batch))

    return cached_image_pass(paths, key, backbone.dim, load=load, compute=compute, cache=cache,
                             hashed=(digests, errors), workers=workers, batch_size=batch_size,
                             label=f"embed ({backbone.name}, {'graph' if carried else runtime})")


def calibration_images(backbone: AnyBackbone, paths: Sequence[Path | None], digests: Sequence[str | None],
                       workers: int = 2) -> np.ndarray:
    """Preprocessed int8 calibration images (n, 3, S, S): ``choose_calibration`` of the readable images."""
    path_of = {digest: Path(path) for path, digest in reversed(list(zip(paths, digests))) if digest and path}
    chosen = [path_of[digest] for digest in choose_calibration(list(path_of))]

    def load(path: Path) -> np.ndarray:
        return preprocess_array(load_image(path, backbone.image_size), backbone.spec)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        images = [x for x in pool.map(lambda path: attempt(load, path), chosen) if isinstance(x, np.ndarray)]
    size = backbone.image_size
    return np.stack(images) if images else np.empty((0, 3, size, size), np.float32)


def _mean_views(out: np.ndarray, n: int) -> np.ndarray:
    """Average (views * n, dim) laid out as [flip][image][view] over everything but the image."""
    if len(out) == n:
        return out
    per_image = len(out) // (2 * n)
    return out.reshape(2, n, per_image, out.shape[-1]).mean(axis=(0, 2))

