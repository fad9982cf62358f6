"""The run record's timeline (``dask_runner.run_record``) as a person sees it: the
page a real ``kedro run`` on the embedded cluster writes, opened from disk in a
headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run``
installs), shows a bar for every node of the record, on its worker's row."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import DASK_RUNNER, headless_chromium, kedro_ok, wait_in_browser

pytestmark = pytest.mark.slow

# What bokeh drew, read from the page's document: the rows (one per worker) and
# the nodes of the data source the bars and labels are drawn from.
_DRAWN = """
const documents = window.Bokeh ? window.Bokeh.documents : [];
if (!documents.length) return null;
const plot = documents[0].roots()[0];
const bars = plot.renderers.find(r => r.data_source && r.data_source.data);
const source = bars ? bars.data_source : null;
if (!source) return null;
return {rows: [...plot.y_range.factors], nodes: [...source.data.node],
        workers: [...source.data.worker], height: plot.height};
"""


def test_the_timeline_page_draws_every_node_of_the_record(fresh_project, tmp_path):
    record = fresh_project / "data" / "08_reporting" / "dask-run.json"
    kedro_ok(
        fresh_project,
        "run",
        "--runner",
        DASK_RUNNER,
        "--params",
        f"dask_runner.run_record={record.relative_to(fresh_project)}",
    )
    nodes = json.loads(record.read_text())["nodes"]
    page = record.with_suffix(".html")
    with headless_chromium() as driver:
        driver.get(page.as_uri())

        def drawn(driver: Any) -> dict | None:
            shown = driver.execute_script(_DRAWN)
            return shown if shown and shown["nodes"] else None

        shown = wait_in_browser(
            driver, drawn, lambda: f"{page} drew no node", tmp_path / "timeline.png"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    workers = sorted({node["worker"] for node in nodes}, reverse=True)
    assert sorted(shown["nodes"]) == sorted(node["node"] for node in nodes)
    assert shown["workers"] == [
        node["worker"] for node in sorted(nodes, key=lambda n: n["start"])
    ]
    assert shown["rows"] == workers
    assert shown["height"] > 60 * len(workers)
    assert not errors, errors
