"""The sentiment maps of a student's prediction: :func:`explain` (one image), :func:`explain_images` (files,
folders and lists into a folder of overlays and a CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from visent.core.errors import UsageError
from visent.core.images import load_image
from visent.core.labels import CLASSES
from visent.embed.features import tta_mode
from visent.embed.preprocess import five_crops
from visent.explain.cam import (
    GRID,
    METHODS,
    ExplainError,
    cam_maps,
    contrastive_weights,
    gradcam_maps,
    has_pooled_maps,
    split_columns,
)
from visent.explain.explanation import DISPLAY_SIZE, Explanation

if TYPE_CHECKING:
    from visent.model import VisentModel

__all__ = ["explain", "explain_images"]


def explain(model: VisentModel, image: Any, *, method: str = "auto") -> Explanation:
    """Predict one image (a path, a PIL image or an array) and compute its sentiment maps with ``method``."""
    from visent.model.inputs import image_files

    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    with image_files([image]) as items:
        (name, path, problem), = items
        if problem is not None:
            raise ExplainError(f"{name}: {problem}")
        given_path = isinstance(image, (str, Path))
        probs, status = model.predict_proba([path], cache=given_path)
        if np.isnan(probs).any():  # an in-memory image's temporary file goes by the image's name
            raise ExplainError((status[0] if given_path else status[0].renamed(name)).message
                               or "image could not be read")
        backbones = [model.backbone, *(model.extra_backbone(n) for n in model.config.extra_backbones)]
        chosen = _choose_method(backbones, method)
        head = model.head
        weights = contrastive_weights(head.coef_, head.scale_, head.temperature_)
        offset = -(weights @ head.mean_.astype(np.float32))  # features @ weights.T + offset = contrastive logits
        maps = np.zeros((len(CLASSES), GRID, GRID), np.float32)
        mode = tta_mode(model.config.tta)
        for backbone, columns in zip(backbones, split_columns([b.dim for b in backbones])):
            maps += _backbone_maps(backbone, Path(path), weights[:, columns], offset / len(backbones), chosen, mode)
        shown = load_image(path, DISPLAY_SIZE)
        shown.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE), Image.Resampling.LANCZOS)
    return Explanation(image=shown, probabilities={c: float(p) for c, p in zip(CLASSES, probs[0])}, maps=maps,
                       method=chosen, source=name)


def explain_images(model: VisentModel | str | Path, inputs: list[str], out: str | Path, *,
                   method: str = "auto") -> list[dict[str, Any]]:
    """Explain every image of ``inputs`` (files, folders, ``@list.txt``) into ``out``: the overlays and panel of
    each image (see :meth:`Explanation.save`) and ``explanations.csv``, one row per image in input order with
    its probabilities, label, method, panel file, status and error. An unreadable image keeps its row."""
    import csv

    from visent.core.progress import progress
    from visent.core.store import atomic_open
    from visent.model import VisentModel
    from visent.model.inputs import expand_inputs

    model = model if isinstance(model, VisentModel) else VisentModel.load(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = expand_inputs(inputs)
    stems: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    with progress("explain", len(items)) as advance:
        for path, problem in items:
            row: dict[str, Any] = {"path": path, **{c: None for c in CLASSES}, "label": None, "method": None,
                                   "panel": "", "status": "error", "error": problem or ""}
            if problem is None:
                stem = Path(path).stem or "image"
                stems[stem] = stems.get(stem, 0) + 1
                stem = stem if stems[stem] == 1 else f"{stem}-{stems[stem]}"  # same names from other folders
                try:
                    explanation = explain(model, path, method=method)
                except ExplainError as error:
                    row["error"] = str(error)
                else:
                    files = explanation.save(out, stem)
                    row.update(explanation.probabilities, label=explanation.label, method=explanation.method,
                               panel=files[-1].name, status="ok")
            rows.append(row)
            advance(1)
    columns = ["path", *CLASSES, "label", "method", "panel", "status", "error"]
    with atomic_open(out / "explanations.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k]))
                             for k in columns})
    return rows


def _choose_method(backbones: list, method: str) -> str:
    probe = [has_pooled_maps(b) for b in backbones]
    if method == "cam" and not all(probe):
        bad = [b.name for b, ok in zip(backbones, probe) if not ok]
        raise ExplainError(f"class activation maps need mean-pooled features; {', '.join(bad)} has none: use "
                           "method 'gradcam' (or 'auto')")
    if method == "auto":
        return "cam" if all(probe) else "gradcam"
    return method


def _views(backbone, path: Path, mode: str) -> list[tuple[torch.Tensor, tuple[int, int, int], bool]]:
    """The views the model averages (see ``visent.embed.features.embed_images``), each with its box in
    ``GRID`` cells of the square (left, top, side) and whether it is mirrored."""
    image = load_image(path, backbone.image_size)
    if mode == "crops":
        size = backbone.image_size
        big = round(size / 0.875)  # five_crops' frame
        side = round(GRID * size / big)
        edge = GRID - side
        corners = [(0, 0), (edge, 0), (0, edge), (edge, edge), (edge // 2, edge // 2)]
        crops = [backbone.to_tensor(c) for c in five_crops(image, size, backbone.spec.resample)]
        base = [(t, (x, y, side), False) for t, (x, y) in zip(crops, corners)]
    else:
        base = [(backbone.preprocess(image), (0, 0, GRID), False)]
    if mode == "none":
        return base
    return base + [(t.flip(-1), box, True) for t, box, _ in base]


def _backbone_maps(backbone, path: Path, weights: np.ndarray, offset: np.ndarray, method: str,
                   mode: str) -> np.ndarray:
    """One backbone's share of the maps: each view's map placed in its box, averaged as the features are."""
    views = _views(backbone, path, mode)
    total = torch.zeros(len(weights), GRID, GRID)
    for tensor, (left, top, side), mirrored in views:
        if method == "cam":
            view_map = cam_maps(backbone, tensor, weights, grid=side)
        else:
            view_map = gradcam_maps(backbone, tensor, weights, offset, grid=side)
        view = torch.from_numpy(np.ascontiguousarray(view_map))
        if mirrored:
            view = view.flip(-1)
        # a map's mean over its box is the view's share; over the whole square it must keep that mean
        total[:, top:top + side, left:left + side] += view * (GRID * GRID) / (side * side)
    return (total / len(views)).numpy()
