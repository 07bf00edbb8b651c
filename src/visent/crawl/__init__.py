"""The crawl stage: posts that carry text and an image, gathered from the open social web into a crawl directory
that ``visent ingest`` reads.

Public surface: :func:`crawl_bluesky` (``visent crawl bluesky``), :data:`SOURCES` (the streams it reads:
Jetstream, the relay firehose), and the crawl directory's format in :mod:`visent.crawl.shards`.
"""

from visent.crawl.bluesky import SOURCES, crawl_bluesky, parse_duration
from visent.crawl.shards import CrawlError, is_crawl

__all__ = ["SOURCES", "CrawlError", "crawl_bluesky", "is_crawl", "parse_duration"]
