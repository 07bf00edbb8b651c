"""EMBED on ONNX Runtime: fp32 and int8 features against PyTorch's, model caching, cache keys, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from visent.embed import RUNTIMES, Backbone, FeatureCache, embed_images, load_backbone  # noqa: E402
from visent.core.onnx import onnx_cache_root  # noqa: E402
from visent.embed import onnx as visent_onnx  # noqa: E402
from visent.embed.cached import file_sha256  # noqa: E402
from visent.embed.features import calibration_images, feature_key  # noqa: E402
from visent.model import ModelConfig, VisentModel  # noqa: E402
from visent.train import StudentHead  # noqa: E402


@pytest.fixture(scope="module")
def torch_features(lite0: Backbone, photos: list[Path]) -> np.ndarray:
    features, status = embed_images(photos, None, lite0, runtime="torch")
    assert [s.state for s in status] == ["ok"] * len(photos)
    return features


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
def test_onnx_fp32_matches_torch(lite0: Backbone, photos: list[Path], torch_features: np.ndarray) -> None:
    features, status = embed_images(photos, None, lite0, runtime="onnx", batch_size=5)  # uneven last batch
    assert [s.state for s in status] == ["ok"] * len(photos)
    assert features.shape == torch_features.shape and features.dtype == np.float32
    scale = np.abs(torch_features).max()
    assert np.abs(features - torch_features).max() < 1e-3 * scale


@pytest.mark.slow
def test_multi_stage_backbone_exports(photos: list[Path]) -> None:
    stages = load_backbone("efficientnet-lite0-ms")
    reference, _ = embed_images(photos[:3], None, stages, runtime="torch")
    features, status = embed_images(photos[:3], None, stages, runtime="onnx")
    assert [s.state for s in status] == ["ok"] * 3 and features.shape == (3, 2576)
    assert np.abs(features - reference).max() < 1e-3 * np.abs(reference).max()


def test_onnx_fp32_with_flip_matches_torch(lite0: Backbone, photos: list[Path]) -> None:
    reference, _ = embed_images(photos[:4], None, lite0, runtime="torch", tta=True)
    plain, _ = embed_images(photos[:4], None, lite0, runtime="onnx")
    features, status = embed_images(photos[:4], None, lite0, runtime="onnx", tta=True)
    assert [s.state for s in status] == ["ok"] * 4
    assert np.abs(features - reference).max() < 1e-3 * np.abs(reference).max()
    assert np.abs(features - plain).max() > 1e-2  # the mirror image was really used


@pytest.mark.own_onnx_exports  # counts or needs the exports made by this test alone
@pytest.mark.slow
def test_onnx_int8_close_to_torch(lite0: Backbone, photos: list[Path], torch_features: np.ndarray) -> None:
    features, status = embed_images(photos, None, lite0, runtime="onnx-int8")
    assert [s.state for s in status] == ["ok"] * len(photos)
    cosine = _cosine(features, torch_features)
    assert cosine.mean() > 0.92 and cosine.min() > 0.8  # 0.89 / 0.75 when the stem convolution is quantised too
    assert not np.allclose(features, torch_features, atol=1e-4)  # it really is another (quantised) network
    models = sorted(p.name for p in onnx_cache_root().glob("*.onnx"))
    assert len(models) == 3 and models[0].endswith(".fp32.onnx") and ".int8-" in models[1]
    assert models[2].endswith(".prepared.onnx")


@pytest.mark.slow
def test_int8_calibration_is_reused_for_other_images(lite0: Backbone, photos: list[Path], monkeypatch) -> None:
    first, _ = embed_images(photos, None, lite0, runtime="onnx-int8")
    (calibration,) = onnx_cache_root().glob("*.calibration-*.json")
    calls = []
    monkeypatch.setattr(visent_onnx, "_quantize", lambda *a, **k: calls.append(a))
    # three images are too few to calibrate: the calibration of the sixteen serves them
    again, status = embed_images(photos[:3], None, lite0, runtime="onnx-int8", int8_calibration=calibration)
    assert calls == [] and [s.state for s in status] == ["ok"] * 3
    np.testing.assert_allclose(again, first[:3], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_int8_network_is_rebuilt_from_its_calibration_alone(lite0: Backbone, photos: list[Path],
                                                           tmp_path: Path, monkeypatch) -> None:
    first, _ = embed_images(photos, None, lite0, runtime="onnx-int8")
    (calibration,) = onnx_cache_root().glob("*.calibration-*.json")
    carried = tmp_path / "int8-calibration.json"
    carried.write_bytes(calibration.read_bytes())
    assert carried.stat().st_size < 100_000  # small enough for a model directory
    monkeypatch.setenv("VISENT_CACHE", str(tmp_path / "elsewhere"))  # another machine: no exported models
    again, status = embed_images(photos[:4], None, lite0, runtime="onnx-int8", int8_calibration=carried)
    assert [s.state for s in status] == ["ok"] * 4
    np.testing.assert_allclose(again, first[:4], rtol=1e-5, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="int8 calibration file missing"):
        embed_images(photos[:1], None, lite0, runtime="onnx-int8", int8_calibration=tmp_path / "gone.json")


def test_int8_needs_enough_calibration_images(lite0: Backbone, photos: list[Path]) -> None:
    with pytest.raises(ValueError, match="calibration images"):
        embed_images(photos[:3], None, lite0, runtime="onnx-int8")


@pytest.mark.own_onnx_exports  # counts or needs the exports made by this test alone
def test_export_is_cached_and_reused(lite0: Backbone, photos: list[Path], monkeypatch) -> None:
    calls = []
    export = visent_onnx.export_onnx

    def spy(backbone: Backbone) -> bytes:
        calls.append(backbone.name)
        data = export(backbone)
        assert not backbone.module.training  # the exporter itself puts the module back as it found it
        return data

    monkeypatch.setattr(visent_onnx, "export_onnx", spy)
    first, _ = embed_images(photos[:2], None, lite0, runtime="onnx")
    assert not lite0.module.training  # the export leaves the module as PyTorch runs it (explain's maps use it)
    second, _ = embed_images(photos[:2], None, lite0, runtime="onnx")
    assert calls == ["efficientnet-lite0"]
    np.testing.assert_array_equal(first, second)
    path = visent_onnx.onnx_model(lite0)
    assert path.parent == onnx_cache_root() and path.stat().st_size > 1_000_000
    assert not list(path.parent.glob(".*"))  # no temporary files left behind


def test_cache_keys_differ_per_runtime(lite0: Backbone, photos: list[Path], tmp_path: Path) -> None:
    keys = {feature_key(lite0, False), feature_key(lite0, False, "onnx"), feature_key(lite0, False, "onnx-int8", "a"),
            feature_key(lite0, False, "onnx-int8", "b")}
    assert len(keys) == 4
    assert feature_key(lite0, False) == f"{lite0.key}|tta=0"  # PyTorch features keep their existing cache

    cache = FeatureCache(tmp_path / "features")
    embed_images(photos[:2], None, lite0, cache=cache, runtime="torch")
    _, status = embed_images(photos[:2], None, lite0, cache=cache, runtime="onnx")
    assert [s.state for s in status] == ["ok", "ok"]  # not served from the PyTorch features
    _, status = embed_images(photos[:2], None, lite0, cache=cache, runtime="onnx")
    assert [s.state for s in status] == ["cached", "cached"]
    assert len(list((tmp_path / "features").iterdir())) == 2


def test_bad_images_get_nan_rows_and_reasons(lite0: Backbone, photos: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    paths = [photos[0], broken, None, tmp_path / "missing.jpg", photos[1]]
    features, status = embed_images(paths, None, lite0, runtime="onnx")
    assert status[0].state == status[4].state == "ok"
    assert status[1].file == str(broken) and status[1].reason == "not an image (text)"
    assert status[2].failed and status[2].message == "no image file"
    assert status[3].failed and status[3].reason.startswith("FileNotFoundError: ")  # found missing while hashing
    assert np.isnan(features[1:4]).all() and not np.isnan(features[[0, 4]]).any()


def test_unknown_runtime_is_a_clear_error(lite0: Backbone, photos: list[Path]) -> None:
    assert RUNTIMES == ("torch", "onnx", "onnx-int8")
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'; choose one of: torch, onnx, onnx-int8"):
        embed_images(photos[:1], None, lite0, runtime="tensorrt")
    with pytest.raises(ValueError, match="unknown runtime"):
        embed_images([], None, lite0, runtime="")


def test_model_uses_its_runtime(lite0: Backbone, photos: list[Path], tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    head = StudentHead(C=1.0).fit(rng.normal(size=(30, lite0.dim)), np.eye(3)[rng.integers(0, 3, 30)])
    VisentModel(ModelConfig(runtime="onnx"), head).save(tmp_path / "model")
    model = VisentModel.load(tmp_path / "model")
    assert model.config.runtime == "onnx"
    seen = []
    monkeypatch.setattr("visent.embed.embed_images", lambda *a, **k: seen.append(k["runtime"]) or embed_images(*a, **k))
    probs, status = model.predict_proba(photos[:2], cache=False)
    assert seen == ["onnx"] and [s.state for s in status] == ["ok", "ok"] and np.allclose(probs.sum(1), 1)


@pytest.mark.slow
def test_int8_model_directory_carries_its_calibration(lite0: Backbone, photos: list[Path], tmp_path: Path,
                                                     monkeypatch) -> None:
    calibration = visent_onnx.calibrate_int8(
        lite0, lambda: calibration_images(lite0, photos, [file_sha256(p) for p in photos]),
        [file_sha256(p) for p in photos])
    rng = np.random.default_rng(0)
    head = StudentHead(C=1.0).fit(rng.normal(size=(30, lite0.dim)), np.eye(3)[rng.integers(0, 3, 30)])
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / visent_onnx.CALIBRATION_FILE).write_bytes(calibration.read_bytes())
    VisentModel(ModelConfig(runtime="onnx-int8", int8_calibration=visent_onnx.CALIBRATION_FILE), head).save(
        tmp_path / "model")
    expected, _ = VisentModel.load(tmp_path / "model").predict_proba(photos[:2], cache=False)
    monkeypatch.setenv("VISENT_CACHE", str(tmp_path / "fresh"))  # predict elsewhere: two images cannot calibrate
    probs, status = VisentModel.load(tmp_path / "model").predict_proba(photos[:2], cache=False)
    assert [s.state for s in status] == ["ok", "ok"]
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_a_rewritten_network_file_gets_a_new_session(tmp_path):
    """A model retrained into the same directory within one process must not run the old network."""
    import time

    import onnx
    from onnx import TensorProto, helper

    from visent.core.onnx import cpu_session

    def write(scale: float) -> None:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        k = helper.make_tensor("k", TensorProto.FLOAT, [1], [scale])
        graph = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"])], "g", [x], [y], [k])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "net.onnx")

    write(2.0)
    first = cpu_session(tmp_path / "net.onnx").run(None, {"x": np.ones(1, np.float32)})[0]
    time.sleep(0.01)
    write(3.0)
    second = cpu_session(tmp_path / "net.onnx").run(None, {"x": np.ones(1, np.float32)})[0]
    assert first[0] == 2.0 and second[0] == 3.0
