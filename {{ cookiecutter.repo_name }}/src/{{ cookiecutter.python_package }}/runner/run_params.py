"""The ``run_params`` Kedro gives pipeline hooks, for the runner.

Registered in the project's ``settings.py``, which every ``kedro`` command
imports: this module imports nothing of Dask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kedro.framework.hooks import hook_impl

if TYPE_CHECKING:
    from pluggy import PluginManager


class RunParamsHook:
    """Remembers the ``run_params`` Kedro passes to pipeline hooks.

    Kedro hands runners no ``run_params``; Kedro-Viz needs them to tell a full
    run from a partial one (``--tags``, ``--from-nodes``, ...), which it does not
    record. Registered in the project's ``settings.py``.
    """

    def __init__(self) -> None:
        self.run_params: dict[str, Any] | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self.run_params = dict(run_params)


def run_params_of(hook_manager: PluginManager | None) -> dict[str, Any] | None:
    """The run's ``run_params``, if a ``RunParamsHook`` is registered."""
    plugins = getattr(hook_manager, "get_plugins", lambda: ())() or ()
    for plugin in plugins:  # Kedro's null hook manager has none
        if isinstance(plugin, RunParamsHook):
            return plugin.run_params
    return None
