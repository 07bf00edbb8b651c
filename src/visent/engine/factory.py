"""The engine of a name: :func:`get_engine` ("local" or "ray"), for the stages and the CLI."""

from __future__ import annotations

from visent.engine.base import Engine, EngineError, LocalEngine

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
