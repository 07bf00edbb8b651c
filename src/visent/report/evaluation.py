"""An :class:`~visent.evaluate.record.Evaluation` drawn for the report: its section "Evaluation on human labels".

:func:`evaluation_html` gives the section's HTML: the counts, the images the student learnt from (measured by
``visent evaluate``, else recognised among the report's dataset's kept images), the figures, the confusion
matrices and the reliability diagram, the subsets, the published figures and the k-fold tables.
"""

from __future__ import annotations

import html

from visent.evaluate.record import Evaluation
from visent.report.context import Posts, ReportContext
from visent.report.markup import figure, integer, note, number, plots, table

__all__ = ["evaluation_html", "evaluation_section"]


def evaluation_section(context: ReportContext, posts: Posts | None) -> str:
    """The report's evaluation section: the context's evaluation, else the note that says how to add one."""
    if context.evaluation is None:
        return note(context.evaluation_note)
    return evaluation_html(context.evaluation, posts)


def evaluation_html(evaluation: Evaluation, posts: Posts | None = None) -> str:
    """The HTML of ``evaluation``; ``posts`` (the report's dataset) to count the benchmark's images among its kept
    images when the evaluation did not measure it."""
    three = evaluation.three_class
    skipped = evaluation.n_skipped_labels
    parts = [f"<p>{html.escape(str(evaluation.model))} on {html.escape(str(evaluation.benchmark))}: "
             f"{integer(evaluation.n_scored)} images scored, {integer(evaluation.n_unreadable)} "
             f"unreadable, {integer(skipped)} "
             f"label{'' if skipped == 1 else 's'} skipped.</p>"]
    given = evaluation.training_overlap  # measured by `visent evaluate` against the model's own dataset
    shared = (given.shared, given.n) if given is not None else _benchmark_overlap(evaluation, posts)
    if shared and shared[0]:
        parts.append(note(f"{shared[0]:,} of the benchmark's {shared[1]:,} images are among this dataset's kept "
                          "images, which the student learnt from (with the teacher's labels, not these human labels): "
                          "on those, these figures are not held out. To prove the student on unseen images, evaluate "
                          "on images outside the crawl (as T4SA's Twitter test sets) or with held-out folds."))
    rows = []
    binary = evaluation.binary
    if binary is not None:
        rows.append(["binary (positive vs negative)", f"{binary.n:,}", number(binary.accuracy),
                     number(binary.balanced_accuracy), number(binary.macro_f1), "–"])
    rows.append(["3 classes (argmax)", f"{three.n:,}", number(three.accuracy),
                 number(three.balanced_accuracy), number(three.macro_f1), number(three.ece)])
    parts.append(table(["protocol", "images", "accuracy", "balanced accuracy", "macro-F1", "ECE"], rows, "metrics"))
    intervals = [(name, interval) for name, interval in (("accuracy", binary.accuracy_ci95),
                                                         ("balanced accuracy", binary.balanced_accuracy_ci95))
                 if interval] if binary is not None else []
    if intervals:
        parts.append('<p class="ci">Binary, 95% bootstrap intervals over the images: '
                     + "; ".join(f"{name} {number(low)}–{number(high)}" for name, (low, high) in intervals) + ".</p>")
    matrices = [("3 classes (argmax)", three.confusion.labels, three.confusion.rows_true_cols_predicted)]
    if binary is not None:
        matrices.append(("positive vs negative", binary.confusion.labels, binary.confusion.rows_true_cols_predicted))
    figures = [figure(plots().confusion(matrices), "confusion matrices, rows true, columns predicted")]
    bins = three.reliability
    if bins:
        figures.append(figure(plots().reliability(bins, three.ece), "reliability diagram"))
    parts.append('<div class="row">' + "".join(figures) + "</div>")
    if not bins:
        parts.append(note("This evaluation has no reliability bins (made by an older visent): run `visent evaluate "
                          "MODEL --benchmark SPEC --out FILE` again, or give `--benchmark`, for the reliability "
                          "diagram."))
    if evaluation.subsets:
        srows = [[name, f"{b.n:,}", number(b.accuracy), "–".join(map(number, b.accuracy_ci95 or [])),
                  number(b.balanced_accuracy)]
                 for name, subset in evaluation.subsets.items() if (b := subset.binary) is not None]
        if srows:
            parts.append("<h3>Binary, per subset</h3>")
            parts.append(table(["subset", "images", "accuracy", "its 95% interval", "balanced accuracy"], srows,
                               "subsets"))
    if evaluation.published:
        prows = [[row.subset or "all", row.metric, number(row.value), row.model, row.protocol,
                  f"{row.citation}, doi:{row.doi}"] for row in evaluation.published]
        parts.append("<h3>Published figures for this benchmark</h3>")
        parts.append(note("As the papers report them, beside visent's figures above; not re-measured by visent. "
                          "Their models, training data and protocols differ from this student's: each row says "
                          "which."))
        parts.append(table(["subset", "metric", "published", "model", "protocol", "source"], prows, "published"))
    kfolds = [("", evaluation.kfold)] if evaluation.kfold is not None else []
    kfolds += [(f", {name} subset", subset.kfold) for name, subset in (evaluation.subsets or {}).items()
               if subset.kfold is not None and not subset.kfold_is_all]  # a subset of every image: the table above
    for label, kfold in kfolds:
        krows = [[name] + [f"{v[0]:.3f} ± {v[1]:.3f}" for v in summary.values()]
                 for name, summary in kfold.summary.items()]
        keys = list(next(iter((kfold.summary or {"": {}}).values())).keys())
        if krows:
            parts.append(f"<h3>{kfold.folds}-fold protocol{html.escape(label)} (mean ± std over folds)</h3>")
            parts.append(table(["head"] + [k.replace("_", " ") for k in keys], krows, "kfold"))
    return "\n".join(parts)


def _benchmark_overlap(evaluation: Evaluation, posts: Posts | None) -> tuple[int, int] | None:
    """(benchmark images whose bytes are among the dataset's kept images, benchmark images), when both can be
    read; identical files are recognised by their SHA-256."""
    if posts is None or not posts.cleaned or not evaluation.benchmark:
        return None
    from visent.embed.cached import file_hashes
    from visent.evaluate import BenchmarkError, load_benchmark, shared_with_kept

    try:
        bench = load_benchmark(evaluation.benchmark)
    except (BenchmarkError, OSError, ValueError):
        return None
    digests, _ = file_hashes(bench.paths)
    return shared_with_kept(posts["image_sha256"], posts["clean_status"], digests), len(bench.paths)
