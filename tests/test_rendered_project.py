"""The rendered project works: it lints, its own tests pass, and the example
pipeline gives the same outputs with the SequentialRunner and the DaskRunner."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
from kedro.framework.cli.utils import KedroCliError
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import SequentialRunner

from .conftest import (
    DASK_RUNNER,
    KEDRO,
    KEDRO_RUN_TIMEOUT,
    PACKAGE,
    REPO_ROOT,
    assert_has_csv_and_parquet,
    assert_same_outputs,
    base_env,
    copy_project,
    data_files,
    kedro,
    kedro_ok,
    run_cmd,
)

pytestmark = pytest.mark.slow

_SKIPPING = re.compile(r"Skipping (all )?(\d+) nodes")
_COMPLETED = re.compile(r"Completed node: (\S+)")


# --------------------------------------------------------------------------- #
# Lint and the project's own tests
# --------------------------------------------------------------------------- #
def test_ruff_clean_in_rendered_project(rendered_project):
    result = run_cmd(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=rendered_project,
        timeout=120,
    )
    assert result.returncode == 0, result.describe()


def test_ruff_clean_at_repo_root():
    result = run_cmd(
        [sys.executable, "-m", "ruff", "check", "--no-cache"],
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.describe()


def test_rendered_project_own_tests_pass(fresh_project):
    result = run_cmd(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=fresh_project,
        timeout=600,
        env=base_env(fresh_project),
    )
    assert result.returncode == 0, result.describe()
    assert re.search(r"\d+ passed", result.output), result.describe()
    assert "skipped" not in result.output.splitlines()[-1], result.describe()


# --------------------------------------------------------------------------- #
# Running the example pipeline
# --------------------------------------------------------------------------- #
def test_sequential_run_persists_outputs(
    sequential_project, rendered_project, node_names
):
    before = data_files(rendered_project)
    after = data_files(sequential_project)
    assert_has_csv_and_parquet(after)
    assert set(after) > set(before), "the run persisted no new file"


@pytest.fixture(scope="module")
def dask_local_project(rendered_project, tmp_path_factory):
    """A copy of the project after a DaskRunner run on its embedded LocalCluster."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("dask-local"))
    result = kedro_ok(project, "run", "--runner", DASK_RUNNER)
    return project, result


def test_dask_runner_local_cluster_matches_sequential(
    dask_local_project, sequential_project, node_names
):
    project, result = dask_local_project
    assert "LocalCluster" in result.output, result.describe()
    assert "127.0.0.1" in result.output, result.describe()
    completed = set(_COMPLETED.findall(result.output))
    assert completed == set(node_names), result.describe()
    outputs = assert_same_outputs(sequential_project, project)
    assert_has_csv_and_parquet(outputs)


# What Kedro logs about each node: these lines must read the same on Dask.
_NODE_LINES = re.compile(
    r"(Loading data from \S+ \(\w+\)|Running node: .*|Saving data to \S+ \(\w+\)"
    r"|Model '\w+' scores RMSE .*|Completed node: \S+|Using synchronous mode)"
)


def test_dask_run_console_reads_as_sequential_runner(
    dask_local_project, sequential_run
):
    """The embedded cluster's console shows every line SequentialRunner's shows
    about the nodes (Kedro's Loading / Running / Saving lines and what the nodes
    log themselves), each once, each node's lines before its "Completed node",
    and no more of Dask than a line of what it started."""
    _, result = dask_local_project
    _, sequential = sequential_run
    dask_lines = [m.strip() for m in _NODE_LINES.findall(result.output)]
    sequential_lines = [m.strip() for m in _NODE_LINES.findall(sequential.output)]
    assert sorted(dask_lines) == sorted(sequential_lines), result.describe()
    # A node's lines come out together, closed by its "Completed node" line.
    current = []
    for line in dask_lines:
        if line.startswith("Completed node: "):
            running = [x for x in current if x.startswith("Running node: ")]
            assert len(running) == 1, (line, current)
            current = []
        else:
            current.append(line)
    assert "_ReceivedDataset" not in result.output
    for noise in ("Start worker at", "Stopping worker", "Compute Failed", "Traceback"):
        assert noise not in result.output, result.describe()
    assert len(result.output.splitlines()) <= 1.2 * len(sequential.output.splitlines())


@pytest.mark.parametrize("runner", ["SequentialRunner", DASK_RUNNER])
def test_only_missing_outputs_skips_nodes(
    runner, sequential_project, tmp_path, node_names
):
    """After a full run, ``--only-missing-outputs`` reruns only what is needed to
    rebuild the files that are gone, and rebuilds them identically."""
    project = copy_project(sequential_project, tmp_path)
    files = data_files(project)
    stamps = {rel: path.stat().st_mtime_ns for rel, path in files.items()}

    # Nothing missing: nodes are skipped, no persisted file is rewritten.
    result = kedro_ok(project, "run", "--runner", runner, "--only-missing-outputs")
    skipped = _SKIPPING.search(result.output)
    assert skipped, result.describe()
    assert int(skipped.group(2)) > 0
    ran = set(_COMPLETED.findall(result.output))
    assert len(ran) < len(node_names), result.describe()
    assert {rel: p.stat().st_mtime_ns for rel, p in data_files(project).items()} == (
        stamps
    ), "a persisted output was rewritten although it existed"

    # The last reporting file goes missing: it is rebuilt, upstream files are not.
    last = sorted(files)[-1]
    files[last].unlink()
    result = kedro_ok(project, "run", "--runner", runner, "--only-missing-outputs")
    assert _SKIPPING.search(result.output), result.describe()
    ran = set(_COMPLETED.findall(result.output))
    assert ran and len(ran) < len(node_names), result.describe()
    assert files[last].is_file(), f"{last} was not rebuilt\n{result.describe()}"
    untouched = [
        rel
        for rel, p in data_files(project).items()
        if rel != last and p.stat().st_mtime_ns == stamps[rel]
    ]
    assert untouched, "every persisted output was rewritten"
    assert_same_outputs(sequential_project, project)


# --------------------------------------------------------------------------- #
# cli.py: _instantiate_runner, in-process
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def project_cli(rendered_project, tmp_path_factory):
    """The rendered project's ``cli`` module, imported in this process after
    bootstrapping a private copy of the project."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("cli"))
    sys.path.insert(0, str(project / "src"))
    try:
        bootstrap_project(project)
        module = __import__(f"{PACKAGE}.cli", fromlist=["_instantiate_runner"])
        runner_module = __import__(f"{PACKAGE}.runner", fromlist=["DaskRunner"])
        yield types.SimpleNamespace(
            project=project, cli=module, DaskRunner=runner_module.DaskRunner
        )
    finally:
        sys.path.remove(str(project / "src"))


def _client_args(runner) -> dict:
    """The client arguments a DaskRunner ended up with. Found by looking, one
    level deep, for the mapping that holds the options given to the runner."""
    seen = []
    for value in vars(runner).values():
        candidates = [value, *getattr(value, "__dict__", {}).values()]
        for candidate in candidates:
            if isinstance(candidate, dict) and "address" in candidate:
                seen.append(candidate)
    assert len(seen) == 1, f"cannot tell the client args of {runner!r}: {seen}"
    return seen[0]


def test_instantiate_sequential_runner(project_cli):
    context = types.SimpleNamespace(params={"dask_client": {"address": "tcp://x:1"}})
    runner = project_cli.cli._instantiate_runner("SequentialRunner", False, context)
    assert isinstance(runner, SequentialRunner)


def test_instantiate_dask_runner_merges_client_args(project_cli):
    context = types.SimpleNamespace(
        params={"dask_client": {"address": "tcp://127.0.0.1:1", "timeout": 3}}
    )
    runner = project_cli.cli._instantiate_runner(
        DASK_RUNNER,
        False,
        context,
        {"client_args": {"address": "tcp://127.0.0.1:2"}},
    )
    assert isinstance(runner, project_cli.DaskRunner)
    # Conf and command line merge; the command line wins.
    assert _client_args(runner) == {"address": "tcp://127.0.0.1:2", "timeout": 3}

    runner = project_cli.cli._instantiate_runner(DASK_RUNNER, False, context)
    assert _client_args(runner) == {"address": "tcp://127.0.0.1:1", "timeout": 3}


def test_instantiate_dask_runner_from_real_dask_env(project_cli, monkeypatch):
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    with KedroSession.create(project_path=project_cli.project, env="dask") as session:
        context = session.load_context()
        runner = project_cli.cli._instantiate_runner(DASK_RUNNER, False, context, {})
    assert isinstance(runner, project_cli.DaskRunner)
    assert _client_args(runner)["address"] == "tcp://127.0.0.1:8786"


def test_instantiate_dask_runner_subclass(project_cli, tmp_path, monkeypatch):
    module = tmp_path / "my_dask_runners.py"
    module.write_text(
        f"from {PACKAGE}.runner import DaskRunner\n\n\n"
        "class MyDaskRunner(DaskRunner):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    context = types.SimpleNamespace(params={"dask_client": {"address": "tcp://h:1"}})
    runner = project_cli.cli._instantiate_runner(
        "my_dask_runners.MyDaskRunner",
        False,
        context,
        {"client_args": {"timeout": 4}},
    )
    assert type(runner).__name__ == "MyDaskRunner"
    assert isinstance(runner, project_cli.DaskRunner)
    assert _client_args(runner) == {"address": "tcp://h:1", "timeout": 4}

    bad = types.SimpleNamespace(params={"dask_client": "tcp://h:1"})
    with pytest.raises(KedroCliError):
        project_cli.cli._instantiate_runner("my_dask_runners.MyDaskRunner", False, bad)


@pytest.mark.parametrize("bad_value", ["tcp://127.0.0.1:8786", 5, ["a"]])
def test_instantiate_dask_runner_rejects_non_mapping(project_cli, bad_value):
    context = types.SimpleNamespace(params={"dask_client": bad_value})
    with pytest.raises(KedroCliError, match="dask_client"):
        project_cli.cli._instantiate_runner(DASK_RUNNER, False, context)


def test_cli_rejects_non_mapping_dask_client(fresh_project):
    result = kedro(
        fresh_project,
        "run",
        "--env",
        "dask",
        "--runner",
        DASK_RUNNER,
        "--params",
        "dask_client=oops",
        timeout=120,
    )
    assert result.returncode != 0, result.describe()
    assert "dask_client" in result.output, result.describe()
    assert "Traceback" not in result.output, result.describe()


def test_nested_params_override_under_the_dask_env(fresh_project):
    """``--env dask --params raw_data.n_stores=3`` changes one key of the
    ``raw_data`` block of conf/base/ and keeps the others (``seed``, ...), as it
    does without ``--env dask``."""
    import pandas as pd

    result = kedro_ok(
        fresh_project,
        "run",
        "--env",
        "dask",
        "--params",
        "raw_data.n_stores=3",
        "--nodes",
        "generate_raw_sales_node",
    )
    assert "Completed 1 out of 1 tasks" in result.output, result.describe()
    sales = pd.read_csv(fresh_project / "data" / "01_raw" / "sales.csv")
    assert sales["store_id"].nunique() == 3, sales.head()


def test_packaged_project_needs_no_development_tools(fresh_project):
    """``kedro package`` builds a wheel whose run-time dependencies are the
    pipeline's, not pytest or ruff (those are the ``dev`` extra)."""
    import zipfile

    from packaging.requirements import Requirement

    kedro_ok(fresh_project, "package", timeout=600)
    [wheel] = (fresh_project / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    requires = [
        Requirement(line.split(":", 1)[1].strip())
        for line in lines
        if line.startswith("Requires-Dist:")
    ]
    runtime = {req.name for req in requires if req.marker is None}
    dev = {req.name for req in requires if req.marker is not None}
    assert {"kedro", "distributed", "dask"} <= runtime, runtime
    assert not runtime & {"pytest", "ruff"}, runtime
    assert {"pytest", "ruff"} <= dev, dev


# --------------------------------------------------------------------------- #
# The embedded LocalCluster through the real ``kedro`` command
# --------------------------------------------------------------------------- #
# The ``kedro`` console script, not ``python -m kedro``: multiprocessing's spawn
# runs a main script again in every worker process, not a main module.
# What distributed logs at INFO in a worker process; none of it may reach the user.
_WORKER_INTERNALS = (
    "Start worker at",
    "Listening to",
    "Worker name",
    "dashboard at",
    "Local Directory",
    "Starting Worker plugin",
    "Registered to",
    "Starting established connection",
    "Stopping worker",
    "Removing Worker plugin",
    "has been closed",
    "Creating preload",
    "Import preload module",
    "Run preload setup",
    "Compute Failed",
)


@pytest.fixture(scope="module")
def command_project(rendered_project, tmp_path_factory):
    """A copy of the project for ``kedro`` command runs."""
    return copy_project(rendered_project, tmp_path_factory.mktemp("kedro-command"))


def kedro_command(project, *args: str):
    assert Path(KEDRO).exists(), Path(KEDRO)
    return run_cmd(
        [Path(KEDRO), *args],
        cwd=project,
        timeout=KEDRO_RUN_TIMEOUT,
        env=base_env(project),
    )


def test_kedro_command_embedded_cluster_prints_what_the_driver_shows(
    command_project,
):
    """The worker processes print none of Dask's INFO, nor Kedro's note of its
    logging configuration (the driver printed it, once); the driver's line of
    what Dask started, with the dashboard link, stays."""
    result = kedro_command(command_project, "run", "--runner", DASK_RUNNER)

    assert result.returncode == 0, result.describe()
    assert result.output.count("Using 'conf/logging.yml'") == 1, result.describe()
    for text in _WORKER_INTERNALS:
        assert text not in result.output, (text, result.describe())
    assert re.search(
        r"Started a Dask LocalCluster at tls://127\.0\.0\.1:\d+; dashboard: "
        r"http://127\.0\.0\.1:\d+/status",
        result.output,
    ), result.describe()
    assert "Completed 14 out of 14 tasks" in result.output, result.describe()


def test_kedro_run_prints_plain_lines_off_a_terminal_and_rich_on_one(
    command_project,
):
    """Through a pipe, ``kedro run`` prints the project's records with its plain
    ``console`` handler, one line each; where rich is told the output is a
    terminal (rich's own ``TTY_COMPATIBLE=1``) it prints them with rich."""
    one_node = ("run", "--nodes", "generate_raw_sales_node")
    piped = kedro_command(command_project, *one_node)
    env = {**base_env(command_project), "TTY_COMPATIBLE": "1"}
    on_terminal = run_cmd(
        [Path(KEDRO), *one_node],
        cwd=command_project,
        timeout=KEDRO_RUN_TIMEOUT,
        env=env,
    )

    assert piped.returncode == 0, piped.describe()
    assert on_terminal.returncode == 0, on_terminal.describe()
    plain_line = re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - kedro\.pipeline\.node - "
        r"INFO - Running node: generate_raw_sales_node: ",
        re.MULTILINE,
    )
    rich_line = re.compile(r"INFO +Running node: generate_raw_sales_node: ")
    assert plain_line.search(piped.output), piped.describe()
    assert not rich_line.search(piped.output), piped.describe()
    assert rich_line.search(on_terminal.output), on_terminal.describe()
    assert not plain_line.search(on_terminal.output), on_terminal.describe()
    # Nor the deprecation warnings Kedro 1.7's config loader draws from omegaconf
    # 2.4, which the project cannot act on (settings.py).
    assert "register_new_resolver" not in piped.output, piped.describe()


def test_kedro_command_failing_node_is_reported_by_the_driver_only(
    command_project,
):
    """A node raising on a worker: its error is shown once, by the driver; the
    worker's "Compute Failed" report of the task is not printed."""
    result = kedro_command(
        command_project,
        "run",
        "--runner",
        DASK_RUNNER,
        "--pipelines",
        "data_processing",
        "--params",
        "raw_data.start_date=notadate",
    )

    assert result.returncode != 0, result.describe()
    assert "generate_raw_sales_node" in result.output, result.describe()
    assert "notadate" in result.output, result.describe()
    for text in _WORKER_INTERNALS:
        assert text not in result.output, (text, result.describe())
    assert result.output.count("Using 'conf/logging.yml'") == 1, result.describe()
