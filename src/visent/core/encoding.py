"""Decoding text: UTF-8 first, else the legacy encoding of the source, repaired only where that is certain.

A source's legacy encoding is learned once, on its pooled non-UTF-8 texts (short posts carry too few
non-ASCII bytes for a guess one by one): charset-normalizer's guess when it is clear, else cp1252, the
most common legacy encoding of social-media text, when charset-normalizer finds that reading plausible.
A text that is not UTF-8 is then either repaired (read in that encoding, certain) or suspect: the
encoding is not certain, or the text does not read in it (garbage bytes). :class:`Decoded` says which.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass
from typing import Iterable

import charset_normalizer

SAMPLE_BYTES = 1 << 16  # bytes read to guess a file's encoding
MIN_EVIDENCE = 32       # bytes beyond plain ASCII text below which charset-normalizer's guess is never clear
_PLAIN_ASCII = bytes(range(0x20, 0x7f)) + b"\t\n\r"
DEFAULT_LEGACY = "cp1252"
_FIX = "save the source as UTF-8 and ingest again"
# characters no legacy text holds (C0 controls but tab and newlines, DEL, C1 controls, private use, the
# replacement character): a reading that makes them is a wrong one, or the bytes are not text
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ue000-\uf8ff\ufffd]")


@dataclass(frozen=True)
class Decoded:
    """A text and how its bytes were read: ``encoding`` ("utf-8", or the encoding a text that is not UTF-8
    was read in) and ``problem``, why the text cannot be trusted ("" when it can)."""

    text: str
    encoding: str = "utf-8"
    problem: str = ""

    @property
    def repaired(self) -> bool:
        """True for a text that was not UTF-8 and was read with certainty in a legacy encoding."""
        return not self.problem and not codecs.lookup(self.encoding).name.startswith("utf")


@dataclass(frozen=True)
class Legacy:
    """The encoding a source's non-UTF-8 texts are read in, and whether that is certain."""

    encoding: str
    certain: bool

    @classmethod
    def of(cls, pieces: list[bytes]) -> Legacy:
        encoding = detect_encoding(b"\n".join(pieces))
        if encoding:
            return cls(encoding, True)
        readable = b"\n".join(p for p in pieces if read_as(p, DEFAULT_LEGACY) is not None)
        return cls(DEFAULT_LEGACY, bool(readable) and reads_as_text(readable, DEFAULT_LEGACY))


class TextDecoder:
    """Reads the texts of one source: UTF-8 as it is, else in the source's :class:`Legacy` encoding.

    ``samples`` are the source's texts (files, lines); the non-UTF-8 ones among them, up to ``budget`` bytes,
    are pooled to learn the legacy encoding the first time a text needs it, so a source all in UTF-8 is
    never read twice. Without samples, a text that is not UTF-8 is its own evidence.
    """

    def __init__(self, samples: Iterable[bytes] = (), budget: int = SAMPLE_BYTES):
        self._samples = iter(samples)
        self._budget = budget
        self._legacy: Legacy | None = None

    @classmethod
    def learn(cls, samples: Iterable[bytes], budget: int = SAMPLE_BYTES) -> TextDecoder:
        return cls(samples, budget)

    def legacy(self, data: bytes = b"") -> Legacy:
        """The source's legacy encoding (``data``'s own when the samples hold no text that is not UTF-8)."""
        if self._legacy is None:
            pieces, size = [], 0
            for sample in self._samples:
                if not is_utf8(sample):
                    pieces.append(sample)
                    size += len(sample) + 1
                    if size >= self._budget:
                        break
            if not pieces:
                return Legacy.of([data])
            self._legacy = Legacy.of(pieces)
        return self._legacy

    def read(self, data: bytes) -> Decoded:
        """``data`` decoded, and how (see :class:`Decoded`)."""
        data = data.removeprefix(codecs.BOM_UTF8)
        try:
            return Decoded(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
        legacy = self.legacy(data)
        return _judged(read_as(data, legacy.encoding), data.decode("utf-8", errors="replace"), legacy)

    def check(self, text: str) -> Decoded:
        """``text`` as a file in the source's legacy encoding was read (the bytes it refused kept by
        :data:`ESCAPE`), and how far it can be trusted (see :class:`Decoded`)."""
        readable = None if ESCAPED.search(text) or _NOT_TEXT.search(text) else text
        return _judged(readable, ESCAPED.sub("\ufffd", text), self.legacy())

    def decode(self, data: bytes) -> str:
        return self.read(data).text


def _judged(text: str | None, unreadable: str, legacy: Legacy) -> Decoded:
    """A text read in ``legacy``'s encoding (None: it did not read as text there, ``unreadable`` is shown)."""
    if text is None:
        return Decoded(unreadable, legacy.encoding,
                       f"text is neither UTF-8 nor {legacy.encoding}: its bytes do not read as text; {_FIX}")
    if not legacy.certain:
        return Decoded(text, legacy.encoding,
                       f"text is not UTF-8 and its encoding is unclear (read as {legacy.encoding}, a guess); {_FIX}")
    return Decoded(text, legacy.encoding)


def _escape(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    refused = exc.object[exc.start:exc.end]
    return "".join(chr(0xDC00 + b) if b >= 0x80 else "\ufffd" for b in refused), exc.end


ESCAPE = "visent-escape"
"""A decoding error handler: "surrogateescape" (the bytes a decoder refuses kept as U+DC80..U+DCFF, so a
:class:`TextDecoder` can read them again), except that it never fails: an ASCII byte among them (UTF-16 cut
in the middle of a character) becomes U+FFFD."""
codecs.register_error(ESCAPE, _escape)
ESCAPED = re.compile("[\udc80-\udcff]")  # a byte kept by "surrogateescape" or ESCAPE


def is_utf8(data: bytes, final: bool = True) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
        return True
    except UnicodeDecodeError:
        return False


def read_as(data: bytes, encoding: str) -> str | None:
    """``data`` read in ``encoding``, or None when it does not read as text there (an undefined byte, a control
    character). In a single-byte encoding, the parts of ``data`` that are UTF-8 stay UTF-8: a line that mixes
    both reads right, not as mojibake."""
    try:
        if single_byte(encoding):
            text = data.decode("utf-8", errors=_then(encoding))
        else:
            text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    return None if _NOT_TEXT.search(text) else text


def reads_as_text(data: bytes, encoding: str) -> bool:
    """True when charset-normalizer finds ``data`` read in ``encoding`` plausible text (its own threshold)."""
    match = charset_normalizer.from_bytes(data, cp_isolation=[encoding]).best()
    return match is not None and codecs.lookup(match.encoding).name == codecs.lookup(encoding).name


@functools.cache
def single_byte(encoding: str) -> bool:
    """True when every byte of ``encoding`` is a character on its own (cp1252, koi8_r), not part of a sequence."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return all(decoder.decode(bytes([b])) for b in range(0x80, 0x100))


@functools.cache
def _then(encoding: str) -> str:
    """The name of a decoding error handler that reads the bytes UTF-8 refuses in the single-byte ``encoding``."""
    def handler(exc: UnicodeError) -> tuple[str, int]:
        if not isinstance(exc, UnicodeDecodeError):
            raise exc
        return exc.object[exc.start:exc.end].decode(encoding), exc.end

    name = f"visent-utf-8-then-{encoding}"
    codecs.register_error(name, handler)
    return name


# Byte order marks that name their encoding whatever follows (UTF-32's first: it starts like UTF-16's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf_32"), (codecs.BOM_UTF32_BE, "utf_32"), (codecs.BOM_UTF16_LE, "utf_16"),
         (codecs.BOM_UTF16_BE, "utf_16"))
# Legacy encodings by how common they are in social-media text; breaks ties between equally good guesses.
_COMMON_ENCODINGS = ("cp1252", "gb18030", "cp1251", "shift_jis", "big5", "euc_kr", "cp1250", "cp1256",
                     "cp1253", "cp1254", "cp1255", "cp1257", "cp874", "euc_jp", "koi8_r", "latin_1")


def detect_encoding(data: bytes) -> str | None:
    """The encoding a byte order mark names, else charset-normalizer's guess when it is clear, else None.

    Clear: ``data`` holds at least :data:`MIN_EVIDENCE` bytes that are not plain ASCII text, and the best-scored
    candidates all read it the same way (cp1252 and latin-1 on French text, say; the most common of them is named).
    Short texts are where charset-normalizer's candidates disagree: "Tr\\xe8s bien" scores as well in gb18030 as in
    cp1252.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    if len(data.translate(None, _PLAIN_ASCII)) < MIN_EVIDENCE:
        return None
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        return None

    def score(match: charset_normalizer.CharsetMatch) -> tuple[float, float]:
        return round(match.chaos, 3), -round(match.coherence, 3)

    top = min(map(score, matches))
    best = [m for m in matches if score(m) == top]
    if len({str(m) for m in best}) > 1:
        return None
    rank = {name: i for i, name in enumerate(_COMMON_ENCODINGS)}
    return min(best, key=lambda m: rank.get(m.encoding, len(rank))).encoding
