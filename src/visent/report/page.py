"""The report's page: :func:`render_report` puts the sections together in the page's skeleton,
:func:`write_report` writes it."""

from __future__ import annotations

import html
import os
import string
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from visent.core.errors import UsageError
from visent.core.store import atomic_write_text
from visent.core.version import __version__
from visent.evaluate.record import Evaluation
from visent.report.context import Posts, ReportContext, load_evaluation, resolve_target
from visent.report.evaluation import evaluation_section
from visent.report.sections import (
    balance_section,
    cleaning_section,
    confidence_section,
    images_section,
    summary_section,
)

__all__ = ["render_report", "write_report"]


def write_report(target: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 model: str | os.PathLike[str] | None = None, benchmark: str | os.PathLike[str] | None = None,
                 evaluation: Evaluation | dict | str | os.PathLike[str] | None = None, top: int = 6) -> Path:
    """Write the HTML report of ``target`` (a dataset directory, a model directory or ``default``) to ``out``.

    ``model`` names the student when ``target`` is a dataset; a model target finds its dataset through the
    ``dataset`` entry of its metrics.json. ``benchmark`` runs ``visent evaluate`` on that spec now;
    ``evaluation`` reuses the JSON written by ``visent evaluate --out`` (or its dict, or the
    :class:`~visent.evaluate.record.Evaluation` of :func:`visent.evaluate.evaluate`). ``top`` images per
    predicted class go in the grid. The file is written atomically; returns its path.
    """
    page = render_report(target, model=model, benchmark=benchmark, evaluation=evaluation, top=top)
    out = Path(out)
    atomic_write_text(out, page)
    return out


def render_report(target: str | os.PathLike[str], *, model: str | os.PathLike[str] | None = None,
                  benchmark: str | os.PathLike[str] | None = None,
                  evaluation: Evaluation | dict | str | os.PathLike[str] | None = None, top: int = 6) -> str:
    """The report of :func:`write_report` as an HTML string."""
    if top < 0:
        raise UsageError(f"top must be >= 0, got {top}")
    if benchmark is not None and evaluation is not None:
        raise UsageError("give a benchmark to evaluate now or an evaluation file to reuse, not both")
    context = resolve_target(target, model)
    context.evaluation, context.evaluation_note = load_evaluation(context, benchmark, evaluation)
    posts = Posts.read(context.dataset) if context.dataset is not None else None
    sections = [
        ("summary", "Summary", summary_section(context, posts)),
        ("cleaning", "Cleaning: posts kept and dropped", cleaning_section(context, posts)),
        ("confidence", "Teacher confidence per class", confidence_section(context, posts)),
        ("balance", "Class balance", balance_section(context, posts)),
        ("evaluation", "Evaluation on human labels", evaluation_section(context, posts)),
        ("images", "Most confident images per class", images_section(context, posts, top)),
    ]
    return _page(context, sections)


def _resource(name: str) -> str:
    """A file of ``visent/resources/report``: ``report.css`` (the stylesheet) and ``page.html`` (the page's
    ``string.Template``)."""
    return (resources.files("visent") / "resources" / "report" / name).read_text(encoding="utf-8")


def _page(context: ReportContext, sections: Sequence[tuple[str, str, str]]) -> str:
    subject = context.dataset.root if context.dataset is not None else context.target
    title = f"visent report: {Path(str(subject)).name or subject}"
    nav = "".join(f'<a href="#{key}">{html.escape(name.split(":")[0])}</a>' for key, name, _ in sections)
    body = "\n".join(f'<section id="{key}">\n<h2>{html.escape(name)}</h2>\n{content}\n</section>'
                     for key, name, content in sections)
    made = time.strftime("%Y-%m-%d %H:%M")
    return string.Template(_resource("page.html")).substitute(
        title=html.escape(title), css=_resource("report.css"), subject=html.escape(str(subject)), version=__version__,
        made=made, nav=nav, body=body)
