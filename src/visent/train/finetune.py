"""Partial fine-tuning of a backbone on weak labels (FT-A style): the last blocks and a linear head learn,
the rest of the network stays frozen. An option of ``visent train``; the default keeps the backbone frozen."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from visent.core.errors import InputError, UsageError
from visent.core.images import load_image
from visent.core.numeric import softmax
from visent.core.onnx import usable_cores
from visent.core.progress import progress
from visent.core.status import ImageStatus
from visent.embed.backbones import Backbone
from visent.embed.cached import prefetched
from visent.embed.preprocess import random_resized_crop

TAIL_LR_FACTOR = 0.1  # the pretrained blocks move ten times slower than the new head
WEIGHT_DECAY = 1e-4


@dataclass
class FinetuneResult:
    """A fine-tuned copy of the backbone, the head trained with it, and what happened per epoch."""

    backbone: Backbone
    head_weight: np.ndarray                       # (3, dim)
    head_bias: np.ndarray                         # (3,)
    history: list[dict[str, float]]              # epoch, train_loss, [val_loss, val_accuracy], seconds
    errors: dict[str, str] = field(default_factory=dict)  # image path -> why it was left out

    def save_backbone(self, path: str | Path) -> None:
        """Write the fine-tuned weights; ``load_backbone(name, weights=path)`` reads them back."""
        self.backbone.save(path)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities from features of the fine-tuned backbone."""
        return softmax(np.asarray(features, dtype=np.float64) @ self.head_weight.T + self.head_bias)


def _check_targets(targets: np.ndarray, n: int, what: str) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 2 or targets.shape != (n, 3):
        raise ValueError(f"{what} must have shape ({n}, 3), not {targets.shape}")
    sums = targets.sum(axis=1, keepdims=True)
    if not np.all(np.isfinite(targets)) or np.any(targets < 0) or np.any(sums <= 0):
        raise ValueError(f"{what} must be non-negative, finite, with a positive sum per row")
    return targets / sums


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def finetune(backbone: Backbone, paths: Sequence[Path], targets: np.ndarray, *, n_blocks: int = 2, epochs: int = 3,
             batch_size: int = 32, lr: float = 1e-3, val_paths: Sequence[Path] | None = None,
             val_targets: np.ndarray | None = None, seed: int = 0, augment: bool = True,
             workers: int = 2) -> FinetuneResult:
    """Fine-tune the last ``n_blocks`` blocks of a copy of ``backbone`` with a linear head (dim → 3).

    ``targets`` (n, 3) are soft probabilities or one-hot rows; the loss is soft cross-entropy. Training uses
    random resized crops and flips when ``augment``; BatchNorm statistics stay frozen (small, noisy batches).
    Unreadable images are left out and listed in ``errors``. Deterministic for a given ``seed``; the
    caller's random state is left as it was. ``backbone`` itself is not modified.
    """
    if n_blocks < 1:
        raise UsageError("n_blocks must be at least 1")
    if epochs < 1 or batch_size < 1:
        raise UsageError("epochs and batch_size must be at least 1")
    n = len(paths)
    if n == 0:
        raise InputError("no images to fine-tune on")
    targets = _check_targets(targets, n, "targets")
    has_val = val_paths is not None and len(val_paths) > 0
    if has_val:
        if val_targets is None:
            raise ValueError("val_paths needs val_targets")
        val_targets = _check_targets(val_targets, len(val_paths), "val_targets")  # type: ignore[arg-type]

    model = backbone.copy()
    params = model.trainable_tail(n_blocks)
    tail = model.tail_modules(n_blocks)
    device = model.device
    size, resample = model.image_size, model.spec.resample
    errors: dict[str, str] = {}
    history: list[dict[str, float]] = []

    def load_train(item: tuple[int, int]) -> torch.Tensor:
        index, item_seed = item
        image = load_image(paths[index], size)
        if augment:
            return model.to_tensor(random_resized_crop(image, size, resample, np.random.default_rng(item_seed)))
        return model.preprocess(image)

    def load_eval(index: int) -> torch.Tensor:
        return model.preprocess(load_image(val_paths[index], size))  # type: ignore[index]

    threads = torch.get_num_threads()
    torch.set_num_threads(usable_cores())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = nn.Linear(model.dim, 3).to(device)
            optimizer, scheduler = _optimizer(params, head, lr, steps=epochs * math.ceil(n / batch_size))
            rng = np.random.default_rng(seed)
            total = epochs * (n + (len(val_paths) if has_val else 0))  # type: ignore[arg-type]
            with progress(f"fine-tune ({model.name}, last {n_blocks} blocks)", total) as advance:
                for epoch in range(1, epochs + 1):
                    started = time.time()
                    _train_mode(model, tail)
                    order = rng.permutation(n)
                    item_seeds = rng.integers(0, 2**63 - 1, size=n)
                    items = [(int(i), int(item_seeds[i])) for i in order]
                    batches = [items[i:i + batch_size] for i in range(0, n, batch_size)]
                    loss_sum, seen = _train_epoch(model, head, optimizer, scheduler, batches,
                                                  prefetched(batches, load_train, workers), paths, targets, errors,
                                                  advance)
                    if seen == 0:
                        raise InputError(f"none of the {n} images could be read; first error: "
                                         f"{next(iter(errors.values()), '?')}")
                    record = {"epoch": float(epoch), "train_loss": loss_sum / seen}
                    if has_val:
                        record.update(_evaluate(model, head, load_eval, val_targets, batch_size, workers,  # type: ignore[arg-type]
                                                val_paths, errors, advance))  # type: ignore[arg-type]
                    record["seconds"] = round(time.time() - started, 2)
                    history.append(record)
    finally:
        torch.set_num_threads(threads)
        model.freeze()
    head = head.cpu()
    return FinetuneResult(backbone=model, head_weight=head.weight.detach().numpy().copy(),
                          head_bias=head.bias.detach().numpy().copy(), history=history, errors=errors)


def _optimizer(tail: list[nn.Parameter], head: nn.Module, lr: float, *, steps: int) -> tuple[Any, Any]:
    """AdamW with the pretrained tail :data:`TAIL_LR_FACTOR` times slower than the new head, and a cosine
    schedule over ``steps``."""
    optimizer = torch.optim.AdamW(
        [{"params": tail, "lr": lr * TAIL_LR_FACTOR}, {"params": list(head.parameters()), "lr": lr}],
        weight_decay=WEIGHT_DECAY)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def _train_epoch(model: Backbone, head: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 batches: list[list[tuple[int, int]]], loaded_batches: Iterator[list[Any]], paths: Sequence[Path],
                 targets: np.ndarray, errors: dict[str, str], advance: Any) -> tuple[float, int]:
    """One pass over the training batches (``(index, seed)`` items and their decoded tensors): a step per batch
    on the images that could be read, the others listed in ``errors``. Returns the summed loss and the count."""
    loss_sum, seen = 0.0, 0
    for batch, loaded in zip(batches, loaded_batches):
        good = []
        for (index, _), x in zip(batch, loaded):
            if isinstance(x, Exception):
                errors.setdefault(str(paths[index]), str(ImageStatus.from_exception(paths[index], x)))
            else:
                good.append((index, x))
        if good:
            x = torch.stack([t for _, t in good]).to(model.device)
            y = torch.from_numpy(targets[[i for i, _ in good]]).to(model.device)
            loss = soft_cross_entropy(head(model.forward_features(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(good)
            seen += len(good)
            scheduler.step()
        advance(len(batch))
    return loss_sum, seen


def _train_mode(model: Backbone, tail: list[nn.Module]) -> None:
    """Only the tail trains (dropout, stochastic depth); every BatchNorm keeps its running statistics."""
    model.module.eval()
    for module in tail:
        if module is not model.module:
            module.train()
    for module in model.module.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _evaluate(model: Backbone, head: nn.Module, load, targets: np.ndarray, batch_size: int, workers: int,
              paths: Sequence[Path], errors: dict[str, str], advance) -> dict[str, float]:
    """Soft cross-entropy and agreement with the targets' argmax on validation images."""
    model.module.eval()
    indices = list(range(len(paths)))
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.inference_mode():
        for batch, loaded in zip(batches, prefetched(batches, load, workers)):
            good = []
            for index, x in zip(batch, loaded):
                if isinstance(x, Exception):
                    errors.setdefault(str(paths[index]), str(ImageStatus.from_exception(paths[index], x)))
                else:
                    good.append((index, x))
            if good:
                logits = head(model.forward_features(torch.stack([t for _, t in good])))
                y = torch.from_numpy(targets[[i for i, _ in good]]).to(logits.device)
                loss_sum += float(soft_cross_entropy(logits, y)) * len(good)
                correct += int((logits.argmax(1) == y.argmax(1)).sum())
                seen += len(good)
            advance(len(batch))
    if seen == 0:
        return {"val_loss": float("nan"), "val_accuracy": float("nan")}
    return {"val_loss": loss_sum / seen, "val_accuracy": correct / seen}
