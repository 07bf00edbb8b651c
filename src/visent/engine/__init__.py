"""Engines: where the per-post work of a stage runs.

``local`` (the default) runs a stage's batches one after the other in this process; ``ray`` hands them to the
actors of a Ray cluster (``pip install "visent[ray]"``), each actor holding its own image fetcher, teacher,
backbone or model. Either way the driver writes every finished batch through the stage's checkpoint, so the
tables, the feature cache and the prediction rows are the same, and an interrupted run resumes as before.

An engine's one operation is :meth:`LocalEngine.map_batches`: a worker class (built once per process that runs
it, with picklable constructor arguments), an Arrow table of inputs, and back come the worker's output tables in
input order, one per batch. Ray is imported only by :mod:`visent.engine.ray`, when the ray engine is asked for.
"""

from __future__ import annotations

from visent.engine.base import Engine, EngineError, LocalEngine

__all__ = ["ENGINES", "Engine", "EngineError", "LocalEngine", "get_engine"]

ENGINES = ("local", "ray")


def get_engine(engine: str | Engine | None = None, *, address: str | None = None,
               num_cpus: int | None = None) -> Engine:
    """The engine named ``engine`` ("local" when None). For "ray", ``address`` is a running cluster ("auto" or
    the head's "host:port"); without one (and no ``$RAY_ADDRESS``) a local Ray instance is started on 127.0.0.1
    with ``num_cpus`` CPUs (default: every core)."""
    if engine is None or engine == "local":
        if address is not None:
            raise EngineError("--ray-address needs --engine ray")
        return LocalEngine()
    if not isinstance(engine, str):
        return engine
    if engine == "ray":
        from visent.engine.ray import RayEngine

        engine = RayEngine(address=address, num_cpus=num_cpus)
        engine.connect()  # now: a cluster that cannot be reached fails before any work starts
        return engine
    raise EngineError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
