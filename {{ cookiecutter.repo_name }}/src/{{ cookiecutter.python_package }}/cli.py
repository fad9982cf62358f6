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

import copy
import importlib.util
import inspect
import logging.handlers
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
import rich.logging
from kedro.config import MissingConfigException
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import CONTEXT_SETTINGS, KedroCliError
from kedro.framework.project import LOGGING, settings
from kedro.utils import load_obj

# Nothing here imports Dask's distributed: ``kedro run`` with another runner and
# the other ``kedro`` commands do not need it (half a second), and a Dask run
# starts the forkserver of its workers first (see ``runner.local_workers``).
from .runner import DaskRunnerError
from .runner.addresses import SchedulerAddress, check_joinable, refuse_plaintext
from .runner.local_workers import start_worker_forkserver, worker_memory_environ

if TYPE_CHECKING:
    from kedro.framework.context import KedroContext
    from kedro.framework.startup import ProjectMetadata
    from kedro.runner import AbstractRunner

DASK_CLIENT_PARAMS = "dask_client"
"""The parameters key holding ``DaskRunner``'s ``client_args``."""
DASK_RUNNER_PARAMS = "dask_runner"
"""The parameters key holding ``DaskRunner``'s other options (progress, ...)."""
PLAIN_CONSOLE = "console"
"""The handler of ``conf/logging.yml`` that prints plain lines to the console."""


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
@click.pass_obj
def run(metadata: ProjectMetadata, **options: Any) -> dict[str, Any]:
    """Run the pipeline."""
    with _one_line_errors():
        if _names_project_runner(options["runner"], metadata.package_name) or (
            _is_dask_runner(_load_runner(options["runner"]))
        ):
            parameters = _environment_parameters(
                metadata, options["env"], options["conf_source"], options["params"]
            )
            options["runner_params"] = _runner_params(
                parameters, options["runner_params"]
            )
            # An embedded cluster's workers fork from a forkserver that imports
            # what they will need while Kedro loads the project.
            start_worker_forkserver(
                options["runner_params"]["client_args"],
                _pipeline_modules(metadata.package_name),
            )
            _check_dask_runner_options(parameters)
        runner_class = _load_runner(options["runner"])
        # Importing distributed (a DaskRunner's module does) resets its loggers to
        # INFO after Kedro applied the project's logging configuration at
        # start-up: apply that configuration again, for this console.
        configure_run_logging(LOGGING.data)
        _check_fits(runner_class, options["runner_params"], "--runner-params")
        result: dict[str, Any] = kedro_run.callback(**options)
    return result


def configure_run_logging(config: Mapping[str, Any]) -> None:
    """Apply ``config`` as ``kedro run`` logs: for the console it prints to
    (``console_logging``), ``info.log``'s handler deciding its rollovers as
    Python 3.13 does (``rotate_as_python_313``)."""
    LOGGING.configure(console_logging(config))
    rotate_as_python_313()


def console_logging(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The logging configuration for the console ``kedro run`` prints to: the
    project's, its rich handlers replaced by its plain ``console`` handler where
    rich finds no terminal (a pipe, a file, a CI log).

    Off a terminal rich shows no colour or live display, yet still lays each
    record out as a table wrapped to the width: ~1.5 ms a line, more than a
    trivial node costs, and long messages broken over several lines. The plain
    handler prints the same records, one line each. Rich's own switches
    (``FORCE_COLOR``, ``TTY_COMPATIBLE=1``) keep rich everywhere; a configuration
    without a ``console`` handler is left as it is.
    """
    handlers = config.get("handlers") or {}
    rich_handlers = {name for name, spec in handlers.items() if _is_rich(spec)}
    if (
        PLAIN_CONSOLE not in handlers
        or not rich_handlers
        or rich.get_console().is_terminal
    ):
        return config
    plain = copy.deepcopy(dict(config))
    users = [plain.get("root"), *(plain.get("loggers") or {}).values()]
    for user in users:
        if isinstance(user, dict) and user.get("handlers"):
            names = [
                PLAIN_CONSOLE if name in rich_handlers else name
                for name in user["handlers"]
            ]
            user["handlers"] = list(dict.fromkeys(names))
    return plain


def _is_rich(spec: Any) -> bool:
    """Whether a handler's configuration makes a rich handler."""
    try:
        handler_class = load_obj(spec["class"])
    except (KeyError, TypeError, AttributeError, ImportError, ValueError):
        return False
    return isinstance(handler_class, type) and issubclass(
        handler_class, rich.logging.RichHandler
    )


class RotatingFileHandler(logging.handlers.RotatingFileHandler):
    """``logging.handlers.RotatingFileHandler`` deciding a rollover as Python 3.13
    does (gh-105623): it looks at the file only when a record would take it past
    ``maxBytes``.

    Up to Python 3.12 the decision stats the file twice for every record, to be
    sure it is a regular file, after moving to its end. ``info.log`` gets every
    line ``kedro run`` logs, five a node: on the machine the benchmarks run on,
    those three system calls cost more than the rest of the line's handling.
    """

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None:  # opened on the first record (``delay``)
            self.stream = self._open()
        if self.maxBytes <= 0:
            return False
        size = self.stream.tell()
        if not size or size + len(self.format(record)) + 1 < self.maxBytes:
            return False
        # Only a regular file rolls over, never a device or a pipe.
        return not os.path.exists(self.baseFilename) or os.path.isfile(
            self.baseFilename
        )


def rotate_as_python_313() -> None:
    """Make each ``logging.handlers.RotatingFileHandler`` of the applied logging
    configuration (``info.log``'s) this module's ``RotatingFileHandler``, up to
    Python 3.12; Python 3.13's own handler decides as it does.

    Kedro allows only handler classes of ``logging`` and ``kedro.logging`` in
    ``conf/logging.yml``, so the handlers are changed once configured, not the
    configuration: the subclass only overrides a method.
    """
    if sys.version_info >= (3, 13):
        return
    loggers = [logging.getLogger(), *logging.getLogger().manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):  # not a PlaceHolder's
            if type(handler) is logging.handlers.RotatingFileHandler:
                handler.__class__ = RotatingFileHandler


def _names_project_runner(runner: str | None, package: str) -> bool:
    """Whether ``--runner`` names this project's ``DaskRunner`` as the README
    does: known to be one without importing it, and distributed with it, which
    the workers' forkserver can spend importing what they need."""
    return runner == f"{package}.runner.DaskRunner"


def _pipeline_modules(package: str) -> list[str]:
    """The modules of the project's pipelines, found as Kedro's ``find_pipelines``
    finds them, without importing them: ``<package>.pipeline`` and each package
    under ``<package>.pipelines``."""
    modules = [f"{package}.pipeline"]
    spec = importlib.util.find_spec(f"{package}.pipelines")
    for location in (spec and spec.submodule_search_locations) or []:
        modules.extend(
            f"{package}.pipelines.{path.name}"
            for path in sorted(Path(location).iterdir())
            if path.is_dir()
            and path.name != "__pycache__"
            and not path.name.startswith(".")
        )
    return modules


def _instantiate_runner(
    runner: str | None,
    is_async: bool,
    project_context: KedroContext,
    runner_params: Mapping[str, Any] | None = None,
) -> AbstractRunner:
    """The runner ``kedro run --runner <runner>`` creates in ``project_context``.

    ``run`` hands Kedro's own ``kedro run`` the same ``--runner-params``, worked
    out by ``_runner_params``.

    Raises:
        RunError: The runner cannot be loaded, its parameters do not fit it,
            or ``dask_client``/``dask_runner`` is not a mapping.
    """
    runner_class = _load_runner(runner)
    kwargs = dict(runner_params or {})
    if _is_dask_runner(runner_class):
        _check_dask_runner_options(project_context.params)
        kwargs = _runner_params(project_context.params, kwargs)
    kwargs["is_async"] = is_async or kwargs.get("is_async", False)
    _check_fits(runner_class, kwargs, "--runner-params")
    with _one_line_errors():
        runner_object: AbstractRunner = runner_class(**kwargs)
    return runner_object


def _runner_params(
    parameters: Mapping[str, Any], runner_params: Mapping[str, Any]
) -> dict[str, Any]:
    """A ``DaskRunner``'s arguments: ``client_args`` from the environment's
    ``dask_client`` parameters updated by ``--runner-params client_args.<key>=...``,
    its other options from the ``dask_runner`` parameters updated by
    ``--runner-params <option>=...``: the command line wins."""
    client_args = _mapping(parameters.get(DASK_CLIENT_PARAMS), DASK_CLIENT_PARAMS)
    options = _mapping(parameters.get(DASK_RUNNER_PARAMS), DASK_RUNNER_PARAMS)
    from_cli = _mapping(runner_params.get("client_args"), "client_args")
    return {
        **options,
        **runner_params,
        "client_args": {**client_args, **from_cli},
    }


def _check_dask_runner_options(parameters: Mapping[str, Any]) -> None:
    """Name a misspelled option of the ``dask_runner`` parameters."""
    from .runner.services import RunOptions

    options = _mapping(parameters.get(DASK_RUNNER_PARAMS), DASK_RUNNER_PARAMS)
    with _one_line_errors():
        RunOptions.check_names(options, f"{DASK_RUNNER_PARAMS} option")


def _load_runner(runner: str | None) -> type[AbstractRunner]:
    try:
        runner_class: type[AbstractRunner] = load_obj(
            runner or "SequentialRunner", "kedro.runner"
        )
    except (AttributeError, ImportError, ValueError) as exc:
        raise RunError(f"Cannot load runner '{runner}': {exc}") from None
    return runner_class


def _is_dask_runner(runner_class: Any) -> bool:
    """Whether ``runner_class`` is a ``DaskRunner``: never one while the runner's
    module is not imported (then neither is distributed)."""
    module = sys.modules.get(f"{__package__}.runner.dask_runner")
    return (
        module is not None
        and isinstance(runner_class, type)
        and issubclass(runner_class, module.DaskRunner)
    )


def _check_fits(runner_class: Any, kwargs: Mapping[str, Any], source: str) -> None:
    """Name the option that ``runner_class`` does not take, before anything runs."""
    try:
        inspect.signature(runner_class).bind_partial(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RunError(
            f"{source} do not fit {getattr(runner_class, '__name__', runner_class)}: "
            f"{exc}"
        ) from None


def _environment_parameters(
    metadata: ProjectMetadata,
    env: str | None,
    conf_source: str | None,
    runtime_params: Mapping[str, Any] | None,
) -> Mapping[str, Any]:
    """The parameters of the run's environment, read as the session will read
    them, before Kedro's ``run`` creates the session and the runner."""
    with warnings.catch_warnings():
        # The session's own loader warns about what the project's settings say
        # (deprecations...): once is enough.
        warnings.simplefilter("ignore")
        config_loader = settings.CONFIG_LOADER_CLASS(
            conf_source=conf_source
            or str(metadata.project_path / settings.CONF_SOURCE),
            env=env or os.getenv("KEDRO_ENV"),
            runtime_params=runtime_params,
            **settings.CONFIG_LOADER_ARGS,
        )
        try:
            parameters: Mapping[str, Any] = config_loader["parameters"]
        except MissingConfigException:
            return runtime_params or {}
    return parameters


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
    client_args = _dask_client(metadata, env)
    command = worker_command(client_args, dask_args)
    _check_joinable(client_args)
    # Its worker processes keep freed memory as the embedded cluster's do.
    _exec_dask(metadata, command, worker_memory_environ())


def scheduler_command(
    client_args: Mapping[str, Any], extra: Sequence[str] = ()
) -> list[str]:
    """``dask scheduler`` arguments listening where ``client_args`` connect, its
    dashboard on loopback unless ``extra`` says otherwise.

    Raises:
        RunError: No valid ``address``, plaintext beyond loopback without
            ``allow_insecure``, or TLS files missing.
    """
    address = _listen_address(client_args, "for kedro dask scheduler")
    return [
        "scheduler",
        *("--protocol", address.protocol, "--host", address.host),
        *("--port", str(address.port)),
        *_tls_flags(client_args, address.protocol, "scheduler"),
        *_loopback_dashboard(extra, "127.0.0.1:8787"),
        *extra,
    ]


def worker_command(
    client_args: Mapping[str, Any], extra: Sequence[str] = ()
) -> list[str]:
    """``dask worker`` arguments joining the scheduler ``client_args`` connect to,
    its dashboard on loopback unless ``extra`` says otherwise.

    Raises:
        RunError: No valid ``address``, plaintext beyond loopback without
            ``allow_insecure``, or TLS files missing.
    """
    address = _listen_address(client_args, "for kedro dask worker")
    return [
        "worker",
        address.address,
        *_tls_flags(client_args, address.protocol, "worker"),
        *_loopback_dashboard(extra, "127.0.0.1:0"),
        *extra,
    ]


def _check_joinable(client_args: Mapping[str, Any]) -> None:
    """Fail in one line, within ``dask_client.timeout``, where the worker could
    not join the scheduler (it would retry for ever)."""
    from distributed import Security

    from .runner.cluster import DEFAULT_CONNECT_TIMEOUT

    with _one_line_errors():
        address = SchedulerAddress.parse(client_args.get("address"))
        security = Security()
        if address.encrypted:
            try:
                security = Security(**dict(client_args.get("security") or {}))
            except (TypeError, ValueError, OSError) as exc:
                raise RunError(f"{DASK_CLIENT_PARAMS}.security: {exc}") from None
        timeout = client_args.get("timeout", DEFAULT_CONNECT_TIMEOUT)
        check_joinable(address, security, float(timeout))


def _dask_client(metadata: ProjectMetadata, env: str) -> Mapping[str, Any]:
    parameters = _environment_parameters(metadata, env, None, None)
    client_args = _mapping(parameters.get(DASK_CLIENT_PARAMS), DASK_CLIENT_PARAMS)
    if not client_args.get("address"):
        raise RunError(
            f"kedro dask needs {DASK_CLIENT_PARAMS}.address in the '{env}' "
            f"environment (conf/{env}/parameters.yml), e.g. tcp://127.0.0.1:8786."
        )
    return client_args


def _listen_address(client_args: Mapping[str, Any], command: str) -> SchedulerAddress:
    with _one_line_errors():
        address = SchedulerAddress.parse(client_args.get("address"))
        if address.protocol not in ("tcp", "tls"):
            raise RunError(
                f"kedro dask starts tcp:// or tls:// schedulers, not "
                f"{address.protocol}:// ({DASK_CLIENT_PARAMS}.address "
                f"'{address.address}')."
            )
        refuse_plaintext(
            address,
            allow_insecure=client_args.get("allow_insecure") is True,
            role=command,
        )
    return address


def _loopback_dashboard(extra: Sequence[str], default: str) -> list[str]:
    asked = any(
        arg.split("=", 1)[0] in ("--dashboard-address", "--no-dashboard")
        for arg in extra
    )
    return [] if asked else ["--dashboard-address", default]


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


def _exec_dask(
    metadata: ProjectMetadata,
    args: list[str],
    environ: Mapping[str, str] | None = None,
) -> None:
    """Become ``python -m dask <args>`` in the project root, ``src`` on the path,
    ``environ`` added to the environment."""
    env = {**os.environ, **(environ or {})}
    paths = [str(metadata.source_dir), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    os.chdir(metadata.project_path)
    click.secho(f"dask {' '.join(args)}", fg="green", err=True)
    command = [sys.executable, "-m", "dask", *args]
    if os.name == "nt":  # no exec on Windows: run it and pass its exit code on
        raise SystemExit(subprocess.call(command, env=env))  # noqa: S603
    os.execve(sys.executable, command, env)  # noqa: S606
