"""Benchmarks: human-labelled images to prove a student on.

``BENCHMARKS`` is the registry (``visent benchmarks``): a benchmark is a reader of a folder or file into a
:class:`Benchmark` (image paths, their human labels, what was skipped with why, and the benchmark's own
cross-validation folds and named subsets when it has them). A spec is ``name=PATH`` or a bare path whose kind
is detected from its layout (:func:`detect_kind`). To add a benchmark, register a function
``(path: Path) -> Benchmark`` here and teach :func:`detect_kind` its layout.

The readers follow the benchmarks as distributed and as the literature uses them:

* ``twitter-i`` (You et al., AAAI 2015): ``images/`` + ``ground_truth/twitter_{five,four,three}_agrees.txt``,
  lines ``<file> <0|1>`` (1 = positive); the 5-, 4- and 3-agree subsets are reported side by side. With Campos
  et al.'s cross-validation splits beside them (``ground_truth/{five,four,three}_agrees/test<k>/test.txt``, from
  their repository), each subset's k-fold uses those splits.
* ``twitter-ii`` (Borth et al., ACM MM 2013; ``twitter_testing_2``): ``partition1..5/<n>.jpg`` +
  ``groundTruthLabel.txt`` (``Image<TAB>Sentiment``); only ids with an image; its folds are the partitions.
* ``fi`` (You et al., AAAI 2016) and ``emotionroi`` (Peng et al., 2016): one folder per emotion or a CSV
  ``path,emotion``; emotions map to polarity as the literature maps them (:data:`EMOTION_POLARITY`). T4SA
  2.0's copies (``path,class`` with ``emotion/<file>`` paths under ``images/`` beside the CSV) read the emotion
  from the path.
* ``mvsa``: MVSA-Single or -Multiple folders (the image labels); ``csv``: ``path,label``; ``folders``: one
  folder per class (negative / neutral / positive).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from visent.core.errors import VisentError
from visent.core.images import IMAGE_SUFFIXES
from visent.core.labels import normalise_label, read_labelled_images
from visent.core.registry import Registry

# Emotion categories to polarity, as the image-sentiment literature maps them (FI: Mikels' eight emotions, You et
# al. 2016; EmotionROI: Ekman's six, Peng et al. 2016, with joy and surprise positive)
FI_POLARITY = {"amusement": "positive", "awe": "positive", "contentment": "positive", "excitement": "positive",
               "anger": "negative", "disgust": "negative", "fear": "negative", "sadness": "negative"}
EMOTIONROI_POLARITY = {"joy": "positive", "surprise": "positive", "anger": "negative", "disgust": "negative",
                       "fear": "negative", "sadness": "negative"}
EMOTION_POLARITY = {"fi": FI_POLARITY, "emotionroi": EMOTIONROI_POLARITY}
TWITTER_I_SUBSETS = {"5-agree": "twitter_five_agrees.txt", "4-agree": "twitter_four_agrees.txt",
                     "3-agree": "twitter_three_agrees.txt"}
# Campos et al.'s cross-validation splits of each subset, as their repository distributes them beside the
# ground truth: ground_truth/<five|four|three>_agrees/test<k>/test.txt, lines "<file> <0|1>"
TWITTER_I_SPLITS = {"5-agree": "five_agrees", "4-agree": "four_agrees", "3-agree": "three_agrees"}


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


@BENCHMARKS.register("csv", "CSV of path,label: label names, or 0/1 with 0 = negative (a header row is optional)")
def _load_csv(path: Path) -> Benchmark:
    paths, labels, skipped = read_labelled_images(path)
    return Benchmark(path.name, paths, labels, skipped, kind="csv")


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
    return Benchmark(folder.name, paths, labels, skipped, kind="mvsa")


def _numeric(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)


@BENCHMARKS.register("twitter-i", "Twitter-I (You et al. 2015): images/ + ground_truth/twitter_{five,four,three}_agrees.txt")
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


@BENCHMARKS.register("twitter-ii", "Twitter-II (Borth et al. 2013): partition1..5/<n>.jpg + groundTruthLabel.txt")
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


def _emotion_reader(kind: str):
    polarity = EMOTION_POLARITY[kind]

    def load(path: Path) -> Benchmark:
        rows: list[tuple[str, str, str]] = []  # (path, emotion, where it was read)
        if path.is_file():
            with path.open(newline="", encoding="utf-8-sig") as handle:
                for number, row in enumerate(csv.reader(handle), start=1):
                    if len(row) < 2 or number == 1 and row[-1].strip().lower() in ("emotion", "label", "class"):
                        continue
                    image = Path(row[0].strip())
                    if not image.is_absolute():  # from the CSV's folder, or its images/ (T4SA 2.0's copies)
                        beside = path.parent / image
                        image = beside if beside.exists() or not (path.parent / "images" / image).exists() \
                            else path.parent / "images" / image
                    # the emotion is the label, or, where the label is a class number (T4SA 2.0's copies),
                    # the folder the image sits in
                    emotion = row[-1] if row[-1].strip().lower() in polarity else _emotion_folder(row[0]) or row[-1]
                    rows.append((str(image), emotion, f"{path}: row {number}"))
        else:
            for image in sorted(path.rglob("*")):
                if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                    rows.append((str(image), image.parent.name, str(image)))
        paths, labels, skipped = [], [], []
        for image, emotion, where in rows:
            label = polarity.get(emotion.strip().lower())
            if label is None:
                skipped.append(f"{where}: emotion {emotion.strip()!r} is not one of {', '.join(polarity)}")
                continue
            paths.append(image)
            labels.append(label)
        return Benchmark(path.name, paths, labels, skipped, kind=kind)

    return load


def _emotion_folder(path: str) -> str | None:
    """The emotion folder of a relative image path such as ``anger/232.jpg``, if its first part is an emotion."""
    first = Path(path.strip()).parts[0].lower() if path.strip() else ""
    return first if any(first in polarity for polarity in EMOTION_POLARITY.values()) else None


BENCHMARKS.register("fi", "FI (You et al. 2016): one folder per emotion, or CSV path,emotion; 8 emotions to polarity")(
    _emotion_reader("fi"))
BENCHMARKS.register("emotionroi", "EmotionROI (Peng et al. 2016): one folder per emotion, or CSV path,emotion")(
    _emotion_reader("emotionroi"))


@BENCHMARKS.register("folders", "one folder per class: negative/, positive/ (and neutral/), images inside")
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


def detect_kind(path: Path) -> str:
    """The benchmark kind of a bare path, from its layout (see the module docstring)."""
    if path.is_file():
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
                rows = [row for _, row in zip(range(2000), csv.reader(handle)) if row]
            values = {row[-1].strip().lower() for row in rows}
            # T4SA 2.0's copies: emotion/<file> and a class number, so most paths start with an emotion folder
            named = [folder for folder in map(_emotion_folder, (row[0] for row in rows[1:])) if folder]
            folders = set(named) if 2 * len(named) >= len(rows) - 1 > 0 else set()
            for kind, polarity in EMOTION_POLARITY.items():
                if values & set(polarity) and not values - set(polarity) - {"emotion", "label", "class"}:
                    return kind
                if folders and folders <= set(polarity) and folders - {"anger", "disgust", "fear", "sadness"}:
                    return kind
        return "csv"
    if (path / "ground_truth").is_dir():
        return "twitter-i"
    if (path / "groundTruthLabel.txt").is_file():
        return "twitter-ii"
    names = {p.name.lower() for p in path.iterdir() if p.is_dir()}
    for sub in [path, *(path / n for n in ("images", "emotion_dataset") if (path / n).is_dir())]:
        emotions = {p.name.lower() for p in sub.iterdir() if p.is_dir()}
        if emotions & {"amusement", "awe", "contentment", "excitement"}:
            return "fi"
        if emotions & {"joy", "surprise"} and emotions <= set(EMOTIONROI_POLARITY):
            return "emotionroi"
    if names and any(normalise_label(n) for n in names) and not (path / "labelResultAll.txt").exists():
        return "folders"
    return "mvsa"


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
    folder_kinds = {"mvsa", "twitter-i", "twitter-ii", "folders"}  # csv is a file; fi and emotionroi either
    if kind == "csv" and not path.is_file() or kind in folder_kinds and path.is_file():
        raise BenchmarkError(f"{path}: a {kind} benchmark is a {'file' if kind == 'csv' else 'folder'}")
    return BENCHMARKS.create(kind, **{"folder" if kind in folder_kinds else "path": path})
