"""``_instantiate_runner``: the runner ``kedro run --runner ...`` creates, and the
``dask_client`` parameters a ``DaskRunner`` receives."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro import KedroDeprecationWarning
from kedro.framework.cli.utils import KedroCliError
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import ParallelRunner, SequentialRunner

from {{ cookiecutter.python_package }}.cli import (
    _dask_client,
    _instantiate_runner,
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
    """A DaskRunner subclass recording the ``client_args`` it was given."""

    def __init__(self, client_args=None, is_async=False):
        self.received = client_args
        super().__init__(client_args=client_args, is_async=is_async)


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
    assert runner._is_async is False


def test_kedro_runner_by_short_name():
    runner = _instantiate_runner("ParallelRunner", False, FakeContext())

    assert type(runner) is ParallelRunner


def test_dask_runner_gets_dask_client_params():
    context = FakeContext({"dask_client": {"address": ADDRESS, "timeout": 3}})

    runner = _instantiate_runner(DASK_RUNNER, False, context)

    assert type(runner) is DaskRunner
    assert runner._cluster._args == {"address": ADDRESS, "timeout": 3}
    assert runner._is_async is False


def test_command_line_client_args_win_over_params():
    context = FakeContext({"dask_client": {"address": ADDRESS, "timeout": 3}})
    runner_params = {
        "client_args": {"timeout": 7, "worker_wait": 5},
        "is_async": True,
    }

    runner = _instantiate_runner(DASK_RUNNER, False, context, runner_params)

    assert runner._cluster._args == {
        "address": ADDRESS,
        "timeout": 7,
        "worker_wait": 5,
    }
    assert runner._is_async is True
    # The caller's mappings are not modified.
    assert context.params["dask_client"] == {"address": ADDRESS, "timeout": 3}
    assert runner_params["client_args"] == {"timeout": 7, "worker_wait": 5}


def test_without_dask_client_params_the_runner_gets_empty_client_args():
    runner = _instantiate_runner(RECORDING, False, FakeContext(), {})

    assert runner.received == {}


def test_async_flag_reaches_the_dask_runner():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KedroDeprecationWarning)
        runner = _instantiate_runner(DASK_RUNNER, True, FakeContext())

    assert runner._is_async is True


def test_subclass_of_dask_runner_gets_client_args_too():
    context = FakeContext({"dask_client": {"address": ADDRESS}})

    runner = _instantiate_runner(
        RECORDING, False, context, {"client_args": {"timeout": 4}}
    )

    assert type(runner) is RecordingDaskRunner
    assert runner.received == {"address": ADDRESS, "timeout": 4}
    assert runner._cluster._args == {"address": ADDRESS, "timeout": 4}


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


@pytest.mark.parametrize("runner", [None, DASK_RUNNER, RECORDING])
def test_bad_runner_params_are_a_cli_error_not_a_type_error(runner):
    with pytest.raises(KedroCliError, match="bogus"):
        _instantiate_runner(runner, False, FakeContext(), {"bogus": 1})


def test_unknown_runner_is_a_cli_error():
    with pytest.raises(KedroCliError, match="NoSuchRunner"):
        _instantiate_runner("NoSuchRunner", False, FakeContext())


# --------------------------------------------------------------------------- #
# With the real project configuration
# --------------------------------------------------------------------------- #
@pytest.fixture
def project_session(monkeypatch):
    """Open sessions of this very project, undoing the global project setup."""
    import kedro.framework.project as kedro_project

    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    # Recorded now, restored after the test: bootstrapping sets it globally, and
    # DaskRunner ships it to workers.
    monkeypatch.setattr(kedro_project, "PACKAGE_NAME", kedro_project.PACKAGE_NAME)
    bootstrap_project(PROJECT_ROOT)
    sessions = []

    def create(env: str | None) -> KedroSession:
        session = KedroSession.create(project_path=PROJECT_ROOT, env=env)
        sessions.append(session)
        return session

    yield create
    for session in sessions:
        session.close()


def test_dask_env_parameters_reach_the_dask_runner(project_session):
    dask_params = yaml.safe_load(
        (PROJECT_ROOT / "conf" / "dask" / "parameters.yml").read_text()
    )
    assert dask_params["dask_client"] == {"address": ADDRESS}
    context = project_session("dask").load_context()

    runner = _instantiate_runner(DASK_RUNNER, False, context, {})
    overridden = _instantiate_runner(
        DASK_RUNNER, False, context, {"client_args": {"timeout": 2}}
    )

    assert context.params["dask_client"] == {"address": ADDRESS}
    assert runner._cluster._args == {"address": ADDRESS}
    assert overridden._cluster._args == {"address": ADDRESS, "timeout": 2}


def test_default_env_has_no_dask_client(project_session):
    context = project_session(None).load_context()

    runner = _instantiate_runner(DASK_RUNNER, False, context, {})

    assert "dask_client" not in context.params
    assert runner._cluster._args == {}


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

    assert command == ["worker", ADDRESS, "--nthreads", "2"]


def test_tls_processes_get_their_own_certificates():
    client_args = {"address": "tls://10.0.0.5:8786", "security": TLS}

    scheduler = scheduler_command(client_args)
    worker = worker_command(client_args)

    assert scheduler == [
        *("scheduler", "--protocol", "tls", "--host", "10.0.0.5", "--port", "8786"),
        *("--tls-ca-file", "certs/ca.pem", "--tls-cert", "certs/scheduler.pem"),
        *("--tls-key", "certs/scheduler-key.pem"),
    ]
    assert worker == [
        *("worker", "tls://10.0.0.5:8786", "--tls-ca-file", "certs/ca.pem"),
        *("--tls-cert", "certs/worker.pem", "--tls-key", "certs/worker-key.pem"),
    ]


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


def test_kedro_dask_reads_the_address_of_its_environment(project_session):
    metadata = bootstrap_project(PROJECT_ROOT)

    assert _dask_client(metadata, "dask") == {"address": ADDRESS}
    with pytest.raises(KedroCliError, match=r"'local' environment \(conf/local/"):
        _dask_client(metadata, "local")
