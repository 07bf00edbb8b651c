"""The ``csv`` benchmark: a CSV of ``path,label`` (label names, or 0/1 with 0 = negative); any file no other
benchmark claims."""

from __future__ import annotations

from pathlib import Path

from visent.core.labels import read_labelled_images
from visent.core.registry import CATCH_ALL
from visent.evaluate.benchmarks.registry import Benchmark, register_benchmark


def is_file(path: Path) -> bool:
    return path.is_file()


@register_benchmark("csv", "CSV of path,label: label names, or 0/1 with 0 = negative (a header row is optional)",
                    layout="file", detect=is_file, order=CATCH_ALL)
def _load_csv(path: Path) -> Benchmark:
    paths, labels, skipped = read_labelled_images(path)
    return Benchmark(path.name, paths, labels, skipped, kind="csv")
