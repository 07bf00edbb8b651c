"""Clean and ingest reasons grouped by kind, as the report counts them, and the names of the cleaning steps."""

from __future__ import annotations

import re

__all__ = ["STEP_NAMES", "reason_kind"]

STEP_NAMES = {
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
