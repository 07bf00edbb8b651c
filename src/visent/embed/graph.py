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
        """An :class:`~visent.embed.onnx.OnnxEmbedder` of the graph (sessions are kept for reuse in the process). A
        graph ONNX Runtime cannot load (a damaged or foreign file) is a
        :class:`~visent.embed.onnx.ModelFileError` naming it."""
        from visent.embed.onnx import OnnxEmbedder, require_onnxruntime

        require_onnxruntime()
        if not self.path.is_file():
            raise PathNotFound(f"{self.path}: the model's network graph is missing; copy the whole model directory, "
                               "or train the model again")
        try:
            return OnnxEmbedder(self.path, threads)
        except Exception as exc:  # onnxruntime's own errors (InvalidProtobuf, InvalidGraph, Fail, ...)
            raise self._broken(exc) from None

    def check(self) -> None:
        """Run the network once on a small grey image, as prediction would: a graph that does not load, does not run
        or gives features of another size than its spec says is a :class:`~visent.embed.onnx.ModelFileError`."""
        import numpy as np
        from PIL import Image

        from visent.embed.spec import preprocess_array

        run = self.embedder()
        batch = preprocess_array(Image.new("RGB", (32, 32), (128, 128, 128)), self.spec)[None]
        try:
            out = np.asarray(run(batch))
        except Exception as exc:
            raise self._broken(exc) from None
        if out.shape != (1, self.dim) or not np.isfinite(out).all():
            raise self._broken(f"it gives features of shape {out.shape}, not (1, {self.dim})"
                               if out.shape != (1, self.dim) else "it gives features that are not finite")

    def _broken(self, cause: object) -> Exception:
        from visent.embed.onnx import ModelFileError

        if isinstance(cause, BaseException):
            detail = " ".join(str(cause).split()) or type(cause).__name__
            detail = f"{type(cause).__name__}: {detail[:200]}{'...' if len(detail) > 200 else ''}"
        else:
            detail = str(cause)
        return ModelFileError(f"{self.path}: not a network visent can run ({detail}); the model directory is damaged: "
                              "copy it again from where it was made, or make it again with `visent train DATASET "
                              "--out DIR` (the shipped model `default`: reinstall visent)")

    def record(self) -> dict[str, Any]:
        """What a model's config keeps of it (the graph named by its file name), for :meth:`from_record`."""
        return {"file": self.path.name, "spec": asdict(self.spec), "key": self.key, "runtime": self.runtime,
                "calib_id": self.calib_id, "int8_recipe": self.int8_recipe}

    @classmethod
    def from_record(cls, directory: Path, record: dict[str, Any]) -> GraphBackbone:
        spec = dict(record["spec"])
        spec["mean"], spec["std"] = tuple(spec["mean"]), tuple(spec["std"])
        from visent.embed.onnx import model_file

        path = model_file(directory, record.get("file"), "graph.file")
        return cls(path, BackboneSpec(**spec), record["key"], record.get("runtime", "onnx"),
                   record.get("calib_id"), int(record.get("int8_recipe", 1)))
