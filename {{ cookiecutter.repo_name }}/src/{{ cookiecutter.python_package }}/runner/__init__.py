"""Run Kedro pipelines on a Dask distributed cluster: ``kedro run --runner
<package>.runner.DaskRunner``.

``DaskRunner`` is imported when first asked for: ``settings.py`` registers a hook
from ``runner.recording``, and importing it must not import Dask for every
``kedro`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DaskClusterError, DaskRunnerError

if TYPE_CHECKING:
    from .dask_runner import DaskRunner

__all__ = ["DaskClusterError", "DaskRunner", "DaskRunnerError"]


def __getattr__(name: str) -> Any:
    if name == "DaskRunner":
        from .dask_runner import DaskRunner

        return DaskRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
