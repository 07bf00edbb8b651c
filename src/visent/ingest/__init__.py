"""Ingest: read posts from a source (MVSA folder, JSONL/CSV of posts, tweet JSON, a folder of
those) and store them with their images as a visent dataset.

``ingest(source, out)`` is the stage (its images fetched here or by an engine's workers), ``IngestOptions`` its
options; ``detect_format`` and ``READERS`` tell which reader a source gets; ``ImageFetcher`` downloads and checks
images on its own.
"""

from visent.ingest.download import Fetched, ImageFetcher, sniff_image
from visent.ingest.options import IngestOptions
from visent.ingest.readers import READERS, RawPost, detect_format
from visent.ingest.worker import ingest

__all__ = ["READERS", "Fetched", "ImageFetcher", "IngestOptions", "RawPost", "detect_format", "ingest", "sniff_image"]
