"""Decoding text files: UTF-8 first, else the legacy encoding charset-normalizer finds."""

from __future__ import annotations

import codecs
from typing import Iterable

import charset_normalizer

SAMPLE_BYTES = 1 << 16  # bytes read to guess a file's encoding


class TextDecoder:
    """Decodes text files: UTF-8 first, then the encoding that fits the source's other files.

    Short posts carry too few non-ASCII bytes for a reliable guess one by one, so the
    fallback encoding is detected once, on the pooled non-UTF-8 files of a source.
    """

    def __init__(self, fallback: str | None = None):
        self.fallback = fallback

    @classmethod
    def learn(cls, samples: Iterable[bytes], budget: int = SAMPLE_BYTES) -> TextDecoder:
        pooled = bytearray()
        for data in samples:
            if not is_utf8(data):
                pooled += data + b"\n"
                if len(pooled) >= budget:
                    break
        return cls(detect_encoding(bytes(pooled)) if pooled else None)

    def decode(self, data: bytes) -> str:
        with_bom = data.startswith(codecs.BOM_UTF8)
        try:
            return data.decode("utf-8-sig" if with_bom else "utf-8")
        except UnicodeDecodeError:
            pass
        if self.fallback:
            try:
                return data.decode(self.fallback)
            except (UnicodeDecodeError, LookupError):
                pass
        return data.decode(detect_encoding(data) or "cp1252", errors="replace")


def is_utf8(data: bytes, final: bool = True) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
        return True
    except UnicodeDecodeError:
        return False


# Legacy encodings by how common they are in social-media text; breaks ties between equally good guesses.
_COMMON_ENCODINGS = ("cp1252", "gb18030", "cp1251", "shift_jis", "big5", "euc_kr", "cp1250", "cp1256",
                     "cp1253", "cp1254", "cp1255", "cp1257", "cp874", "euc_jp", "koi8_r", "latin_1")


def detect_encoding(data: bytes) -> str | None:
    """charset-normalizer's guess; among equally good candidates the most common encoding wins."""
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        return None
    rank = {name: i for i, name in enumerate(_COMMON_ENCODINGS)}
    best = min(matches, key=lambda m: (round(m.chaos, 3), -round(m.coherence, 3),
                                       rank.get(m.encoding, len(rank))))
    return best.encoding
