"""What ``kedro run`` knows of a run's cluster before it imports Dask's
``distributed``: where the cluster comes from, the environment of the worker
processes of a LocalCluster the runner starts, and the early start of their
forkserver.

Importing ``distributed`` takes half a second of the driver's time. The project's
``cli.py`` uses this module, not ``cluster``, so ``kedro run --runner
<package>.runner.DaskRunner`` starts the forkserver before it imports
``distributed``: the forkserver imports what the workers need meanwhile, on the
other core. ``kedro`` commands that run no Dask (another runner, ``kedro viz``,
...) do not import it at all.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import dask.config

from . import forkserver

RUN_OPTIONS = frozenset({"worker_wait", "allow_insecure"})
"""Options of the runner itself, valid whichever way the cluster comes; not given
to Dask. ``allow_insecure``: plaintext (tcp://, ws://) to a scheduler beyond
loopback is allowed, with a warning, instead of refused (see ``addresses``)."""

CLUSTER_OPTION = "cluster"
"""Any cluster class, by import path: ``{"class": ..., "kwargs": {...}, "adapt":
{...}}``."""

# Environment of the worker processes of a LocalCluster the runner starts, from
# their start, when Dask, as it is imported, sets up its logging from its config:
# its INFO messages (worker banners, connections, preloads) are kept out of the
# console they share.
_WORKER_ENVIRON = {"DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "warning"}
# glibc's malloc in those worker processes keeps 64 MiB at the top of its heap when
# it trims it (unless this process's environment or Dask's pre-spawn-environ sets
# MALLOC_TOP_PAD_). Dask's own MALLOC_TRIM_THRESHOLD_ (65536) gives memory back to
# the OS as soon as it is freed; without the pad, every large temporary array a
# node frees is given back and faulted in again at the next allocation: the
# example's model nodes took 1.6-2x as long as in SequentialRunner's process, with
# twice the system time. A worker keeps at most the pad of freed memory.
_MALLOC_TOP_PAD = ("MALLOC_TOP_PAD_", str(64 * 2**20))


class Source(enum.Enum):
    """Where the cluster of a run comes from (see ``cluster.DaskCluster``)."""

    CLUSTER = "a cluster class"
    ADDRESS = "a scheduler address"
    LOCAL = "a LocalCluster started here"
    CURRENT = "the current client"
    CONFIG = "the Dask config's scheduler-address"


def cluster_source(args: Mapping[str, Any]) -> Source:
    """Where the cluster of ``args`` (``client_args`` without ``RUN_OPTIONS``)
    comes from, in ``cluster.DaskCluster``'s order."""
    if CLUSTER_OPTION in args:
        return Source.CLUSTER
    if args.get("address") or args.get("scheduler_file"):
        return Source.ADDRESS
    if args.keys() - {"timeout", "name"}:
        return Source.LOCAL
    if current_client() is not None:
        return Source.CURRENT
    if dask.config.get("scheduler-address", None):
        return Source.CONFIG
    return Source.LOCAL


def current_client() -> Any:
    """The ``distributed.Client`` this process already uses, if any (never creates
    one). A process that has not imported ``distributed`` has none."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.Client.current(allow_global=True)
    except ValueError:
        return None


def worker_environ() -> dict[str, str]:
    """What the runner adds to the environment of a LocalCluster's worker
    processes: ``_WORKER_ENVIRON`` and ``worker_memory_environ()``."""
    return {**_WORKER_ENVIRON, **worker_memory_environ()}


def worker_memory_environ() -> dict[str, str]:
    """``MALLOC_TOP_PAD_`` for Dask worker processes (see ``_MALLOC_TOP_PAD``),
    unless this process's environment or Dask's pre-spawn-environ sets it."""
    name, value = _MALLOC_TOP_PAD
    configured = dask.config.get(forkserver.PRE_SPAWN_KEY, default=None)
    if name in os.environ or name in (configured or {}):
        return {}
    return {name: value}


def start_worker_forkserver(client_args: Any, modules: Sequence[str] = ()) -> None:
    """Start now the forkserver that the worker processes of the LocalCluster
    ``client_args`` start would fork from, importing ``modules`` too (see
    ``forkserver``): ``kedro run`` calls it before Kedro loads the project.

    Nothing happens when the cluster would come from anywhere else or has no
    worker processes. ``client_args`` are not checked here: the runner checks
    them, and names what is wrong, before it starts anything else.
    """
    if client_args is not None and not isinstance(client_args, Mapping):
        return
    args = {k: v for k, v in (client_args or {}).items() if k not in RUN_OPTIONS}
    if cluster_source(args) is Source.LOCAL and args.get("processes", True):
        forkserver.start(worker_environ(), modules)
