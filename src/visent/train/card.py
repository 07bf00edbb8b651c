"""The model card (MODEL_CARD.md) a trained student's directory carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visent.clean import STEPS as CLEAN_STEPS
from visent.core.display import ordered, readable

__all__ = ["model_card"]


def _calibration_line(calibration: dict[str, Any] | None) -> str:
    if not calibration:
        return "none"
    return (f"temperature {calibration['temperature']:.3f}; ECE against teacher labels on validation "
            f"{calibration['val_ece_before']:.3f} → {calibration['val_ece_after']:.3f}")


def _figure(value: Any) -> str:
    """A validation figure to three decimals, or n/a."""
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def _name(source: Any) -> str:
    """The name of the source a dataset was ingested from, without the local folders above it."""
    return Path(str(source)).name if source else "?"


def model_card(config, metrics: dict[str, Any]) -> str:
    stages = metrics.get("stages", {})
    teach = stages.get("teach", {}) or {}
    clean = stages.get("clean", {}) or {}
    ingest = stages.get("ingest", {}) or {}
    chosen = metrics.get("validation", {}).get("chosen", {})
    lines = [
        "# visent model card",
        "",
        "A visual sentiment student trained **without human labels**: a textual teacher read the posts' text,",
        "its labels were cleaned, and this model learned to predict them from the image alone.",
        "",
    ]
    if metrics.get("warnings"):
        lines += ["**Warning: this model is likely of no use.** Train it on more posts and check it on human labels",
                  "(`visent evaluate`) before you rely on it:", "",
                  *(f"- {note}" for note in metrics["warnings"]), ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| backbone | `{config.backbone}`{' (fine-tuned)' if config.backbone_weights else ' (frozen, ImageNet)'}"
        + "".join(f" + `{name}` (frozen, ImageNet)" for name in getattr(config, "extra_backbones", [])) + " |",
        f"| test-time augmentation | {config.tta} |",
        f"| runtime | {config.runtime} |",
        f"| image signals | {', '.join(config.signals) or 'none'} |",
        f"| head | multinomial logistic, C = {readable(metrics.get('C'))}, {metrics.get('target')} targets"
        f" (temperature {readable(metrics.get('target_temperature', 1.0))}), self-training rounds "
        f"{(metrics.get('self_training') or {}).get('rounds', 0)} |",
        f"| calibration | {_calibration_line(metrics.get('calibration'))} |",
        f"| source | `{_name((ingest.get('params') or {}).get('source'))}` |",
        f"| posts ingested | {readable((ingest.get('counts') or {}).get('posts', '?'))} |",
        f"| teacher | `{(teach.get('params') or {}).get('teacher', '?')}` |",
        f"| cleaning | {readable(clean.get('params')) or '?'} |",
        f"| training images | {readable(metrics.get('n_train_posts'))} ({readable(metrics.get('class_counts'))}) |",
        f"| validation (teacher labels) | balanced accuracy {_figure(chosen.get('val_balanced_accuracy'))}, "
        f"agreement {_figure(chosen.get('val_agreement'))} |",
        f"| visent | {config.visent_version} |",
        "",
        "Counts per cleaning step:",
        "",
    ]
    for step, count in ordered(clean.get("counts"), ("posts", *CLEAN_STEPS, "kept")).items():
        lines.append(f"- {step}: {readable(count)}")
    lines += ["", "Validation figures compare the student with its teacher, not with people: prove the model on",
              "human-labelled images with `visent evaluate MODEL --benchmark SPEC`.", ""]
    return "\n".join(lines)
