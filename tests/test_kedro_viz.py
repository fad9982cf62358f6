"""Kedro-Viz's Workflow view of the example's runs, read from a real ``kedro viz``.

Each test runs ``kedro run`` in a copy of the rendered project, starts ``kedro viz
run --no-browser`` there on 127.0.0.1 and reads what the Workflow view shows:
``/api/run-status`` (node ids to status, duration and error; the pipeline's
status and error), with node ids named by the flowchart's ``/api/main``. A
``SequentialRunner`` run, which Kedro-Viz records with its own hook, is the
reference; a ``DaskRunner`` run must show the same nodes, statuses and errors
(durations differ). One test opens the Workflow view in a headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run`` installs).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    DASK_RUNNER,
    KEDRO,
    Result,
    _spawn,
    _stop,
    base_env,
    copy_project,
    free_port,
    headless_chromium,
    kedro,
    kedro_ok,
    tail,
    wait_in_browser,
)

pytestmark = pytest.mark.slow

VIZ_HIGHEST_PORT = 49151  # kedro viz refuses ports above the registered range
VIZ_START_TIMEOUT = 120  # seconds for ``kedro viz run`` to serve its API
FAILED_NODE = "generate_raw_sales_node"  # the example's first node
BAD_PARAMS = "raw_data.start_date=notadate"  # makes FAILED_NODE raise
BAD_PARAMS_ERROR = "notadate"  # in the message of what FAILED_NODE raises


# --------------------------------------------------------------------------- #
# A kedro viz server
# --------------------------------------------------------------------------- #
@dataclass
class VizServer:
    url: str
    log: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)

    def log_tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"----- kedro viz log -----\n{tail(text, 3000)}"


def _wait_until_serving(server: VizServer, proc: Any) -> None:
    """Return once ``/api/main`` answers; fail if ``kedro viz`` exits or is late."""
    deadline = time.monotonic() + VIZ_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"kedro viz exited ({proc.returncode})\n{server.log_tail()}")
        with contextlib.suppress(OSError, ValueError):
            server.get("/api/main")
            return
        time.sleep(0.5)
    pytest.fail(
        f"kedro viz did not serve within {VIZ_START_TIMEOUT} s\n{server.log_tail()}"
    )


def viz_port() -> int:
    """A free port of 127.0.0.1 that ``kedro viz`` accepts (not above 49151; the
    ephemeral ports ``free_port`` gives often are)."""
    for _ in range(1000):
        port = free_port()
        if port <= VIZ_HIGHEST_PORT:
            return port
    for port in random.sample(range(20000, 32768), 1000):
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            return port
    pytest.fail("no free port for kedro viz")


@contextlib.contextmanager
def kedro_viz(project: Path) -> Iterator[VizServer]:
    """``kedro viz run --no-browser`` in ``project`` on a free port of 127.0.0.1,
    serving; its process group is stopped on exit."""
    port = viz_port()
    log = project.parent / f"kedro-viz-{port}.log"
    args = [KEDRO, "viz", "run", "--no-browser"]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    proc = _spawn(args, log, project, base_env(project))
    try:
        server = VizServer(f"http://127.0.0.1:{port}", log)
        _wait_until_serving(server, proc)
        yield server
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- #
# What the Workflow view shows
# --------------------------------------------------------------------------- #
@dataclass
class Workflow:
    nodes: dict[str, dict]  # node name -> its /api/run-status entry
    pipeline: dict  # the pipeline's /api/run-status entry
    ids: dict[str, str]  # node name -> Kedro-Viz id, for every node of the flowchart

    def outline(self) -> dict[str, Any]:
        """What must not depend on the runner: node statuses and error messages,
        the pipeline's status and error message."""
        return {
            "nodes": {
                name: (entry["status"], (entry.get("error") or {}).get("message"))
                for name, entry in sorted(self.nodes.items())
            },
            "pipeline": (
                self.pipeline["status"],
                (self.pipeline.get("error") or {}).get("message"),
            ),
        }

    def started_after(self, moment: datetime) -> bool:
        """Whether the run shown started after ``moment`` (no run: False)."""
        start = self.pipeline.get("start_time")
        return start is not None and datetime.fromisoformat(start) >= moment


def read_workflow(server: VizServer) -> Workflow:
    """``/api/run-status`` with node ids named (full names, namespace included)."""
    ids = {
        node["full_name"]: node["id"]
        for node in server.get("/api/main")["nodes"]
        if node["type"] == "task"
    }
    names = {ident: name for name, ident in ids.items()}
    status = server.get("/api/run-status")
    nodes = {names.get(i, i): entry for i, entry in status["nodes"].items()}
    return Workflow(nodes, status["pipeline"], ids)


def workflow_after(project: Path, result: Result) -> Workflow:
    """What ``kedro viz`` in ``project`` shows after the run ``result``."""
    with kedro_viz(project) as server:
        try:
            return read_workflow(server)
        except (OSError, ValueError, KeyError) as exc:
            pytest.fail(f"{exc!r}\n{result.describe()}\n{server.log_tail()}")


def assert_succeeded(workflow: Workflow, node_names: list[str]) -> None:
    assert sorted(workflow.nodes) == sorted(node_names), workflow.nodes
    for name, entry in workflow.nodes.items():
        assert entry["status"] == "success", (name, entry)
        assert entry["duration"] >= 0, (name, entry)
        assert entry.get("error") is None, (name, entry)
    assert workflow.pipeline["status"] == "success", workflow.pipeline
    assert workflow.pipeline.get("error") is None, workflow.pipeline


def assert_failed_node_shown(workflow: Workflow) -> None:
    """FAILED_NODE failed with BAD_PARAMS_ERROR and a traceback through the node's
    function; the pipeline failed with the same message."""
    entry = workflow.nodes.get(FAILED_NODE)
    assert entry is not None, workflow.nodes
    assert entry["status"] == "failed", entry
    assert BAD_PARAMS_ERROR in entry["error"]["message"], entry
    assert "generate_raw_sales" in entry["error"]["traceback"], entry
    assert workflow.pipeline["status"] == "failed", workflow.pipeline
    assert BAD_PARAMS_ERROR in workflow.pipeline["error"]["message"]
    assert workflow.pipeline["error"]["traceback"], workflow.pipeline


def fresh_copy(rendered_project: Path, parent: Path) -> Path:
    """A copy of the rendered project that holds no recorded run."""
    project = copy_project(rendered_project, parent)
    assert not (project / ".viz").exists(), "the rendered project holds a run"
    return project


# --------------------------------------------------------------------------- #
# Fixtures: the SequentialRunner references
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def sequential_viz(sequential_project, tmp_path_factory) -> Iterator[VizServer]:
    """``kedro viz`` serving a copy of the project after a SequentialRunner run."""
    project = copy_project(sequential_project, tmp_path_factory.mktemp("viz-seq"))
    with kedro_viz(project) as server:
        yield server


@pytest.fixture(scope="module")
def sequential_workflow(sequential_viz) -> Workflow:
    return read_workflow(sequential_viz)


@pytest.fixture(scope="module")
def failed_sequential_workflow(rendered_project, tmp_path_factory) -> Workflow:
    """The Workflow view after a SequentialRunner run whose first node fails."""
    project = fresh_copy(rendered_project, tmp_path_factory.mktemp("viz-seq-fail"))
    result = kedro(project, "run", "--params", BAD_PARAMS)
    assert result.returncode != 0, result.describe()
    return workflow_after(project, result)


# --------------------------------------------------------------------------- #
# Tests
# --------------------------------------------------------------------------- #
def test_kedro_viz_shows_the_sequential_run(sequential_workflow, node_names):
    assert_succeeded(sequential_workflow, node_names)


def test_kedro_viz_shows_the_failed_sequential_run(failed_sequential_workflow):
    assert_failed_node_shown(failed_sequential_workflow)
    assert list(failed_sequential_workflow.nodes) == [FAILED_NODE]


@pytest.mark.dask
def test_kedro_viz_shows_the_dask_run_as_the_sequential_one(
    rendered_project, sequential_workflow, node_names, tmp_path
):
    project = fresh_copy(rendered_project, tmp_path)
    started = datetime.now(UTC)
    result = kedro_ok(project, "run", "--runner", DASK_RUNNER)
    workflow = workflow_after(project, result)
    assert workflow.started_after(started), f"no run shown since {started}: {workflow}"
    assert_succeeded(workflow, node_names)
    assert workflow.outline() == sequential_workflow.outline()
    assert workflow.ids == sequential_workflow.ids


@pytest.mark.dask
def test_kedro_viz_shows_the_failed_dask_run_as_the_sequential_one(
    rendered_project, failed_sequential_workflow, tmp_path
):
    project = fresh_copy(rendered_project, tmp_path)
    started = datetime.now(UTC)
    result = kedro(project, "run", "--runner", DASK_RUNNER, "--params", BAD_PARAMS)
    assert result.returncode != 0, result.describe()
    workflow = workflow_after(project, result)
    assert workflow.started_after(started), f"no run shown since {started}: {workflow}"
    assert_failed_node_shown(workflow)
    assert workflow.outline() == failed_sequential_workflow.outline()


# --------------------------------------------------------------------------- #
# The Workflow view in a real browser
# --------------------------------------------------------------------------- #
def task_nodes_shown(driver: Any) -> dict[str, dict[str, str]]:
    """Kedro-Viz id -> label and status of each task node drawn in the page (its
    ``g.pipeline-node--task`` element, class ``pipeline-node--status-<status>``)."""
    from selenium.webdriver.common.by import By

    shown = {}
    for element in driver.find_elements(By.CSS_SELECTOR, "g.pipeline-node--task"):
        classes = (element.get_attribute("class") or "").split()
        statuses = [c.rsplit("-", 1)[-1] for c in classes if "--status-" in c]
        shown[element.get_attribute("data-id")] = {
            "label": element.text or element.get_attribute("data-node-fullname"),
            "status": statuses[0] if statuses else "",
        }
    return shown


def test_the_workflow_view_shows_the_nodes_succeeded(
    sequential_viz, sequential_workflow, node_names, tmp_path
):
    ids = {name: sequential_workflow.ids[name] for name in node_names}
    expected = {ident: "success" for ident in ids.values()}
    with headless_chromium() as driver:
        driver.get(f"{sequential_viz.url}/workflow")

        def drawn(driver: Any) -> dict | None:
            shown = task_nodes_shown(driver)
            statuses = {i: shown[i]["status"] for i in expected if i in shown}
            return shown if statuses == expected else None

        shown = wait_in_browser(
            driver,
            drawn,
            lambda: (
                f"the Workflow view did not show {sorted(ids)} as succeeded "
                f"(it shows {task_nodes_shown(driver)})"
            ),
            tmp_path / "workflow.png",
        )
    for name, ident in ids.items():
        assert name.rsplit(".", 1)[-1] in shown[ident]["label"], (name, shown[ident])
