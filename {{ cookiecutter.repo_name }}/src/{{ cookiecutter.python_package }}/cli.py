"""Command line tools of this project.

Overrides ``kedro run`` so that a ``DaskRunner`` gets the ``dask_client``
parameters of the run environment (``conf/<env>/parameters.yml``), e.g.
``kedro run --env dask --runner <package>.runner.DaskRunner``. Every other
option of Kedro's own ``kedro run`` works unchanged: this command reuses its
click parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click
from kedro import KedroDeprecationWarning
from kedro.framework.cli.project import _resolve_runner_kwargs
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import CONTEXT_SETTINGS, KedroCliError
from kedro.framework.project import LOGGING, settings
from kedro.framework.session import KedroSession
from kedro.utils import load_obj

from .runner import DaskRunner, DaskRunnerError
from .runner.services import RunOptions

if TYPE_CHECKING:
    from kedro.framework.context import KedroContext
    from kedro.runner import AbstractRunner

DASK_CLIENT_PARAMS = "dask_client"
"""The parameters key holding ``DaskRunner``'s ``client_args``."""
DASK_RUNNER_PARAMS = "dask_runner"
"""The parameters key holding ``DaskRunner``'s other options (progress, ...)."""


@click.group(context_settings=CONTEXT_SETTINGS, name=__file__)
def cli() -> None:
    """Command line tools for manipulating a Kedro project."""


@cli.command(params=kedro_run.params, help=kedro_run.help)
def run(  # noqa: PLR0913
    tags: tuple[str, ...],
    env: str | None,
    runner: str | None,
    is_async: bool,
    runner_params: dict[str, Any],
    node_names: tuple[str, ...],
    to_nodes: list[str],
    from_nodes: list[str],
    from_inputs: list[str],
    to_outputs: list[str],
    load_versions: dict[str, str] | None,
    pipeline: str | None,
    pipelines: list[str],
    config: str | None,
    conf_source: str | None,
    params: dict[str, Any],
    namespaces: list[str],
    only_missing_outputs: bool,
    **unknown_options: Any,
) -> dict[str, Any]:
    """Run the pipeline."""
    # Importing distributed resets its loggers to INFO after Kedro applied the
    # project's logging configuration at start-up: apply that configuration again.
    LOGGING.configure(LOGGING.data)
    if pipeline and pipelines:
        raise KedroCliError(
            "Options '--pipeline' and '--pipelines' cannot be used together"
        )
    if pipeline:
        warnings.warn(
            "Option '--pipeline' is deprecated and will be removed in a future "
            "release. Please use '--pipelines' instead.",
            KedroDeprecationWarning,
            stacklevel=1,
        )
    pipeline_names = [pipeline] if pipeline else sorted(set(pipelines))

    create_kwargs: dict[str, Any] = {"env": env, "conf_source": conf_source}
    run_kwargs: dict[str, Any] = {
        "tags": tuple(tags),
        "node_names": tuple(node_names),
        "from_nodes": from_nodes,
        "to_nodes": to_nodes,
        "from_inputs": from_inputs,
        "to_outputs": to_outputs,
        "load_versions": load_versions,
        "pipeline_names": pipeline_names,
        "namespaces": namespaces,
        "only_missing_outputs": only_missing_outputs,
        **unknown_options,
    }
    # KedroSession takes runtime params when created; other session classes on run.
    if issubclass(settings.SESSION_CLASS, KedroSession):
        create_kwargs["runtime_params"] = params
    else:
        run_kwargs["runtime_params"] = params

    with settings.SESSION_CLASS.create(**create_kwargs) as session:
        run_kwargs["runner"] = _instantiate_runner(
            runner, is_async, session.load_context(), runner_params
        )
        try:
            result: dict[str, Any] = session.run(**run_kwargs)
        except DaskRunnerError as exc:  # bad input or no cluster: one line says why
            raise KedroCliError(str(exc)) from None
    return result


def _instantiate_runner(
    runner: str | None,
    is_async: bool,
    project_context: KedroContext,
    runner_params: Mapping[str, Any] | None = None,
) -> AbstractRunner:
    """Create the runner named on the command line.

    A ``DaskRunner`` (or subclass) gets ``client_args`` from the environment's
    ``dask_client`` parameters, updated by ``--runner-params client_args.<key>=...``,
    and its other options from the ``dask_runner`` parameters, updated by
    ``--runner-params <option>=...``: the command line wins.

    Raises:
        KedroCliError: The runner cannot be loaded, its parameters do not fit it,
            or ``dask_client``/``dask_runner`` is not a mapping.
    """
    try:
        runner_class = load_obj(runner or "SequentialRunner", "kedro.runner")
    except (AttributeError, ImportError, ValueError) as exc:
        raise KedroCliError(f"Cannot load runner '{runner}': {exc}") from None
    runner_kwargs = _resolve_runner_kwargs(is_async, dict(runner_params or {}))

    if isinstance(runner_class, type) and issubclass(runner_class, DaskRunner):
        params = project_context.params
        client_args = _mapping(params.get(DASK_CLIENT_PARAMS), DASK_CLIENT_PARAMS)
        from_cli = _mapping(runner_kwargs.get("client_args"), "client_args")
        runner_kwargs["client_args"] = {**client_args, **from_cli}
        options = _mapping(params.get(DASK_RUNNER_PARAMS), DASK_RUNNER_PARAMS)
        try:  # only dask_runner options: none silently dropped, errors named right
            RunOptions.from_mapping(options)
        except DaskRunnerError as exc:
            raise KedroCliError(str(exc)) from None
        runner_kwargs = {**options, **runner_kwargs}

    try:
        return runner_class(**runner_kwargs)
    except DaskRunnerError as exc:
        raise KedroCliError(str(exc)) from None
    except TypeError as exc:
        raise KedroCliError(
            f"--runner-params do not fit {runner_class.__name__}: {exc}"
        ) from None


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise KedroCliError(
            f"'{name}' must be a mapping of options, got "
            f"{type(value).__name__}: {value!r}"
        )
    return value
