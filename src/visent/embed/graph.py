"""A backbone carried as an ONNX graph: what a model directory needs to compute its features without PyTorch.

``visent train`` writes the network it computed the training features with (the fp32 export, or the int8 network
of its calibration and recipe) into the model directory, with the backbone's input spec and identity. Loading it
is one ONNX Runtime session: no export, no quantisation and no PyTorch import in a fresh process, so ``visent
predict`` starts in a fraction of the time and every machine runs the very network the head was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visent.core.errors import PathNotFound
from visent.embed.spec import BackboneSpec


@dataclass(frozen=True)
class GraphBackbone:
    """A backbone's network as an ONNX graph file, with what it expects (``spec``) and the identity of the features
    it computes: ``key`` is the backbone's (name, weights, preprocessing), ``runtime``, ``calib_id`` and
    ``int8_recipe`` say which network of it the graph is, so that its features share the cache with training's."""

    path: Path
    spec: BackboneSpec
    key: str
    runtime: str = "onnx"
    calib_id: str | None = None
    int8_recipe: int = 1

    name = property(lambda self: self.spec.name)
    dim = property(lambda self: self.spec.dim)
    image_size = property(lambda self: self.spec.image_size)

    def embedder(self, threads: int | None = None) -> Any:
        """An :class:`~visent.embed.onnx.OnnxEmbedder` of the graph (sessions are kept for reuse in the process)."""
        from visent.embed.onnx import OnnxEmbedder, require_onnxruntime

        require_onnxruntime()
        if not self.path.is_file():
            raise PathNotFound(f"{self.path}: the model's network graph is missing; copy the whole model directory, "
                               "or train the model again")
        return OnnxEmbedder(self.path, threads)

    def record(self) -> dict[str, Any]:
        """What a model's config keeps of it (the graph named by its file name), for :meth:`from_record`."""
        return {"file": self.path.name, "spec": asdict(self.spec), "key": self.key, "runtime": self.runtime,
                "calib_id": self.calib_id, "int8_recipe": self.int8_recipe}

    @classmethod
    def from_record(cls, directory: Path, record: dict[str, Any]) -> GraphBackbone:
        spec = dict(record["spec"])
        spec["mean"], spec["std"] = tuple(spec["mean"]), tuple(spec["std"])
        return cls(Path(directory) / record["file"], BackboneSpec(**spec), record["key"], record.get("runtime", "onnx"),
                   record.get("calib_id"), int(record.get("int8_recipe", 1)))
