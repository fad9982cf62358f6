"""Quiet logging for every process of the benchmark.

``apply()`` sets the loggers of Kedro, of the rendered project's runner package
and of distributed to WARNING. The driver calls it directly. Dask workers load
this module as a preload (``distributed.worker.preload``, set through the
``DASK_DISTRIBUTED__WORKER__PRELOAD`` environment variable), so both the warm
cluster's workers and the workers of a LocalCluster the runner starts get the
same levels; ``ParallelRunner``'s pool processes are forked from the driver and
inherit them.
"""

from __future__ import annotations

import logging

LEVEL = logging.WARNING
LOGGERS = ("kedro", "bench_project", "distributed")


def apply() -> dict[str, str]:
    """Set the quiet levels; return them by logger name (for the report)."""
    for name in LOGGERS:
        logging.getLogger(name).setLevel(LEVEL)
    return {
        name: logging.getLevelName(logging.getLogger(name).level) for name in LOGGERS
    }


def dask_setup(worker=None) -> None:  # noqa: ANN001 - distributed's preload hook
    """Called by distributed when a worker loads this module as a preload."""
    apply()


def describe() -> dict[str, object]:
    """This process's logging as it stands: the effective level of each logger
    the benchmark cares about, and the root logger's handlers (for the report:
    the as-shipped processes must show the project's ``conf/logging.yml``)."""
    return {
        "levels": {
            name: logging.getLevelName(logging.getLogger(name).getEffectiveLevel())
            for name in LOGGERS
        },
        "root_handlers": sorted(
            type(handler).__name__ for handler in logging.getLogger().handlers
        ),
    }
