"""The model directory: everything ``predict`` needs, and a card that says how the model was made.

Layout::

    config.json     backbone name, backbone weights (when fine-tuned), test-time flip, classes
    head.npz        the student head (standardisation + logistic weights)
    backbone.pt     fine-tuned backbone weights (only when the backbone was fine-tuned)
    int8-calibration.json  activation ranges of the int8 backbone (only with runtime "onnx-int8")
    backbone.onnx   the backbone's network as run for the training features (ONNX runtimes): predict runs it
                    without PyTorch, export or quantisation
    metrics.json    training counts and validation figures against the teacher's labels
    MODEL_CARD.md   data, teacher, thresholds, counts, in words
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from visent.core.errors import VisentError
from visent.core.labels import CLASSES
from visent.core.status import OK, ImageStatus, first_error
from visent.core.store import atomic_write_bytes, atomic_write_json, atomic_write_text
from visent.core.version import __version__
from visent.model.head import StudentHead
from visent.model.inputs import expand_inputs, image_files
from visent.signals import signal_features
from visent.teach import Teacher, load_teacher

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_MODEL = "default"
CHUNK = 2048  # images embedded per call: bounds memory (features, statuses) for any number of inputs


class ModelError(VisentError):
    """A model directory is missing, incomplete or damaged, or its config.json names a file outside it."""


@dataclass
class ModelConfig:
    backbone: str = "efficientnet-lite0"
    backbone_weights: str | None = None  # file name inside the model directory, or None for packaged weights
    tta: bool | str = False  # test-time augmentation: False/"none", True/"flip" or "crops"
    runtime: str = "torch"  # how the backbone runs: "torch", "onnx" or "onnx-int8" (see visent.embed.RUNTIMES)
    int8_calibration: str | None = None  # file name inside the model directory: the int8 activation ranges
    int8_recipe: int = 1  # how the int8 network is quantised (visent.embed.onnx.INT8_RECIPES); 1 when not recorded
    graph: dict[str, Any] | None = None  # the carried network: file, input spec, feature identity (GraphBackbone)
    extra_backbones: list[str] = field(default_factory=list)  # frozen packaged backbones whose features are appended
    signals: list[str] = field(default_factory=list)  # image signals fused with the backbone (visent.embed.SIGNALS)
    signal_teacher: str = "vader"  # the text teacher that scores text read in images (signal "ocr")
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    visent_version: str = __version__


def packaged_model_dir(name: str = DEFAULT_MODEL) -> Path:
    return Path(str(resources.files("visent") / "resources" / "models" / name))


def resolve_model_dir(model: str | Path) -> Path:
    """A model directory path, or the name of a model shipped with visent (``default``)."""
    path = Path(model)
    if (path / "config.json").exists():
        return path
    if isinstance(model, str) and "/" not in model and (packaged_model_dir(model) / "config.json").exists():
        return packaged_model_dir(model)
    if (path / "manifest.json").is_file():  # a dataset given where its model was meant
        beside = path.with_name(path.name.removesuffix("-dataset"))
        made = (f"`visent build` made its model beside it: {beside}; " if path.name.endswith("-dataset")
                and (beside / "config.json").is_file() else "")
        raise ModelError(f"{model} is a visent dataset, not a model: {made}give a model directory, or train one on "
                         f"it with `visent train {model} --out MODEL`")
    raise ModelError(f"{model}: no visent model here (config.json missing); train one with `visent build SOURCE --out DIR`"
                     " or use the shipped model `default`")


class VisentModel:
    """A trained visual student: backbone + head. ``predict_proba(paths)`` gives (n, 3) probabilities."""

    def __init__(self, config: ModelConfig, head: StudentHead, directory: Path | None = None,
                 metrics: dict[str, Any] | None = None, *, backbone: Any = None,
                 extra_backbones: dict[str, Any] | None = None):
        """``backbone`` and ``extra_backbones`` (by name) are networks already loaded for ``config``'s backbones
        (training's, before the directory carries them); by default each is loaded when first used."""
        self.config = config
        self.head = head
        self.directory = directory
        self.metrics = metrics or {}
        self._backbone = backbone
        self._extra_backbones: dict[str, Any] = dict(extra_backbones or {})
        self._signal_teacher: Teacher | None = None

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, *, check: bool = True) -> "VisentModel":
        """The model of a directory (or ``"default"``). Every file its config.json names must lie inside the
        directory; with ``check`` the network it carries is run once on a small image, so a damaged directory is a
        :class:`ModelError` naming the file here rather than a failure at the first prediction."""
        from visent.embed.onnx import ModelFileError

        directory = resolve_model_dir(model)
        config_path = directory / "config.json"
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            config = ModelConfig(**{k: v for k, v in raw.items() if k in ModelConfig.__dataclass_fields__})
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"{config_path}: not a visent model config ({' '.join(str(exc).split())}); copy the "
                             "whole model directory again, or train it again") from None
        if tuple(config.classes) != CLASSES:
            raise ModelError(f"{config_path}: the model predicts {config.classes}, not visent's "
                             f"{list(CLASSES)}; it was not made by this visent")
        head_path = directory / "head.npz"
        if not head_path.exists():
            raise ModelError(f"{head_path} is missing; the model directory is incomplete, train it again")
        metrics_path = directory / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
        try:
            head = StudentHead.load(head_path)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ModelError(f"{head_path}: not a visent student head ({type(exc).__name__}); the model directory is "
                             "damaged: copy it again, or train it again") from None
        loaded = cls(config, head, directory, metrics)
        try:
            loaded.carried_paths()
            if check and loaded.carries_graph:
                loaded.feature_backbone.check()
        except ModelFileError as error:
            raise ModelError(str(error)) from None
        return loaded

    @property
    def carries_graph(self) -> bool:
        """Whether the features come from the ONNX graph the model directory carries (no PyTorch)."""
        return bool(self.config.graph) and self.config.runtime != "torch" and self.directory is not None

    def carried_paths(self) -> dict[str, Path]:
        """The files of the model directory the config names (:meth:`carried_files`) by their config field, each
        checked to lie inside the directory (:func:`visent.embed.onnx.model_file`)."""
        from visent.embed.onnx import model_file

        if self.directory is None:
            return {}
        fields = {"backbone_weights": self.config.backbone_weights, "int8_calibration": self.config.int8_calibration,
                  "graph.file": (self.config.graph or {}).get("file") if isinstance(self.config.graph, dict) else None}
        return {field: model_file(self.directory, name, field) for field, name in fields.items() if name}

    def check(self) -> None:
        """Score one small grey image through the very path :meth:`predict` takes (uncached): a model that cannot
        (a damaged network, a head that does not fit its features) is a :class:`ModelError` naming its directory.
        ``visent serve`` runs it before it answers its first request."""
        from PIL import Image

        where = self.directory or "the model in memory"
        try:
            row = self.predict([Image.new("RGB", (32, 32), (128, 128, 128))], cache=False).to_pylist()[0]
        except VisentError as error:
            raise ModelError(str(error)) from None
        except Exception as exc:
            detail = " ".join(str(exc).split())[:200]
            raise ModelError(f"{where}: the model cannot score an image ({type(exc).__name__}: {detail}); the model "
                             "directory is damaged: copy it again from where it was made, or train it again") from None
        if row["status"] != "ok" or row["label"] not in CLASSES:
            raise ModelError(f"{where}: the model cannot score an image ({row['error'] or 'no probabilities'}); the "
                             "model directory is damaged: copy it again from where it was made, or train it again")

    def trained_on(self) -> tuple[Any, str]:
        """The dataset (:class:`visent.core.store.Dataset`) this model was trained on, named in its metrics.json,
        when it is still on this machine; else None and why, in a sentence."""
        from visent.core.store import Dataset, DatasetError

        named = self.metrics.get("dataset")
        if not named:
            return None, ("The model does not name its dataset (no `dataset` in metrics.json): report on the dataset "
                          "directory with `--model` to see the data.")
        candidates = [Path(named)]
        if not Path(named).is_absolute() and self.directory is not None:
            candidates.append(Path(self.directory).parent / named)
            candidates.append(Path(self.directory).parent / Path(named).name)
        for candidate in candidates:
            if (candidate / "manifest.json").exists():
                try:
                    return Dataset(candidate), ""
                except DatasetError as error:
                    return None, f"The model's dataset {candidate} cannot be read: {error}"
        return None, (f"The model's dataset ({named}) is not on this machine: the data sections need it; report on a "
                      "copy with `visent report DATASET --model MODEL`.")

    def carried_files(self) -> list[str]:
        """The files of the model directory the config names besides the head: fine-tuned backbone weights, the
        int8 calibration, the carried ONNX network."""
        names = [self.config.backbone_weights, self.config.int8_calibration,
                 (self.config.graph or {}).get("file")]
        return [name for name in names if name]

    def save(self, directory: str | Path, card: str | None = None) -> Path:
        """Write the model to ``directory``; saved elsewhere than it was loaded from, the files it carries
        (:meth:`carried_files`) are copied along."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.directory is not None and self.directory.resolve() != directory.resolve():
            for source in self.carried_paths().values():
                atomic_write_bytes(directory / source.relative_to(self.directory), source.read_bytes())
        self.head.save(directory / "head.npz")
        atomic_write_json(directory / "metrics.json", self.metrics)
        if card is not None:
            atomic_write_text(directory / "MODEL_CARD.md", card)
        # config.json last: its presence marks a complete model directory
        atomic_write_json(directory / "config.json", asdict(self.config))
        self.directory = directory
        return directory

    @property
    def backbone(self):
        if self._backbone is None:
            from visent.embed import load_backbone

            weights = None
            if self.config.backbone_weights:
                if self.directory is None:
                    raise ModelError("a fine-tuned model must be loaded from its directory")
                weights = self.carried_paths()["backbone_weights"]
            self._backbone = load_backbone(self.config.backbone, weights=weights)
        return self._backbone

    @property
    def feature_backbone(self):
        """What computes the main features: the network the directory carries (an ONNX graph, no PyTorch), else
        :attr:`backbone`."""
        if self.carries_graph:
            from visent.embed.graph import GraphBackbone

            return GraphBackbone.from_record(self.directory, self.config.graph)
        return self.backbone

    def features(self, paths: Sequence[str | Path], hashes: Sequence[str] | None = None, *,
                 cache: bool = True, batch_size: int = 32) -> tuple[np.ndarray, list[ImageStatus]]:
        """What the head reads, (n, dim): the backbone's pooled features, then the model's signals, and a status
        per image (its first error, if any pass had one). Training and prediction both come through here. A row
        is NaN when its image could not be read."""
        from visent.embed import FeatureCache, embed_images
        from visent.embed.cached import file_hashes

        calibration = None
        if self.config.int8_calibration:
            if self.directory is None:
                raise ModelError("an int8 model must be loaded from its directory")
            calibration = self.carried_paths()["int8_calibration"]
        paths = [Path(p) if p is not None else None for p in paths]
        if hashes is None and (self.config.extra_backbones or self.config.signals):
            hashes = file_hashes(paths)[0]  # once, for every pass below
        features, status = embed_images(paths, hashes, self.feature_backbone, cache=FeatureCache() if cache else None,
                                        batch_size=batch_size, tta=self.config.tta, runtime=self.config.runtime,
                                        int8_calibration=calibration, int8_recipe=self.config.int8_recipe)
        blocks = [features]
        for name in self.config.extra_backbones:
            # The int8 calibration belongs to the main backbone; extra backbones run in fp32 ONNX then.
            runtime = "onnx" if self.config.runtime == "onnx-int8" else self.config.runtime
            extra, extra_status = embed_images(paths, hashes, self.extra_backbone(name),
                                               cache=FeatureCache() if cache else None, batch_size=batch_size,
                                               tta=self.config.tta, runtime=runtime)
            blocks.append(extra)
            status = first_error(status, extra_status)
        if self.config.signals:
            extra, extra_status = signal_features(self.config.signals, paths, hashes, cache=cache,
                                                  teacher=self.signal_teacher)
            blocks.append(extra)
            status = first_error(status, extra_status)
        return (np.hstack(blocks) if len(blocks) > 1 else features), status

    @property
    def signal_teacher(self) -> Teacher:
        """The text teacher that scores text read in images (signal "ocr"), loaded once."""
        if self._signal_teacher is None:
            self._signal_teacher = load_teacher(self.config.signal_teacher)
        return self._signal_teacher

    def extra_backbone(self, name: str) -> Any:
        """One of ``config.extra_backbones``, loaded once with its packaged weights (frozen)."""
        if name not in self._extra_backbones:
            from visent.embed import load_backbone

            self._extra_backbones[name] = load_backbone(name)
        return self._extra_backbones[name]

    def adapt(self, images: Sequence[str | Path], labels: Sequence[Any], *, seed: int = 0, batch_size: int = 32,
              source: str | None = None, assess: bool = True) -> "VisentModel":
        """A new model whose head is fitted to human ``labels`` (names negative / neutral / positive, or 0 / 1 for
        negative / positive) of ``images``, starting from this student (:mod:`visent.model.adapt`): the classes
        the labels do not show keep the student's weights. Images that cannot be read and labels that are not a
        class are left out and listed with their reasons in ``new.metrics["adaptation"]["skipped"]``; the rest
        (how many labels per class, C and how it was chosen, ``source``) is recorded there too. With ``assess``
        (the default) the record also says what the labels bought, by cross-validation over them
        (:func:`visent.model.adapt.assess_adaptation`): balanced accuracy and ECE ``before`` and ``after``, the
        ``temperature`` decision and ``warnings``; the features are computed once for it. The new model shares
        this one's backbone; :meth:`save` writes it with the files it carries."""
        import copy

        from visent.core.labels import CLASS_INDEX, digits_are_binary, normalise_label
        from visent.model.adapt import adapt_head

        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        digits = digits_are_binary(labels)
        classes = [normalise_label(label, binary_digits=digits) for label in labels]
        skipped = [f"{image}: unknown label {label!r} (negative, neutral, positive; or 0/1)"
                   for image, label, name in zip(images, labels, classes) if name is None]
        keep = [i for i, name in enumerate(classes) if name is not None]
        features, statuses = self.features([images[i] for i in keep], batch_size=batch_size)
        readable = ~np.isnan(features).any(axis=1)
        skipped += [f"{images[i]}: {status.reason or 'unreadable'}" for i, status, ok in zip(keep, statuses, readable)
                    if not ok]
        y = np.array([CLASS_INDEX[classes[i]] for i, ok in zip(keep, readable) if ok], dtype=int)
        if len(y) == 0:
            raise ModelError("no labelled image could be used" + (f" ({skipped[0]})" if skipped else ""))
        head, info = adapt_head(self.head, features[readable], y, seed=seed, assess=assess)
        metrics = copy.deepcopy(self.metrics)
        metrics["adaptation"] = {**info, "source": source, "from_model": str(self.directory or "in memory"),
                                 "skipped": skipped, "n_skipped": len(skipped)}
        new = VisentModel(copy.deepcopy(self.config), head, self.directory, metrics)
        new._backbone, new._extra_backbones = self._backbone, self._extra_backbones
        return new

    def predict_proba(self, paths: Sequence[str | Path], **kwargs: Any) -> tuple[np.ndarray, list[ImageStatus]]:
        """Probabilities (n, 3) in CLASSES order and a status per image, "ok" or "error" as in :meth:`predict`'s
        rows (whether the features came from the cache is not the caller's business); unreadable images give NaN
        rows."""
        features, statuses = self.features(paths, **kwargs)
        statuses = [OK if status.ok else status for status in statuses]  # "cached" is an "ok" here
        probs = np.full((len(paths), len(CLASSES)), np.nan)
        ok = ~np.isnan(features).any(axis=1)
        if ok.any():
            probs[ok] = self.head.predict_proba(features[ok])
        return probs, statuses

    def predict(self, images: Sequence[Any], *, batch_size: int = 32, cache: bool = True) -> "pa.Table":
        """A table with one row per image: ``input``, the three probabilities, ``label``, ``status`` ("ok" or
        "error") and ``error``. ``images`` holds paths (folders and ``@list.txt`` files expand to their images,
        as on the command line), PIL images, arrays (H, W[, 3 or 4]; uint8, or floats in 0..1) or the bytes of
        image files; in-memory images are named ``<image i>``. An image that cannot be read keeps its row.
        ``cache`` keeps the features of image files in the feature cache; those of in-memory images are never kept."""
        import pyarrow as pa

        names: list[str] = []
        items: list[tuple[str, str | None]] = []
        in_memory: list[bool] = []
        with image_files(images) as files:
            for (name, path, problem), given in zip(files, images):
                if isinstance(given, (str, Path)):
                    expanded = expand_inputs([given])
                    names += [p for p, _ in expanded]
                    items += expanded
                    in_memory += [False] * len(expanded)
                else:
                    names.append(name)
                    items.append((path or name, problem))
                    in_memory.append(True)
            probs = np.full((len(items), len(CLASSES)), np.nan)
            statuses: list[ImageStatus] = [ImageStatus.failure("")] * len(items)
            # files are cached by content as everywhere; in-memory images (uploads to a server) are not kept
            for memory, use_cache in ((False, cache), (True, False)):
                where = [i for i, m in enumerate(in_memory) if m == memory]
                for start in range(0, len(where), CHUNK):
                    chunk = where[start:start + CHUNK]
                    probs[chunk], scored = self.score_items([items[i] for i in chunk], batch_size=batch_size,
                                                            cache=use_cache)
                    for i, status in zip(chunk, scored):
                        # an in-memory image's temporary file goes by the image's name
                        statuses[i] = status.renamed(names[i]) if memory else status
        rows = prediction_rows(names, probs, statuses)
        for row in rows:
            row["input"] = row.pop("path")
        columns = ["input", *CLASSES, "label", "status", "error"]
        types = [pa.string(), *[pa.float64()] * len(CLASSES), pa.string(), pa.string(), pa.string()]
        return pa.table({c: pa.array([r[c] for r in rows], type=t) for c, t in zip(columns, types)})

    def score_items(self, items: Sequence[tuple[str, str | None]], *, batch_size: int = 32,
                    cache: bool = True) -> tuple[np.ndarray, list[ImageStatus]]:
        """Probabilities (n, 3) and a status per ``(path, problem)`` pair as
        :func:`visent.model.inputs.expand_inputs` gives them, all embedded in one call; a pair with a problem
        gets a NaN row and that problem as its error."""
        readable = [i for i, (_, problem) in enumerate(items) if problem is None]
        probs = np.full((len(items), len(CLASSES)), np.nan)
        statuses = [ImageStatus.failure(problem or "") for _, problem in items]
        if readable:
            p, st = self.predict_proba([items[i][0] for i in readable], batch_size=batch_size, cache=cache)
            probs[readable] = p
            for i, s in zip(readable, st):
                statuses[i] = s
        return probs, statuses

    def predict_rows(self, items: Sequence[tuple[str, str | None]], *, batch_size: int = 32,
                     cache: bool = True) -> list[dict[str, Any]]:
        """A row per ``(path, problem)`` pair as :func:`visent.model.inputs.expand_inputs` gives them, all
        embedded in one call: ``path``, the three probabilities, ``label``, ``status`` ("ok" or "error") and
        ``error`` (why the image could not be used)."""
        probs, statuses = self.score_items(items, batch_size=batch_size, cache=cache)
        return prediction_rows([path for path, _ in items], probs, statuses)


def prediction_rows(paths: Sequence[str], probs: np.ndarray, statuses: Sequence[ImageStatus]) -> list[dict[str, Any]]:
    """The public rows of predictions: ``path``, the three probabilities, ``label``, ``status`` ("ok", or
    "error" when the image has no probabilities) and ``error`` (the status's message, for a user)."""
    rows = []
    for path, prob, status in zip(paths, probs, statuses):
        ok = not np.isnan(prob).any()
        row: dict[str, Any] = {"path": path}
        row.update({name: (float(v) if ok else None) for name, v in zip(CLASSES, prob)})
        row["label"] = CLASSES[int(np.argmax(prob))] if ok else None
        row["status"] = "ok" if ok else "error"
        row["error"] = "" if ok else (status.message or "image could not be read")
        rows.append(row)
    return rows


def load(model: str | Path = DEFAULT_MODEL, *, check: bool = True) -> VisentModel:
    """A trained student: a model directory, or the name of a model shipped with visent (``"default"``); ``check``
    as :meth:`VisentModel.load`."""
    return VisentModel.load(model, check=check)
