"""Figures the literature publishes for the benchmarks visent reads, shown beside visent's own.

``evaluate`` and ``report`` list the rows for the benchmark they score (matched by its registry name, and by
subset where the benchmark has subsets), always labelled as published: visent does not re-measure them, and
their models, training data and protocols differ from the student's (each row says which). A row goes in
only with its source in hand: the value as the paper prints it, the paper's citation and DOI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PublishedFigure:
    benchmark: str  # registry name of the benchmark (BENCHMARKS), e.g. "twitter-i"
    subset: str | None  # e.g. "5-agree"; None: the whole benchmark
    protocol: str  # how the figure was measured, in the paper's terms
    metric: str  # "accuracy": binary, positive vs negative
    value: float
    model: str  # what was scored, and what it learnt from
    citation: str
    doi: str


PUBLISHED: tuple[PublishedFigure, ...] = (
    PublishedFigure(
        benchmark="twitter-i", subset="5-agree", protocol="zero-shot: the student as trained, no benchmark labels",
        metric="accuracy", value=0.878,
        model="ViT student trained on ~1.5M tweets' images labelled by a text teacher",
        citation="Serra, Carrara, Tesconi, Falchi. The Emotions of the Crowd: Learning Image Sentiment from Tweets "
                 "via Cross-modal Distillation. ECAI 2023",
        doi="10.3233/FAIA230503"),
)


def published_for(benchmark: str, subsets: list[str] | None = None) -> list[dict[str, Any]]:
    """The published rows for a benchmark kind: whole-benchmark rows, and rows of the named ``subsets`` (all of
    the kind's subset rows when ``subsets`` is None)."""
    return [asdict(row) for row in PUBLISHED
            if row.benchmark == benchmark and (row.subset is None or subsets is None or row.subset in subsets)]
