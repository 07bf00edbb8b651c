"""EMBED: pretrained image backbones, pooled features and their on-disk cache::

    backbone = load_backbone("efficientnet-lite0")
    features, status = embed_images(paths, None, backbone, cache=FeatureCache())
    features, status = embed_images(paths, None, backbone, runtime="onnx-int8")  # CPU: ONNX Runtime, int8
"""

from visent.core.images import load_image
from visent.embed.backbones import BACKBONES, Backbone, BackboneError, BackboneSpec, load_backbone
from visent.embed.cache import FeatureCache
from visent.embed.features import embed_images
from visent.embed.onnx import DEFAULT_RUNTIME, RUNTIMES

__all__ = ["BACKBONES", "Backbone", "BackboneError", "BackboneSpec", "FeatureCache", "embed_images",
           "DEFAULT_RUNTIME", "RUNTIMES", "load_backbone", "load_image"]
