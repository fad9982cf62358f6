"""Run Kedro pipelines on a Dask distributed cluster: ``kedro run --runner
<package>.runner.DaskRunner``."""

from .cluster import DaskClusterError
from .dask_runner import DaskRunner

__all__ = ["DaskClusterError", "DaskRunner"]
