"""A model directory that carries its network as an ONNX graph: the same features as the network it was trained
with, no PyTorch import, no export or quantisation in a fresh process, the same feature cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from visent.core.errors import PathNotFound  # noqa: E402
from visent.embed import FeatureCache, GraphBackbone, embed_images  # noqa: E402
from visent.embed import onnx as visent_onnx  # noqa: E402
from visent.embed.cached import file_sha256  # noqa: E402
from visent.embed.features import calibration_images, feature_key  # noqa: E402
from visent.model import ModelConfig, VisentModel  # noqa: E402
from visent.train import GRAPH_FILE, StudentHead  # noqa: E402
from visent.train.backbone import _carry_graph  # noqa: E402


def _model_dir(tmp_path: Path, lite0, photos: list[Path], runtime: str, carry: bool) -> Path:
    """A model directory for ``runtime`` with a random head; the int8 one with its calibration (recipe 2)."""
    out = tmp_path / f"{runtime}-{'graph' if carry else 'plain'}"
    out.mkdir()
    config = ModelConfig(runtime=runtime)
    if runtime == "onnx-int8":
        digests = [file_sha256(p) for p in photos]
        measured = visent_onnx.calibrate_int8(lite0, lambda: calibration_images(lite0, photos, digests), digests)
        (out / visent_onnx.CALIBRATION_FILE).write_bytes(measured.read_bytes())
        config.int8_calibration, config.int8_recipe = visent_onnx.CALIBRATION_FILE, visent_onnx.INT8_RECIPE
    if carry:
        _carry_graph(config, out, lite0)
    rng = np.random.default_rng(0)
    head = StudentHead(C=1.0).fit(rng.normal(size=(30, lite0.dim)), np.eye(3)[rng.integers(0, 3, 30)])
    VisentModel(config, head).save(out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_carried_graph_gives_the_trained_networks_probabilities(lite0, photos, tmp_path, runtime) -> None:
    plain = VisentModel.load(_model_dir(tmp_path, lite0, photos, runtime, carry=False))
    carried = VisentModel.load(_model_dir(tmp_path, lite0, photos, runtime, carry=True))
    assert isinstance(carried.feature_backbone, GraphBackbone) and plain.feature_backbone is plain.backbone
    record = json.loads((carried.directory / "config.json").read_text())["graph"]
    assert record["file"] == GRAPH_FILE and record["spec"]["image_size"] == 224 and record["runtime"] == runtime
    expected, _ = plain.predict_proba(photos[:5], cache=False)
    probs, status = carried.predict_proba(photos[:5], cache=False)
    assert [s.state for s in status] == ["ok"] * 5
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    # the same identity: features cached by the network the model was trained with serve the carried graph
    assert feature_key(carried.feature_backbone, False) == feature_key(
        lite0, False, runtime, visent_onnx.calibration_id(plain.directory / visent_onnx.CALIBRATION_FILE)
        if runtime == "onnx-int8" else None, plain.config.int8_recipe)


@pytest.mark.slow
def test_carried_graph_needs_no_torch_export_or_quantisation(lite0, photos, tmp_path) -> None:
    model_dir = _model_dir(tmp_path, lite0, photos, "onnx-int8", carry=True)
    script = ("import sys; from visent.model import VisentModel; "
              f"p, s = VisentModel.load({str(model_dir)!r}).predict_proba({[str(p) for p in photos[:3]]!r}); "
              "assert [x.state for x in s] == ['ok'] * 3, s; "
              "print(sorted(m for m in ('torch', 'onnx.reference', 'onnxruntime.quantization') if m in sys.modules))")
    fresh = tmp_path / "fresh-cache"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "VISENT_CACHE": str(fresh)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert not list(fresh.glob("onnx/*"))  # nothing exported or quantised: the directory carried it


def test_missing_graph_is_a_clear_error(lite0, photos, tmp_path) -> None:
    model_dir = _model_dir(tmp_path, lite0, photos, "onnx", carry=True)
    (model_dir / GRAPH_FILE).unlink()
    with pytest.raises(PathNotFound, match="network graph is missing"):
        VisentModel.load(model_dir).predict_proba(photos[:1], cache=False)


def test_graph_features_hit_the_training_cache(lite0, photos, tmp_path) -> None:
    model_dir = _model_dir(tmp_path, lite0, photos, "onnx", carry=True)
    cache = FeatureCache(tmp_path / "features")
    trained, _ = embed_images(photos[:4], None, lite0, cache=cache, runtime="onnx")
    graph = VisentModel.load(model_dir).feature_backbone
    again, status = embed_images(photos[:4], None, graph, cache=cache, runtime="onnx")
    assert [s.state for s in status] == ["cached"] * 4
    np.testing.assert_array_equal(again, trained)
