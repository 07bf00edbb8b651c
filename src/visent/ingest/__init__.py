"""Ingest: read posts from a source (MVSA folder, JSONL/CSV of posts, tweet JSON, a folder of
those) and store them with their images as a visent dataset.

``ingest(source, out)`` is the stage; ``detect_format`` and ``READERS`` tell which reader a source
gets; ``ImageFetcher`` downloads and checks images on its own.
"""

from visent.ingest.download import Fetched, ImageFetcher, sniff_image
from visent.ingest.readers import READERS, RawPost, detect_format
from visent.ingest.stage import ingest

__all__ = ["READERS", "Fetched", "ImageFetcher", "RawPost", "detect_format", "ingest", "sniff_image"]
