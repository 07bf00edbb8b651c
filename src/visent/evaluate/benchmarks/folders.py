"""The ``folders`` benchmark: one folder per class (negative / neutral / positive), images inside; detected by a
class folder (and no MVSA label file)."""

from __future__ import annotations

from pathlib import Path

from visent.core.images import IMAGE_SUFFIXES
from visent.core.labels import normalise_label
from visent.evaluate.benchmarks.registry import Benchmark, register_benchmark


def is_class_folders(path: Path) -> bool:
    if path.is_file():
        return False
    names = {p.name.lower() for p in path.iterdir() if p.is_dir()}
    return bool(names) and any(normalise_label(n) for n in names) and not (path / "labelResultAll.txt").exists()


@register_benchmark("folders", "one folder per class: negative/, positive/ (and neutral/), images inside",
                    layout="folder", detect=is_class_folders, order=50)
def _load_folders(folder: Path) -> Benchmark:
    paths, labels, skipped = [], [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = normalise_label(sub.name)
        if label is None:
            skipped.append(f"{sub}: not a class folder (negative, neutral or positive)")
            continue
        for image in sorted(sub.rglob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                paths.append(str(image))
                labels.append(label)
    return Benchmark(folder.name, paths, labels, skipped, kind="folders")
