"""How summaries and cards show values to people: numbers at a sensible precision, a dict as a ``key: value`` list,
counts in a fixed order (never a Python dict, a float's seventeen digits, or the manifest's alphabetical order)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def readable(value: Any) -> str:
    """``1,234``; ``0.3333`` (four significant digits); ``yes``/``no``; ``negative: 12, neutral: 0`` for a dict
    (a nested dict or list in parentheses); ``a, b`` for a list; anything else as ``str``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_part(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_part(item) for item in value)
    return "" if value is None else str(value)


def _part(value: Any) -> str:
    nested = isinstance(value, (Mapping, list, tuple)) and len(value) > 1
    return f"({readable(value)})" if nested else readable(value)


def ordered(counts: Mapping[str, Any] | None, first: Sequence[str]) -> dict[str, Any]:
    """``counts`` with the keys of ``first`` in that order, then the others sorted: the same order on every run
    (a stage's counts come back from the manifest with their keys sorted)."""
    counts = counts or {}
    return {**{key: counts[key] for key in first if key in counts},
            **{key: counts[key] for key in sorted(counts) if key not in first}}
