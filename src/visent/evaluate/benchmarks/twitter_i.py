"""The ``twitter-i`` benchmark (You et al., AAAI 2015): ``images/`` + ``ground_truth/twitter_{five,four,three}_agrees.txt``,
lines ``<file> <0|1>`` (1 = positive); the 5-, 4- and 3-agree subsets are reported side by side. With Campos et
al.'s cross-validation splits beside them (``ground_truth/{five,four,three}_agrees/test<k>/test.txt``, from their
repository), each subset's k-fold uses those splits. Detected by its ``ground_truth/`` folder."""

from __future__ import annotations

from pathlib import Path

from visent.core.labels import normalise_label
from visent.evaluate.benchmarks.registry import Benchmark, BenchmarkError, register_benchmark

TWITTER_I_SUBSETS = {"5-agree": "twitter_five_agrees.txt", "4-agree": "twitter_four_agrees.txt",
                     "3-agree": "twitter_three_agrees.txt"}
# Campos et al.'s cross-validation splits of each subset, as their repository distributes them beside the
# ground truth: ground_truth/<five|four|three>_agrees/test<k>/test.txt, lines "<file> <0|1>"
TWITTER_I_SPLITS = {"5-agree": "five_agrees", "4-agree": "four_agrees", "3-agree": "three_agrees"}


def is_twitter_i(path: Path) -> bool:
    return (path / "ground_truth").is_dir()


@register_benchmark("twitter-i", "Twitter-I (You et al. 2015): images/ + ground_truth/twitter_{five,four,three}_agrees.txt",
                    layout="folder", detect=is_twitter_i, order=10)
def _load_twitter_i(folder: Path) -> Benchmark:
    truth = folder / "ground_truth"
    images = folder / "images"
    if not truth.is_dir():
        raise BenchmarkError(f"{folder}: a Twitter-I folder holds ground_truth/twitter_five_agrees.txt (and the four "
                             "and three agree files) beside images/")
    paths: list[str] = []
    labels: list[str] = []
    index: dict[str, int] = {}
    skipped: list[str] = []
    subsets: dict[str, list[int]] = {}
    # widest first, so images keep the 3-agree file's order and the narrower subsets index into it
    for subset, filename in reversed(TWITTER_I_SUBSETS.items()):
        file = truth / filename
        if not file.is_file():
            skipped.append(f"{file}: missing, so no {subset} subset")
            continue
        members = []
        for number, line in enumerate(file.read_text(encoding="utf-8-sig").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            label = normalise_label(parts[-1], binary_digits=True) if len(parts) == 2 else None
            if label is None:
                skipped.append(f"{file}: line {number}: expected '<file> <0|1>', got {line.strip()[:80]!r}")
                continue
            name = parts[0]
            if name not in index:
                index[name] = len(paths)
                paths.append(str(images / name))
                labels.append(label)
            elif labels[index[name]] != label:
                skipped.append(f"{file}: line {number}: {name} is {label} here but {labels[index[name]]} in a wider "
                               "subset; the wider subset's label is kept")
            members.append(index[name])
        subsets[subset] = members
    if not subsets:
        raise BenchmarkError(f"{truth}: none of {', '.join(TWITTER_I_SUBSETS.values())} found")
    order = [name for name in TWITTER_I_SUBSETS if name in subsets]  # 5-, 4-, 3-agree, as the papers print them
    subset_folds = {}
    for subset in order:
        folds = _twitter_i_splits(truth / TWITTER_I_SPLITS[subset], [Path(paths[i]).name for i in subsets[subset]],
                                  subset, skipped)
        if folds is not None:
            subset_folds[subset] = folds
    return Benchmark(folder.name, paths, labels, skipped, kind="twitter-i", subsets={k: subsets[k] for k in order},
                     subset_folds=subset_folds)


def _twitter_i_splits(splits: Path, members: list[str], subset: str, skipped: list[str]) -> list[int] | None:
    """The fold of each of a subset's ``members`` (file names) from Campos et al.'s ``test<k>/test.txt`` files
    in ``splits``; None when there are none, or when they do not cover the subset (said in ``skipped``)."""
    tests = sorted((d for d in splits.glob("test*") if (d / "test.txt").is_file() and d.name[4:].isdigit()),
                   key=lambda d: int(d.name[4:])) if splits.is_dir() else []
    if not tests:
        return None
    fold_of: dict[str, int] = {}
    for fold, directory in enumerate(tests):
        for parts in map(str.split, (directory / "test.txt").read_text(encoding="utf-8-sig").splitlines()):
            if parts:
                fold_of.setdefault(parts[0], fold)
    missing = [name for name in members if name not in fold_of]
    if missing:
        skipped.append(f"{splits}: {len(missing)} of the {subset} subset's images are in no test<k>/test.txt (first: "
                       f"{missing[0]}); the subset is split by stratified folds instead")
        return None
    return [fold_of[name] for name in members]
