"""The report's sections about the dataset and the model: summary, cleaning, teacher confidence, class balance and
the images the student is most confident about (the evaluation's is :mod:`visent.report.evaluation`).

Each takes the :class:`~visent.report.context.ReportContext` and the dataset's
:class:`~visent.report.context.Posts` (None without a dataset) and gives HTML; a part that cannot be made leaves a
note saying why and how to add it.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from visent.core.images import ImageError, load_image
from visent.core.labels import CLASSES
from visent.report.context import Posts, ReportContext
from visent.report.markup import (
    code,
    count_line,
    facts,
    figure,
    integer,
    note,
    percent,
    plain,
    plots,
    posts_count,
    table,
)
from visent.report.reasons import STEP_NAMES, reason_kind

__all__ = ["THUMBNAIL", "balance_section", "cleaning_section", "confidence_section", "images_section",
           "summary_section"]

THUMBNAIL = 160  # longest side of a grid image, in pixels


def summary_section(context: ReportContext, posts: Posts | None) -> str:
    parts = [note(text) for text in context.notes]
    ds = context.dataset
    if posts is not None and posts.stages["ingest"] != "done":
        parts.append(note("The ingest stage has not finished: run `visent ingest SOURCE --out DATASET`; until then "
                           "the dataset has no posts to report on."))
    if ds is not None:
        ingest = ds.stage_info("ingest") or {}
        teach = ds.stage_info("teach") or {}
        clean = ds.stage_info("clean") or {}
        ingest_params, ingest_counts = ingest.get("params") or {}, ingest.get("counts") or {}
        teach_params, clean_params = teach.get("params") or {}, clean.get("params") or {}
        clean_counts = clean.get("counts") or {}
        rows = [
            ("dataset", code(ds.root)),
            ("source", code(ingest_params.get("source", "?")) + plain(f" (format {ingest_params.get('format', '?')})")),
            ("posts", plain(count_line(ingest_counts, ("posts", "ok", "error", "images"),
                                         {"ok": "read", "error": "ingest errors", "images": "images stored"}))),
        ]
        if ingest_counts.get("with_human_labels"):
            rows.append(("human labels", plain(f"{ingest_counts['with_human_labels']:,} posts carry labels from the "
                                                "source (read by evaluation only, never by training)")))
        rows.append(("stages", plain(" · ".join(f"{name}: {status}" for name, status in posts.stages.items())
                                      if posts is not None else "?")))
        if teach_params:
            teacher = teach_params.get("teacher", "?")
            ident = teach_params.get("teacher_id")
            rows.append(("teacher", code(teacher) + (plain(" — ") + code(ident) if ident and ident != teacher else "")))
        if clean_params:
            thresholds = clean_params.get("thresholds") or {}
            rows.append(("thresholds", plain(" · ".join(f"{name} {thresholds[name]:.2f}" for name in CLASSES
                                                         if name in thresholds))))
            rows.append(("cleaning", plain(
                f"near duplicates at pHash distance ≤ {clean_params.get('near_dup_distance')}, "
                f"images smaller than {clean_params.get('min_side')} px dropped, "
                f"balance {'on' if clean_params.get('balance') else 'off'}, "
                f"neutral {'dropped' if clean_params.get('drop_neutral') else 'kept'}, "
                f"seed {clean_params.get('seed')}")))
        if clean_counts:
            total = clean_counts.get("posts", 0) or 0
            kept = clean_counts.get("kept", 0)
            rows.append(("kept", plain(f"{kept:,} of {total:,} posts ({percent(kept, total)})")))
        parts.append(facts(rows))
    elif context.dataset_note:
        parts.append(note(context.dataset_note))
    model = context.model
    if model is not None:
        parts.append("<h3>Model</h3>" + facts(_model_facts(model)))
    elif context.model_note:
        parts.append(note(context.model_note))
    return "\n".join(parts)


def _model_facts(model: Any) -> list[tuple[str, str]]:
    config, metrics = model.config, model.metrics or {}
    backbone = f"{config.backbone} ({'fine-tuned' if config.backbone_weights else 'frozen, ImageNet'})"
    backbone += "".join(f" + {name} (frozen, ImageNet)" for name in getattr(config, "extra_backbones", []) or [])
    rows = [("model", code(model.directory if model.directory is not None else "(in memory)")),
            ("backbone", plain(backbone)),
            ("runtime", plain(f"{config.runtime}, test-time augmentation {config.tta or 'none'}, image signals "
                               f"{', '.join(getattr(config, 'signals', []) or []) or 'none'}"))]
    if metrics:
        head = f"multinomial logistic, C = {metrics.get('C')}, {metrics.get('target', '?')} targets"
        calibration = metrics.get("calibration") or {}
        if calibration.get("temperature") is not None:
            head += f", temperature {calibration['temperature']:.3f}"
        rows.append(("head", plain(head)))
        counts = metrics.get("class_counts") or {}
        rows.append(("training images", plain(f"{integer(metrics.get('n_train_posts'))} ("
                                              + ", ".join(f"{name} {counts.get(name, 0):,}" for name in CLASSES)
                                              + ")")))
        chosen = (metrics.get("validation") or {}).get("chosen") or {}
        if "val_balanced_accuracy" in chosen:
            rows.append(("validation vs teacher", plain(
                f"balanced accuracy {chosen['val_balanced_accuracy']:.3f}, "
                f"agreement {chosen.get('val_agreement', float('nan')):.3f}"
                " (against the teacher's labels, not people's)")))
        if metrics.get("dataset"):
            rows.append(("trained on", code(metrics["dataset"])))
    rows.append(("visent", plain(getattr(config, "visent_version", "?"))))
    return rows


def cleaning_section(context: ReportContext, posts: Posts | None) -> str:
    if posts is None:
        return note("No dataset: the cleaning figures need the dataset the model was trained on.")
    if posts.stages["ingest"] != "done":
        return note(_stage_note(posts, "ingest", "visent ingest SOURCE --out DATASET"))
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
            name = STEP_NAMES.get(step, step)
            if step == "near_duplicate" and "near_dup_distance" in params:
                name += f" (≤ {params['near_dup_distance']})"
            if off.get(step):
                name += " (off)"
            names.append((name, int(counts.get(step, 0))))
        total, kept = int(counts.get("posts", posts.n)), int(counts.get("kept", 0))
        parts.append(figure(plots().funnel(names, total, kept, title=f"{total:,} posts → {kept:,} kept"),
                             "posts left after each cleaning step, and the posts each step dropped"))
        left = total
        step_rows = []
        for (name, count), step in zip(names, STEPS):
            left -= count
            step_rows.append([name, f"{count:,}", percent(count, total), f"{left:,}"])
        parts.append(table(["step (in order)", "dropped", "share of posts", "posts left"], step_rows, "steps"))
        dropped = [r for r, s in zip(posts["clean_reason"], posts["clean_status"]) if s == "dropped"]
        parts.append("<h3>Most frequent reasons</h3>")
        parts.append(_reasons_table(dropped, posts["post_id"], posts["clean_step"], posts["clean_reason"],
                                    posts["clean_status"], total))
    else:
        parts.append(note(_stage_note(posts, "clean", "visent clean DATASET")))
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
        parts.append(note(_stage_note(posts, "teach", "visent teach DATASET")))
    return "\n".join(parts)


def _reasons_table(dropped: list[str], ids: list[str], steps: list[str | None], reasons: list[str], status: list[str],
                   total: int, limit: int = 15) -> str:
    if not dropped:
        return note("Cleaning dropped no post.")
    kinds = Counter(reason_kind(r) for r in dropped)
    example: dict[str, tuple[str, str, str | None]] = {}
    for pid, step, reason, state in zip(ids, steps, reasons, status):
        if state == "dropped":
            example.setdefault(reason_kind(reason), (pid, reason, step))
    rows = [[STEP_NAMES.get(example[kind][2] or "", example[kind][2] or "–"), kind, f"{count:,}",
             percent(count, total), f"{example[kind][1]} (post {example[kind][0]})"]
            for kind, count in kinds.most_common(limit)]
    more = len(kinds) - limit
    rendered = table(["step", "reason", "posts", "share of posts", "example"], rows, "reasons")
    return rendered + (note(f"{more} rarer reasons not shown.") if more > 0 else "")


def _grouped(items: list[tuple[str, str]], total: int, what: str, css: str, *, teach: bool = False,
             limit: int = 10) -> str:
    if not items:
        return note(f"No post {what}.")
    kind = (lambda r: r.split(":")[0].strip()) if teach else reason_kind
    kinds = Counter(kind(reason) for _, reason in items)
    example: dict[str, tuple[str, str]] = {}
    for pid, reason in items:
        example.setdefault(kind(reason), (pid, reason))
    rows = [[k, f"{count:,}", percent(count, total), f"{example[k][1]} (post {example[k][0]})"]
            for k, count in kinds.most_common(limit)]
    head = f"<p>{posts_count(len(items))} {html.escape(what)} ({percent(len(items), total)} of the posts).</p>"
    return head + table(["reason", "posts", "share of posts", "example"], rows, css)


def confidence_section(context: ReportContext, posts: Posts | None) -> str:
    if posts is None:
        return note("No dataset: the teacher's confidences are in the dataset the model was trained on.")
    if not posts.taught:
        return note(_stage_note(posts, "teach", "visent teach DATASET"))
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
    kept_arrays = {k: np.asarray(v, dtype=bool) for k, v in kept.items()} if posts.cleaned else None
    image = plots().confidence_histograms({k: np.asarray(v) for k, v in confidence.items()}, kept_arrays,
                                          thresholds, threshold_label=label)
    rows = []
    for name in CLASSES:
        values = np.asarray(confidence[name], dtype=float)
        below = int((values < thresholds.get(name, 0.0)).sum()) if len(values) else 0
        rows.append([name, f"{len(values):,}", f"{np.median(values):.3f}" if len(values) else "–",
                     f"{thresholds.get(name, float('nan')):.2f}", f"{below:,} ({percent(below, len(values))})"])
    text = ("Each panel holds the posts the teacher labelled with that class, by the teacher's confidence (its "
            "top probability). The dashed line is the class's " + label + ": posts left of it are dropped as low "
            "confidence." + (" Light orange: posts dropped by any step." if posts.cleaned else ""))
    return "\n".join([f"<p>{html.escape(text)}</p>", figure(image, "teacher confidence per teacher label"),
                      table(["teacher label", "posts", "median confidence", label, "below it"], rows, "confidence")])


def balance_section(context: ReportContext, posts: Posts | None) -> str:
    if posts is None:
        model = context.model
        counts = (model.metrics or {}).get("class_counts") if model is not None else None
        if counts:
            return note("No dataset; the model's metrics.json counts its training images per class: "
                         + ", ".join(f"{name} {counts.get(name, 0):,}" for name in CLASSES) + ".")
        return note("No dataset: the class balance is in the dataset the model was trained on.")
    if not posts.taught:
        return note(_stage_note(posts, "teach", "visent teach DATASET"))
    before = Counter(name for status, name in zip(posts["teach_status"], posts["teach_label"]) if status == "ok")
    after = Counter(name for state, name in zip(posts["clean_status"], posts["label"]) if state == "kept") \
        if posts.cleaned else None
    image = plots().class_balance(dict(before), dict(after) if after is not None else None)
    n_before = sum(before.values())
    n_after = sum(after.values()) if after is not None else 0
    rows = [[name, f"{before.get(name, 0):,}", percent(before.get(name, 0), n_before)]
            + ([f"{after.get(name, 0):,}", percent(after.get(name, 0), n_after)] if after is not None else [])
            for name in CLASSES]
    header = ["class", "teacher labels", "share"] + (["kept", "share"] if after is not None else [])
    parts = [figure(image, "posts per teacher label before and after cleaning"), table(header, rows, "balance")]
    if after is None:
        parts.append(note(_stage_note(posts, "clean", "visent clean DATASET")))
    return "\n".join(parts)


def images_section(context: ReportContext, posts: Posts | None, top: int) -> str:
    model = context.model
    if model is None:
        return note(context.model_note
                    or "No model: give `--model MODEL` to see the images it is most confident about.")
    if posts is None:
        return note("No dataset: the grid shows the dataset's images as the model sees them; "
                     + (context.dataset_note or "give the dataset with `visent report DATASET --model MODEL`."))
    if top == 0:
        return note("No images asked for (--top 0).")
    ds = context.dataset
    rows = [i for i in range(posts.n) if posts["image_file"][i]
            and (posts["clean_status"][i] == "kept" if posts.cleaned else posts["ingest_status"][i] == "ok")]
    what = "kept images" if posts.cleaned else "ingested images (the dataset is not cleaned)"
    if not rows:
        return note(f"The dataset has no {what} to score.")
    paths = [ds.image_path(posts["image_file"][i]) for i in rows]
    try:
        # the store names images by their SHA-256, so no file is read again for features cached while training
        probs, statuses = model.predict_proba(paths, hashes=[posts["image_sha256"][i] for i in rows])
    except Exception as error:  # noqa: BLE001 - the rest of the report stands
        return note(f"The model could not score the images: {type(error).__name__}: {error}")
    probs = np.asarray(probs, dtype=float)
    scored = ~np.isnan(probs).any(axis=1)
    parts = [f"<p>The model scored {int(scored.sum()):,} {html.escape(what)}; below, the {top} it is most confident "
             "about for each predicted class, overlaid with its sentiment map of that class (where in the image it "
             "finds the evidence). The caption gives the model's probability and the teacher's label of the post's "
             "text.</p>"]
    if (~scored).any():
        first = next((str(s) for s, ok in zip(statuses, scored) if not ok), "")
        parts.append(note(f"{int((~scored).sum()):,} images could not be read and are left out (first: {first})."))
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
                     else note(f"No image is predicted {name}."))
    if failed:
        parts.append(note(f"{failed} of the images could not be given a sentiment map; they are shown as they are, "
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
        return (f'<div class="placeholder" style="width:{THUMBNAIL}px;height:{THUMBNAIL}px">'
                f'{html.escape(message)}</div>', problem or message)


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


def _stage_note(posts: Posts, stage: str, command: str) -> str:
    status = posts.stages.get(stage, "missing")
    why = {"missing": "has not run", "stale": "is stale (an earlier stage ran again since)",
           "running": "has not finished"}.get(status, f"is {status}")
    return f"The {stage} stage {why}: run `{command}` for this part."
