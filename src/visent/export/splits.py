"""The split of a kept row: drawn from its image's SHA-256, so it never changes when posts are added and identical
images always share one."""

from __future__ import annotations

from collections.abc import Sequence

from visent.core.errors import UsageError

__all__ = ["DEFAULT_SPLIT", "SPLITS", "parse_split", "split_fraction", "split_of"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


DEFAULT_SPLIT: tuple[float, float, float] = (0.8, 0.1, 0.1)


_HEX_DIGITS = 13  # 52 bits: the fraction below is exact in a float64


def parse_split(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or three numbers) → the train / val / test fractions, checked: each ≥ 0, sum 1."""
    parts = [p for p in text.replace(" ", "").split(",")] if isinstance(text, str) else list(text)
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"split {text!r}: expected three numbers for train,val,test such as 0.8,0.1,0.1") from None
    if len(values) != 3:
        raise UsageError(f"split {text!r}: expected three fractions (train,val,test), got {len(values)}")
    if any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise UsageError(f"split {text!r}: fractions must be >= 0 and sum to 1 (they sum to {sum(values):g})")
    return values  # type: ignore[return-value]


def split_fraction(image_sha256: str) -> float:
    """The image's place in [0, 1): its SHA-256 read as a binary fraction (first 52 bits)."""
    return int(image_sha256[:_HEX_DIGITS], 16) / 16 ** _HEX_DIGITS


def split_of(image_sha256: str | None, split: Sequence[float] = DEFAULT_SPLIT) -> str:
    """``train``, ``val`` or ``test`` for an image (by its SHA-256), ``""`` when there is none."""
    if not image_sha256:
        return ""
    u = split_fraction(image_sha256)
    if u < split[0]:
        return "train"
    if u < split[0] + split[1]:
        return "val"
    return "test" if split[2] > 0 else ("val" if split[1] > 0 else "train")
