"""The ray engine: a stage's batches run on the actors of a Ray cluster, through Ray Data.

Each batch of the stage's input table becomes one Ray Data block; ``map_batches`` sends the blocks to a pool of
actors (one CPU each), every actor builds the stage's worker once (image fetcher, teacher, backbone or model) and
applies it to the blocks it gets. Results come back to the driver in input order (``preserve_order``), where the
stage writes each through its checkpoint exactly as the local engine does. Images, datasets and the feature
cache are read and written by path, so on a cluster of several machines they must lie on a shared filesystem.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Callable, Iterator

import pyarrow as pa

from visent.core.errors import UsageError, VisentError
from visent.core.onnx import usable_cores
from visent.engine.base import EngineError

try:
    import ray
    import ray.data
except ImportError as _missing:  # pragma: no cover - exercised where Ray is absent
    ray = None
    _IMPORT_ERROR: ImportError | None = _missing
else:
    _IMPORT_ERROR = None

TEMP_DIR = "/tmp/visent-ray"  # short: Ray's socket paths live below it
ENV_PASSED = ("VISENT_CACHE",)  # the driver's settings the workers must share
NODE_COLUMN = "__visent_node"  # added by an actor to its output (the node it ran on), removed by the driver


class _Actor:
    """A Ray Data actor holding one stage worker. The worker class, its arguments and the driver's environment
    travel as class attributes of a subclass made per run (pickled with it)."""

    spec: tuple[type, tuple[Any, ...], dict[str, str]]

    def __init__(self) -> None:
        worker, args, env = self.spec
        os.environ.update(env)
        os.environ["VISENT_PROGRESS"] = "0"  # progress is the driver's to show
        self.worker = worker(*args)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = self.worker(batch)
        return out.append_column(NODE_COLUMN, pa.array([self.node] * out.num_rows, pa.string()))


def _checked(address: str | None) -> str | None:
    """``address`` if visent can use it: None, "auto" or host:port."""
    if address is None or address == "auto":
        return address
    if address.startswith("ray://"):
        raise EngineError(f"{address}: Ray Data does not run through Ray Client (ray://); run visent on a "
                          "node of the cluster with --ray-address auto, or submit it with `ray job submit`")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--ray-address {address!r}: give auto or host:port (the address of the cluster's head)")
    return address


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself keeps retrying for minutes) when nothing listens at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise EngineError(f"no Ray cluster answers at {address} ({exc})") from exc


class RayEngine:
    """Runs stages on Ray. ``address``: a running cluster ("auto" or the head's "host:port"); None: the cluster
    ``$RAY_ADDRESS`` names (set in jobs that ``ray job submit`` starts), else a local Ray instance started on
    127.0.0.1 with ``num_cpus`` CPUs (default: every core). A process that has already joined a cluster keeps
    it. ``actors``: the most actors of a stage (default: the cluster's CPUs)."""

    name = "ray"
    threads_per_worker = 1  # each actor holds one CPU

    def __init__(self, address: str | None = None, num_cpus: int | None = None, actors: int | None = None):
        if ray is None:
            raise EngineError(f'the ray engine needs Ray: pip install "visent[ray]" ({_IMPORT_ERROR})')
        self.address = _checked(address)
        self.num_cpus = num_cpus
        self.actors = actors
        self.placement: dict[str, int] = {}  # node id -> batches it ran, over this engine's runs

    def describe(self) -> str:
        """Where the batches ran: "12 batches on 2 nodes of the cluster (6 + 6)"."""
        counts = sorted(self.placement.values(), reverse=True)
        nodes = sum(bool(node.get("Alive")) for node in ray.nodes()) if ray.is_initialized() else len(counts)
        return (f"{sum(counts):,} batch{'es' * (sum(counts) != 1)} on {len(counts)} of the cluster's {nodes} "
                f"node{'s' * (nodes != 1)}"
                + (f" ({' + '.join(str(c) for c in counts)})" if len(counts) > 1 else ""))

    def connect(self) -> None:
        """Join (or start) the cluster once; set Ray Data to keep the input order and stay quiet."""
        if not ray.is_initialized():
            quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "ignore_reinit_error": True}
            address = _checked(self.address or os.environ.get("RAY_ADDRESS") or None)  # set by `ray job submit`
            if address not in (None, "auto"):
                _check_reachable(address)
            try:
                if address is None:
                    ray.init(num_cpus=self.num_cpus or usable_cores(), include_dashboard=False,
                             _temp_dir=TEMP_DIR, _node_ip_address="127.0.0.1", **quiet)
                else:
                    ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or "a local Ray instance"
                raise EngineError(f"cannot start or reach {where}: {exc}") from exc
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the stage shows visent's own bar, advanced per finished batch
        context.print_on_execution_start = False
        context.raise_original_map_exception = True  # a worker's own error, not Ray's UserCodeException around it
        # the pool starts working once all its actors are up: otherwise the first one ready may take every batch of a
        # small stage while the others still load their worker, and a node of the cluster gets none
        context.wait_for_min_actors_s = 600

    def pool_size(self, n_batches: int) -> int:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return max(1, min(self.actors or cpus, cpus, n_batches))

    def map_batches(self, worker: type, args: tuple[Any, ...], table: pa.Table, *, batch_size: int,
                    local: Callable[[pa.Table], pa.Table] | None = None) -> Iterator[pa.Table]:
        """``worker(*args)`` built once per actor and applied to each ``batch_size`` rows of ``table``; the
        output tables come back in input order, one per batch. ``local`` is ignored (it lives in this process)."""
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        if table.num_rows == 0:
            return
        self.connect()
        shards = [table.slice(start, batch_size) for start in range(0, table.num_rows, batch_size)]
        env = {name: os.environ[name] for name in ENV_PASSED if name in os.environ}
        actor = type(f"Visent{worker.__name__}", (_Actor,), {"spec": (worker, args, env)})
        data = ray.data.from_arrow(shards).map_batches(
            actor, batch_size=None, batch_format="pyarrow", num_cpus=1,
            # a fixed pool, one actor per CPU up to one per batch: Ray Data's autoscaling pool started with one
            # actor and kept every batch of a small stage on one node of a two-node cluster
            compute=ray.data.ActorPoolStrategy(size=self.pool_size(len(shards))))
        try:
            for out in data.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
                if out.num_rows:
                    node = out.column(NODE_COLUMN)[0].as_py()
                    self.placement[node] = self.placement.get(node, 0) + 1
                yield out.drop_columns([NODE_COLUMN])
        except ray.exceptions.RayError as exc:
            cause = _visent_cause(exc)
            if cause is None:
                raise
            raise cause from None  # a worker's VisentError is its own one line, not Ray's remote traceback


def _visent_cause(exc: BaseException | None) -> VisentError | None:
    """The VisentError a worker raised, inside the exceptions Ray wraps it in (None when there is none)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, VisentError) and not isinstance(exc, ray.exceptions.RayError):
            return exc
        seen.add(id(exc))
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None
