"""Embed images with a backbone: parallel decoding overlapped with batched inference, cached by content."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from visent.core.errors import UnknownName, UsageError
from visent.core.images import load_image
from visent.core.status import ImageStatus
from visent.embed.backbones import Backbone
from visent.embed.cache import FeatureCache
from visent.embed.cached import attempt, cached_image_pass, file_hashes
from visent.embed.onnx import (INT8_RECIPE, calibrate_int8, calibration_id, check_runtime, choose_calibration,
                               onnx_embedder)
from visent.embed.preprocess import five_crops

TTA_MODES = ("none", "flip", "crops")


def tta_mode(tta: bool | str) -> str:
    """The test-time augmentation: ``"none"`` (False), ``"flip"`` (True: the image and its mirror image) or
    ``"crops"`` (Campos et al.: five crops of the image and of its mirror image, ten views)."""
    mode = {False: "none", True: "flip"}.get(tta, tta) if isinstance(tta, bool) else str(tta)
    if mode not in TTA_MODES:
        raise UnknownName(f"unknown test-time augmentation {tta!r}; choose one of: {', '.join(TTA_MODES)}")
    return mode


def feature_key(backbone: Backbone, tta: bool | str, runtime: str = "torch", calib_id: str | None = None,
                int8_recipe: int = INT8_RECIPE) -> str:
    """Cache key of the features: backbone identity, test-time augmentation and, for the ONNX runtimes, the
    runtime (with the int8 calibration's identity and recipe), since their features differ slightly from
    PyTorch's."""
    mode = tta_mode(tta)
    key = f"{backbone.key}|tta=" + {"none": "0", "flip": "1"}.get(mode, mode)
    if runtime != "torch":
        key += f"|runtime={runtime}" + (f":{calib_id}" if calib_id else "")
        if runtime == "onnx-int8" and int8_recipe != 1:  # recipe 1's keys are those of the features cached before
            key += f":r{int8_recipe}"
    return key


def embed_images(paths: Sequence[Path | None], hashes: Sequence[str | None] | None, backbone: Backbone, *,
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
    quantisation ``int8_recipe`` (see ``visent.embed.onnx``). ``threads`` is the number of inference threads (default: every core);
    ``workers`` threads decode images meanwhile.
    """
    check_runtime(runtime)
    mode = tta_mode(tta)
    if batch_size < 1:
        raise UsageError("batch_size must be at least 1")

    # content hashes first (read from disk only where the caller has none): the int8 calibration is chosen by them
    digests, errors = file_hashes(paths, hashes, workers)
    if runtime == "onnx-int8" and int8_calibration is None:
        int8_calibration = calibrate_int8(backbone, lambda: calibration_images(backbone, paths, digests, workers),
                                          [d for d in digests if d], recipe=int8_recipe)
    calib_id = calibration_id(Path(int8_calibration)) if runtime == "onnx-int8" else None
    key = feature_key(backbone, tta, runtime, calib_id, int8_recipe)

    def load(path: Path) -> torch.Tensor:
        """(3, S, S), or (5, 3, S, S) for the crops."""
        image = load_image(path, backbone.image_size)
        if mode == "crops":
            return torch.stack([backbone.to_tensor(crop)
                                for crop in five_crops(image, backbone.image_size, backbone.spec.resample)])
        return backbone.preprocess(image)

    @functools.cache
    def network() -> Callable[[torch.Tensor], np.ndarray]:
        """The backbone, set up on the first batch only: nothing is loaded when every image is cached."""
        embedder = None if runtime == "torch" else onnx_embedder(backbone, runtime, calibration=int8_calibration,
                                                                 threads=threads, recipe=int8_recipe)
        backbone.module.eval()  # inference: batch norm and dropout as in evaluation

        def run(batch: torch.Tensor) -> np.ndarray:
            if embedder is None:
                return backbone.forward_features(batch).float().cpu().numpy()
            return embedder(batch.numpy())

        return run

    def compute(items: list[torch.Tensor]) -> np.ndarray:
        """Features (B, dim) of B images (3, S, S) or (V, 3, S, S), averaged over the views."""
        run = network()  # outside inference mode: an ONNX export traces the module
        with torch.inference_mode():
            batch = torch.stack(items)
            views = batch.reshape(-1, *batch.shape[-3:])
            if mode != "none":
                views = torch.cat([views, views.flip(-1)])
            return _mean_views(run(views), len(batch))

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        return cached_image_pass(paths, key, backbone.dim, load=load, compute=compute, cache=cache,
                                 hashed=(digests, errors), workers=workers, batch_size=batch_size,
                                 label=f"embed ({backbone.name}, {runtime})")
    finally:
        torch.set_num_threads(torch_threads)


def calibration_images(backbone: Backbone, paths: Sequence[Path | None], digests: Sequence[str | None],
                       workers: int = 2) -> np.ndarray:
    """Preprocessed int8 calibration images (n, 3, S, S): ``choose_calibration`` of the readable images."""
    path_of = {digest: Path(path) for path, digest in reversed(list(zip(paths, digests))) if digest and path}
    chosen = [path_of[digest] for digest in choose_calibration(list(path_of))]

    def load(path: Path) -> torch.Tensor:
        return backbone.preprocess(load_image(path, backbone.image_size))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        images = [x.numpy() for x in pool.map(lambda path: attempt(load, path), chosen) if isinstance(x, torch.Tensor)]
    size = backbone.image_size
    return np.stack(images) if images else np.empty((0, 3, size, size), np.float32)


def _mean_views(out: np.ndarray, n: int) -> np.ndarray:
    """Average (views * n, dim) laid out as [flip][image][view] over everything but the image."""
    if len(out) == n:
        return out
    per_image = len(out) // (2 * n)
    return out.reshape(2, n, per_image, out.shape[-1]).mean(axis=(0, 2))

