"""Command line tools of this project.

Overrides ``kedro run`` so that a ``DaskRunner`` gets the ``dask_client``
parameters of the run environment (``conf/<env>/parameters.yml``), e.g.
``kedro run --env dask --runner <package>.runner.DaskRunner``. Every other
option of Kedro's own ``kedro run`` works unchanged: this command reuses its
click parameters.

Adds ``kedro dask scheduler`` and ``kedro dask worker``, which start Dask's own
``dask scheduler`` / ``dask worker`` at the environment's ``dask_client.address``
(with its TLS files), the worker from the project root with ``src`` on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

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
    from kedro.framework.startup import ProjectMetadata
    from kedro.runner import AbstractRunner

DASK_CLIENT_PARAMS = "dask_client"
"""The parameters key holding ``DaskRunner``'s ``client_args``."""
DASK_RUNNER_PARAMS = "dask_runner"
"""The parameters key holding ``DaskRunner``'s other options (progress, ...)."""


class RunError(KedroCliError):
    """A ``kedro run`` / ``kedro dask`` error the user reads as one line.

    ``KedroCliError.show`` formats ``sys.exc_info()``, which click 8.5 no longer
    sets when it calls ``show``: it printed ``NoneType: None``. This prints the
    message itself, as ``click.ClickException`` does, whatever click's version.
    """

    def show(self, file: IO[Any] | None = None) -> None:
        click.ClickException.show(self, file)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Report input and cluster errors, Kedro's own CLI errors included, as one
    line; a node's own exception keeps its traceback."""
    try:
        yield
    except (KedroCliError, DaskRunnerError) as exc:
        if isinstance(exc, RunError):
            raise
        message = exc.message if isinstance(exc, KedroCliError) else str(exc)
        raise RunError(message) from None


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
        raise RunError("Options '--pipeline' and '--pipelines' cannot be used together")
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

    with (
        _one_line_errors(),
        settings.SESSION_CLASS.create(**create_kwargs) as session,
    ):
        run_kwargs["runner"] = _instantiate_runner(
            runner, is_async, session.load_context(), runner_params
        )
        result: dict[str, Any] = session.run(**run_kwargs)
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
        RunError: The runner cannot be loaded, its parameters do not fit it,
            or ``dask_client``/``dask_runner`` is not a mapping.
    """
    try:
        runner_class = load_obj(runner or "SequentialRunner", "kedro.runner")
    except (AttributeError, ImportError, ValueError) as exc:
        raise RunError(f"Cannot load runner '{runner}': {exc}") from None
    with _one_line_errors():
        runner_kwargs = _resolve_runner_kwargs(is_async, dict(runner_params or {}))

    if isinstance(runner_class, type) and issubclass(runner_class, DaskRunner):
        params = project_context.params
        client_args = _mapping(params.get(DASK_CLIENT_PARAMS), DASK_CLIENT_PARAMS)
        from_cli = _mapping(runner_kwargs.get("client_args"), "client_args")
        runner_kwargs["client_args"] = {**client_args, **from_cli}
        options = _mapping(params.get(DASK_RUNNER_PARAMS), DASK_RUNNER_PARAMS)
        with _one_line_errors():  # only dask_runner options: none silently dropped
            RunOptions.from_mapping(options)
        runner_kwargs = {**options, **runner_kwargs}

    try:
        with _one_line_errors():
            return runner_class(**runner_kwargs)
    except TypeError as exc:
        raise RunError(
            f"--runner-params do not fit {runner_class.__name__}: {exc}"
        ) from None


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RunError(
            f"'{name}' must be a mapping of options, got "
            f"{type(value).__name__}: {value!r}"
        )
    return value


# --------------------------------------------------------------------------- #
# kedro dask scheduler / worker
# --------------------------------------------------------------------------- #
_PASS_THROUGH = {"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}
_ENV_OPTION = click.option(
    "--env",
    "-e",
    default="dask",
    show_default=True,
    help="Kedro environment whose dask_client parameters to use.",
)


@cli.group(name="dask")
def dask_commands() -> None:
    """Start a Dask scheduler or worker for this project."""


@dask_commands.command(name="scheduler", context_settings=_PASS_THROUGH)
@_ENV_OPTION
@click.argument("dask_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def dask_scheduler(
    metadata: ProjectMetadata, env: str, dask_args: tuple[str, ...]
) -> None:
    """Run dask scheduler at dask_client.address; other options go to it."""
    _exec_dask(metadata, scheduler_command(_dask_client(metadata, env), dask_args))


@dask_commands.command(name="worker", context_settings=_PASS_THROUGH)
@_ENV_OPTION
@click.argument("dask_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def dask_worker(
    metadata: ProjectMetadata, env: str, dask_args: tuple[str, ...]
) -> None:
    """Run dask worker joining dask_client.address, from the project root;
    other options (--nthreads, --resources, ...) go to it."""
    _exec_dask(metadata, worker_command(_dask_client(metadata, env), dask_args))


def scheduler_command(
    client_args: Mapping[str, Any], extra: Sequence[str] = ()
) -> list[str]:
    """``dask scheduler`` arguments listening where ``client_args`` connect.

    Raises:
        RunError: No valid ``address``, or TLS files missing.
    """
    protocol, host, port = _address_parts(client_args)
    return [
        "scheduler",
        *("--protocol", protocol, "--host", host, "--port", str(port)),
        *_tls_flags(client_args, protocol, "scheduler"),
        *extra,
    ]


def worker_command(
    client_args: Mapping[str, Any], extra: Sequence[str] = ()
) -> list[str]:
    """``dask worker`` arguments joining the scheduler ``client_args`` connect to.

    Raises:
        RunError: No valid ``address``, or TLS files missing.
    """
    protocol, _, _ = _address_parts(client_args)
    return [
        "worker",
        str(client_args["address"]),
        *_tls_flags(client_args, protocol, "worker"),
        *extra,
    ]


def _dask_client(metadata: ProjectMetadata, env: str) -> Mapping[str, Any]:
    with KedroSession.create(project_path=metadata.project_path, env=env) as session:
        params = session.load_context().params
    client_args = _mapping(params.get(DASK_CLIENT_PARAMS), DASK_CLIENT_PARAMS)
    if not client_args.get("address"):
        raise RunError(
            f"kedro dask needs {DASK_CLIENT_PARAMS}.address in the '{env}' "
            f"environment (conf/{env}/parameters.yml), e.g. tcp://127.0.0.1:8786."
        )
    return client_args


def _address_parts(client_args: Mapping[str, Any]) -> tuple[str, str, int]:
    from distributed.comm import parse_address, parse_host_port

    address = client_args.get("address")
    try:
        protocol, location = parse_address(str(address))
        host, port = parse_host_port(location)
    except (TypeError, ValueError) as exc:
        raise RunError(
            f"{DASK_CLIENT_PARAMS}.address '{address}' is not a Dask address "
            f"with a port, e.g. tcp://127.0.0.1:8786: {exc}"
        ) from None
    if protocol not in ("tcp", "tls"):
        raise RunError(
            f"kedro dask starts tcp:// or tls:// schedulers, not {protocol}:// "
            f"({DASK_CLIENT_PARAMS}.address '{address}')."
        )
    return protocol, host, port


def _tls_flags(client_args: Mapping[str, Any], protocol: str, role: str) -> list[str]:
    """``--tls-*`` options of a scheduler or worker, from ``security``.

    ``security`` holds ``distributed.Security`` options: the CA and the
    ``tls_<role>_cert``/``tls_<role>_key`` of each role.
    """
    if protocol != "tls":
        return []
    security = _mapping(client_args.get("security"), f"{DASK_CLIENT_PARAMS}.security")
    files = {
        "--tls-ca-file": "tls_ca_file",
        "--tls-cert": f"tls_{role}_cert",
        "--tls-key": f"tls_{role}_key",
    }
    missing = [key for key in files.values() if not security.get(key)]
    if missing:
        raise RunError(
            f"A {role} at a tls:// address needs {DASK_CLIENT_PARAMS}.security."
            f"{', security.'.join(missing)} (PEM file paths)."
        )
    return [arg for flag, key in files.items() for arg in (flag, str(security[key]))]


def _exec_dask(metadata: ProjectMetadata, args: list[str]) -> None:
    """Become ``python -m dask <args>`` in the project root, ``src`` on the path."""
    env = dict(os.environ)
    paths = [str(metadata.source_dir), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    os.chdir(metadata.project_path)
    click.secho(f"dask {' '.join(args)}", fg="green", err=True)
    command = [sys.executable, "-m", "dask", *args]
    if os.name == "nt":  # no exec on Windows: run it and pass its exit code on
        raise SystemExit(subprocess.call(command, env=env))  # noqa: S603
    os.execve(sys.executable, command, env)  # noqa: S606
