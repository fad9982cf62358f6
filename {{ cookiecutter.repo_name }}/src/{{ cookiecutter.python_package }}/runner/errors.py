"""Errors of the Dask runner that mean "fix your input or your cluster".

They carry a message meant to be read on its own, so ``kedro run`` prints it as one
line instead of a traceback.
"""


class DaskRunnerError(RuntimeError):
    """The run cannot start or go on, for a reason the message states."""


class DaskClusterError(DaskRunnerError):
    """The cluster described by ``client_args`` cannot be used."""
