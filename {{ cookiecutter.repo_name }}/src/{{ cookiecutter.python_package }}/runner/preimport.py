"""Imported by the forkserver of an embedded LocalCluster's worker processes
(see ``forkserver``): imports, once, the modules those workers will import, so
that each worker forked from it has them.

It imports what Dask's own forkserver would (``forkserver.dask_preloads``), then
the modules named by the environment variable ``forkserver.SETUP_VARIABLE``, set
for the forkserver's start only, which also names the Kedro project package and
the ``PYTHONPATH`` to restore once they are imported (the forkserver started with
the driver's path). A module that fails to import, whatever the error, is left
out: a worker that needs it imports it itself, and the node reports the error.
The project is then configured as a worker's first node task would
(``worker.warm_up``): loading Kedro's project settings takes a quarter of a
second, which each worker would otherwise spend before its first node; a
failure here is left to that first node too.

The forkserver stops importing as soon as it sees the driver gone, between two
imports: a run that failed early (bad input), or was interrupted, would otherwise
leave it importing for a second or two, holding the driver's console. Once it
serves workers, it ends when the driver does, and then exits at once: tearing down
what it imported took 0.4 s, during which it still held the driver's console
(``kedro run | tee``, or a caller reading its output, waited for it). It has
nothing to clean up: it runs no task, and its workers exit on their own.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
from contextlib import suppress

from . import worker_setup
from .forkserver import SETUP_VARIABLE, dask_preloads


def _import_all() -> None:
    atexit.register(os._exit, 0)  # the last exit handler (see above)
    # The worker processes' log filters first: a module may import Kedro's
    # project settings, which apply the project's logging configuration.
    worker_setup.set_up_logging()
    setup = json.loads(os.environ.pop(SETUP_VARIABLE, "{}"))
    if "pythonpath" in setup:  # the path is set: the driver's environment again
        if setup["pythonpath"] is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = setup["pythonpath"]
    driver = setup.get("driver", os.getppid())
    for name in [*dask_preloads(), *setup.get("modules", [])]:
        if os.getppid() != driver:  # see the module's docstring
            os._exit(0)
        with suppress(Exception):
            importlib.import_module(name)
    if setup.get("package"):
        with suppress(Exception):
            importlib.import_module(f"{__package__}.worker").warm_up(setup["package"])


_import_all()
