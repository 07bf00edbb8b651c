"""``visent report``: one self-contained HTML page about a dataset, its cleaning and the student trained on it.

Public surface: :func:`write_report` (writes the page) and :func:`render_report` (returns it as a string).

The page holds every figure inline (PNG as ``data:`` URIs) and its CSS in a ``<style>`` block; it loads
nothing from anywhere, so it can be mailed or archived as one file. The stylesheet and the page's skeleton are
package resources (``visent/resources/report/report.css`` and ``page.html``). Sections:

* summary: source, posts, teacher, thresholds, cleaning options, and the model's backbone and card facts;
* cleaning: posts kept and dropped at each step (a funnel), the most frequent reasons, ingest errors and
  posts the teacher skipped;
* teacher confidence per class, with each class's cleaning threshold;
* class balance: teacher labels before and after cleaning;
* evaluation: confusion matrices and the reliability diagram of a ``visent evaluate`` report (given, or
  run now on a benchmark);
* the images the student is most confident about, per class, overlaid with its sentiment map.

A part that cannot be made (no clean stage, no model, no evaluation, an unreadable image) leaves a note
saying why and how to add it; it never stops the rest of the page.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import os
import re
import string
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visent.core.errors import InputError, PathNotFound, UsageError
from visent.core.images import ImageError, load_image
from visent.core.labels import CLASSES
from visent.core.store import Dataset, DatasetError, atomic_write_text
from visent.core.version import __version__

__all__ = ["render_report", "write_report", "reason_kind"]

THUMBNAIL = 160  # longest side of a grid image, in pixels

_STEP_NAMES = {
    "ingest_error": "ingest error", "bad_image": "bad image", "exact_duplicate": "exact duplicate",
    "near_duplicate": "near duplicate", "no_teacher_label": "no teacher label",
    "low_confidence": "low teacher confidence", "neutral_dropped": "neutral dropped", "balanced_out": "balanced out",
}
_REASON_PATTERNS = (
    (re.compile(r"^exact duplicate of .*$"), "exact duplicate of a kept post"),
    (re.compile(r"^near duplicate of .* \(distance (\d+)\)$"), r"near duplicate (pHash distance \1)"),
    (re.compile(r"^low teacher confidence \((\w+) .*\)$"), r"low teacher confidence (\1)"),
    (re.compile(r"^tiny image \(\d+x\d+ < (\d+) px\)$"), r"tiny image (shorter side < \1 px)"),
    (re.compile(r"^(corrupt (?:\w+ )?image) \(.*\)$"), r"\1"),  # the decoder's message (visent.core.images)
)


# --------------------------------------------------------------------------- public surface
def write_report(target: str | os.PathLike[str], out: str | os.PathLike[str], *, model: str | os.PathLike[str] | None = None,
                 benchmark: str | os.PathLike[str] | None = None, evaluation: str | os.PathLike[str] | dict | None = None,
                 top: int = 6) -> Path:
    """Write the HTML report of ``target`` (a dataset directory, a model directory or ``default``) to ``out``.

    ``model`` names the student when ``target`` is a dataset; a model target finds its dataset through the
    ``dataset`` entry of its metrics.json. ``benchmark`` runs ``visent evaluate`` on that spec now;
    ``evaluation`` reuses the JSON written by ``visent evaluate --out`` (or its dict). ``top`` images per
    predicted class go in the grid. The file is written atomically; returns its path.
    """
    page = render_report(target, model=model, benchmark=benchmark, evaluation=evaluation, top=top)
    out = Path(out)
    atomic_write_text(out, page)
    return out


def render_report(target: str | os.PathLike[str], *, model: str | os.PathLike[str] | None = None,
                  benchmark: str | os.PathLike[str] | None = None, evaluation: str | os.PathLike[str] | dict | None = None,
                  top: int = 6) -> str:
    """The report of :func:`write_report` as an HTML string."""
    if top < 0:
        raise UsageError(f"top must be >= 0, got {top}")
    if benchmark is not None and evaluation is not None:
        raise UsageError("give a benchmark to evaluate now or an evaluation file to reuse, not both")
    context = _resolve(target, model)
    context.evaluation, context.evaluation_note = _evaluation(context, benchmark, evaluation)
    posts = _Posts.read(context.dataset) if context.dataset is not None else None
    sections = [
        ("summary", "Summary", _summary_section(context, posts)),
        ("cleaning", "Cleaning: posts kept and dropped", _cleaning_section(context, posts)),
        ("confidence", "Teacher confidence per class", _confidence_section(context, posts)),
        ("balance", "Class balance", _balance_section(context, posts)),
        ("evaluation", "Evaluation on human labels", _evaluation_section(context, posts)),
        ("images", "Most confident images per class", _images_section(context, posts, top)),
    ]
    return _page(context, sections)


def reason_kind(reason: str) -> str:
    """A clean or ingest reason without its per-post details (post ids, paths, measured values), so that
    reasons can be counted: ``"near duplicate of 17 (distance 3)"`` → ``"near duplicate (pHash distance 3)"``."""
    text = (reason or "").strip()
    for pattern, replacement in _REASON_PATTERNS:
        if pattern.match(text):
            return pattern.sub(replacement, text)
    inner = re.match(r"^no teacher label \((.*)\)$", text)
    if inner:
        return f"no teacher label ({inner.group(1).split(':')[0].strip()})"
    general = re.sub(r"\s*\([^()]*\)", "", text)
    general = re.sub(r"\s+at\s+\S+", "", general).strip()
    return general or text


# --------------------------------------------------------------------------- what the report is about
@dataclass
class _Context:
    target: str
    dataset: Dataset | None = None
    model: Any = None  # visent.model.VisentModel
    notes: list[str] = field(default_factory=list)
    dataset_note: str = ""
    model_note: str = ""
    evaluation: dict[str, Any] | None = None
    evaluation_note: str = ""


def _resolve(target: str | os.PathLike[str], model: str | os.PathLike[str] | None) -> _Context:
    from visent.model import ModelError, VisentModel

    context = _Context(target=str(target))
    path = Path(target)
    if (path / "manifest.json").exists():
        context.dataset = Dataset(path)
        if model is not None:
            context.model = VisentModel.load(model)
            trained_on = context.model.metrics.get("dataset")
            if trained_on and not _same_path(trained_on, path):
                context.notes.append(f"The model was trained on {trained_on}, not on this dataset: its grid shows "
                                     "how it sees these images.")
        else:
            context.model_note = ("No model given: add one with `--model MODEL` (or report on the model directory) "
                                  "to see the images it is most confident about.")
        return context
    if model is not None:
        raise UsageError(f"{target}: --model goes with a dataset directory, and this is not one (no manifest.json)")
    try:
        context.model = VisentModel.load(target)
    except ModelError:
        raise DatasetError(f"{target}: neither a visent dataset (manifest.json) nor a model directory (config.json); "
                           "give a dataset made by `visent ingest`/`visent build`, or a model") from None
    context.dataset, context.dataset_note = context.model.trained_on()
    return context


def _same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def _evaluation(context: _Context, benchmark: Any, evaluation: Any) -> tuple[dict[str, Any] | None, str]:
    how = ("No evaluation given: add `--benchmark SPEC` (a CSV of path,label or an MVSA folder) to score the model "
           "on human-labelled images now, or `--evaluation FILE` to reuse a `visent evaluate --out FILE` report.")
    if benchmark is not None:
        if context.model is None:
            raise UsageError("--benchmark needs a model: report on a model directory, or give `--model MODEL`")
        from visent.evaluate import evaluate

        return evaluate(context.model, benchmark), ""
    if evaluation is None:
        return None, how
    if isinstance(evaluation, dict):
        report = evaluation
    else:
        try:
            report = json.loads(Path(evaluation).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"{evaluation}: not a JSON report of `visent evaluate --out` ({error})") from None
        except FileNotFoundError:
            raise PathNotFound(f"{evaluation}: no such file (--evaluation takes the JSON of "
                               "`visent evaluate --out`)") from None
    if not isinstance(report, dict) or "three_class" not in report:
        raise InputError(f"{evaluation}: not a report of `visent evaluate --out` (no 'three_class' entry)")
    return report, ""


@dataclass
class _Posts:
    """The columns of the dataset the report reads, one list per column (None where a stage has not run)."""

    n: int
    columns: dict[str, list[Any]]
    stages: dict[str, str]  # stage -> status ("done", "stale", "running", "missing")

    NAMES = ("post_id", "ingest_status", "ingest_reason", "image_file", "image_sha256", "teacher", "teach_status", "teach_reason",
             "teach_label", "teach_confidence", "clean_status", "clean_step", "clean_reason", "label")

    @classmethod
    def read(cls, dataset: Dataset) -> "_Posts":
        stages = {name: (dataset.stage_info(name) or {}).get("status", "missing") for name in ("ingest", "teach", "clean")}
        if stages["ingest"] != "done" or not dataset.has_table("posts"):
            return cls(0, {name: [] for name in cls.NAMES}, stages)
        table = dataset.posts()
        columns = {name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
                   for name in cls.NAMES}
        for name in ("teach", "clean"):  # posts() joins finished stages only
            if stages[name] == "done" and not dataset.has_table(name):
                stages[name] = "missing"
        return cls(table.num_rows, columns, stages)

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]

    @property
    def taught(self) -> bool:
        return self.stages["teach"] == "done"

    @property
    def cleaned(self) -> bool:
        return self.stages["clean"] == "done"


# --------------------------------------------------------------------------- sections
def _summary_section(context: _Context, posts: _Posts | None) -> str:
    parts = [_note(note) for note in context.notes]
    ds = context.dataset
    if posts is not None and posts.stages["ingest"] != "done":
        parts.append(_note("The ingest stage has not finished: run `visent ingest SOURCE --out DATASET`; until then "
                           "the dataset has no posts to report on."))
    if ds is not None:
        ingest = ds.stage_info("ingest") or {}
        teach = ds.stage_info("teach") or {}
        clean = ds.stage_info("clean") or {}
        ingest_params, ingest_counts = ingest.get("params") or {}, ingest.get("counts") or {}
        teach_params, clean_params = teach.get("params") or {}, clean.get("params") or {}
        clean_counts = clean.get("counts") or {}
        rows = [
            ("dataset", _code(ds.root)),
            ("source", _code(ingest_params.get("source", "?")) + _plain(f" (format {ingest_params.get('format', '?')})")),
            ("posts", _plain(_count_line(ingest_counts, ("posts", "ok", "error", "images"),
                                         {"ok": "read", "error": "ingest errors", "images": "images stored"}))),
        ]
        if ingest_counts.get("with_human_labels"):
            rows.append(("human labels", _plain(f"{ingest_counts['with_human_labels']:,} posts carry labels from the "
                                                "source (read by evaluation only, never by training)")))
        rows.append(("stages", _plain(" · ".join(f"{name}: {status}" for name, status in posts.stages.items())
                                      if posts is not None else "?")))
        if teach_params:
            teacher = teach_params.get("teacher", "?")
            ident = teach_params.get("teacher_id")
            rows.append(("teacher", _code(teacher) + (_plain(" — ") + _code(ident) if ident and ident != teacher else "")))
        if clean_params:
            thresholds = clean_params.get("thresholds") or {}
            rows.append(("thresholds", _plain(" · ".join(f"{name} {thresholds[name]:.2f}" for name in CLASSES
                                                         if name in thresholds))))
            rows.append(("cleaning", _plain(
                f"near duplicates at pHash distance ≤ {clean_params.get('near_dup_distance')}, "
                f"images smaller than {clean_params.get('min_side')} px dropped, "
                f"balance {'on' if clean_params.get('balance') else 'off'}, "
                f"neutral {'dropped' if clean_params.get('drop_neutral') else 'kept'}, seed {clean_params.get('seed')}")))
        if clean_counts:
            total = clean_counts.get("posts", 0) or 0
            kept = clean_counts.get("kept", 0)
            rows.append(("kept", _plain(f"{kept:,} of {total:,} posts ({_percent(kept, total)})")))
        parts.append(_facts(rows))
    elif context.dataset_note:
        parts.append(_note(context.dataset_note))
    model = context.model
    if model is not None:
        parts.append("<h3>Model</h3>" + _facts(_model_facts(model)))
    elif context.model_note:
        parts.append(_note(context.model_note))
    return "\n".join(parts)


def _model_facts(model: Any) -> list[tuple[str, str]]:
    config, metrics = model.config, model.metrics or {}
    backbone = f"{config.backbone} ({'fine-tuned' if config.backbone_weights else 'frozen, ImageNet'})"
    backbone += "".join(f" + {name} (frozen, ImageNet)" for name in getattr(config, "extra_backbones", []) or [])
    rows = [("model", _code(model.directory if model.directory is not None else "(in memory)")),
            ("backbone", _plain(backbone)),
            ("runtime", _plain(f"{config.runtime}, test-time augmentation {config.tta or 'none'}, image signals "
                               f"{', '.join(getattr(config, 'signals', []) or []) or 'none'}"))]
    if metrics:
        head = f"multinomial logistic, C = {metrics.get('C')}, {metrics.get('target', '?')} targets"
        calibration = metrics.get("calibration") or {}
        if calibration.get("temperature") is not None:
            head += f", temperature {calibration['temperature']:.3f}"
        rows.append(("head", _plain(head)))
        counts = metrics.get("class_counts") or {}
        rows.append(("training images", _plain(f"{_int(metrics.get('n_train_posts'))} ("
                                                + ", ".join(f"{name} {counts.get(name, 0):,}" for name in CLASSES) + ")")))
        chosen = (metrics.get("validation") or {}).get("chosen") or {}
        if "val_balanced_accuracy" in chosen:
            rows.append(("validation vs teacher", _plain(
                f"balanced accuracy {chosen['val_balanced_accuracy']:.3f}, agreement {chosen.get('val_agreement', float('nan')):.3f}"
                " (against the teacher's labels, not people's)")))
        if metrics.get("dataset"):
            rows.append(("trained on", _code(metrics["dataset"])))
    rows.append(("visent", _plain(getattr(config, "visent_version", "?"))))
    return rows


def _cleaning_section(context: _Context, posts: _Posts | None) -> str:
    if posts is None:
        return _note("No dataset: the cleaning figures need the dataset the model was trained on.")
    if posts.stages["ingest"] != "done":
        return _note(_stage_note(posts, "ingest", "visent ingest SOURCE --out DATASET"))
    ds = context.dataset
    parts = []
    if posts.cleaned:
        from visent.clean.stage import STEPS

        info = ds.stage_info("clean") or {}
        counts = dict(info.get("counts") or {})
        params = info.get("params") or {}
        if not counts:  # a clean table without its counts: count the steps
            steps = Counter(step for step, s in zip(posts["clean_step"], posts["clean_status"]) if s != "kept")
            counts = {"posts": posts.n, **{step: steps.get(step, 0) for step in STEPS},
                      "kept": sum(s == "kept" for s in posts["clean_status"])}
        off = {"neutral_dropped": not params.get("drop_neutral"), "balanced_out": not params.get("balance")}
        names = []
        for step in STEPS:
            name = _STEP_NAMES.get(step, step)
            if step == "near_duplicate" and "near_dup_distance" in params:
                name += f" (≤ {params['near_dup_distance']})"
            if off.get(step):
                name += " (off)"
            names.append((name, int(counts.get(step, 0))))
        total, kept = int(counts.get("posts", posts.n)), int(counts.get("kept", 0))
        parts.append(_figure(_plots().funnel(names, total, kept, title=f"{total:,} posts → {kept:,} kept"),
                             "posts left after each cleaning step, and the posts each step dropped"))
        left = total
        step_rows = []
        for (name, count), step in zip(names, STEPS):
            left -= count
            step_rows.append([name, f"{count:,}", _percent(count, total), f"{left:,}"])
        parts.append(_table(["step (in order)", "dropped", "share of posts", "posts left"], step_rows, "steps"))
        dropped = [r for r, s in zip(posts["clean_reason"], posts["clean_status"]) if s == "dropped"]
        parts.append("<h3>Most frequent reasons</h3>")
        parts.append(_reasons_table(dropped, posts["post_id"], posts["clean_step"], posts["clean_reason"],
                                    posts["clean_status"], total))
    else:
        parts.append(_note(_stage_note(posts, "clean", "visent clean DATASET")))
    parts.append("<h3>Ingest errors</h3>")
    errors = [(pid, reason or "no reason given") for pid, status, reason
              in zip(posts["post_id"], posts["ingest_status"], posts["ingest_reason"]) if status != "ok"]
    parts.append(_grouped(errors, posts.n, "with an ingest error", "ingest-errors"))
    parts.append("<h3>Posts the teacher skipped</h3>")
    if posts.taught:
        skipped = [(pid, reason or "no reason given") for pid, status, reason
                   in zip(posts["post_id"], posts["teach_status"], posts["teach_reason"]) if status != "ok"]
        parts.append(_grouped(skipped, posts.n, "skipped by the teacher", "teach-skips", teach=True))
    else:
        parts.append(_note(_stage_note(posts, "teach", "visent teach DATASET")))
    return "\n".join(parts)


def _reasons_table(dropped: list[str], ids: list[str], steps: list[str | None], reasons: list[str], status: list[str],
                   total: int, limit: int = 15) -> str:
    if not dropped:
        return _note("Cleaning dropped no post.")
    kinds = Counter(reason_kind(r) for r in dropped)
    example: dict[str, tuple[str, str, str | None]] = {}
    for pid, step, reason, state in zip(ids, steps, reasons, status):
        if state == "dropped":
            example.setdefault(reason_kind(reason), (pid, reason, step))
    rows = [[_STEP_NAMES.get(example[kind][2] or "", example[kind][2] or "–"), kind, f"{count:,}",
             _percent(count, total), f"{example[kind][1]} (post {example[kind][0]})"]
            for kind, count in kinds.most_common(limit)]
    more = len(kinds) - limit
    table = _table(["step", "reason", "posts", "share of posts", "example"], rows, "reasons")
    return table + (_note(f"{more} rarer reasons not shown.") if more > 0 else "")


def _grouped(items: list[tuple[str, str]], total: int, what: str, css: str, *, teach: bool = False,
             limit: int = 10) -> str:
    if not items:
        return _note(f"No post {what}.")
    kind = (lambda r: r.split(":")[0].strip()) if teach else reason_kind
    kinds = Counter(kind(reason) for _, reason in items)
    example: dict[str, tuple[str, str]] = {}
    for pid, reason in items:
        example.setdefault(kind(reason), (pid, reason))
    rows = [[k, f"{count:,}", _percent(count, total), f"{example[k][1]} (post {example[k][0]})"]
            for k, count in kinds.most_common(limit)]
    head = f"<p>{_posts_count(len(items))} {html.escape(what)} ({_percent(len(items), total)} of the posts).</p>"
    return head + _table(["reason", "posts", "share of posts", "example"], rows, css)


def _confidence_section(context: _Context, posts: _Posts | None) -> str:
    if posts is None:
        return _note("No dataset: the teacher's confidences are in the dataset the model was trained on.")
    if not posts.taught:
        return _note(_stage_note(posts, "teach", "visent teach DATASET"))
    ds = context.dataset
    thresholds = ((ds.stage_info("clean") or {}).get("params") or {}).get("thresholds") if posts.cleaned else None
    label = "threshold"
    if not thresholds:
        from visent.clean import default_thresholds

        thresholds, label = default_thresholds(ds), "default threshold"
    confidence: dict[str, list[float]] = {name: [] for name in CLASSES}
    kept: dict[str, list[bool]] = {name: [] for name in CLASSES}
    for status, name, value, state in zip(posts["teach_status"], posts["teach_label"], posts["teach_confidence"],
                                          posts["clean_status"]):
        if status == "ok" and name in confidence and value is not None and math.isfinite(value):
            confidence[name].append(value)
            kept[name].append(state == "kept")
    image = _plots().confidence_histograms({k: np.asarray(v) for k, v in confidence.items()},
                                           {k: np.asarray(v, dtype=bool) for k, v in kept.items()} if posts.cleaned else None,
                                           thresholds, threshold_label=label)
    rows = []
    for name in CLASSES:
        values = np.asarray(confidence[name], dtype=float)
        below = int((values < thresholds.get(name, 0.0)).sum()) if len(values) else 0
        rows.append([name, f"{len(values):,}", f"{np.median(values):.3f}" if len(values) else "–",
                     f"{thresholds.get(name, float('nan')):.2f}", f"{below:,} ({_percent(below, len(values))})"])
    text = ("Each panel holds the posts the teacher labelled with that class, by the teacher's confidence (its "
            "top probability). The dashed line is the class's " + label + ": posts left of it are dropped as low "
            "confidence." + (" Light orange: posts dropped by any step." if posts.cleaned else ""))
    return "\n".join([f"<p>{html.escape(text)}</p>", _figure(image, "teacher confidence per teacher label"),
                      _table(["teacher label", "posts", "median confidence", label, "below it"], rows, "confidence")])


def _balance_section(context: _Context, posts: _Posts | None) -> str:
    if posts is None:
        model = context.model
        counts = (model.metrics or {}).get("class_counts") if model is not None else None
        if counts:
            return _note("No dataset; the model's metrics.json counts its training images per class: "
                         + ", ".join(f"{name} {counts.get(name, 0):,}" for name in CLASSES) + ".")
        return _note("No dataset: the class balance is in the dataset the model was trained on.")
    if not posts.taught:
        return _note(_stage_note(posts, "teach", "visent teach DATASET"))
    before = Counter(name for status, name in zip(posts["teach_status"], posts["teach_label"]) if status == "ok")
    after = Counter(name for state, name in zip(posts["clean_status"], posts["label"]) if state == "kept") \
        if posts.cleaned else None
    image = _plots().class_balance(dict(before), dict(after) if after is not None else None)
    n_before = sum(before.values())
    n_after = sum(after.values()) if after is not None else 0
    rows = [[name, f"{before.get(name, 0):,}", _percent(before.get(name, 0), n_before)]
            + ([f"{after.get(name, 0):,}", _percent(after.get(name, 0), n_after)] if after is not None else [])
            for name in CLASSES]
    header = ["class", "teacher labels", "share"] + (["kept", "share"] if after is not None else [])
    parts = [_figure(image, "posts per teacher label before and after cleaning"), _table(header, rows, "balance")]
    if after is None:
        parts.append(_note(_stage_note(posts, "clean", "visent clean DATASET")))
    return "\n".join(parts)


def _evaluation_section(context: _Context, posts: _Posts | None) -> str:
    report = context.evaluation
    if report is None:
        return _note(context.evaluation_note)
    three = report.get("three_class") or {}
    parts = [f"<p>{html.escape(str(report.get('model', '?')))} on {html.escape(str(report.get('benchmark', '?')))}: "
             f"{_int(report.get('n_scored', three.get('n')))} images scored, {_int(report.get('n_unreadable', 0))} "
             f"unreadable, {_int(report.get('n_skipped_labels', 0))} "
             f"label{'' if report.get('n_skipped_labels', 0) == 1 else 's'} skipped.</p>"]
    given = report.get("training_overlap")  # measured by `visent evaluate` against the model's own dataset
    shared = (given["shared"], given["n"]) if given else _benchmark_overlap(report, posts)
    if shared and shared[0]:
        parts.append(_note(f"{shared[0]:,} of the benchmark's {shared[1]:,} images are among this dataset's kept "
                           "images, which the student learnt from (with the teacher's labels, not these human labels): "
                           "on those, these figures are not held out. To prove the student on unseen images, evaluate "
                           "on images outside the crawl (as T4SA's Twitter test sets) or with held-out folds."))
    rows = []
    binary = report.get("binary")
    if binary:
        rows.append(["binary (positive vs negative)", f"{binary['n']:,}", _num(binary.get("accuracy")),
                     _num(binary.get("balanced_accuracy")), _num(binary.get("macro_f1")), "–"])
    rows.append(["3 classes (argmax)", f"{three.get('n', 0):,}", _num(three.get("accuracy")),
                 _num(three.get("balanced_accuracy")), _num(three.get("macro_f1")), _num(three.get("ece"))])
    parts.append(_table(["protocol", "images", "accuracy", "balanced accuracy", "macro-F1", "ECE"], rows, "metrics"))
    intervals = [(name, binary.get(f"{key}_ci95")) for name, key in (("accuracy", "accuracy"),
                                                                        ("balanced accuracy", "balanced_accuracy"))
                 if binary and binary.get(f"{key}_ci95")]
    if intervals:
        parts.append('<p class="ci">Binary, 95% bootstrap intervals over the images: '
                     + "; ".join(f"{name} {_num(low)}–{_num(high)}" for name, (low, high) in intervals) + ".</p>")
    matrices = []
    if "confusion" in three:
        matrices.append(("3 classes (argmax)", three["confusion"]["labels"], three["confusion"]["rows_true_cols_predicted"]))
    if binary and "confusion" in binary:
        matrices.append(("positive vs negative", binary["confusion"]["labels"],
                         binary["confusion"]["rows_true_cols_predicted"]))
    figures = []
    if matrices:
        figures.append(_figure(_plots().confusion(matrices), "confusion matrices, rows true, columns predicted"))
    bins = (three.get("reliability") or {}).get("bins")
    if bins:
        figures.append(_figure(_plots().reliability(bins, three.get("ece")), "reliability diagram"))
    parts.append('<div class="row">' + "".join(figures) + "</div>")
    if not bins:
        parts.append(_note("This evaluation has no reliability bins (made by an older visent): run `visent evaluate "
                           "MODEL --benchmark SPEC --out FILE` again, or give `--benchmark`, for the reliability diagram."))
    if report.get("subsets"):
        srows = [[name, f"{b['n']:,}", _num(b.get("accuracy")), "–".join(map(_num, b.get("accuracy_ci95") or [])),
                  _num(b.get("balanced_accuracy"))]
                 for name, figures in report["subsets"].items() if (b := figures.get("binary"))]
        if srows:
            parts.append("<h3>Binary, per subset</h3>")
            parts.append(_table(["subset", "images", "accuracy", "its 95% interval", "balanced accuracy"], srows,
                                "subsets"))
    if report.get("published"):
        prows = [[row["subset"] or "all", row["metric"], _num(row["value"]), row["model"], row["protocol"],
                  f"{row['citation']}, doi:{row['doi']}"] for row in report["published"]]
        parts.append("<h3>Published figures for this benchmark</h3>")
        parts.append(_note("As the papers report them, beside visent's figures above; not re-measured by visent. "
                           "Their models, training data and protocols differ from this student's: each row says "
                           "which."))
        parts.append(_table(["subset", "metric", "published", "model", "protocol", "source"], prows, "published"))
    kfolds = [("", report["kfold"])] if "kfold" in report else []
    kfolds += [(f", {name} subset", figures["kfold"]) for name, figures in (report.get("subsets") or {}).items()
               if "kfold" in figures and not figures.get("kfold_is_all")]  # a subset of every image: the table above
    for label, kfold in kfolds:
        krows = [[name] + [f"{v[0]:.3f} ± {v[1]:.3f}" for v in summary.values()]
                 for name, summary in (kfold.get("summary") or {}).items()]
        keys = list(next(iter((kfold.get("summary") or {"": {}}).values())).keys())
        if krows:
            parts.append(f"<h3>{kfold.get('folds')}-fold protocol{html.escape(label)} (mean ± std over folds)</h3>")
            parts.append(_table(["head"] + [k.replace("_", " ") for k in keys], krows, "kfold"))
    return "\n".join(parts)


def _benchmark_overlap(report: dict[str, Any], posts: _Posts | None) -> tuple[int, int] | None:
    """(benchmark images whose bytes are among the dataset's kept images, benchmark images), when both can be
    read; identical files are recognised by their SHA-256."""
    if posts is None or not posts.cleaned or not report.get("benchmark"):
        return None
    from visent.embed.cached import file_hashes
    from visent.evaluate import BenchmarkError, load_benchmark, shared_with_kept

    try:
        bench = load_benchmark(report["benchmark"])
    except (BenchmarkError, OSError, ValueError):
        return None
    digests, _ = file_hashes(bench.paths)
    return shared_with_kept(posts["image_sha256"], posts["clean_status"], digests), len(bench.paths)


def _images_section(context: _Context, posts: _Posts | None, top: int) -> str:
    model = context.model
    if model is None:
        return _note(context.model_note or "No model: give `--model MODEL` to see the images it is most confident about.")
    if posts is None:
        return _note("No dataset: the grid shows the dataset's images as the model sees them; "
                     + (context.dataset_note or "give the dataset with `visent report DATASET --model MODEL`."))
    if top == 0:
        return _note("No images asked for (--top 0).")
    ds = context.dataset
    rows = [i for i in range(posts.n) if posts["image_file"][i]
            and (posts["clean_status"][i] == "kept" if posts.cleaned else posts["ingest_status"][i] == "ok")]
    what = "kept images" if posts.cleaned else "ingested images (the dataset is not cleaned)"
    if not rows:
        return _note(f"The dataset has no {what} to score.")
    paths = [ds.image_path(posts["image_file"][i]) for i in rows]
    try:
        # the store names images by their SHA-256, so no file is read again for features cached while training
        probs, statuses = model.predict_proba(paths, hashes=[posts["image_sha256"][i] for i in rows])
    except Exception as error:  # noqa: BLE001 - the rest of the report stands
        return _note(f"The model could not score the images: {type(error).__name__}: {error}")
    probs = np.asarray(probs, dtype=float)
    scored = ~np.isnan(probs).any(axis=1)
    parts = [f"<p>The model scored {int(scored.sum()):,} {html.escape(what)}; below, the {top} it is most confident "
             "about for each predicted class, overlaid with its sentiment map of that class (where in the image it "
             "finds the evidence). The caption gives the model's probability and the teacher's label of the post's "
             "text.</p>"]
    if (~scored).any():
        first = next((str(s) for s, ok in zip(statuses, scored) if not ok), "")
        parts.append(_note(f"{int((~scored).sum()):,} images could not be read and are left out (first: {first})."))
    from visent.explain import explain as explain_image

    explain = functools.partial(explain_image, model)
    predicted = np.where(scored, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), -1)
    chosen: list[tuple[int, int]] = []  # (class index, row into rows)
    for c, _ in enumerate(CLASSES):
        members = np.flatnonzero(predicted == c)
        order = members[np.argsort(-probs[members, c], kind="stable")][:top]
        chosen += [(c, int(k)) for k in order]
    from visent.core.progress import progress

    cells: dict[int, list[str]] = {c: [] for c in range(len(CLASSES))}
    failed = 0
    with progress("report: sentiment maps", len(chosen)) as advance:
        for c, k in chosen:
            i = rows[k]
            image, problem = _thumbnail(explain, paths[k], CLASSES[c])
            failed += problem is not None
            caption = (f"P({CLASSES[c]}) = {probs[k, c]:.2f} · teacher: {html.escape(posts['teach_label'][i] or '–')}"
                       f"<br><span class=\"id\">post {html.escape(str(posts['post_id'][i]))}</span>")
            if problem:
                caption += f"<br><span class=\"problem\">{html.escape(problem)}</span>"
            cells[c].append(f'<figure class="thumb"><div class="frame">{image}</div>'
                            f'<figcaption>{caption}</figcaption></figure>')
            advance(1)
    for c, name in enumerate(CLASSES):
        n_pred = int((predicted == c).sum())
        parts.append(f'<h3 class="cls-{name}">{name} <small>({n_pred:,} images predicted {name})</small></h3>')
        parts.append(f'<div class="grid" data-class="{name}">' + "".join(cells[c]) + "</div>" if cells[c]
                     else _note(f"No image is predicted {name}."))
    if failed:
        parts.append(_note(f"{failed} of the images could not be given a sentiment map; they are shown as they are, "
                           "or as a placeholder when they cannot be read."))
    return "\n".join(parts)


def _thumbnail(explain: Callable[[Path], Any], path: Path, cls: str) -> tuple[str, str | None]:
    """An ``<img>`` of the image overlaid with its map of ``cls`` (else the plain image, else a placeholder)
    and what went wrong, if anything."""
    try:
        return _img_tag(explain(path).overlay(cls), f"{path.name}, sentiment map of {cls}"), None
    except Exception as error:  # noqa: BLE001 - one image never stops the report
        problem = f"no sentiment map: {type(error).__name__}: {error}"
    try:  # decoded as everywhere in visent: the pixel limit, EXIF orientation, RGB
        return _img_tag(load_image(path, THUMBNAIL), path.name), problem
    except Exception as error:  # noqa: BLE001
        message = error.reason if isinstance(error, ImageError) else f"unreadable image: {type(error).__name__}"
        return (f'<div class="placeholder" style="width:{THUMBNAIL}px;height:{THUMBNAIL}px">{html.escape(message)}</div>',
                problem or message)


def _img_tag(image: Any, alt: str) -> str:
    from PIL import Image

    image = image.convert("RGB")
    scale = THUMBNAIL / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<img src="data:image/jpeg;base64,{data}" width="{image.width}" height="{image.height}" '
            f'alt="{html.escape(alt)}">')


# --------------------------------------------------------------------------- HTML
def _resource(name: str) -> str:
    """A file of ``visent/resources/report``: ``report.css`` (the stylesheet) and ``page.html`` (the page's
    ``string.Template``)."""
    return (resources.files("visent") / "resources" / "report" / name).read_text(encoding="utf-8")


def _page(context: _Context, sections: Sequence[tuple[str, str, str]]) -> str:
    subject = context.dataset.root if context.dataset is not None else context.target
    title = f"visent report: {Path(str(subject)).name or subject}"
    nav = "".join(f'<a href="#{key}">{html.escape(name.split(":")[0])}</a>' for key, name, _ in sections)
    body = "\n".join(f'<section id="{key}">\n<h2>{html.escape(name)}</h2>\n{content}\n</section>'
                     for key, name, content in sections)
    made = time.strftime("%Y-%m-%d %H:%M")
    return string.Template(_resource("page.html")).substitute(
        title=html.escape(title), css=_resource("report.css"), subject=html.escape(str(subject)), version=__version__,
        made=made, nav=nav, body=body)


def _plots():
    from visent.report import plots

    return plots


def _figure(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure class="plot"><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></figure>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    def cell(tag: str, value: Any) -> str:
        text = str(value)
        numeric = bool(re.fullmatch(r"[-+−]?[\d,.]+%?( \(.*\))?|–", text))
        return f'<{tag}{" class=num" if numeric else ""}>{html.escape(text)}</{tag}>'

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell("td", v) for v in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of label → already-escaped HTML."""
    body = "".join(f"<tr><th>{html.escape(label)}</th><td>{value}</td></tr>" for label, value in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


def _plain(text: Any) -> str:
    return html.escape(str(text))


def _code(text: Any) -> str:
    return f"<code>{html.escape(str(text))}</code>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _posts_count(n: int) -> str:
    return f"{n:,} post" if n == 1 else f"{n:,} posts"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _count_line(counts: dict[str, Any], keys: Sequence[str], names: dict[str, str]) -> str:
    parts = [f"{counts[key]:,} {names.get(key, key)}" for key in keys if key in counts]
    return " · ".join(parts) if parts else "?"


def _stage_note(posts: _Posts, stage: str, command: str) -> str:
    status = posts.stages.get(stage, "missing")
    why = {"missing": "has not run", "stale": "is stale (an earlier stage ran again since)",
           "running": "has not finished"}.get(status, f"is {status}")
    return f"The {stage} stage {why}: run `{command}` for this part."
