"""Imported by the forkserver of an embedded LocalCluster's worker processes
(see ``forkserver``): imports, once, the modules those workers will import, so
that each worker forked from it has them.

The environment variable ``forkserver.SETUP_VARIABLE``, set for the forkserver's
start only, names the modules, and the ``PYTHONPATH`` to restore once they are
imported (the forkserver started with the driver's path). A module that fails to
import, whatever the error, is left out: a worker that needs it imports it
itself, and the node reports the error.
"""

from __future__ import annotations

import importlib
import json
import os
from contextlib import suppress

from . import worker_setup
from .forkserver import SETUP_VARIABLE


def _import_all() -> None:
    # The worker processes' log filters first: a module may import Kedro's
    # project settings, which apply the project's logging configuration.
    worker_setup.set_up_logging()
    setup = json.loads(os.environ.pop(SETUP_VARIABLE, "{}"))
    if "pythonpath" in setup:  # the path is set: the driver's environment again
        if setup["pythonpath"] is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = setup["pythonpath"]
    for name in setup.get("modules", []):
        with suppress(Exception):
            importlib.import_module(name)


_import_all()
