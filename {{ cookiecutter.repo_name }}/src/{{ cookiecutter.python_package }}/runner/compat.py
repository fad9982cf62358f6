"""The private Kedro and Dask API the runner relies on, and nothing else.

Kedro's runners build a node's world from parts that Kedro does not export: a hook
manager, a ``MemoryDataset`` holding an object it was handed, a catalog's
validator specs. Dask names a graph by hashing all of it unless told its name.
Each use is wrapped here, once, so that a change in Kedro or Dask breaks one
module, and ``tests/runner/test_compat.py`` says which function broke.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kedro.framework.hooks.manager import _create_hook_manager
from kedro.framework.hooks.markers import HOOK_NAMESPACE
from kedro.framework.hooks.specs import (
    DataCatalogSpecs,
    DatasetSpecs,
    KedroContextSpecs,
    NodeSpecs,
    PipelineSpecs,
)
from kedro.io import MemoryDataset
from kedro.io.memory_dataset import _copy_with_mode
from pluggy import PluginManager

if TYPE_CHECKING:
    from collections.abc import Callable

    from distributed import Client
    from kedro.io import DataCatalog

# Where Kedro's hook manager writes its traces of hook calls, at DEBUG.
_HOOKS_LOGGER = logging.getLogger("kedro.framework.hooks.manager")


def create_hook_manager(*, traced: bool = True) -> PluginManager:
    """A hook manager with Kedro's hook specifications, as a session makes one.

    ``traced=False``: without pluggy's tracing of every hook call, unless Kedro's
    hook manager logs at DEBUG, the only level at which Kedro writes the traces.
    Kedro turns tracing on whatever the level; on a worker its wrapper cost
    ~12 µs of each node's ~60 µs in Kedro's ``Task`` (seven hook calls a node),
    for traces nobody reads.
    """
    if traced or _HOOKS_LOGGER.getEffectiveLevel() == logging.DEBUG:
        return _create_hook_manager()
    manager = PluginManager(HOOK_NAMESPACE)
    for specs in (
        NodeSpecs,
        PipelineSpecs,
        DataCatalogSpecs,
        DatasetSpecs,
        KedroContextSpecs,
    ):
        manager.add_hookspecs(specs)
    return manager


def memory_copy_mode(dataset: Any) -> str | None:
    """The ``copy_mode`` a ``MemoryDataset`` was configured with (``None``: Kedro
    infers it from the data); ``None`` for any other dataset."""
    if isinstance(dataset, MemoryDataset):
        return dataset._copy_mode  # type: ignore[no-any-return]
    return None


def hold(dataset: MemoryDataset, data: Any) -> MemoryDataset:
    """Put ``data`` into ``dataset`` as it is, without the copy ``save`` makes:
    for an object Dask has just handed over, which nothing else refers to."""
    dataset._data = data
    return dataset


def taken(dataset: MemoryDataset) -> Any:
    """What a node saved into an ``assign`` ``MemoryDataset``, as ``load`` returns
    it, without the dataset's description Kedro's ``load`` builds for a debug log
    message whatever the log level (a few hundredths of a millisecond). An empty
    dataset is loaded, for Kedro's own error."""
    if not dataset._exists():
        return dataset.load()
    return dataset._data


def store(dataset: MemoryDataset, data: Any) -> None:
    """``MemoryDataset.save`` with the copy mode settled by ``copy_mode_of``."""
    copy_mode = dataset._copy_mode or copy_mode_of(data)
    dataset._data = _copy_with_mode(data, copy_mode=copy_mode)


def copy_mode_of(data: Any) -> str:
    """Kedro's ``_infer_copy_mode``, without its import attempts.

    Kedro runs ``import pandas``, ``numpy`` and ``ibis`` on every load of an
    in-memory dataset without a copy mode. A failed import is not cached, so with
    ``ibis`` not installed each load searches all of ``sys.path`` again: most of
    a small node's time on a worker. An object can only be an instance of a class
    whose module is imported, so looking the modules up in ``sys.modules``
    decides the same.
    """
    pd = sys.modules.get("pandas")
    np = sys.modules.get("numpy")
    ibis = sys.modules.get("ibis")
    if (pd and isinstance(data, pd.DataFrame)) or (np and isinstance(data, np.ndarray)):
        return "copy"
    if type(data).__name__ == "DataFrame" or (ibis and isinstance(data, ibis.Table)):
        return "assign"
    return "deepcopy"


def add_validator_specs(catalog: DataCatalog, specs: Mapping[str, Any]) -> None:
    """Give a catalog built on a worker the driver's validator specs, which
    ``DataCatalog.validator_specs`` reads but no public method sets."""
    catalog._validator_specs.update(specs)


def named_graph(graph: Any, name: str) -> Any:
    """``graph`` as the expression ``Client.get`` makes of it, named ``name``.

    ``Client.get`` wraps a graph in an expression named by a deterministic token
    of the whole graph, which walks every task and its pickled bytes (~0.35 ms
    per node in the driver). A run's token is already unique. With another dask
    layout the graph is returned as it is, and Dask tokenizes it.
    """
    try:
        from dask._expr import HLGExpr, LLGExpr
        from dask.highlevelgraph import HighLevelGraph
    except ImportError:
        return graph
    if isinstance(graph, HighLevelGraph):
        return HLGExpr(graph, _determ_token=name)
    if isinstance(graph, dict):
        return LLGExpr(graph, _determ_token=name)
    return graph


def start_on_workers(
    client: Client, function: Callable[..., Any], *args: Any, timeout: float
) -> concurrent.futures.Future[dict[str, Any]]:
    """``Client.run(function, *args, on_error="return")``, started on the client's
    event loop and not waited for: its answers, one per worker, come in the
    ``Future`` returned, or ``TimeoutError`` after ``timeout`` seconds.

    ``Client.run`` takes no timeout: with a scheduler that has just gone, it waits
    for the connect timeout (30 s by default) before it fails.
    """

    async def run() -> dict[str, Any]:
        return await asyncio.wait_for(  # type: ignore[no-any-return]
            client._run(function, *args, on_error="return"), timeout
        )

    return asyncio.run_coroutine_threadsafe(run(), client.loop.asyncio_loop)


def scheduler_events(topic: str) -> tuple[tuple[float, Any], ...]:
    """The events of ``topic`` on the scheduler, asked from a task on a worker
    through the worker's own connection: ``get_client()`` would start a client
    in the worker (a new connection, ~0.1 s) for one call.

    Raises:
        ValueError: Not called on a worker.
    """
    from distributed import get_worker
    from distributed.utils import sync

    worker = get_worker()
    return sync(worker.loop, worker.scheduler.events, topic=topic)
