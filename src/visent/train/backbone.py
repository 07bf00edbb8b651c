"""The student's backbone as its model directory carries it: fine-tuned or loaded from a weights file, its int8
calibration, and the ONNX network predict runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visent.core.store import atomic_write_bytes
from visent.model import ModelConfig

__all__ = ["GRAPH_FILE", "shipped_int8", "student_backbone"]


def shipped_int8(backbone: str, weights: str | Path | None, finetune_blocks: int, int8_calibration: str) -> bool:
    """Whether the student's int8 network is the one shipped for its backbone (no calibration measured)."""
    from visent.embed import load_backbone
    from visent.embed.onnx import packaged_int8

    if int8_calibration != "packaged" or weights is not None or finetune_blocks > 0:
        return False
    return packaged_int8(load_backbone(backbone.split("+")[0].strip()).key) is not None


def student_backbone(config: ModelConfig, out: Path, weights: str | Path | None, rows: dict[str, Any],
                      targets: np.ndarray, *, finetune_blocks: int, finetune_epochs: int, batch_size: int,
                      seed: int, int8_calibration: str = "packaged") -> tuple[Any, list[dict[str, Any]] | None]:
    """The student's first backbone, as the model directory ``out`` will carry it: fine-tuned on the weak
    labels (``finetune_blocks > 0``), or loaded from a local ``weights`` file copied into ``out``, else the
    packaged weights; with the int8 runtime, its calibration (``int8_calibration``: the shipped one where there is
    one, else measured on the kept images). Fills in ``config``'s
    file names; returns the backbone and the fine-tuning history."""
    from visent.embed import load_backbone

    backbone = config.backbone
    model_backbone = load_backbone(backbone, weights=weights)
    finetune_report = None
    if finetune_blocks > 0:
        from visent.train.finetune import finetune

        result = finetune(model_backbone, rows["path"], targets, n_blocks=finetune_blocks, epochs=finetune_epochs,
                          batch_size=batch_size, seed=seed)
        weights_path = out / "backbone.pt"
        result.save_backbone(weights_path)
        config.backbone_weights = weights_path.name
        model_backbone = load_backbone(backbone, weights=weights_path)
        finetune_report = result.history
    elif weights is not None:
        # A model directory must carry its own weights: predict needs nothing else.
        weights_path = out / "backbone.pt"
        if Path(weights).resolve() != weights_path.resolve():
            atomic_write_bytes(weights_path, Path(weights).read_bytes())
        config.backbone_weights = weights_path.name
        model_backbone = load_backbone(backbone, weights=weights_path)

    if config.runtime == "onnx-int8":  # shipped or measured on the kept images, then carried by the model directory
        from visent.embed.features import calibration_images
        from visent.embed.onnx import CALIBRATION_FILE, INT8_RECIPE, calibrate_int8, canonical_ranges

        config.int8_recipe = INT8_RECIPE
        measured = calibrate_int8(
            model_backbone, lambda: calibration_images(model_backbone, rows["path"], rows["sha256"]), rows["sha256"],
            calibration=int8_calibration)
        atomic_write_bytes(out / CALIBRATION_FILE, canonical_ranges(measured))
        config.int8_calibration = CALIBRATION_FILE
    if config.runtime != "torch":
        _carry_graph(config, out, model_backbone)
    return model_backbone, finetune_report


GRAPH_FILE = "backbone.onnx"


def _carry_graph(config: ModelConfig, out: Path, backbone: Any) -> None:
    """Write the network the features are computed with (the fp32 export, or the int8 network of the model's
    calibration and recipe) into ``out``, so that predict runs it as it is: no PyTorch, export or quantisation."""
    from visent.embed.graph import GraphBackbone
    from visent.embed.onnx import calibration_id, onnx_model, quantize_int8

    calib_id = None
    if config.runtime == "onnx-int8":
        calibration = out / str(config.int8_calibration)
        source, calib_id = quantize_int8(backbone, calibration, recipe=config.int8_recipe), calibration_id(calibration)
    else:
        source = onnx_model(backbone)
    atomic_write_bytes(out / GRAPH_FILE, source.read_bytes())
    config.graph = GraphBackbone(out / GRAPH_FILE, backbone.spec, backbone.key, config.runtime, calib_id,
                                 config.int8_recipe).record()
