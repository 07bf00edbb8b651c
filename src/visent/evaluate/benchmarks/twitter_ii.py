"""The ``twitter-ii`` benchmark (Borth et al., ACM MM 2013; ``twitter_testing_2``): ``partition1..5/<n>.jpg`` +
``groundTruthLabel.txt`` (``Image<TAB>Sentiment``); only ids with an image; its folds are the partitions.
Detected by its ``groundTruthLabel.txt``."""

from __future__ import annotations

import re
from pathlib import Path

from visent.core.images import IMAGE_SUFFIXES
from visent.core.labels import normalise_label
from visent.evaluate.benchmarks.registry import Benchmark, BenchmarkError, register_benchmark


def is_twitter_ii(path: Path) -> bool:
    return (path / "groundTruthLabel.txt").is_file()


@register_benchmark("twitter-ii", "Twitter-II (Borth et al. 2013): partition1..5/<n>.jpg + groundTruthLabel.txt",
                    layout="folder", detect=is_twitter_ii, order=20)
def _load_twitter_ii(folder: Path) -> Benchmark:
    truth = folder / "groundTruthLabel.txt"
    if not truth.is_file():
        raise BenchmarkError(f"{folder}: a Twitter-II folder holds groundTruthLabel.txt beside partition1..5/")
    located: dict[str, tuple[Path, int]] = {}
    partitions = sorted((p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"partition\d+", p.name)),
                        key=lambda p: int(p.name[len("partition"):]))
    for fold, partition in enumerate(partitions):
        for image in partition.iterdir():
            if image.suffix.lower() in IMAGE_SUFFIXES:
                located.setdefault(image.name, (image, fold))
    paths, labels, folds, skipped = [], [], [], []
    missing = 0
    for number, line in enumerate(truth.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = line.split()
        if not parts or number == 1 and parts[0].lower() == "image":
            continue
        label = normalise_label(parts[-1]) if len(parts) == 2 else None
        if label is None:
            skipped.append(f"{truth}: line {number}: expected '<image><TAB><sentiment>', got {line.strip()[:80]!r}")
            continue
        if parts[0] not in located:
            missing += 1  # the distribution removed repeated images: ids without an image are not used
            continue
        image, fold = located[parts[0]]
        paths.append(str(image))
        labels.append(label)
        folds.append(fold)
    if missing:
        skipped.append(f"{truth}: {missing} labelled ids have no image in the partitions (removed repeats)")
    return Benchmark(folder.name, paths, labels, skipped, kind="twitter-ii", folds=folds or None)
