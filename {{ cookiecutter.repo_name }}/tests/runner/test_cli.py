"""``kedro run``'s runner and its arguments (``_instantiate_runner``, the
``--runner-params`` handed to Kedro's own ``run``), and the ``kedro dask``
commands' arguments. What a user reads on the command line is tested through the
``kedro`` executable by the starter's tests."""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro import KedroDeprecationWarning
from kedro.framework.cli.utils import KedroCliError
from kedro.framework.startup import bootstrap_project
from kedro.runner import ParallelRunner, SequentialRunner

from {{ cookiecutter.python_package }}.cli import (
    RotatingFileHandler,
    _dask_client,
    _environment_parameters,
    _instantiate_runner,
    _pipeline_modules,
    _runner_params,
    console_logging,
    rotate_as_python_313,
    scheduler_command,
    worker_command,
)
from {{ cookiecutter.python_package }}.runner import DaskRunner

PACKAGE = "{{ cookiecutter.python_package }}"
DASK_RUNNER = f"{PACKAGE}.runner.DaskRunner"  # as typed on the command line
PROJECT_ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "tcp://127.0.0.1:8786"


class FakeContext:
    """Stands in for a ``KedroContext``: only ``params`` is used."""

    def __init__(self, params: dict[str, Any] | None = None):
        self.params = params or {}


class RecordingDaskRunner(DaskRunner):
    """A DaskRunner subclass recording the arguments it was given."""

    def __init__(self, client_args=None, is_async=False, progress=None):
        self.received = {"client_args": client_args, "progress": progress}
        self.received_async = is_async
        super().__init__(client_args=client_args, is_async=is_async, progress=progress)


class LookalikeDaskRunner(SequentialRunner):
    """Not a DaskRunner, whatever its name says; accepts any keyword."""

    def __init__(self, is_async: bool = False, **kwargs: Any):
        self.received = kwargs
        super().__init__(is_async=is_async)


RECORDING = f"{__name__}.RecordingDaskRunner"
LOOKALIKE = f"{__name__}.LookalikeDaskRunner"


def test_sequential_runner_by_default():
    runner = _instantiate_runner(None, False, FakeContext({"dask_client": {}}))

    assert type(runner) is SequentialRunner


def test_kedro_runner_by_short_name():
    runner = _instantiate_runner("ParallelRunner", False, FakeContext())

    assert type(runner) is ParallelRunner


def test_dask_runner_gets_the_environment_s_dask_client_and_dask_runner():
    params = {
        "dask_client": {"address": ADDRESS, "timeout": 3},
        "dask_runner": {"progress": False},
    }

    runner = _instantiate_runner(RECORDING, False, FakeContext(params))

    assert runner.received == {
        "client_args": {"address": ADDRESS, "timeout": 3},
        "progress": False,
    }
    assert runner.received_async is False


def test_command_line_wins_over_the_environment():
    parameters = {
        "dask_client": {"address": ADDRESS, "timeout": 3},
        "dask_runner": {"progress": False, "fuse_chains": False},
    }
    runner_params = {
        "client_args": {"timeout": 7, "worker_wait": 5},
        "progress": True,
        "is_async": True,
    }

    merged = _runner_params(parameters, runner_params)

    assert merged == {
        "client_args": {"address": ADDRESS, "timeout": 7, "worker_wait": 5},
        "progress": True,
        "fuse_chains": False,
        "is_async": True,
    }
    # The caller's mappings are not modified.
    assert parameters["dask_client"] == {"address": ADDRESS, "timeout": 3}
    assert runner_params["client_args"] == {"timeout": 7, "worker_wait": 5}


def test_without_dask_client_params_the_runner_gets_empty_client_args():
    runner = _instantiate_runner(RECORDING, False, FakeContext(), {})

    assert runner.received["client_args"] == {}


def test_async_flag_reaches_the_dask_runner():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KedroDeprecationWarning)
        runner = _instantiate_runner(RECORDING, True, FakeContext())

    assert runner.received_async is True


def test_runner_named_like_dask_runner_gets_no_client_args():
    context = FakeContext({"dask_client": {"address": ADDRESS}})

    runner = _instantiate_runner(LOOKALIKE, False, context)

    assert type(runner) is LookalikeDaskRunner
    assert runner.received == {}


@pytest.mark.parametrize("dask_client", [ADDRESS, ["address", ADDRESS], 8786])
def test_dask_client_not_a_mapping_is_a_cli_error(dask_client):
    context = FakeContext({"dask_client": dask_client})

    with pytest.raises(KedroCliError, match="dask_client") as excinfo:
        _instantiate_runner(DASK_RUNNER, False, context)

    assert type(dask_client).__name__ in str(excinfo.value)


def test_command_line_client_args_not_a_mapping_is_a_cli_error():
    with pytest.raises(KedroCliError, match="client_args"):
        _instantiate_runner(DASK_RUNNER, False, FakeContext(), {"client_args": ADDRESS})


def test_unknown_client_option_is_a_cli_error_naming_it():
    context = FakeContext({"dask_client": {"address": ADDRESS, "n_wrokers": 2}})

    with pytest.raises(KedroCliError, match="'n_wrokers'"):
        _instantiate_runner(DASK_RUNNER, False, context)


def test_address_with_local_cluster_option_is_a_cli_error():
    context = FakeContext({"dask_client": {"address": ADDRESS}})

    with pytest.raises(KedroCliError, match="'n_workers'"):
        _instantiate_runner(
            DASK_RUNNER, False, context, {"client_args": {"n_workers": 2}}
        )


def test_unknown_dask_runner_option_names_its_source():
    context = FakeContext({"dask_runner": {"progres": True}})

    with pytest.raises(KedroCliError, match="Unknown dask_runner option 'progres'"):
        _instantiate_runner(DASK_RUNNER, False, context)


@pytest.mark.parametrize("runner", [None, DASK_RUNNER, RECORDING])
def test_bad_runner_params_are_a_cli_error_not_a_type_error(runner):
    with pytest.raises(KedroCliError, match="'bogus'"):
        _instantiate_runner(runner, False, FakeContext(), {"bogus": 1})


def test_unknown_runner_is_a_cli_error():
    with pytest.raises(KedroCliError, match="NoSuchRunner"):
        _instantiate_runner("NoSuchRunner", False, FakeContext())


# --------------------------------------------------------------------------- #
# The console's logging
# --------------------------------------------------------------------------- #
@pytest.fixture
def project_logging():
    return yaml.safe_load((PROJECT_ROOT / "conf" / "logging.yml").read_text())


def test_off_a_terminal_rich_gives_way_to_the_plain_console(
    project_logging, monkeypatch
):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    plain = console_logging(project_logging)

    assert plain["root"]["handlers"] == ["console", "info_file_handler"]
    assert project_logging["root"]["handlers"] == ["rich", "info_file_handler"]
    assert plain["handlers"] == project_logging["handlers"]
    assert plain["loggers"] == project_logging["loggers"]


def test_a_logger_with_both_handlers_prints_each_record_once(monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    config = {
        "version": 1,
        "handlers": {
            "console": {"class": "logging.StreamHandler"},
            "rich": {"class": "rich.logging.RichHandler"},
        },
        "loggers": {"kedro": {"handlers": ["rich", "console"]}},
    }

    assert console_logging(config)["loggers"]["kedro"]["handlers"] == ["console"]


def test_on_a_terminal_the_configuration_is_the_project_s(project_logging, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")

    assert console_logging(project_logging) == project_logging


def test_without_a_plain_console_handler_rich_stays(project_logging, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    del project_logging["handlers"]["console"]

    assert console_logging(project_logging) == project_logging


# --------------------------------------------------------------------------- #
# info.log's rotating file
# --------------------------------------------------------------------------- #
def _log_lines(handler: logging.Handler, count: int) -> None:
    handler.setFormatter(logging.Formatter("%(name)s - %(message)s"))
    for i in range(count):
        handler.handle(
            logging.LogRecord("kedro", logging.INFO, __file__, 1, "line %d", (i,), None)
        )
    handler.close()


def _files(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.iterdir())}


def test_info_log_rolls_over_as_the_standard_handler_does(tmp_path):
    standard, ours = tmp_path / "standard", tmp_path / "ours"
    for folder, handler_class in (
        (standard, logging.handlers.RotatingFileHandler),
        (ours, RotatingFileHandler),
    ):
        folder.mkdir()
        handler = handler_class(folder / "info.log", maxBytes=100, backupCount=2)
        _log_lines(handler, 25)

    assert _files(ours) == _files(standard)
    assert sorted(_files(ours)) == ["info.log", "info.log.1", "info.log.2"]


def test_info_log_looks_at_the_file_only_when_a_rollover_is_due(tmp_path, monkeypatch):
    looks: list[str] = []
    for name in ("exists", "isfile"):
        real = getattr(os.path, name)
        monkeypatch.setattr(
            os.path, name, lambda path, real=real: looks.append(path) or real(path)
        )
    standard = logging.handlers.RotatingFileHandler(
        tmp_path / "standard.log", maxBytes=10_000
    )
    _log_lines(standard, 20)
    standard_looks, looks[:] = len(looks), []

    _log_lines(RotatingFileHandler(tmp_path / "info.log", maxBytes=10_000), 20)
    assert looks == []
    if sys.version_info < (3, 13):  # the per-record stats this handler avoids
        assert standard_looks >= 20

    _log_lines(RotatingFileHandler(tmp_path / "small.log", maxBytes=30), 3)
    assert looks  # due: it checks the file is a regular one before rolling over


def test_a_device_never_rolls_over():
    handler = RotatingFileHandler(os.devnull, maxBytes=10, backupCount=1)

    _log_lines(handler, 5)  # would rename /dev/null, or fail, if it rolled over

    assert Path(os.devnull).is_char_device()


def test_the_project_s_info_log_gets_the_backport(project_logging, tmp_path):
    project_logging["handlers"]["info_file_handler"]["filename"] = str(
        tmp_path / "info.log"
    )
    root = logging.getLogger()
    handlers_before = root.handlers[:]
    loggers = [root, *map(logging.getLogger, project_logging["loggers"])]
    levels_before = [logger.level for logger in loggers]
    try:
        logging.config.dictConfig(project_logging)
        rotate_as_python_313()
        handlers = {type(handler) for handler in root.handlers}
        logging.getLogger("kedro").info("to info.log")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers_before
        for logger, level in zip(loggers, levels_before, strict=True):
            logger.setLevel(level)

    backport = sys.version_info < (3, 13)
    assert (RotatingFileHandler in handlers) is backport
    assert (logging.handlers.RotatingFileHandler in handlers) is not backport
    assert "to info.log" in (tmp_path / "info.log").read_text()


# --------------------------------------------------------------------------- #
# With the real project configuration
# --------------------------------------------------------------------------- #
@pytest.fixture
def metadata(monkeypatch):
    """This very project, bootstrapped; the global project setup undone after."""
    import kedro.framework.project as kedro_project

    monkeypatch.delenv("KEDRO_ENV", raising=False)
    # Recorded now, restored after the test: bootstrapping sets it globally, and
    # DaskRunner ships it to workers.
    monkeypatch.setattr(kedro_project, "PACKAGE_NAME", kedro_project.PACKAGE_NAME)
    return bootstrap_project(PROJECT_ROOT)


def test_dask_env_parameters_are_read_with_nested_runtime_params(metadata):
    dask_params = yaml.safe_load(
        (PROJECT_ROOT / "conf" / "dask" / "parameters.yml").read_text()
    )
    assert dask_params["dask_client"] == {"address": ADDRESS}

    parameters = _environment_parameters(
        metadata, "dask", None, {"dask_client": {"timeout": 2}}
    )

    assert parameters["dask_client"] == {"address": ADDRESS, "timeout": 2}
    assert "raw_data" in parameters  # base parameters are still there
    merged = _runner_params(parameters, {})
    assert merged["client_args"] == {"address": ADDRESS, "timeout": 2}


def test_the_pipelines_workers_preload_are_those_kedro_finds(metadata):
    """What ``kedro run`` has the embedded cluster's forkserver import: the
    project's pipelines, as Kedro's ``find_pipelines`` finds them."""
    from kedro.framework.project import find_pipelines

    package = metadata.package_name
    pipelines = sorted(set(find_pipelines(raise_errors=True)) - {"__default__"})
    assert pipelines  # the example's
    assert _pipeline_modules(package) == [
        f"{package}.pipeline",
        *(f"{package}.pipelines.{name}" for name in pipelines),
    ]


_RUN_ORDER = """
import json, sys
from kedro.framework.startup import bootstrap_project
metadata = bootstrap_project(sys.argv[1])
cli = __import__(sys.argv[2] + ".cli", fromlist=["run"])
seen = {"distributed imported with cli.py": "distributed" in sys.modules}

def forkserver_started(client_args, modules):
    imported = "distributed" in sys.modules
    seen["distributed imported at the forkserver's start"] = imported
    seen["client_args"] = client_args

def kedro_run(**options):
    seen["distributed imported at the run"] = "distributed" in sys.modules
    seen["runner_params"] = options["runner_params"]

cli.start_worker_forkserver = forkserver_started
cli.kedro_run.callback = kedro_run
args = ["run", "--runner", sys.argv[2] + ".runner.DaskRunner", *sys.argv[3:]]
cli.cli.main(args, obj=metadata, standalone_mode=False)
print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    ("args", "client_args"),
    [([], {}), (["--env", "dask"], {"address": ADDRESS})],
)
def test_kedro_run_starts_the_forkserver_before_importing_distributed(
    args, client_args
):
    """``kedro run --runner <package>.runner.DaskRunner`` starts the workers'
    forkserver (which imports what they need on another core) before it
    imports distributed, then runs with the environment's ``dask_client``."""
    result = subprocess.run(
        [sys.executable, "-c", _RUN_ORDER, str(PROJECT_ROOT), PACKAGE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen == {
        "distributed imported with cli.py": False,
        "distributed imported at the forkserver's start": False,
        "client_args": client_args,
        "distributed imported at the run": True,
        "runner_params": {"client_args": client_args},
    }


def test_default_env_has_no_dask_client(metadata):
    parameters = _environment_parameters(metadata, None, None, None)

    assert "dask_client" not in parameters
    assert _runner_params(parameters, {})["client_args"] == {}


# --------------------------------------------------------------------------- #
# kedro dask scheduler / worker
# --------------------------------------------------------------------------- #
TLS = {
    "tls_ca_file": "certs/ca.pem",
    "tls_scheduler_cert": "certs/scheduler.pem",
    "tls_scheduler_key": "certs/scheduler-key.pem",
    "tls_worker_cert": "certs/worker.pem",
    "tls_worker_key": "certs/worker-key.pem",
    "tls_client_cert": "certs/client.pem",
    "tls_client_key": "certs/client-key.pem",
}


def test_scheduler_listens_where_the_runner_connects():
    command = scheduler_command({"address": ADDRESS}, ["--dashboard-address", ":0"])

    host, port = ADDRESS.removeprefix("tcp://").rsplit(":", 1)
    assert command == [
        "scheduler",
        *("--protocol", "tcp", "--host", host, "--port", port),
        *("--dashboard-address", ":0"),
    ]


def test_worker_joins_the_address_with_its_own_options():
    command = worker_command({"address": ADDRESS}, ["--nthreads", "2"])

    assert command == [
        *("worker", ADDRESS, "--dashboard-address", "127.0.0.1:0"),
        *("--nthreads", "2"),
    ]


def test_tls_processes_get_their_own_certificates():
    client_args = {"address": "tls://10.0.0.5:8786", "security": TLS}

    scheduler = scheduler_command(client_args)
    worker = worker_command(client_args)

    assert scheduler == [
        *("scheduler", "--protocol", "tls", "--host", "10.0.0.5", "--port", "8786"),
        *("--tls-ca-file", "certs/ca.pem", "--tls-cert", "certs/scheduler.pem"),
        *("--tls-key", "certs/scheduler-key.pem"),
        *("--dashboard-address", "127.0.0.1:8787"),  # dashboards stay on loopback
    ]
    assert worker == [
        *("worker", "tls://10.0.0.5:8786", "--tls-ca-file", "certs/ca.pem"),
        *("--tls-cert", "certs/worker.pem", "--tls-key", "certs/worker-key.pem"),
        *("--dashboard-address", "127.0.0.1:0"),
    ]


@pytest.mark.parametrize("make", [scheduler_command, worker_command])
@pytest.mark.parametrize("address", ["tcp://0.0.0.0:8786", "tcp://10.0.0.5:8786"])
def test_plaintext_beyond_loopback_is_refused_naming_both_ways_on(make, address):
    with pytest.raises(KedroCliError) as excinfo:
        make({"address": address})

    message = str(excinfo.value)
    assert "\n" not in message
    assert f"Refusing plaintext tcp:// for kedro dask {make.__name__[:-8]}" in message
    assert address in message
    assert "tls://" in message
    assert "dask_client.allow_insecure: true" in message


def test_allow_insecure_starts_plaintext_beyond_loopback_with_a_warning(caplog):
    client_args = {"address": "tcp://0.0.0.0:8786", "allow_insecure": True}

    command = scheduler_command(client_args)

    assert command[:7] == [
        *("scheduler", "--protocol", "tcp", "--host", "0.0.0.0", "--port", "8786")
    ]
    assert "travel in plaintext for kedro dask scheduler at tcp://0.0.0.0:8786" in (
        caplog.text
    )


def test_a_host_name_that_resolves_to_loopback_is_loopback():
    command = worker_command({"address": "tcp://localhost:8786"})

    assert command[:2] == ["worker", "tcp://localhost:8786"]


def test_tls_without_the_role_certificates_names_the_missing_keys():
    client_args = {
        "address": "tls://10.0.0.5:8786",
        "security": {k: v for k, v in TLS.items() if "worker" not in k},
    }

    with pytest.raises(KedroCliError) as excinfo:
        worker_command(client_args)

    message = str(excinfo.value)
    assert "security.tls_worker_cert" in message
    assert "security.tls_worker_key" in message
    assert scheduler_command(client_args)[0] == "scheduler"  # it has its own


@pytest.mark.parametrize(
    ("address", "named"),
    [
        (None, "dask_client.address"),
        ("tcp://127.0.0.1", "tcp://127.0.0.1"),  # no port
        ("not an address", "not an address"),
        ("inproc://abc", "inproc://"),
    ],
)
def test_bad_address_is_a_cli_error_naming_it(address, named):
    with pytest.raises(KedroCliError, match=re.escape(named)):
        scheduler_command({"address": address})


def test_kedro_dask_reads_the_address_of_its_environment(metadata):
    assert _dask_client(metadata, "dask") == {"address": ADDRESS}
    with pytest.raises(KedroCliError, match=r"'local' environment \(conf/local/"):
        _dask_client(metadata, "local")
