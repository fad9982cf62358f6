"""Run Kedro pipelines on a Dask distributed cluster: ``kedro run --runner
<package>.runner.DaskRunner``."""

from .dask_runner import DaskRunner
from .errors import DaskClusterError, DaskRunnerError

__all__ = ["DaskClusterError", "DaskRunner", "DaskRunnerError"]
