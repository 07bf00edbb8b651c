"""The report's figures, drawn with matplotlib's object API (no pyplot, so no global backend is touched) and
returned as PNG bytes.

Every function takes plain numbers and lists (the reliability diagram: an evaluation's bins), so a figure can be
drawn and tested without a dataset.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Sequence

import numpy as np

from visent.core.labels import CLASSES

if TYPE_CHECKING:
    from visent.evaluate.record import ReliabilityBin

CLASS_COLOURS = {"negative": "#c0392b", "neutral": "#7f8c8d", "positive": "#27ae60"}
KEPT, DROPPED, REMAINING = "#2e86c1", "#e67e22", "#aed6f1"
DROPPED_LIGHT = "#f5cba7"
DPI = 100


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return figure


def png(figure) -> bytes:
    """The figure as PNG bytes (the Agg canvas that ``Figure.savefig`` uses by default)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def funnel(steps: Sequence[tuple[str, int]], total: int, kept: int, *, title: str = "") -> bytes:
    """Posts left after each cleaning step: one bar per step, the posts it dropped stacked in orange."""
    figure = _figure(9.5, 0.45 * (len(steps) + 2) + 1.0)
    ax = figure.add_subplot()
    labels = ["posts"]
    left = [total]
    dropped_bar = [0]
    remaining = total
    for name, count in steps:
        remaining -= count
        labels.append(name)
        left.append(remaining)
        dropped_bar.append(count)
    labels.append("kept")
    left.append(kept)
    dropped_bar.append(0)
    y = np.arange(len(labels))[::-1]
    colours = [REMAINING] + [REMAINING] * len(steps) + [KEPT]
    ax.barh(y, left, color=colours, edgecolor="none", label="posts left")
    ax.barh(y, dropped_bar, left=left, color=DROPPED, edgecolor="none", label="dropped at this step")
    scale = max(total, 1)
    for yy, base, count in zip(y, left, dropped_bar):
        if count:
            ax.text(base + count + scale * 0.01, yy, f"−{count:,} ({100 * count / scale:.1f}%)", va="center",
                    fontsize=9, color="#7e5109")
    ax.text(total + scale * 0.01, y[0], f"{total:,}", va="center", fontsize=9)
    ax.text(kept + scale * 0.01, y[-1], f"{kept:,} ({100 * kept / scale:.1f}%)", va="center", fontsize=9,
            color="#1b4f72", fontweight="bold")
    ax.set_yticks(y, labels)
    ax.set_xlim(0, scale * 1.25)
    ax.set_xlabel("posts")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title, fontsize=11, pad=24)
    return png(figure)


def confidence_histograms(confidence: dict[str, np.ndarray], kept: dict[str, np.ndarray] | None,
                          thresholds: dict[str, float] | None, *, threshold_label: str = "threshold") -> bytes:
    """Teacher confidence per teacher label: one histogram per class, kept / dropped posts stacked when the
    dataset is cleaned, and the class's cleaning threshold as a vertical line."""
    figure = _figure(10.5, 3.4)
    axes = figure.subplots(1, len(CLASSES), sharex=True)
    bins = np.linspace(1 / 3, 1.0, 34)
    handles = {}
    for ax, name in zip(axes, CLASSES):
        values = np.asarray(confidence.get(name, np.zeros(0)), dtype=float)
        values = values[np.isfinite(values)]
        if kept is not None:
            mask = np.asarray(kept.get(name, np.zeros(0, dtype=bool)), dtype=bool)
            mask = mask[: len(values)] if len(mask) >= len(values) else np.zeros(len(values), dtype=bool)
            _, _, patches = ax.hist([values[mask], values[~mask]], bins=bins, stacked=True,
                                    color=[CLASS_COLOURS[name], DROPPED_LIGHT])
            handles.setdefault("dropped (any step)", patches[1][0] if len(patches[1]) else None)
        else:
            ax.hist(values, bins=bins, color=CLASS_COLOURS[name])
        title = f"{name} (n = {len(values):,})"
        if thresholds and name in thresholds:
            handles[threshold_label] = ax.axvline(thresholds[name], color="black", linestyle="--", linewidth=1.2)
            title += f", {threshold_label} {thresholds[name]:.2f}"
        ax.set_title(title, fontsize=10)
        if not len(values):
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no posts", transform=ax.transAxes, ha="center", va="center", color="#7f8c8d")
        ax.set_xlabel("teacher confidence")
        ax.set_xlim(1 / 3, 1.0)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("posts")
    shown = {k: v for k, v in handles.items() if v is not None}
    if shown:
        figure.legend(list(shown.values()), list(shown.keys()), loc="outside upper right", ncol=len(shown),
                      frameon=False, fontsize=9)
    return png(figure)


def class_balance(before: dict[str, int], after: dict[str, int] | None) -> bytes:
    """Posts per teacher label: every labelled post, and the posts kept by cleaning."""
    figure = _figure(7.0, 3.2)
    ax = figure.add_subplot()
    x = np.arange(len(CLASSES))
    width = 0.38 if after is not None else 0.6
    colours = [CLASS_COLOURS[name] for name in CLASSES]
    first = [before.get(name, 0) for name in CLASSES]
    bars = ax.bar(x - (width / 2 if after is not None else 0), first, width, color=colours, alpha=0.4,
                  label="teacher labels (all posts)")
    ax.bar_label(bars, labels=[f"{v:,}" for v in first], fontsize=8, padding=2)
    if after is not None:
        second = [after.get(name, 0) for name in CLASSES]
        bars = ax.bar(x + width / 2, second, width, color=colours, label="kept after cleaning")
        ax.bar_label(bars, labels=[f"{v:,}" for v in second], fontsize=8, padding=2)
    ax.set_xticks(x, CLASSES)
    ax.set_ylabel("posts")
    ax.margins(y=0.15)
    ax.legend(frameon=False, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return png(figure)


def confusion(matrices: Sequence[tuple[str, list[str], list[list[int]]]]) -> bytes:
    """Confusion matrices (title, class names, rows true × columns predicted), coloured by the share of each
    true class, annotated with counts and shares."""
    figure = _figure(4.2 * len(matrices), 3.8)
    axes = figure.subplots(1, len(matrices), squeeze=False)[0]
    for ax, (title, names, matrix) in zip(axes, matrices):
        counts = np.asarray(matrix, dtype=float)
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(j, i, f"{int(counts[i, j]):,}\n{100 * share[i, j]:.0f}%", ha="center", va="center",
                        fontsize=9, color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true (human label)")
        ax.set_title(title, fontsize=10)
    return png(figure)


def reliability(bins: Sequence[ReliabilityBin], ece: float | None) -> bytes:
    """Reliability diagram: accuracy against mean confidence per confidence bin, the diagonal of perfect
    calibration, and how many predictions each bin holds."""
    figure = _figure(5.6, 5.0)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    lo = np.array([b.lo for b in bins], dtype=float)
    hi = np.array([b.hi for b in bins], dtype=float)
    count = np.array([b.count for b in bins], dtype=float)
    accuracy = np.array([np.nan if b.accuracy is None else b.accuracy for b in bins], dtype=float)
    confidence = np.array([np.nan if b.confidence is None else b.confidence for b in bins], dtype=float)
    width = hi - lo
    filled = count > 0
    top.bar(lo[filled], accuracy[filled], width[filled], align="edge", color="#2e86c1", edgecolor="white",
            label="accuracy")
    gap_lo = np.minimum(accuracy, confidence)[filled]
    top.bar(lo[filled], np.abs(accuracy - confidence)[filled], width[filled], bottom=gap_lo, align="edge",
            fill=False, hatch="///", edgecolor="#c0392b", linewidth=0, label="gap to mean confidence")
    top.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1, label="perfect calibration")
    top.plot(confidence[filled], accuracy[filled], "o", color="#1b4f72", markersize=3,
             label="(mean confidence, accuracy)")
    top.set_ylim(0, 1)
    top.set_xlim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title("reliability (top-label)" + (f", ECE = {ece:.3f}" if ece is not None else ""), fontsize=10)
    top.legend(fontsize=8, frameon=False, loc="upper left")
    bottom.bar(lo, count, width, align="edge", color="#7f8c8d", edgecolor="white")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("images")
    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
    return png(figure)
