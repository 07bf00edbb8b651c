"""EMBED: pretrained image backbones, pooled features and their on-disk cache::

    backbone = load_backbone("efficientnet-lite0")
    features, status = embed_images(paths, None, backbone, cache=FeatureCache())
    features, status = embed_images(paths, None, backbone, runtime="onnx-int8")  # CPU: ONNX Runtime, int8

The names load on first use, so that a model that carries its network as an ONNX graph
(:class:`~visent.embed.graph.GraphBackbone`) computes features without importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BACKBONES": "visent.embed.backbones", "Backbone": "visent.embed.backbones",
    "BackboneError": "visent.embed.spec", "DEFAULT_BACKBONE": "visent.embed.spec", "BackboneSpec": "visent.embed.spec",
    "load_backbone": "visent.embed.backbones", "FeatureCache": "visent.embed.cache",
    "embed_images": "visent.embed.features", "GraphBackbone": "visent.embed.graph",
    "DEFAULT_RUNTIME": "visent.embed.onnx", "RUNTIMES": "visent.embed.onnx", "load_image": "visent.core.images",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'visent.embed' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
