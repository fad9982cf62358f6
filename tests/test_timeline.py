"""The run record's timeline (``dask_runner.run_record``) as a person sees it: the
page a real ``kedro run`` on the embedded cluster writes, opened from disk in a
headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run``
installs), shows a bar for every node of the record, on its worker's row."""

from __future__ import annotations

import json
import re
from pathlib import Path
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
const data = source.data;
return {rows: [...plot.y_range.factors], nodes: [...data.node],
        workers: [...data.worker], colors: [...data.color], errors: [...data.error],
        height: plot.height};
"""
_DATA = re.compile(
    r'(<script type="application/json" id="kedro-dask-timeline-data">)(.*?)'
    r"(</script>)",
    re.DOTALL,
)


def shown_in_browser(driver: Any, page: Path, screenshot: Path) -> dict[str, Any]:
    """What the timeline ``page`` drew once open, failing on a browser error."""
    driver.get(page.as_uri())

    def drawn(driver: Any) -> dict | None:
        shown = driver.execute_script(_DRAWN)
        return shown if shown and shown["nodes"] else None

    shown = wait_in_browser(driver, drawn, lambda: f"{page} drew no node", screenshot)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    return shown


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
    # The same page with the record's first node failed: the bars come from the
    # record the page holds, worked out when it opens.
    html = page.read_text(encoding="utf-8")
    data = json.loads(_DATA.search(html).group(2))
    data["nodes"][0].update(status="failed", error="boom\nsecond line")
    failed_page = tmp_path / "failed.html"
    failed_page.write_text(
        _DATA.sub(lambda m: m[1] + json.dumps(data) + m[3], html, count=1),
        encoding="utf-8",
    )
    with headless_chromium() as driver:
        shown = shown_in_browser(driver, page, tmp_path / "timeline.png")
        failed = shown_in_browser(driver, failed_page, tmp_path / "failed.png")
    workers = sorted({node["worker"] for node in nodes}, reverse=True)
    ordered = sorted(nodes, key=lambda n: n["start"])
    assert shown["nodes"] == [node["node"] for node in ordered]
    assert shown["workers"] == [node["worker"] for node in ordered]
    assert shown["rows"] == workers
    assert shown["height"] > 60 * len(workers)
    assert set(shown["colors"]) == {"#1f77b4"}
    assert shown["errors"] == [""] * len(nodes)
    first = failed["nodes"].index(data["nodes"][0]["node"])
    assert failed["colors"][first] == "#d62728"
    assert failed["errors"][first] == "boom"
    assert failed["colors"].count("#1f77b4") == len(nodes) - 1
