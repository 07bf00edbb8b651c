"""EXPLAIN: sentiment maps (CAM and Grad-CAM), their rendering, the Python API and ``visent explain``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import visent
from visent.cli import app
from visent.embed import Backbone, BackboneSpec
from visent.explain import ExplainError, explain
from visent.explain.cam import GRID, contrastive_weights
from visent.model import ModelConfig, VisentModel
from visent.model.head import StudentHead


def _photo(path: Path, size=(120, 90), seed: int = 0) -> Path:
    """A photo with a bright blob left of centre, so maps have somewhere to look."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
    array[size[1] // 3: size[1] // 2, size[0] // 4: size[0] // 2] = (250, 220, 40)
    Image.fromarray(array).save(path)
    return path


def _random_head(dim: int, seed: int = 0) -> StudentHead:
    rng = np.random.default_rng(seed)
    head = StudentHead()
    head.mean_, head.scale_ = rng.normal(size=dim), rng.uniform(0.5, 2.0, dim)
    head.coef_, head.intercept_ = rng.normal(size=(3, dim)) * 0.05, rng.normal(size=3)
    head.classes_, head.n_features_in_, head.temperature_ = np.array(visent.CLASSES), dim, 1.3
    return head


def _model(backbone: str, tta="none", seed: int = 0, extra=()) -> VisentModel:
    from visent.embed import load_backbone

    dims = [load_backbone(name).dim for name in (backbone, *extra)]
    return VisentModel(ModelConfig(backbone=backbone, tta=tta, runtime="torch", extra_backbones=list(extra)),
                       _random_head(sum(dims), seed))


def _contrastive_scores(model: VisentModel, path: Path) -> np.ndarray:
    """What the maps must add up to: the features times the contrastive weights (no constant)."""
    features, _ = model.features([path], cache=False)
    head = model.head
    return features[0] @ contrastive_weights(head.coef_, head.scale_, head.temperature_).T


@pytest.fixture(scope="module")
def default_model() -> VisentModel:
    return visent.load("default")


def test_maps_of_the_shipped_model_add_up_to_its_logits(tmp_path, default_model):
    """CAM through the multi-stage pooled Lite0 (means and maxes of every stage): the mean of each class's map is
    the features' share of its contrastive logit. The shipped model predicts with its int8 network; the maps are
    drawn from the fp32 network of the same weights, whose logits they add up to, and which the int8 ones follow."""
    from visent.embed import embed_images

    path = _photo(tmp_path / "p.png")
    explanation = default_model.explain(path)
    assert explanation.method == "cam" and explanation.maps.shape == (3, GRID, GRID)
    assert default_model.config.runtime == "onnx-int8"
    fp32, _ = embed_images([path], None, default_model.backbone, runtime="torch")
    head = default_model.head
    scores = fp32[0] @ contrastive_weights(head.coef_, head.scale_, head.temperature_).T
    means = explanation.maps.mean(axis=(1, 2))
    np.testing.assert_allclose(means, scores, atol=2e-3 * np.abs(scores).max())
    int8 = _contrastive_scores(default_model, path)
    assert np.argmax(int8) == np.argmax(means) and np.abs(int8 - means).max() < 0.5 * np.abs(int8).max()
    # the probabilities are model.predict's
    row = default_model.predict([path]).to_pylist()[0]
    assert explanation.probabilities == pytest.approx({c: row[c] for c in visent.CLASSES})
    assert explanation.label == row["label"]


@pytest.mark.slow
@pytest.mark.parametrize("tta", ["flip", "crops"])
def test_test_time_views_are_placed_where_they_were_seen(tmp_path, tta):
    """With flip or crop views, each view's map goes back to its place in the square: the sum still holds."""
    model = _model("efficientnet-lite0", tta=tta)
    path = _photo(tmp_path / "p.png", size=(150, 110))
    maps = explain(model, path).maps
    scores = _contrastive_scores(model, path)
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), scores, atol=5e-3 * np.abs(scores).max())
    if tta == "flip":  # a mirrored photo gives the mirrored maps
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "m.png")
        np.testing.assert_allclose(explain(model, tmp_path / "m.png").maps, maps[:, :, ::-1], atol=1e-3)


def test_gradcam_equals_cam_for_a_mean_pooled_linear_head(tmp_path):
    """Grad-CAM's channel weights are the mean gradient; for pooled means under a linear head that is the head's
    weight, so both methods must give the same map (Selvaraju et al., 2017, section 3.1)."""
    model = _model("efficientnet-lite0", seed=3)
    path = _photo(tmp_path / "p.png")
    cam, grad = explain(model, path, method="cam"), explain(model, path, method="gradcam")
    assert (cam.method, grad.method) == ("cam", "gradcam")
    np.testing.assert_allclose(grad.maps, cam.maps, atol=1e-4 * np.abs(cam.maps).max())
    assert np.abs(cam.maps).max() > 0


class _TinyCNN(torch.nn.Module):
    """A network visent has no maps for (as a torchvision or timm one): Grad-CAM finds its last activation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(8, 6, 3, stride=2, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


class _TinyViT(torch.nn.Module):
    """Patch tokens after a class token, features = mean of the patch tokens (a ViT's token layout)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.patch = torch.nn.Conv2d(3, 5, 8, stride=8)
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, 5))
        self.block = torch.nn.Linear(5, 5)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = self.block(torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1))
        return tokens[:, 1:].mean(dim=1)


@pytest.mark.parametrize("net", [_TinyCNN, _TinyViT])
def test_gradcam_on_other_backbones_is_the_class_map_of_their_last_activation(tmp_path, net):
    spec = BackboneSpec("tiny", dim=6 if net is _TinyCNN else 5, image_size=32, mean=(127.0,) * 3, std=(128.0,) * 3)
    backbone = Backbone(spec, net())
    model = VisentModel(ModelConfig(backbone="tiny", runtime="torch"), _random_head(spec.dim, seed=5),
                        backbone=backbone)
    path = _photo(tmp_path / "p.png")
    explanation = explain(model, path)  # auto: no known maps, so Grad-CAM
    assert explanation.method == "gradcam"
    with pytest.raises(ExplainError, match="gradcam"):
        explain(model, path, method="cam")
    # by hand: the last activation as (C, h, w), weighted by the contrastive weights, resized to the grid
    x = backbone.preprocess(Image.open(path).convert("RGB"))[None]
    with torch.inference_mode():
        if net is _TinyCNN:
            activation = backbone.module.features(x)[0]
        else:
            tokens = backbone.module.patch(x).flatten(2).transpose(1, 2)
            tokens = backbone.module.block(torch.cat([backbone.module.cls, tokens], dim=1))[0, 1:]
            activation = tokens.T.reshape(5, 4, 4)
    head = model.head
    weights = torch.as_tensor(contrastive_weights(head.coef_, head.scale_, head.temperature_))
    expected = F.interpolate(torch.einsum("kc,chw->khw", weights, activation)[None], size=(GRID, GRID),
                             mode="bilinear", align_corners=False)[0].numpy()
    np.testing.assert_allclose(explanation.maps, expected, atol=1e-4 * np.abs(expected).max())


def test_overlays_panel_and_files(tmp_path, default_model):
    path = _photo(tmp_path / "wide.png", size=(300, 150))
    explanation = default_model.explain(path)
    shown = explanation.image
    assert shown.size == (300, 150)
    for cls in visent.CLASSES:
        image = explanation.overlay(cls)
        assert image.size == shown.size and image.mode == "RGB"
    overlaid = np.asarray(explanation.overlay("positive"), dtype=float)
    photo = np.asarray(shown, dtype=float)
    # outside the central square the photo is only dimmed; inside, the map changes its colours
    np.testing.assert_allclose(overlaid[:, :70], np.round(photo[:, :70] * 0.45), atol=1)
    assert np.abs(overlaid[:, 75:225] - photo[:, 75:225]).max() > 30
    with pytest.raises(ValueError, match="unknown class"):
        explanation.overlay("happy")
    panel = explanation.panel()
    assert panel.width > 4 * 256 * 2 - 10 and panel.height > 256
    written = explanation.save(tmp_path / "out", "wide")
    assert [p.name for p in written] == ["wide.negative.png", "wide.neutral.png", "wide.positive.png",
                                         "wide.panel.png"]
    assert all(Image.open(p).format == "PNG" for p in written)


def test_predict_takes_paths_pil_images_arrays_and_bytes(tmp_path, default_model):
    path = _photo(tmp_path / "a.png")
    pil = Image.open(path).convert("RGB")
    array = np.asarray(pil)
    table = default_model.predict([path, pil, array, array / 255.0, path.read_bytes(), np.zeros(3),
                                   b"not an image", str(tmp_path / "gone.jpg")])
    rows = table.to_pylist()
    assert table.column_names == ["input", "negative", "neutral", "positive", "label", "status", "error"]
    assert [r["input"] for r in rows] == [str(path), "<image 1>", "<image 2>", "<image 3>", "<image 4>",
                                          "<image 5>", "<image 6>", str(tmp_path / "gone.jpg")]
    assert [r["status"] for r in rows] == ["ok"] * 5 + ["error"] * 3
    first = [rows[0][c] for c in visent.CLASSES]
    for row in rows[1:5]:  # the same pixels, whatever form they came in
        np.testing.assert_allclose([row[c] for c in visent.CLASSES], first, atol=1e-6)
    assert sum(first) == pytest.approx(1.0)
    assert "shape (3,)" in rows[5]["error"]
    assert rows[6]["error"].startswith("<image 6>: ") and "visent-images" not in rows[6]["error"]
    assert rows[7]["error"] == "file not found" and rows[7]["negative"] is None
    with pytest.raises(ExplainError, match="<image 0>"):
        default_model.explain(b"not an image")


def test_explain_command_writes_maps_and_a_row_per_image(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "a.png")
    _photo(folder / "b.png", seed=1)
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    result = CliRunner().invoke(app, ["explain", "default", str(folder), str(tmp_path / "missing.jpg"),
                                      "--out", str(tmp_path / "maps")])
    assert result.exit_code == 0, result.output
    with (tmp_path / "maps" / "explanations.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.png", "broken.png", "missing.jpg"]
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error"]
    assert "broken.png" in rows[2]["error"] and rows[3]["error"] == "file not found"
    for stem in ("a", "b"):
        for suffix in ("negative", "neutral", "positive", "panel"):
            assert (tmp_path / "maps" / f"{stem}.{suffix}.png").is_file()
    assert not list((tmp_path / "maps").glob("broken*.png"))
    bad = CliRunner().invoke(app, ["explain", "default", str(folder), "--out", str(tmp_path / "x"),
                                   "--method", "saliency"])
    assert bad.exit_code == 1 and "unknown method" in bad.output
    nothing = CliRunner().invoke(app, ["explain", "default", str(folder / "broken.png"), "--out", str(tmp_path / "y")])
    output = " ".join(nothing.output.split())
    assert nothing.exit_code == 1 and "1 image: 0 explained, 1 unreadable" in output
    assert f"error: explain: nothing was explained: {folder / 'broken.png'}: " in output
    assert (tmp_path / "y" / "explanations.csv").is_file()  # the row is written all the same


def test_in_memory_images_never_reach_the_feature_cache(tmp_path, default_model):
    """A server's uploads are not kept: only image files are cached by content."""
    import os

    cache = Path(os.environ["VISENT_CACHE"]) / "features"  # (the ONNX exports of the backbones live beside it)
    photo = Image.open(_photo(tmp_path / "a.png")).convert("RGB")
    default_model.predict([photo, np.asarray(photo)])
    default_model.explain(photo)
    assert not [p for p in cache.rglob("*") if p.is_file()]
    default_model.predict([tmp_path / "a.png"])
    assert [p for p in cache.rglob("*") if p.is_file()]
