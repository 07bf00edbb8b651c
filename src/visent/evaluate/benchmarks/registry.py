"""The registry of benchmarks, the detection of a bare path's kind, and :func:`load_benchmark`.

A benchmark is one registration, :func:`register_benchmark`, in the module of the benchmark: its reader (a function
``(path: Path) -> Benchmark`` that gives the images, their human labels, what was skipped with why, and the
benchmark's own folds and named subsets when it has them), its description (``visent benchmarks``), whether it
is a file, a folder or either (``layout``), and its ``detect`` test with the ``order`` in which it is tried.
The orders of the benchmarks visent ships: ``twitter-i`` 10, ``twitter-ii`` 20, ``fi`` 30, ``emotionroi`` 40,
``folders`` 50; ``mvsa`` (any other folder) and ``csv`` (any other file) last (1000). A benchmark that names no
order is tried at 100. Published figures for a benchmark, where the literature has them, are rows of
:mod:`visent.evaluate.published`, matched by its registry name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from visent.core.errors import VisentError
from visent.core.registry import DEFAULT_ORDER, Registry

LAYOUTS = ("file", "folder", "either")


class BenchmarkError(VisentError):
    """A benchmark spec cannot be read."""


@dataclass
class Benchmark:
    name: str
    paths: list[str]
    labels: list[str]
    skipped: list[str]  # lines or posts that could not be used, with the reason
    kind: str = "csv"  # the registry name it was read as: published figures are looked up by it
    folds: list[int] | None = None  # the benchmark's own cross-validation fold of each image (0-based)
    subsets: dict[str, list[int]] = field(default_factory=dict)  # named subsets reported side by side
    subset_folds: dict[str, list[int]] = field(default_factory=dict)  # a subset's own folds, one per member

    @property
    def has_neutral(self) -> bool:
        return "neutral" in self.labels


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")

Load = Callable[[Path], Benchmark]


def register_benchmark(name: str, description: str = "", *, layout: str = "either",
                       detect: Callable[[Path], bool] | None = None,
                       order: int = DEFAULT_ORDER) -> Callable[[Load], Load]:
    """Register the decorated reader ``(path: Path) -> Benchmark`` as the benchmark ``name``.

    ``layout``: what the benchmark is, "file", "folder" or "either" (:func:`load_benchmark` refuses the other);
    ``detect(path)`` is True when a bare path (an existing file or folder) is this benchmark; it must be cheap.
    ``order`` places it among the other benchmarks' tests (see the module docstring).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    return BENCHMARKS.register(name, description, detect=detect, order=order, layout=layout)


def detect_kind(path: Path) -> str:
    """The benchmark kind of a bare path, from its layout: the first benchmark, by order, whose test holds."""
    return BENCHMARKS.detect(Path(path)) or "csv"


def load_benchmark(spec: str | Path) -> Benchmark:
    """The benchmark ``spec`` names: ``name=PATH`` (a benchmark of :data:`BENCHMARKS`) or a path whose kind is
    detected from its layout (:func:`detect_kind`)."""
    text = str(spec)
    name, sep, rest = text.partition("=")
    if sep and name in BENCHMARKS:
        kind, path = name, Path(rest)
    else:
        path = Path(text)
        kind = detect_kind(path) if path.exists() else "csv"
    if not path.exists():
        raise BenchmarkError(f"{path}: benchmark not found; give NAME=PATH ({', '.join(BENCHMARKS)}), a CSV of "
                             "path,label or a benchmark folder")
    layout = BENCHMARKS.info(kind).get("layout", "either")
    if layout == "file" and not path.is_file() or layout == "folder" and path.is_file():
        raise BenchmarkError(f"{path}: a {kind} benchmark is a {layout}")
    benchmark = BENCHMARKS.create(kind, path)
    benchmark.kind = kind  # the name published figures are looked up by, whatever the reader set
    return benchmark
