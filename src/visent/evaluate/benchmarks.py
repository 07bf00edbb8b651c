"""Benchmarks: human-labelled images to prove a student on.

``BENCHMARKS`` is the registry (``visent benchmarks``): a benchmark is a reader of a folder or file into a
:class:`Benchmark` (image paths, their human labels, and what was skipped with why). A spec is ``name=PATH`` or a
bare path whose kind is detected (a folder is an MVSA folder, a file a ``path,label`` CSV). To add a benchmark,
register a function ``(path: Path) -> Benchmark`` here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from visent.core.errors import VisentError
from visent.core.labels import normalise_label
from visent.core.registry import Registry


class BenchmarkError(VisentError):
    """A benchmark spec cannot be read."""


@dataclass
class Benchmark:
    name: str
    paths: list[str]
    labels: list[str]
    skipped: list[str]  # lines or posts that could not be used, with the reason

    @property
    def has_neutral(self) -> bool:
        return "neutral" in self.labels


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


@BENCHMARKS.register("csv", "CSV of path,label: label names, or 0/1 with 0 = negative (a header row is optional)")
def _load_csv(path: Path) -> Benchmark:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [r for r in csv.reader(handle) if r and any(cell.strip() for cell in r)]
    if rows and normalise_label(rows[0][-1]) is None:
        header = [c.strip().lower() for c in rows[0]]
        rows = rows[1:]
        path_col = header.index("path") if "path" in header else 0
        label_col = header.index("label") if "label" in header else len(header) - 1
    else:
        path_col, label_col = 0, 1
    raw_labels = {r[label_col].strip() for r in rows if len(r) > label_col}
    binary_digits = raw_labels <= {"0", "1"}
    paths, labels, skipped = [], [], []
    for number, row in enumerate(rows, start=1):
        if len(row) <= max(path_col, label_col):
            skipped.append(f"{path}: row {number}: expected path,label")
            continue
        label = normalise_label(row[label_col], binary_digits=binary_digits)
        if label is None:
            skipped.append(f"{path}: row {number}: unknown label {row[label_col]!r}")
            continue
        image = Path(row[path_col].strip())
        paths.append(str(image if image.is_absolute() else path.parent / image))
        labels.append(label)
    return Benchmark(path.name, paths, labels, skipped)


@BENCHMARKS.register("mvsa", "MVSA-Single or MVSA-Multiple folder: data/<id>.jpg and labelResultAll.txt (image labels)")
def _load_mvsa(folder: Path) -> Benchmark:
    from visent.ingest.readers import find_mvsa_layout, read_mvsa_labels

    data_dir, labels_file = find_mvsa_layout(folder)
    if labels_file is None:
        raise BenchmarkError(f"{folder}: MVSA folder has no labelResultAll.txt, so it has no human labels to evaluate on")
    paths, labels, skipped = [], [], []
    for post_id, (_, image_label) in sorted(read_mvsa_labels(labels_file).items(), key=lambda kv: _numeric(kv[0])):
        if image_label is None:
            skipped.append(f"post {post_id}: annotators disagree on the image label")
            continue
        paths.append(str(data_dir / f"{post_id}.jpg"))
        labels.append(image_label)
    return Benchmark(folder.name, paths, labels, skipped)


def _numeric(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)


def load_benchmark(spec: str | Path) -> Benchmark:
    """The benchmark ``spec`` names: ``name=PATH`` (a benchmark of :data:`BENCHMARKS`) or a path whose kind is
    detected (a folder: MVSA; a file: a ``path,label`` CSV)."""
    text = str(spec)
    name, sep, rest = text.partition("=")
    if sep and name in BENCHMARKS:
        kind, path = name, Path(rest)
    else:
        path = Path(text)
        kind = "mvsa" if path.is_dir() else "csv"
    if not path.exists():
        raise BenchmarkError(f"{path}: benchmark not found; give NAME=PATH ({', '.join(BENCHMARKS)}), a CSV of "
                             "path,label or an MVSA folder")
    if kind == "mvsa" and not path.is_dir() or kind != "mvsa" and not path.is_file():
        raise BenchmarkError(f"{path}: a {kind} benchmark is a {'folder' if kind == 'mvsa' else 'file'}")
    return BENCHMARKS.create(kind, **{"folder" if kind == "mvsa" else "path": path})
