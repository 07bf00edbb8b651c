"""The HTML pieces every section of the report is made of: tables, figures, notes and the number formats.

Text given to these is escaped here (``facts`` takes rows whose values are already HTML); a figure is a PNG
inlined as a ``data:`` URI, so the page loads nothing from anywhere. :func:`plots` imports matplotlib's drawings
(:mod:`visent.report.plots`) on first use.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["code", "count_line", "facts", "figure", "integer", "note", "number", "percent", "plain", "plots",
           "posts_count", "table"]


def plots():
    """:mod:`visent.report.plots`, imported now (it loads matplotlib)."""
    import visent.report.plots as plots

    return plots


def figure(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure class="plot"><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></figure>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    def cell(tag: str, value: Any) -> str:
        text = str(value)
        numeric = bool(re.fullmatch(r"[-+−]?[\d,.]+%?( \(.*\))?|–", text))
        return f'<{tag}{" class=num" if numeric else ""}>{html.escape(text)}</{tag}>'

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell("td", v) for v in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def facts(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of label → already-escaped HTML."""
    body = "".join(f"<tr><th>{html.escape(label)}</th><td>{value}</td></tr>" for label, value in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


def plain(text: Any) -> str:
    return html.escape(str(text))


def code(text: Any) -> str:
    return f"<code>{html.escape(str(text))}</code>"


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def posts_count(n: int) -> str:
    return f"{n:,} post" if n == 1 else f"{n:,} posts"


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def integer(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def count_line(counts: dict[str, Any], keys: Sequence[str], names: dict[str, str]) -> str:
    parts = [f"{counts[key]:,} {names.get(key, key)}" for key in keys if key in counts]
    return " · ".join(parts) if parts else "?"
