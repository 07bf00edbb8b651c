"""An :class:`~visent.evaluate.record.Evaluation` drawn for the terminal, as ``visent evaluate`` prints it.

:func:`print_evaluation` writes the results (the figures, the per-subset table, the published figures and the
k-fold tables) to ``out`` and the warnings beside them (images the student learnt from, subsets with no k-fold
protocol) to ``err``: the command gives its stdout and its stderr.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from visent.evaluate.published import PublishedFigure
from visent.evaluate.record import Evaluation, KFold

__all__ = ["print_evaluation"]

HEADS = {"student": "student (zero human labels)", "from_student": "fine-tuned from the student",
         "from_imagenet": "fine-tuned from ImageNet features"}
KFOLD_COLUMNS = [("binary_balanced_accuracy", "balanced acc"), ("binary_accuracy", "binary acc"),
                 ("binary_macro_f1", "macro-F1"), ("three_class_macro_f1", "3-class macro-F1"), ("ece", "ECE")]


def print_evaluation(evaluation: Evaluation, *, model: str, benchmark: str, out: Console, err: Console) -> None:
    """Print ``evaluation`` of ``model`` on ``benchmark`` (as the user named them: the first table's title)."""
    overlap = evaluation.training_overlap
    if overlap is not None and overlap.shared:
        err.print(f"[yellow]warning:[/] {overlap.shared:,} of the benchmark's {overlap.n:,} images are among "
                  f"the images the student learnt from (its dataset {escape(overlap.dataset)}, with the "
                  "teacher's labels): on those the figures are not held out; evaluate on images outside the crawl "
                  "or with held-out folds.")
    table = Table(title=escape(f"{model} on {benchmark}: {covered(evaluation)}"), show_header=True,
                  header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("images (scored / unreadable)", f"{evaluation.n_scored} / {evaluation.n_unreadable}")
    b = evaluation.binary
    if b is not None:
        table.add_row("binary n (pos / neg)", f"{b.n} ({b.n_positive} / {b.n_negative})")
        for key, value, interval in (("accuracy", b.accuracy, b.accuracy_ci95),
                                     ("balanced_accuracy", b.balanced_accuracy, b.balanced_accuracy_ci95),
                                     ("macro_f1", b.macro_f1, None)):
            table.add_row(f"binary {key.replace('_', ' ')}",
                          f"{value:.4f}" + (f"  [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""))
    three = evaluation.three_class
    if three.macro_f1 is not None:
        table.add_row("3-class macro-F1", f"{three.macro_f1:.4f}")
    table.add_row("ECE (3-class)", f"{three.ece:.4f}")
    out.print(table)
    matrix = three.confusion.rows_true_cols_predicted
    out.print("confusion (rows true, columns predicted; negative, neutral, positive): " + json.dumps(matrix))
    if b is not None:
        out.print("in brackets: the 95% bootstrap interval over the images")
    if evaluation.subsets:
        subsets = Table(title="binary, per subset", show_header=True, header_style="bold")
        for column in ("subset", "n (pos / neg)", "accuracy", "balanced accuracy"):
            subsets.add_column(column, justify="left" if column == "subset" else "right")
        for name, figures in evaluation.subsets.items():
            sb = figures.binary
            if sb is not None:
                low, high = sb.accuracy_ci95 or (float("nan"), float("nan"))
                subsets.add_row(name, f"{sb.n} ({sb.n_positive} / {sb.n_negative})",
                                f"{sb.accuracy:.4f} [{low:.3f}, {high:.3f}]", f"{sb.balanced_accuracy:.4f}")
        out.print(subsets)
    if evaluation.published:
        _print_published(evaluation.published, out)
    if evaluation.kfold is not None:
        _print_kfold(evaluation.kfold, out)
    for name, figures in (evaluation.subsets or {}).items():
        if figures.kfold_is_all:
            out.print(f"the {escape(name)} subset holds every image: its k-fold protocol is the table above")
        elif figures.kfold is not None:
            _print_kfold(figures.kfold, out, subset=name)
        elif figures.kfold_skipped is not None:
            err.print(f"no k-fold protocol on the {escape(name)} subset: {escape(figures.kfold_skipped)}")


def covered(evaluation: Evaluation) -> str:
    """Which images the figures of evaluate's first table are over: all those scored, and the subset they make up
    where the benchmark names one (Twitter-I's 3-agree images are all of its images)."""
    n = evaluation.n_scored
    images = f"all {n:,} {'readable ' if evaluation.n_unreadable else ''}image{'s' if n != 1 else ''}"
    whole = [name for name, figures in (evaluation.subsets or {}).items() if figures.n == n]
    kind = "benchmark" if evaluation.kind is None else evaluation.kind
    return images + (f" (the {kind} {whole[-1]} set)" if whole else "")


def _print_published(rows: Sequence[PublishedFigure], out: Console) -> None:
    """The papers' own figures for the benchmark: beside visent's, never re-measured here."""
    out.print("[bold]published figures for this benchmark[/] (as the papers report them; not re-measured by visent, "
              "and their models, data and protocols differ from this student's):")
    for row in rows:
        out.print(f"  {escape(row.subset or 'all')}: {row.metric} {row.value:.3f}, {escape(row.model)}; "
                  f"{escape(row.protocol)}. {escape(row.citation)}, doi:{row.doi}", highlight=False)


def _print_kfold(kfold: KFold, out: Console, subset: str | None = None) -> None:
    split = f", {kfold.split}" if kfold.split else ""
    images = f"the {subset} subset's {kfold.n} images" if subset else f"{kfold.n} images"
    table = Table(title=f"{kfold.folds}-fold protocol on {images}{split} (mean ± std over folds)",
                  show_header=True, header_style="bold")
    table.add_column("head")
    for _, title in KFOLD_COLUMNS:
        table.add_column(title, justify="right")
    for name, summary in kfold.summary.items():
        table.add_row(HEADS.get(name, name), *(f"{summary[key][0]:.4f} ± {summary[key][1]:.4f}" if key in summary
                                               else "-" for key, _ in KFOLD_COLUMNS))
    out.print(table)
