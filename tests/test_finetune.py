"""Partial fine-tuning of a backbone on (weak) soft labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visent.embed import Backbone, embed_images, load_backbone
from visent.train.finetune import finetune


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return load_backbone("efficientnet-lite0")


@pytest.fixture()
def red_blue(tmp_path: Path) -> tuple[list[Path], np.ndarray]:
    """16 small noisy images: reddish ones are 'negative', bluish ones 'positive'."""
    rng = np.random.default_rng(0)
    paths, targets = [], []
    for i in range(16):
        array = rng.integers(0, 60, size=(48, 64, 3)).astype(np.uint8)
        array[..., 0 if i % 2 == 0 else 2] += 180
        path = tmp_path / f"{i}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
        targets.append([0.9, 0.1, 0.0] if i % 2 == 0 else [0.0, 0.1, 0.9])
    return paths, np.array(targets)


def _changed(a: Backbone, b: Backbone) -> set[str]:
    sb = b.state_dict()
    return {k for k, v in a.state_dict().items() if not torch.equal(v, sb[k])}


def test_one_epoch_trains_only_the_tail(lite0: Backbone, red_blue) -> None:
    paths, targets = red_blue
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    result = finetune(lite0, paths, targets, n_blocks=1, epochs=1, batch_size=8)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])
    assert result.head_weight.shape == (3, 1280) and result.head_bias.shape == (3,)
    changed = _changed(result.backbone, lite0)
    assert changed and all(k.startswith(("_blocks.15.", "_conv_head.", "_bn1.")) for k in changed)
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)  # BatchNorm stays frozen
    assert all(torch.equal(v, before[k]) for k, v in lite0.state_dict().items())  # the input is untouched
    assert result.backbone.key != lite0.key
    assert not any(p.requires_grad for p in result.backbone.module.parameters())


@pytest.mark.slow
def test_loss_falls_on_a_separable_task(lite0: Backbone, red_blue) -> None:
    paths, targets = red_blue
    result = finetune(lite0, paths, targets, n_blocks=1, epochs=3, batch_size=8, augment=False,
                      val_paths=paths[:6], val_targets=targets[:6])
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.7
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert result.history[-1]["val_accuracy"] == 1.0

    features, status = embed_images(paths, None, result.backbone)
    probs = result.predict_proba(features)
    assert [s.state for s in status] == ["ok"] * 16
    assert (probs.argmax(1) == targets.argmax(1)).mean() == 1.0


def test_same_seed_same_result_and_saved_backbone_reloads(tmp_path: Path, lite0: Backbone, red_blue) -> None:
    paths, targets = red_blue
    runs = [finetune(lite0, paths[:8], targets[:8], n_blocks=1, epochs=1, batch_size=4, seed=3) for _ in range(2)]
    assert runs[0].history[0]["train_loss"] == runs[1].history[0]["train_loss"]
    np.testing.assert_array_equal(runs[0].head_weight, runs[1].head_weight)
    assert runs[0].backbone.key == runs[1].backbone.key
    other = finetune(lite0, paths[:8], targets[:8], n_blocks=1, epochs=1, batch_size=4, seed=4)
    assert other.backbone.key != runs[0].backbone.key

    runs[0].save_backbone(tmp_path / "tuned.pt")
    reloaded = load_backbone("efficientnet-lite0", weights=tmp_path / "tuned.pt")
    assert reloaded.key == runs[0].backbone.key
    a, _ = embed_images(paths[:2], None, reloaded)
    b, _ = embed_images(paths[:2], None, runs[0].backbone)
    np.testing.assert_array_equal(a, b)


def test_unreadable_images_are_left_out(tmp_path: Path, lite0: Backbone, red_blue) -> None:
    paths, targets = red_blue
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    result = finetune(lite0, [*paths[:4], broken], np.vstack([targets[:4], targets[:1]]), n_blocks=1, epochs=1,
                      batch_size=4)
    assert list(result.errors) == [str(broken)] and str(broken) in result.errors[str(broken)]
    with pytest.raises(ValueError, match="could be read"):
        finetune(lite0, [broken], targets[:1], n_blocks=1, epochs=1)


def test_bad_arguments(lite0: Backbone, red_blue) -> None:
    paths, targets = red_blue
    with pytest.raises(ValueError, match="shape"):
        finetune(lite0, paths, targets[:3])
    with pytest.raises(ValueError, match="non-negative"):
        finetune(lite0, paths, np.zeros((16, 3)))
    with pytest.raises(ValueError, match="n_blocks"):
        finetune(lite0, paths, targets, n_blocks=0)
    with pytest.raises(ValueError, match="val_targets"):
        finetune(lite0, paths, targets, val_paths=paths[:2])
