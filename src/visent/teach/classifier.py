"""Teachers trained by visent: an encoder, its top layers fine-tuned on labelled tweets, a linear
head, and temperature scaling fitted on a validation split.

``TextClassifier`` is one such model, a scikit-learn estimator (hyper-parameters in ``__init__``, ``fit``
returning self, learned state with a trailing ``_``, ``predict`` / ``predict_proba``);
:mod:`visent.teach.directory` combines several (and VADER) into the teacher ``visent teach`` uses.

Fine-tuning on two CPU cores stays affordable because only the top ``finetune_layers`` transformer
layers learn: the hidden states entering them are computed once and kept, so each epoch runs
``finetune_layers`` of the encoder's layers instead of all of them. With ``finetune_layers=0`` the
encoder is frozen and the head is a multinomial logistic regression on its pooled embeddings.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from visent.core.labels import CLASS_INDEX, CLASSES
from visent.core.numeric import expected_calibration_error, fit_temperature, log_softmax, prior_shift, softmax
from visent.core.progress import progress
from visent.teach.base import TeacherError
from visent.teach.encoders import TextEncoder, load_encoder
from visent.teach.text import preprocess_tweet

N_CLASSES = len(CLASSES)
# T from 0.05 to 20: the range the shipped teacher's temperatures were fitted in
TEMPERATURE_LOG_BOUNDS = (math.log(0.05), math.log(20.0))

# The hyper-parameters, in the order a teacher directory's member specs write them ("config" in teacher.json)
CONFIG_KEYS = ("encoder", "finetune_layers", "epochs", "batch_size", "lr", "head_lr", "weight_decay", "max_length",
               "seed")


def scores(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Macro-recall (the SemEval measure), accuracy, macro-F1 and ECE, rounded, with the count."""
    from visent.teach.calibrate import score

    return {"n": int(len(y)), **score(y, probs.argmax(axis=1)),  # type: ignore[dict-item]
            "ece": round(expected_calibration_error(y, probs), 4)}


@dataclass
class FitReport:
    n_train: int = 0
    n_val: int = 0
    seconds: float = 0.0
    temperature: float = 1.0
    val_before_scaling: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    epochs: list[dict[str, float]] = field(default_factory=list)


def class_indices(y: Sequence[str] | Sequence[int] | np.ndarray) -> np.ndarray:
    """Labels given as names of :data:`CLASSES` or as their indices, as int64 indices."""
    out = []
    for value in np.asarray(y).tolist():
        index = CLASS_INDEX.get(value, -1) if isinstance(value, str) else int(value)
        if not 0 <= index < N_CLASSES or not isinstance(value, str) and index != value:
            raise ValueError(f"unknown label {value!r}: labels are {', '.join(CLASSES)} or their indices 0-2")
        out.append(index)
    return np.array(out, dtype=np.int64)


class TextClassifier(ClassifierMixin, BaseEstimator):
    """Sentiment of short texts from an encoder plus a linear head, calibrated.

    Hyper-parameters: ``encoder`` (a name of :mod:`visent.teach.encoders` or ``hf:PATH``), ``finetune_layers``
    (top transformer layers that learn; 0: frozen encoder and a logistic head), ``epochs``, ``batch_size``,
    ``lr`` (top layers), ``head_lr`` (linear head), ``weight_decay``, ``max_length`` (tokens) and ``seed``.

    Learned by :meth:`fit` (or read by :meth:`load`): ``classes_`` (:data:`CLASSES`), ``head_weight_`` (3, dim)
    and ``head_bias_`` (float32), ``layers_`` (the fine-tuned top layers, a torch ModuleList; None when
    ``finetune_layers == 0``), ``temperature_``, ``train_prior_`` (the training class mix) and ``report_``
    (:class:`FitReport`); :meth:`fit` also keeps ``val_logp_``, the calibrated log-probabilities of its
    validation texts.

    Inference on a Hugging Face encoder runs on ONNX Runtime (:mod:`visent.teach.onnx`: the encoder with this
    member's top layers, exported once and cached) unless ``runtime`` (an attribute, not a hyper-parameter:
    ``"onnx-int8"``, ``"onnx"`` or ``"torch"``; None: ``$VISENT_TEACHER_RUNTIME``, else ``"onnx-int8"``) says
    otherwise; training always runs on torch.

    >>> clf = TextClassifier(encoder="minilm", finetune_layers=2).fit(texts, y, val_texts, val_y)
    >>> clf.predict_proba(["what a day!"])   # (1, 3), columns negative, neutral, positive
    """

    runtime: str | None = None  # inference runtime; None: visent.teach.onnx.default_runtime()

    def __init__(self, encoder: str = "minilm", finetune_layers: int = 2, epochs: int = 3, batch_size: int = 32,
                 lr: float = 1e-4, head_lr: float = 2e-3, weight_decay: float = 0.01, max_length: int = 64,
                 seed: int = 0):
        self.encoder = encoder
        self.finetune_layers = finetune_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.max_length = max_length
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of texts
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        return tags

    def config(self) -> dict[str, Any]:
        """The hyper-parameters as a member spec stores them (``get_params()``, in :data:`CONFIG_KEYS` order)."""
        return {key: getattr(self, key) for key in CONFIG_KEYS}

    # -- the encoder -----------------------------------------------------------------------------------
    def _text_encoder(self) -> TextEncoder:
        """The encoder named by ``encoder``, loaded once per classifier."""
        if getattr(self, "_encoder_key", None) != (self.encoder, self.max_length):  # not loaded, or set_params
            encoder = load_encoder(self.encoder)
            if self.finetune_layers > encoder.num_layers:
                raise ValueError(f"encoder {self.encoder!r} has {encoder.num_layers} layers that can "
                                 f"be fine-tuned, not {self.finetune_layers}")
            if hasattr(encoder, "max_length"):
                encoder.max_length = self.max_length  # type: ignore[attr-defined]
            self._encoder, self._encoder_key = encoder, (self.encoder, self.max_length)
        return self._encoder

    # -- the fine-tuned top layers (torch modules, built from the saved tensors on first use) ----------------
    @property
    def layers_(self) -> Any:
        if "_layers" not in self.__dict__:
            raise AttributeError("layers_")
        if self._layers is None and self.__dict__.get("_top_tensors") is not None:
            self._layers = self._build_layers(self._top_tensors)
        return self._layers

    @layers_.setter
    def layers_(self, value: Any) -> None:
        self._layers, self._top_tensors, self._top_digest, self._onnx = value, None, None, None

    def _build_layers(self, tensors: dict[str, np.ndarray]) -> Any:
        import torch
        from torch import nn

        enc = self._text_encoder()
        layers = nn.ModuleList(copy.deepcopy(list(enc.layers[-self.finetune_layers:])))  # type: ignore[attr-defined]
        state = {key: torch.from_numpy(np.asarray(value, dtype=np.float32)) for key, value in tensors.items()}
        try:
            layers.load_state_dict(state)
        except RuntimeError as exc:
            raise TeacherError(f"{self.__dict__.get('_weights_file', 'the member')}: the fine-tuned layers do not fit encoder {self.encoder!r}: "
                               f"{exc}") from exc
        layers.eval()
        for p in layers.parameters():
            p.requires_grad_(False)
        return layers

    def _top_state(self) -> dict[str, np.ndarray]:
        """The fine-tuned top layers' tensors (as saved, or as trained), without building torch modules."""
        if self.__dict__.get("_top_tensors") is not None:
            return self._top_tensors
        return {key: value.detach().float().numpy() for key, value in self.layers_.state_dict().items()}

    # -- features ----------------------------------------------------------------------------------------
    def _runtime(self, runtime: str | None = None) -> str:
        from visent.teach.onnx import check_runtime, default_runtime

        return check_runtime(runtime or self.runtime or default_runtime())

    def _onnx_member(self, runtime: str) -> Any:
        """The member on ONNX Runtime (exported now unless cached), kept per runtime."""
        from visent.teach.onnx import member_model, top_state_digest

        cache = self.__dict__.get("_onnx") or {}
        if runtime not in cache:
            enc = self._text_encoder()
            k = self.finetune_layers
            top = self._top_state() if k else {}
            digest = self.__dict__.get("_top_digest") or top_state_digest(top)
            path = member_model(enc, k, digest, lambda: self.layers_, runtime)
            cache[runtime] = enc.onnx_runner(path)
            self._onnx = cache
        return cache[runtime]

    def _features(self, texts: list[str], desc: str, runtime: str | None = None) -> np.ndarray:
        """Pooled features entering the head, on ``runtime`` (default: :meth:`_runtime`)."""
        k = self.finetune_layers
        enc = self._text_encoder()
        if enc.export_onnx is not None and self._runtime(runtime) != "torch":
            return self._onnx_member(self._runtime(runtime)).features(texts, desc)
        if k == 0:
            return enc.embed(texts, desc=desc)
        import torch

        order = np.argsort(enc.lengths(texts), kind="stable")  # type: ignore[attr-defined]
        out = np.zeros((len(texts), enc.dim), dtype=np.float32)
        self.layers_.eval()
        with progress(desc, len(texts)) as advance, torch.inference_mode():
            for start in range(0, len(texts), 64):
                idx = order[start:start + 64]
                hidden, attention = enc.hidden_below([texts[i] for i in idx], k)  # type: ignore[attr-defined]
                out[idx] = enc.run_top(hidden, attention, self.layers_).float().numpy()  # type: ignore[attr-defined]
                advance(len(idx))
        return out

    def _logits(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float64) @ self.head_weight_.T.astype(np.float64) + self.head_bias_

    def decision_function(self, X: Sequence[str]) -> np.ndarray:
        """Calibrated log-probabilities of the texts ``X`` under the training class mix, ``(n, 3)``."""
        check_is_fitted(self, "head_weight_")
        clean = [preprocess_tweet(t, for_model=True) or "." for t in X]
        if not clean:
            return np.zeros((0, N_CLASSES))
        return log_softmax(self._logits(self._features(clean, f"teacher ({self.encoder})")) / self.temperature_)

    def predict_proba(self, X: Sequence[str], prior: str | Sequence[float] = "uniform") -> np.ndarray:
        """Calibrated probabilities of the texts ``X``, columns in :attr:`classes_` order, for the class mix
        ``prior`` (``"uniform"``, ``"train"`` or three weights)."""
        logp = self.decision_function(X)
        return softmax(logp + prior_shift(prior, self.train_prior_))

    def predict(self, X: Sequence[str], prior: str | Sequence[float] = "uniform") -> np.ndarray:
        """The most probable class name of each text under the class mix ``prior``."""
        best = self.predict_proba(X, prior).argmax(axis=1)
        return self.classes_[best]

    def score(self, X: Sequence[str], y: Sequence[str] | Sequence[int], sample_weight: np.ndarray | None = None) -> float:
        """Accuracy against ``y`` given as class names or indices."""
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(class_indices(y), self.predict_proba(X).argmax(axis=1), sample_weight=sample_weight))

    # -- training --------------------------------------------------------------------------------------------
    def fit(self, X: Sequence[str], y: Sequence[str] | Sequence[int], X_val: Sequence[str],
            y_val: Sequence[str] | Sequence[int]) -> "TextClassifier":
        """Train on the texts ``X`` with labels ``y`` (class names or indices); the validation texts ``X_val``
        and labels ``y_val`` choose the epoch (or C) and fit the temperature. Returns self."""
        import time

        started = time.time()
        y_arr, val_arr = class_indices(y), class_indices(y_val)
        if len(np.unique(y_arr)) < N_CLASSES or len(val_arr) == 0:
            raise ValueError("training needs texts of all three classes and a non-empty validation split")
        if len(X) != len(y_arr) or len(X_val) != len(val_arr):
            raise ValueError(f"{len(X)} texts with {len(y_arr)} labels, {len(X_val)} validation texts with "
                             f"{len(val_arr)} labels")
        clean = [preprocess_tweet(t, for_model=True) or "." for t in X]
        val_clean = [preprocess_tweet(t, for_model=True) or "." for t in X_val]
        self.classes_ = np.array(CLASSES)
        self.train_prior_ = np.bincount(y_arr, minlength=N_CLASSES) / len(y_arr)
        self.report_ = FitReport(n_train=len(clean), n_val=len(val_clean))
        if self.finetune_layers == 0:
            self.layers_ = None
            self._fit_head(clean, y_arr, val_clean, val_arr)
        else:
            self._fit_top(clean, y_arr, val_clean, val_arr)
        val_logits = self._logits(self._features(val_clean, "validation", runtime="torch"))  # as trained
        self.report_.val_before_scaling = scores(val_arr, softmax(val_logits))
        self.temperature_ = fit_temperature(val_logits, val_arr, TEMPERATURE_LOG_BOUNDS)
        self.report_.temperature = round(self.temperature_, 4)
        self.report_.val = scores(val_arr, softmax(val_logits / self.temperature_))
        self.val_logp_ = log_softmax(val_logits / self.temperature_)  # = decision_function(X_val), kept
        self.report_.seconds = round(time.time() - started, 1)
        return self

    def _fit_head(self, clean: list[str], y: np.ndarray, val_clean: list[str], val_y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        enc = self._text_encoder()
        X = enc.embed(clean, desc=f"embed training texts ({self.encoder})")
        Xv = enc.embed(val_clean, desc="embed validation texts")
        best: tuple[float, Any] | None = None
        for C in (0.3, 1.0, 3.0, 10.0, 30.0):
            model = LogisticRegression(C=C, max_iter=3000).fit(X, y)
            loss = log_loss(val_y, model.predict_proba(Xv), labels=list(range(N_CLASSES)))
            self.report_.epochs.append({"C": C, "val_loss": round(float(loss), 4)})
            if best is None or loss < best[0]:
                best = (loss, model)
        assert best is not None
        self.head_weight_ = best[1].coef_.astype(np.float32)
        self.head_bias_ = best[1].intercept_.astype(np.float32)

    def _fit_top(self, clean: list[str], y: np.ndarray, val_clean: list[str], val_y: np.ndarray) -> None:
        import torch
        from torch import nn

        enc = self._text_encoder()
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        k = self.finetune_layers
        states, masks = self._cache_states(clean, k, "encode training texts (lower layers)")
        val_states, val_masks = self._cache_states(val_clean, k, "encode validation texts (lower layers)")

        layers = nn.ModuleList(copy.deepcopy(list(enc.layers[-k:])))  # type: ignore[attr-defined]
        for p in layers.parameters():
            p.requires_grad_(True)
        head = nn.Linear(enc.dim, N_CLASSES)
        dropout = nn.Dropout(0.1)
        optim = torch.optim.AdamW([{"params": layers.parameters(), "lr": self.lr},
                                   {"params": head.parameters(), "lr": self.head_lr}], weight_decay=self.weight_decay)
        batches_per_epoch = math.ceil(len(clean) / self.batch_size)
        total = batches_per_epoch * self.epochs
        warmup = max(1, int(0.06 * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            optim, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
        loss_fn = nn.CrossEntropyLoss()
        target = torch.as_tensor(y)
        best: tuple[float, dict[str, Any]] | None = None
        for epoch in range(self.epochs):
            layers.train()
            running, seen = 0.0, 0
            with progress(f"fine-tune top {k} layers, epoch {epoch + 1}/{self.epochs}", len(clean)) as advance:
                for idx in _length_batches(masks, self.batch_size, rng):
                    hidden, attention = _pad(states, masks, idx)
                    pooled = enc.run_top(hidden, attention, layers)  # type: ignore[attr-defined]
                    loss = loss_fn(head(dropout(pooled)), target[idx])
                    optim.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(list(layers.parameters()) + list(head.parameters()), 1.0)
                    optim.step()
                    sched.step()
                    running += loss.item() * len(idx)
                    seen += len(idx)
                    advance(len(idx))
            layers.eval()
            val_logits = self._head_logits(layers, head, val_states, val_masks)
            val_loss = float(-log_softmax(val_logits)[np.arange(len(val_y)), val_y].mean())
            row = {"epoch": epoch + 1, "train_loss": round(running / max(1, seen), 4), "val_loss": round(val_loss, 4),
                   **{f"val_{k2}": v for k2, v in scores(val_y, softmax(val_logits)).items() if k2 != "n"}}
            self.report_.epochs.append(row)
            if best is None or val_loss < best[0]:
                best = (val_loss, {"layers": copy.deepcopy(layers.state_dict()), "head": copy.deepcopy(head.state_dict())})
        assert best is not None
        layers.load_state_dict(best[1]["layers"])
        head.load_state_dict(best[1]["head"])
        # the shipped weights are float16: round now, so validation figures describe what ships
        with torch.no_grad():
            for p in layers.parameters():
                p.copy_(p.half().float())
        layers.eval()
        for p in layers.parameters():
            p.requires_grad_(False)
        self.layers_ = layers
        self.head_weight_ = head.weight.detach().numpy().astype(np.float32)
        self.head_bias_ = head.bias.detach().numpy().astype(np.float32)

    def _cache_states(self, clean: list[str], k: int, desc: str) -> tuple[list[Any], list[int]]:
        import torch

        enc = self._text_encoder()
        lengths = enc.lengths(clean)  # type: ignore[attr-defined]
        order = np.argsort(lengths, kind="stable")
        states: list[Any] = [None] * len(clean)
        with progress(desc, len(clean)) as advance:
            for start in range(0, len(clean), 64):
                idx = order[start:start + 64]
                hidden, attention = enc.hidden_below([clean[i] for i in idx], k)  # type: ignore[attr-defined]
                for row, i in enumerate(idx):
                    n = int(attention[row].sum())
                    states[i] = hidden[row, :n].to(torch.float16).clone()
                advance(len(idx))
        return states, [int(n) for n in lengths]

    def _head_logits(self, layers: Any, head: Any, states: list[Any], lengths: list[int]) -> np.ndarray:
        import torch

        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(states), N_CLASSES))
        with torch.inference_mode():
            for start in range(0, len(states), 128):
                idx = order[start:start + 128]
                hidden, attention = _pad(states, lengths, idx)
                out[idx] = head(self._text_encoder().run_top(hidden, attention, layers)).double().numpy()  # type: ignore[attr-defined]
        return out

    # -- files ---------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Tensors to save: the head (float32) and the fine-tuned layers (float16)."""
        import torch

        check_is_fitted(self, "head_weight_")
        tensors = {"head.weight": torch.from_numpy(np.ascontiguousarray(self.head_weight_, dtype=np.float32)),
                   "head.bias": torch.from_numpy(np.ascontiguousarray(self.head_bias_, dtype=np.float32))}
        if self.layers_ is not None:
            for key, value in self.layers_.state_dict().items():
                tensors[f"layers.{key}"] = value.detach().to(torch.float16).contiguous()
        return tensors

    def meta(self) -> dict[str, Any]:
        """The member spec kept in ``teacher.json``: hyper-parameters, temperature, training class mix, report."""
        check_is_fitted(self, "head_weight_")
        return {"config": self.config(), "temperature": self.temperature_,
                "train_prior": [float(p) for p in self.train_prior_], "report": asdict(self.report_)}

    def save(self, path: str | Path) -> dict[str, Any]:
        """Write ``<path>.safetensors`` (weights); returns the metadata to keep beside it."""
        from safetensors.torch import save

        from visent.core.store import atomic_write_bytes

        atomic_write_bytes(Path(str(path) + ".safetensors"), save(self.state()))
        return self.meta()

    def _onnx_ready(self) -> bool:
        """Whether inference will run on an ONNX export that is already cached (so no torch layers are needed)."""
        from visent.teach.onnx import cached_member_model, top_state_digest

        runtime = self._runtime()
        enc = self._text_encoder()
        if runtime == "torch" or enc.export_onnx is None:
            return False
        self._top_digest = top_state_digest(self._top_state())
        return cached_member_model(enc, self.finetune_layers, self._top_digest, runtime) is not None

    @classmethod
    def load(cls, path: str | Path, meta: dict[str, Any]) -> "TextClassifier":
        from safetensors.numpy import load_file

        clf = cls(**meta["config"])
        clf.classes_ = np.array(CLASSES)
        clf.temperature_ = float(meta["temperature"])
        clf.train_prior_ = np.asarray(meta["train_prior"], dtype=np.float64)
        known = {f.name for f in fields(FitReport)}
        clf.report_ = FitReport(**{k: v for k, v in (meta.get("report") or {}).items() if k in known})
        file = Path(str(path) + ".safetensors")
        try:
            tensors = load_file(str(file))
        except (OSError, Exception) as exc:  # safetensors raises its own error types
            raise TeacherError(f"cannot read teacher weights {file}: {exc}; retrain with `visent teacher train`") from exc
        clf._weights_file = file
        clf.head_weight_ = tensors.pop("head.weight").astype(np.float32)
        clf.head_bias_ = tensors.pop("head.bias").astype(np.float32)
        clf.layers_ = None
        if clf.finetune_layers:
            # the torch layers are built on first use: not at all when a cached ONNX export of them runs
            clf._top_tensors = {key[len("layers."):]: value for key, value in tensors.items() if key.startswith("layers.")}
            if clf._onnx_ready():
                clf._layers = None
            else:
                clf._layers = clf._build_layers(clf._top_tensors)  # checks that the weights fit the encoder
        if clf.head_weight_.shape[1] != clf._text_encoder().dim:
            raise TeacherError(f"{file}: head expects {clf.head_weight_.shape[1]} features, encoder "
                             f"{clf.encoder!r} gives {clf._text_encoder().dim}")
        return clf


def _length_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of texts of similar length (little padding), in shuffled order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort([lengths[i] for i in part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def _pad(states: list[Any], lengths: list[int], idx: np.ndarray) -> tuple[Any, Any]:
    import torch

    width = max(lengths[i] for i in idx)
    dim = states[idx[0]].shape[-1]
    hidden = torch.zeros(len(idx), width, dim)
    attention = torch.zeros(len(idx), width, dtype=torch.long)
    for row, i in enumerate(idx):
        n = lengths[i]
        hidden[row, :n] = states[i].float()
        attention[row, :n] = 1
    return hidden, attention
