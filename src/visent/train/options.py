"""The options of the train stage (:class:`TrainOptions`): what :func:`visent.train.train` takes, what the model
records as its parameters, and what ``visent train`` and ``visent build`` offer (see :mod:`visent.core.options`).
``visent embed`` offers the four that decide the features (backbone, runtime, tta, int8 calibration)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from visent.core.options import option, seed_option
from visent.core.version import __version__
from visent.embed.onnx import DEFAULT_RUNTIME
from visent.embed.spec import DEFAULT_BACKBONE  # defined beside the backbones, so `visent --help` needs no sklearn

DEFAULT_SIGNAL_TEACHER = "vader"  # what scores the text in images when train runs alone (build: its own teacher)


@dataclass
class TrainOptions:
    """How the student is trained (see :func:`visent.train.train` for each option's effect)."""

    backbone: str = option(DEFAULT_BACKBONE, help="Image backbone (see `visent backbones`); join several with + to "
                                                  "use all their features.")
    weights: str | Path | None = option(None, help="Local weights file for the backbone (torchvision:/timm: "
                                                   "backbones need one).", type=Optional[Path])
    target: str = option("soft", help="Train on the teacher's probabilities (soft) or its labels (hard).")
    tta: bool | str = option("none", help="Test-time augmentation: none, flip (the image and its mirror image) or "
                                          "crops (five crops and their mirrors, as Campos et al.).", type=str)
    finetune_blocks: int = option(0, help="Fine-tune the last N backbone blocks on the weak labels (0 = frozen "
                                          "backbone, FT-F).", min=0)
    finetune_epochs: int = option(3, help="Epochs of fine-tuning when --finetune-blocks > 0.")
    C: float | None = option(None, help="Head regularisation; chosen on teacher-label validation when unset.",
                             flag="--C")
    val_fraction: float = option(0.2, help="Share of the kept posts held out as the teacher-label validation split "
                                           "(C, calibration and the agreement reported).", min=0.01, max=0.99)
    batch_size: int = option(32, help="Images per batch, embedding and fine-tuning.", min=1)
    seed: int = seed_option()
    runtime: str | None = option(None, help="How the backbone runs: torch, onnx (ONNX Runtime fp32) or onnx-int8 "
                                            "(int8; the model directory carries its calibration). Default: "
                                            f"{DEFAULT_RUNTIME} (training falls back to onnx on a dataset too small "
                                            "to calibrate).")
    signals: tuple[str, ...] = option((), help="Image signal fused with the backbone's features, repeatable: ocr "
                                               "(text in the image, scored by the teacher), faces (facial "
                                               "expressions). See `visent backbones`.", flag="--signal")
    signal_teacher: str | None = option(None, help="Teacher that scores the text in images (--signal ocr): a name "
                                                    f"or a teacher directory. Default: {DEFAULT_SIGNAL_TEACHER}, and "
                                                    "in `visent build` its --teacher.")
    target_temperature: float = option(1.0, help="Sharpen (< 1) or flatten (> 1) the teacher's probabilities before "
                                                 "training.", min=0.01)
    self_training: int = option(0, help="Rounds in which the student relabels the posts (out of fold) and learns "
                                        "again.", min=0)
    self_training_alpha: float = option(0.5, help="With --self-training: the teacher's share of the new targets "
                                                  "(alpha * teacher + (1 - alpha) * student).", min=0.0, max=1.0)
    calibrate: bool = option(True, help="Temperature-scale the student's probabilities on a teacher-label "
                                        "validation split.")
    int8_calibration: str = option("packaged", help="With onnx-int8: packaged (the default backbone's int8 network, "
                                                    "shipped with the default model: one for every dataset, so a "
                                                    "grown crawl embeds only its new images; other backbones and "
                                                    "weights are measured on the dataset) or dataset (measure its "
                                                    "ranges on the kept images).")
    force: bool = option(False, help="Train again even when --out holds a model of the same kept posts and options.",
                         flag="--force", fingerprint=False)

    def teacher_of_signals(self) -> str:
        """The teacher that scores the text in images: :attr:`signal_teacher`, else ``"vader"``."""
        return self.signal_teacher or DEFAULT_SIGNAL_TEACHER

    def params(self, *, dataset: str, posts: str, weights: str | None, tta: str, runtime: str) -> dict[str, Any]:
        """The parameters the model records (``metrics["params"]``: a model of the same ones is up to date): the
        ``dataset``, the digest of its kept ``posts``, the digest of the ``weights`` file, the ``tta`` mode and
        ``runtime`` resolved, beside the options (those that matter to the options set: the fine-tuning epochs
        with fine-tuning, the alpha with self-training, the teacher of signals with signals, the int8 calibration
        with onnx-int8) and visent's version."""
        return {"dataset": dataset, "posts": posts, "backbone": self.backbone, "weights": weights,
                "target": self.target, "val_fraction": self.val_fraction, "C": self.C, "tta": tta,
                "finetune_blocks": self.finetune_blocks,
                "finetune_epochs": self.finetune_epochs if self.finetune_blocks else None,
                "batch_size": self.batch_size, "seed": self.seed, "runtime": runtime, "signals": list(self.signals),
                "signal_teacher": self.teacher_of_signals() if self.signals else None,
                "target_temperature": self.target_temperature, "self_training": self.self_training,
                "self_training_alpha": self.self_training_alpha if self.self_training else None,
                "calibrate": self.calibrate,
                "int8_calibration": self.int8_calibration if runtime == "onnx-int8" else None,
                "visent": __version__}
