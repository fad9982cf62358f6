"""Project settings.

Only values that differ from Kedro's defaults need to be set here. See
https://docs.kedro.org/en/stable/configure/configuration_basics/ for the full list
and their default values.
"""

import warnings

# Instantiated project hooks, run in last-in, first-out order. For example, after
# writing a ``ProjectHooks`` class in ``hooks.py``, add ``ProjectHooks()``.
# ``RunParamsHook`` hands DaskRunner the run's parameters, so that its runs
# appear in Kedro-Viz's Workflow view as SequentialRunner's do (partial runs
# excepted, as there).
from {{ cookiecutter.python_package }}.runner.run_params import RunParamsHook

HOOKS = (RunParamsHook(),)

# Installed plugins whose hooks should not be auto-registered.
# DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

# Class that manages the KedroSession.
# from kedro.framework.session import KedroSession
# SESSION_CLASS = KedroSession

# Class that stores KedroSession data, and its constructor arguments.
# from kedro.framework.session.store import BaseSessionStore
# SESSION_STORE_CLASS = BaseSessionStore
# SESSION_STORE_ARGS = {"path": "./sessions"}

# Directory that holds configuration.
# CONF_SOURCE = "conf"

# Class that loads configuration.
# from kedro.config import OmegaConfigLoader
# CONFIG_LOADER_CLASS = OmegaConfigLoader

# Keyword arguments for the CONFIG_LOADER_CLASS constructor. ``--env dask`` layers
# conf/dask/ over conf/base/ instead of the default conf/local/.
# Parameters are merged key by key ("soft"): Kedro applies ``--params`` to each
# environment's parameters before layering them, so with the default ("destructive")
# strategy ``--env dask --params raw_data.n_stores=3`` would replace the whole
# ``raw_data`` block of conf/base/ with ``{n_stores: 3}``.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}

# omegaconf 2.4 deprecates ``register_new_resolver``, which Kedro 1.7's config
# loader calls as it starts: three warnings a run that the project cannot act on.
warnings.filterwarnings(
    "ignore",
    message=r"register_new_resolver\(\) is deprecated",
    category=UserWarning,
)

# Class that manages Kedro's library components.
# from kedro.framework.context import KedroContext
# CONTEXT_CLASS = KedroContext

# Class that manages the Data Catalog.
# from kedro.io import DataCatalog
# DATA_CATALOG_CLASS = DataCatalog
