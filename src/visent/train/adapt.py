"""``visent adapt``: a student's head fitted to a few hundred human image labels, starting from the student.

The labels come as a CSV of ``path,label`` (:func:`visent.core.labels.read_labelled_images`); the fit is
:meth:`visent.model.VisentModel.adapt`. The new model directory holds the student's files (its network, int8
calibration) with the adapted head, records in ``metrics.json`` how many labels of each class it saw and from
where, and what they bought: balanced accuracy and ECE before and after adapting, by cross-validation over the
labels, whether a temperature was refitted on them, and warnings (:func:`visent.model.adapt.assess_adaptation`);
its card says so in words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visent.core.display import readable
from visent.core.errors import InputError
from visent.core.labels import CLASSES, read_labelled_images
from visent.model import VisentModel


def adapt_model(model: str | Path | VisentModel, labels: str | Path, out: str | Path, *, seed: int = 0,
                batch_size: int = 32) -> dict[str, Any]:
    """Adapt ``model`` to the labelled images of the CSV ``labels`` and save the result in ``out``; returns the
    adaptation record (labels per class, C, skipped rows with their reasons; ``cross_validation``, ``before``,
    ``after``, ``temperature`` and ``warnings``: what the labels bought, measured by cross-validation over them)."""
    labels = Path(labels)
    if not labels.is_file():
        raise InputError(f"{labels}: labels file not found; give a CSV of path,label (negative / neutral / "
                         "positive, or 0/1 with 0 = negative)")
    student = model if isinstance(model, VisentModel) else VisentModel.load(model)
    paths, names, skipped = read_labelled_images(labels)
    if not paths:
        raise InputError(f"{labels}: no usable path,label row" + (f" ({skipped[0]})" if skipped else ""))
    adapted = student.adapt(paths, names, seed=seed, batch_size=batch_size, source=labels.name)
    record = adapted.metrics["adaptation"]
    record["skipped"] = skipped + record["skipped"]
    record["n_skipped"] = len(record["skipped"])
    card = (student.directory / "MODEL_CARD.md") if student.directory else None
    base = card.read_text(encoding="utf-8") if card is not None and card.is_file() else "# visent model card\n"
    adapted.save(out, card=base.rstrip("\n") + "\n\n" + adaptation_card(record))
    return record


def adaptation_card(record: dict[str, Any]) -> str:
    """The model card's section on the human labels the head was adapted to, and what they bought."""
    per_class = ", ".join(f"{name} {readable(record['per_class'].get(name, 0))}" for name in CLASSES)
    kept = [name for name in CLASSES if name not in record["classes_fitted"]]
    return "\n".join([
        "## Adapted to human labels",
        "",
        f"The head above was then fitted to **{readable(record['labels'])} human image labels** ({per_class}) from "
        f"`{record.get('source') or '?'}`, starting from the student's weights and pulled towards them "
        f"(C = {readable(record['C'])}, chosen by {record['C_chosen_by']}).",
        *([f"Classes without labels kept the student's weights: {', '.join(kept)}."] if kept else []),
        f"Rows left out: {readable(record['n_skipped'])}.",
        *_assessment_lines(record),
        "",
    ])


def _assessment_lines(record: dict[str, Any]) -> list[str]:
    """The card's paragraph on the before/after figures, the temperature decision and the warnings."""
    if "before" not in record:
        return []
    before, after, folds = record["before"], record.get("after"), record["cross_validation"]
    lines = ["", "### What the labels bought", ""]
    refit = record["temperature"]["refit"]
    temperature = f", T = {record['temperature']['value']:.3g}" if refit else ""
    if after is None:
        lines.append(f"No before/after comparison: {folds['how']}. On those labels the student had balanced "
                     f"accuracy {before['balanced_accuracy']:.3f} and ECE {before['ece']:.3f}.")
    else:
        lines += [f"Measured by {folds['how']}: the student as it was, and the head adapted on the other folds, each "
                  "scored on the held-out fold (balanced accuracy over the labelled classes; top-label ECE of the "
                  "three probabilities).",
                  "",
                  "| | balanced accuracy | ECE |",
                  "|---|---|---|",
                  f"| before (the student) | {before['balanced_accuracy']:.3f} | {before['ece']:.3f} |",
                  f"| after (adapted{temperature}) | {after['balanced_accuracy']:.3f} | {after['ece']:.3f} |",
                  "",
                  f"Temperature: {record['temperature']['decision']}."]
    for warning in record.get("warnings", []):
        lines += ["", f"**Warning:** {warning}."]
    return lines
