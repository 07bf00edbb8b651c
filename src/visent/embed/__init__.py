"""EMBED: pretrained image backbones, pooled features and their on-disk cache::

    backbone = load_backbone("efficientnet-lite0")
    features, status = embed_images(paths, None, backbone, cache=FeatureCache())
"""

from visent.embed.backbones import BACKBONES, Backbone, BackboneError, BackboneSpec, load_backbone
from visent.embed.cache import FeatureCache
from visent.embed.images import load_image
from visent.embed.pipeline import embed_images

__all__ = ["BACKBONES", "Backbone", "BackboneError", "BackboneSpec", "FeatureCache", "embed_images",
           "load_backbone", "load_image"]
