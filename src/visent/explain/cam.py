"""Sentiment maps: where in the image the student finds the evidence for each class.

The student is linear on pooled features: logit_c = sum_k W_ck (f_k - mean_k) / scale_k / T + b_c. Where a
feature is the spatial mean of a convolutional map A_k(x, y), its term is itself a spatial mean, so the logit
spreads exactly over the image: the class activation map (Zhou et al., 2016) M_c(x, y) = sum_k W'_ck A_k(x, y),
whose mean over the image is the logit up to a constant. visent's multi-stage backbones pool several depths,
each contributing its own map at its own resolution; a max-pooled feature contributes at the location of its
maximum. Every map is expressed as a density on one grid over the square the model sees, so the sum of the
backbones' maps keeps the property "mean of the map = the features' share of the logit" (up to resampling).

Maps are contrastive: each class's weights minus the mean of the three, so a map shows evidence that moves
the softmax towards its class rather than what all classes share.

Backbones whose pooled features are not spatial means of a known map (torchvision/timm networks, vision
transformers) get Grad-CAM (Selvaraju et al., 2017) at their last spatial activation instead: the gradient
of the contrastive logit, averaged over the map, weighs its channels. For a mean-pooled linear head both
methods give the same map, which the tests check.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visent.core.errors import VisentError
from visent.embed.backbones import Backbone, StagePooled

GRID = 112  # the maps' common resolution over the model's input square

METHODS = ("auto", "cam", "gradcam")


class ExplainError(VisentError, ValueError):
    """An image cannot be explained: unreadable, or a model part that has no spatial map."""


def has_pooled_maps(backbone: Backbone) -> bool:
    """Whether the backbone's features are poolings of spatial maps that :func:`pooled_maps` can give."""
    module = backbone.module
    return isinstance(module, StagePooled) or type(module).__name__ == "EfficientNet"


def pooled_maps(backbone: Backbone, batch: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """The spatial maps whose pooling gives the backbone's features, in feature order, with their pooling
    ("mean" or "max"). Raises ExplainError for backbones without them (use Grad-CAM)."""
    module = backbone.module
    if isinstance(module, StagePooled):
        return module.maps(batch)
    if type(module).__name__ == "EfficientNet":  # EfficientNet-Lite: the mean of the head convolution
        return [(module.extract_features(batch), "mean")]
    raise ExplainError(f"{backbone.name}: its features are not pooled from known maps; use Grad-CAM")


def _density(feature_map: torch.Tensor, pool: str) -> torch.Tensor:
    """(C, h, w) → (C, h, w) whose spatial mean is the pooled feature: the map itself for a mean, the maximum
    placed at its location (times the area) for a max."""
    if pool == "mean":
        return feature_map
    channels, height, width = feature_map.shape
    flat = feature_map.reshape(channels, -1)
    where = flat.argmax(dim=1)
    spike = torch.zeros_like(flat)
    spike[torch.arange(channels), where] = flat[torch.arange(channels), where] * (height * width)
    return spike.reshape(channels, height, width)


def _resize(maps: torch.Tensor, grid: int) -> torch.Tensor:
    """(K, h, w) → (K, grid, grid), bilinear: a map's mean is kept (up to the edges)."""
    return F.interpolate(maps[None], size=(grid, grid), mode="bilinear", align_corners=False)[0]


def cam_maps(backbone: Backbone, image: torch.Tensor, weights: np.ndarray, grid: int = GRID) -> np.ndarray:
    """Class activation maps (n_classes, grid, grid) of one preprocessed image (3, S, S) for feature weights
    (n_classes, dim): the map of class c at (x, y) is sum_k weights[c, k] * A_k(x, y)."""
    with torch.inference_mode():
        maps = pooled_maps(backbone, image[None].to(backbone.device, memory_format=torch.channels_last))
        w = torch.as_tensor(weights, dtype=torch.float32, device=backbone.device)
        out = torch.zeros(len(weights), grid, grid)
        start = 0
        for feature_map, pool in maps:
            channels = feature_map.shape[1]
            density = _density(feature_map[0].float(), pool)  # (C, h, w)
            # weigh the channels at the map's own resolution, then resize the (n_classes, h, w) result: the same
            # as resizing every channel first (both are linear), at a fraction of the cost
            out += _resize(torch.einsum("kc,chw->khw", w[:, start:start + channels], density), grid).cpu()
            start += channels
        if start != weights.shape[1]:
            raise ExplainError(f"{backbone.name}: maps give {start} features, the head reads {weights.shape[1]}")
    return out.numpy()


def last_spatial_module(backbone: Backbone, image_size: int) -> tuple[nn.Module, int]:
    """The module whose output is the network's last spatial activation (N, C, h, w) with h, w > 1, or token
    grid (N, 1 + h*w, C) of a vision transformer, and which call of it that is (modules can run twice)."""
    calls: list[tuple[nn.Module, int]] = []
    seen: dict[int, int] = {}

    def hook(module: nn.Module, _inputs, output) -> None:
        count = seen.get(id(module), 0)
        seen[id(module)] = count + 1
        if isinstance(output, torch.Tensor) and _as_spatial(output) is not None:
            calls.append((module, count))

    handles = [m.register_forward_hook(hook) for m in backbone.module.modules() if m is not backbone.module]
    try:
        with torch.inference_mode():
            backbone.module(torch.zeros(1, 3, image_size, image_size, device=backbone.device))
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        raise ExplainError(f"{backbone.name}: no spatial activation found for Grad-CAM")
    return calls[-1]


def _as_spatial(output: torch.Tensor) -> torch.Tensor | None:
    """(N, C, h, w) as is; ViT tokens (N, 1 + h*w, C) or (N, h*w, C) as (N, C, h, w); else None."""
    if output.dim() == 4 and output.shape[2] > 1 and output.shape[3] > 1:
        return output
    if output.dim() == 3:
        tokens = output.shape[1]
        for extra in (1, 0):
            side = int(round((tokens - extra) ** 0.5))
            if side > 1 and side * side == tokens - extra:
                grid = output[:, extra:, :]
                return grid.transpose(1, 2).reshape(output.shape[0], output.shape[2], side, side)
    return None


def gradcam_maps(backbone: Backbone, image: torch.Tensor, weights: np.ndarray, offset: np.ndarray,
                 grid: int = GRID) -> np.ndarray:
    """Grad-CAM maps (n_classes, grid, grid) of one preprocessed image for the linear read-out
    ``features @ weights.T + offset`` of the backbone's features: per class, the channels of the last
    spatial activation weighed by the mean gradient of the class score, scaled by the map's area so that a
    mean-pooled linear head gives exactly its class activation map. Not rectified here (shown rectified)."""
    target, call = last_spatial_module(backbone, backbone.image_size)
    captured: list[torch.Tensor] = []
    count = [0]

    def hook(_module, _inputs, output):
        if count[0] == call:
            captured.append(output)
        count[0] += 1

    handle = target.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = image[None].to(backbone.device, memory_format=torch.channels_last).requires_grad_(True)
            features = backbone.forward_features(x).float()
            w = torch.as_tensor(weights, dtype=torch.float32, device=features.device)
            scores = features @ w.T + torch.as_tensor(offset, dtype=torch.float32, device=features.device)
            activation = captured[0]
            spatial = _as_spatial(activation)
            out = []
            for c in range(len(weights)):
                (grad,) = torch.autograd.grad(scores[0, c], activation, retain_graph=c < len(weights) - 1)
                g = _as_spatial(grad)[0]
                a = spatial[0].detach()
                alpha = g.mean(dim=(1, 2)) * (g.shape[1] * g.shape[2])
                out.append(torch.einsum("c,chw->hw", alpha, a))
    finally:
        handle.remove()
    return _resize(torch.stack(out).float(), grid).detach().cpu().numpy()


def contrastive_weights(coef: np.ndarray, scale: np.ndarray, temperature: float) -> np.ndarray:
    """Per-class weights on the raw features (n_classes, dim): standardisation and temperature folded in,
    minus the mean over classes (softmax only sees logit differences)."""
    w = coef / scale[None, :] / temperature
    return (w - w.mean(axis=0, keepdims=True)).astype(np.float32)


def split_columns(dims: Sequence[int]) -> list[slice]:
    """Column ranges of concatenated feature blocks of the given widths."""
    out, start = [], 0
    for dim in dims:
        out.append(slice(start, start + dim))
        start += dim
    return out
