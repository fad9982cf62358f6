"""Node functions, pipelines and catalogs of the benchmark workloads.

This module is imported by reference on every process that runs a node: the
driver, ``ParallelRunner``'s pool processes and the Dask workers (``benchmarks/``
is on their ``sys.path`` / ``PYTHONPATH``). Keep it light: it imports Kedro's
pipeline and io modules only, and numpy only inside the functions that need it.

Workloads:

- ``fan_out(n)``: one source node and ``n`` trivial nodes that each consume the
  source's output and write their own in-memory output (``n + 1`` nodes).
- ``chain(n)``: ``n`` trivial nodes, each consuming the previous one's output.
- ``cpu(n, iterations)``: ``n`` independent nodes of pure-Python, GIL-bound work.
- ``data_chain(n, elements)``: ``n`` nodes passing float64 arrays of ``elements``
  items along a chain; each node returns a new array (``x + 1``).
- ``single()``: one trivial node (start-up cost).
"""

from __future__ import annotations

import time
from functools import partial, update_wrapper
from typing import Any

from kedro.io import DataCatalog, MemoryDataset, SharedMemoryDataCatalog
from kedro.pipeline import Pipeline, node

# --------------------------------------------------------------------------- #
# Node functions
# --------------------------------------------------------------------------- #


def source() -> int:
    """A trivial node with no input."""
    return 1


def passthrough(value: Any) -> Any:
    """A trivial node: returns its input."""
    return value


def spin(iterations: int) -> int:
    """Pure-Python, GIL-bound work: ``iterations`` rounds of integer arithmetic."""
    acc = 0
    for i in range(iterations):
        acc = (acc + i * i) % 1_000_003
    return acc


def make_array(elements: int) -> Any:
    """A new float64 array of ``elements`` ones (allocated and written)."""
    import numpy as np

    return np.ones(elements, dtype=np.float64)


def add_one(array: Any) -> Any:
    """A new array derived from the input: ``array + 1``."""
    return array + 1


# --------------------------------------------------------------------------- #
# Calibration of the CPU workload
# --------------------------------------------------------------------------- #


def calibrate_spin(target_seconds: float, rounds: int = 3) -> dict[str, float]:
    """How many ``spin`` iterations take ``target_seconds`` on this machine.

    Times a probe, scales it to the target, then checks the scaled count a few
    times and corrects it by the median of those checks.

    Returns:
        ``iterations`` and the ``measured`` seconds of one final check run.
    """
    probe = 200_000
    while True:
        start = time.perf_counter()
        spin(probe)
        elapsed = time.perf_counter() - start
        if elapsed >= 0.05 or probe >= 50_000_000:
            break
        probe *= 4
    iterations = max(1_000, int(probe * target_seconds / elapsed))
    checks = []
    for _ in range(rounds):
        start = time.perf_counter()
        spin(iterations)
        checks.append(time.perf_counter() - start)
    checks.sort()
    median = checks[len(checks) // 2]
    iterations = max(1_000, int(iterations * target_seconds / median))
    start = time.perf_counter()
    spin(iterations)
    return {"iterations": iterations, "measured": time.perf_counter() - start}


# --------------------------------------------------------------------------- #
# Pipelines
# --------------------------------------------------------------------------- #


def fan_out(n: int) -> Pipeline:
    """One source node and ``n`` consumers of its output (``n + 1`` nodes)."""
    nodes = [node(source, None, "fan_src", name="fan_src")]
    nodes += [
        node(passthrough, "fan_src", f"fan_out_{i}", name=f"fan_{i}") for i in range(n)
    ]
    return Pipeline(nodes)


def chain(n: int) -> Pipeline:
    """``n`` trivial nodes in a chain."""
    nodes = [node(source, None, "chain_0", name="chain_0")]
    nodes += [
        node(passthrough, f"chain_{i - 1}", f"chain_{i}", name=f"chain_{i}")
        for i in range(1, n)
    ]
    return Pipeline(nodes)


def cpu(n: int, iterations: int) -> Pipeline:
    """``n`` independent nodes of ``spin(iterations)`` each."""
    work = update_wrapper(partial(spin, iterations), spin)
    return Pipeline(
        [node(work, None, f"cpu_out_{i}", name=f"cpu_{i}") for i in range(n)]
    )


def data_chain(n: int, elements: int) -> Pipeline:
    """``n`` nodes passing float64 arrays of ``elements`` items along a chain.

    The first node allocates the array; each next one returns ``x + 1``; the last
    array is the pipeline's output, returned to the caller's catalog.
    """
    make = update_wrapper(partial(make_array, elements), make_array)
    nodes = [node(make, None, "arr_0", name="arr_0")]
    nodes += [
        node(add_one, f"arr_{i - 1}", f"arr_{i}", name=f"arr_{i}") for i in range(1, n)
    ]
    return Pipeline(nodes)


def single() -> Pipeline:
    """One trivial node."""
    return Pipeline([node(source, None, "single_out", name="single")])


# --------------------------------------------------------------------------- #
# Catalogs
# --------------------------------------------------------------------------- #


def catalog(
    pipeline: Pipeline, *, shared_memory: bool, assign_datasets: bool
) -> DataCatalog:
    """A fresh catalog for one run of ``pipeline``.

    Args:
        shared_memory: Build a ``SharedMemoryDataCatalog``, which
            ``ParallelRunner`` requires: its undeclared datasets become
            ``SharedMemoryDataset`` proxies held by the runner's manager process.
        assign_datasets: Declare every dataset of the pipeline as
            ``MemoryDataset(copy_mode="assign")`` (no defensive copies on load and
            save). Ignored for a shared-memory catalog: a plain ``MemoryDataset``
            lives in one process, so ``ParallelRunner`` cannot pass data through
            it between nodes.
    """
    if shared_memory:
        return SharedMemoryDataCatalog()
    if assign_datasets:
        return DataCatalog(
            datasets={
                name: MemoryDataset(copy_mode="assign")
                for name in sorted(pipeline.datasets())
            }
        )
    return DataCatalog()
