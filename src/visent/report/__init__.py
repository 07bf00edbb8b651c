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

Modules: :mod:`~visent.report.page` (the page), :mod:`~visent.report.context` (the dataset, model and evaluation a
report is about), :mod:`~visent.report.sections` (the sections), :mod:`~visent.report.evaluation` (the evaluation's
section), :mod:`~visent.report.markup` (the HTML pieces), :mod:`~visent.report.reasons` (reasons by kind) and
:mod:`~visent.report.plots` (the figures).
"""

from __future__ import annotations

from visent.report.page import render_report, write_report
from visent.report.reasons import reason_kind

__all__ = ["reason_kind", "render_report", "write_report"]
