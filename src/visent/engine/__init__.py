"""Engines: where the per-post work of a stage runs.

``local`` (the default) runs a stage's batches one after the other in this process; ``ray`` hands them to the
actors of a Ray cluster (``pip install "visent[ray]"``), each actor holding its own image fetcher, teacher,
backbone or model. Either way the driver writes every finished batch through the stage's checkpoint, so the
tables, the feature cache and the prediction rows are the same, and an interrupted run resumes as before.

An engine's one operation is :meth:`LocalEngine.map_batches`: a worker class (built once per process that runs
it, with picklable constructor arguments), an Arrow table of inputs, and back come the worker's output tables in
input order, one per batch. Ray is imported only by :mod:`visent.engine.ray`, when the ray engine is asked for.
"""

from visent.engine.base import Engine, EngineError, LocalEngine
from visent.engine.factory import ENGINES, get_engine

__all__ = ["ENGINES", "Engine", "EngineError", "LocalEngine", "get_engine"]
