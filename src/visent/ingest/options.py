"""The options of the ingest stage (:class:`IngestOptions`): what :func:`visent.ingest.ingest` takes, what it records
as its parameters, and what ``visent ingest`` and ``visent build`` offer (see :mod:`visent.core.options`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visent.core.options import engine_option, option, ray_address_option
from visent.engine import Engine
from visent.ingest.readers import READERS

DEFAULT_PER_HOST = 8


@dataclass
class IngestOptions:
    """How ingest reads a source and fetches its images. ``format`` names a reader of
    :data:`visent.ingest.READERS` ("auto" detects it); ``workers`` threads fetch images, at most ``per_host`` at a
    time from one host; ``timeout``, ``retries``, ``backoff`` and ``max_bytes`` govern each image (see
    :class:`visent.ingest.ImageFetcher`); ``limit`` keeps the first N posts; ``batch_size`` posts make a checkpoint
    (and what an engine's worker fetches at a time); ``engine`` and ``ray_address`` say where the images are
    fetched (:func:`visent.engine.get_engine`)."""

    format: str = option("auto", help="Reader of the source: auto (told by its layout) or one of: "
                                      f"{', '.join(READERS)}.")
    workers: int = option(16, help="Concurrent image downloads.", fingerprint=False)
    timeout: float = option(10.0, help="Seconds per download request.")
    retries: int = option(3, help="Tries per image download.")
    max_bytes: int = option(20_000_000, help="Largest image accepted, in bytes.")
    limit: int | None = option(None, help="Take only the first N posts.")
    per_host: int = option(DEFAULT_PER_HOST, help="Concurrent downloads from one host at most.", fingerprint=False)
    backoff: float = option(0.5, help="Seconds before the first retry; doubles with each retry.", fingerprint=False)
    batch_size: int = option(500, help="Posts per checkpoint: an interrupted run resumes from the last one.",
                             fingerprint=False)
    engine: str | Engine = engine_option()
    ray_address: str | None = ray_address_option()

    def params(self, source: Path, reader: str, ids: dict[str, Any] | None) -> dict[str, Any]:
        """The parameters the stage records (its checkpoint is kept only under the same ones): the resolved
        ``source``, its ``reader`` and the digest of the ids asked for, beside the options that change the rows."""
        return {"source": str(source), "format": reader, "timeout": self.timeout, "retries": self.retries,
                "max_bytes": self.max_bytes, "limit": self.limit, "ids": ids}
