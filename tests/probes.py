"""Functions the starter's tests run on Dask workers (``Client.run``) and on the
scheduler (``Client.run_on_scheduler``) to see what a cluster holds and did.

They travel BY VALUE: importing this module registers it with
``cloudpickle.register_pickle_by_value``, and distributed pickles functions of
registered modules with cloudpickle, code included. By reference they would not
work: workers run from a project copy whose own ``tests`` package (the rendered
project's tests) shadows this one, and the scheduler runs from an empty folder
without ``PYTHONPATH``. So the functions use only their arguments and what they
import themselves.
"""

from __future__ import annotations

import sys
from typing import Any

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def executed_keys(dask_worker: Any) -> dict[str, Any]:
    """Keys of the tasks this worker executed (transition executing -> done)."""
    keys = []
    for entry in list(dask_worker.state.log):
        if len(entry) >= 3 and entry[1] == "executing" and entry[2] != "error":
            keys.append(entry[0])
    return {"name": dask_worker.name, "keys": keys}


def executing_keys(dask_worker: Any) -> list:
    """Keys of the tasks this worker is executing right now."""
    return [ts.key for ts in dask_worker.state.executing]


def scheduler_state(dask_scheduler: Any) -> dict[str, Any]:
    """What the scheduler holds and has seen."""
    return {
        "keys": list(dask_scheduler.tasks),
        "prefixes": sorted(str(name) for name in dask_scheduler.task_prefixes),
        "transitions": dask_scheduler.transition_counter,
        "workers": sorted(dask_scheduler.workers),
    }


def shipped_without_bytecode(dask_worker: Any) -> dict[str, list[str]]:
    """Each copy of project code shipped to this worker (``kedro-code-*`` in its
    local directory), with the modules of it that have no compiled bytecode."""
    import importlib.util
    from pathlib import Path

    return {
        copy.name: [
            str(module.relative_to(copy))
            for module in sorted(copy.rglob("*.py"))
            if not Path(importlib.util.cache_from_source(str(module))).is_file()
        ]
        for copy in Path(dask_worker.local_directory).glob("kedro-code-*")
    }


def project_code(dask_worker: Any, package: str) -> dict[str, Any]:
    """What this worker has of the project ``package``: shipped folders on
    sys.path, and whether it can import the package at all."""
    import importlib.util

    return {
        "name": dask_worker.name,
        "shipped_on_path": [p for p in sys.path if "kedro-code-" in p],
        "importable": importlib.util.find_spec(package) is not None,
    }
