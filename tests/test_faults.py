"""Fault tolerance and bad input: what ``kedro run`` with the DaskRunner does when
a node raises, the scheduler cannot be reached, workers die, the user presses
Ctrl-C, two runs share a scheduler, or the input cannot work at all.

Everything is real: ``kedro run`` is a subprocess, clusters are ``dask scheduler``
/ ``dask worker`` processes on 127.0.0.1 (or the runner's embedded LocalCluster),
and the failing, slow and unpicklable nodes live in extra modules written into a
COPY of the rendered project (see ``add_fault_modules``), so that workers started
with ``PYTHONPATH=<copy>/src`` import them like any project code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psutil
import pytest
from distributed import Client

from .conftest import (
    DASK_RUNNER,
    KEDRO_RUN_TIMEOUT,
    PACKAGE,
    Result,
    _kill_group,
    base_env,
    copy_project,
    dask_cluster,
    data_files,
    executed_keys_by_worker,
    free_port,
    node_of_key,
    reset_data,
    run_cmd,
    tail,
)

pytestmark = [pytest.mark.slow, pytest.mark.dask]

# --------------------------------------------------------------------------- #
# Extra project code, written into a copy of the rendered project
# --------------------------------------------------------------------------- #
_FAULT_NODES = '''\
"""Nodes that fail, sleep or cannot be pickled: written by the starter's
tests/test_faults.py into a copy of the project, never part of the template."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from pathlib import Path

import pandas as pd


class TaskCancelled(RuntimeError):
    """The Dask task running this node was cancelled while it slept."""


def worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def _task_cancelled() -> bool:
    """Whether Dask no longer wants the result of the task running this code."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        worker = get_worker()
        key = thread_state.key
    except (ImportError, ValueError, AttributeError):
        return False
    state = worker.state.tasks.get(key)
    return state is None or state.state not in ("executing", "long-running")


def record(path: str, **fields) -> None:
    """Append one JSON line to ``path`` (nothing when ``path`` is empty)."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    line = {"pid": os.getpid(), "worker": worker_address(), "time": time.time()}
    line.update(fields)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\\n")


def sleep_unless_cancelled(seconds: float, marker: str = "") -> None:
    """Sleep, but give up (raising) as soon as the Dask task is cancelled, so a
    cancelled node frees its worker thread. Records "started"/"cancelled" lines
    in ``marker``."""
    record(marker, event="started")
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        if _task_cancelled():
            record(marker, event="cancelled")
            raise TaskCancelled("the Dask task of this node was cancelled")
        time.sleep(0.05)
    record(marker, event="finished")


def _marker(folder: str, name: str) -> str:
    return str(Path(folder) / f"{name}.jsonl") if folder else ""


# ``faults`` pipeline: one node raises while a slow branch runs ------------- #
def explode(model_input_table: pd.DataFrame, after: float, marker_dir: str) -> int:
    sleep_unless_cancelled(after, _marker(marker_dir, "explode"))
    raise ValueError("boom")


def slow_branch(model_input_table: pd.DataFrame, seconds: float, marker_dir: str):
    sleep_unless_cancelled(seconds, _marker(marker_dir, "slow_branch"))
    return len(model_input_table)


def slow_branch_end(count: int, seconds: float, marker_dir: str) -> int:
    sleep_unless_cancelled(seconds, _marker(marker_dir, "slow_branch_end"))
    return count


# ``slowsave`` pipeline: one slow node among fast ones, csv outputs ---------- #
def make_numbers(rows: int) -> pd.DataFrame:
    n = int(rows)
    return pd.DataFrame(
        {"i": range(n), "x": [((i * 7919) % 1000) / 10 for i in range(n)]}
    )


def slow_square(numbers: pd.DataFrame, seconds: float, marker: str):
    sleep_unless_cancelled(seconds, marker or "")
    out = numbers.assign(square=numbers["x"] ** 2)
    return out, out


def fast_double(numbers: pd.DataFrame):
    out = numbers.assign(double=numbers["x"] * 2)
    return out, out


def combine(squares: pd.DataFrame, doubles: pd.DataFrame) -> pd.DataFrame:
    return squares.merge(doubles, on=["i", "x"])


# ``badnode`` pipeline: a node function that cannot be pickled --------------- #
def _locked_identity(rows: int, lock) -> int:
    with lock:
        return rows


def locked_function():
    return functools.partial(_locked_identity, lock=threading.Lock())


# ``secrets`` pipeline: a node that fails after reading a credentialed dataset #
def read_secret_store(data: pd.DataFrame) -> int:
    raise ValueError(f"failing on purpose after reading {len(data)} rows")
'''

_FAULT_DATASETS = '''\
"""Datasets of the starter's fault tests (written by tests/test_faults.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
from kedro.io import AbstractDataset, DatasetError


class LockedDataset(AbstractDataset):
    """A csv file guarded by a lock: fine in one process, cannot be pickled."""

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._filepath = filepath
        self._lock = threading.Lock()
        self.metadata = metadata

    def _load(self) -> pd.DataFrame:
        with self._lock:
            return pd.read_csv(self._filepath)

    def _save(self, data: pd.DataFrame) -> None:
        with self._lock:
            Path(self._filepath).parent.mkdir(parents=True, exist_ok=True)
            data.to_csv(self._filepath, index=False)

    def _describe(self) -> dict:
        return {"filepath": self._filepath}


class TokenDataset(AbstractDataset):
    """A csv file that (pretends to) need a secret token to be read or written."""

    def __init__(
        self, filepath: str, credentials: dict | None = None, metadata: dict | None = None
    ):
        self._filepath = filepath
        self._credentials = dict(credentials or {})
        self.metadata = metadata

    def _check(self) -> None:
        if not self._credentials.get("token"):
            raise DatasetError("TokenDataset needs credentials with a 'token'")

    def _load(self) -> pd.DataFrame:
        self._check()
        return pd.read_csv(self._filepath)

    def _save(self, data: pd.DataFrame) -> None:
        self._check()
        Path(self._filepath).parent.mkdir(parents=True, exist_ok=True)
        data.to_csv(self._filepath, index=False)

    def _describe(self) -> dict:
        return {"filepath": self._filepath}
'''

_FAULT_HOOKS = '''\
"""Hooks of the starter's fault tests (written by tests/test_faults.py)."""

from __future__ import annotations

from pathlib import Path

from kedro.framework.hooks import hook_impl

from .fault_nodes import record


class FaultHooks:
    """Records every ``on_node_error`` call, with the pid and Dask worker address
    of the process it ran in, as JSON lines in ``<record_dir>/on_node_error.jsonl``.
    ``record_dir`` is read from the driver's environment when settings load and
    travels to the workers inside the pickled hook."""

    def __init__(self, record_dir: str | None = None):
        self.record_dir = record_dir

    @hook_impl
    def on_node_error(self, error: Exception, node) -> None:
        if self.record_dir:
            record(
                str(Path(self.record_dir) / "on_node_error.jsonl"),
                node=node.name,
                error=f"{type(error).__name__}: {error}",
            )
'''

_SETTINGS_APPENDIX = '''

# Added by the starter's tests/test_faults.py.
import os as _os  # noqa: E402

from {package}.fault_hooks import FaultHooks as _FaultHooks  # noqa: E402

HOOKS = (_FaultHooks(_os.environ.get("FAULT_HOOKS_DIR") or None),)
'''


def _pipeline_module(body: str) -> str:
    return (
        '"""Written by the starter\'s tests/test_faults.py."""\n\n'
        "from kedro.pipeline import Node, Pipeline\n\n"
        f"from ...fault_nodes import *  # noqa: F403\n\n\n"
        "def create_pipeline(**kwargs) -> Pipeline:\n"
        f"    return Pipeline(\n        [\n{body}        ]\n    )\n"
    )


_F = '"model_input_table", "params:faults_slow_seconds", "params:fault_markers"'
_PIPELINES = {
    "faults": _pipeline_module(
        '            Node(explode, ["model_input_table", "params:faults_explode_after",'
        ' "params:fault_markers"], "faults_exploded", name="explode_node"),\n'
        f"            Node(slow_branch, [{_F}], "
        '"faults_count", name="slow_branch_node"),\n'
        '            Node(slow_branch_end, ["faults_count", "params:faults_slow_seconds",'
        ' "params:fault_markers"], "faults_count_end", name="slow_branch_end_node"),\n'
    ),
    "slowsave": _pipeline_module(
        '            Node(make_numbers, "params:slowsave_rows", "slowsave_numbers", '
        'name="make_numbers_node"),\n'
        '            Node(slow_square, ["slowsave_numbers", "params:slowsave_sleep", '
        '"params:slowsave_marker"], ["slowsave_squares", "slowsave_squares_mem"], '
        'name="slow_square_node"),\n'
        '            Node(fast_double, "slowsave_numbers", '
        '["slowsave_doubles", "slowsave_doubles_mem"], name="fast_double_node"),\n'
        '            Node(combine, ["slowsave_squares_mem", "slowsave_doubles_mem"], '
        '"slowsave_combined", name="combine_node"),\n'
    ),
    "badnode": _pipeline_module(
        '            Node(locked_function(), "params:slowsave_rows", "locked_out", '
        'name="locked_node"),\n'
    ),
    "baddataset": _pipeline_module(
        '            Node(make_numbers, "params:slowsave_rows", "locked_dataset", '
        'name="write_locked_node"),\n'
    ),
    "secrets": _pipeline_module(
        '            Node(make_numbers, "params:slowsave_rows", "secret_store_data", '
        'name="write_secret_store_node"),\n'
        '            Node(read_secret_store, "secret_store_data", "secret_summary", '
        'name="read_secret_store_node"),\n'
    ),
}

_CATALOG = """\
# Added by the starter's tests/test_faults.py.
slowsave_squares:
  type: pandas.CSVDataset
  filepath: data/07_model_output/slowsave_squares.csv
  save_args:
    index: false

slowsave_doubles:
  type: pandas.CSVDataset
  filepath: data/07_model_output/slowsave_doubles.csv
  save_args:
    index: false

slowsave_combined:
  type: pandas.CSVDataset
  filepath: data/08_reporting/slowsave_combined.csv
  save_args:
    index: false

locked_dataset:
  type: {package}.fault_datasets.LockedDataset
  filepath: data/07_model_output/locked.csv
"""

_PARAMETERS = """\
# Added by the starter's tests/test_faults.py. Top-level keys only: with an
# environment that has its own parameters (--env dask), `--params a.b=1` replaces
# the whole of `a` (Kedro's default "destructive" merge of environments).
faults_explode_after: 1.0
faults_slow_seconds: 20
fault_markers: ""
slowsave_rows: 200
slowsave_sleep: 3
slowsave_marker: ""
"""

# Pipelines to name with --pipelines in a project that has the fault modules:
# __default__ there includes the failing ones.
EXAMPLE_PIPELINES = "data_processing,data_science,reporting"


def add_fault_modules(project: Path, secret: str | None = None) -> Path:
    """Write the fault nodes, datasets, hooks, pipelines and configuration into
    ``project`` (a copy). With ``secret``, also the ``secrets`` pipeline's
    credentialed dataset in conf/local, its token being ``secret``."""
    package = project / "src" / PACKAGE
    (package / "fault_nodes.py").write_text(_FAULT_NODES)
    (package / "fault_datasets.py").write_text(_FAULT_DATASETS)
    (package / "fault_hooks.py").write_text(_FAULT_HOOKS)
    settings = package / "settings.py"
    settings.write_text(
        settings.read_text() + _SETTINGS_APPENDIX.format(package=PACKAGE)
    )
    for name, source in _PIPELINES.items():
        folder = package / "pipelines" / name
        folder.mkdir()
        (folder / "__init__.py").write_text(source)
    conf = project / "conf"
    (conf / "base" / "catalog_faults.yml").write_text(_CATALOG.format(package=PACKAGE))
    (conf / "base" / "parameters_faults.yml").write_text(_PARAMETERS)
    # An environment whose dask_client is a YAML list, not a mapping.
    (conf / "badlist").mkdir()
    (conf / "badlist" / "parameters.yml").write_text(
        "dask_client:\n  - tcp://127.0.0.1:8786\n"
    )
    if secret is not None:
        (conf / "local" / "credentials.yml").write_text(
            f"secret_store:\n  token: {secret}\n"
        )
        (conf / "local" / "catalog_secrets.yml").write_text(
            "secret_store_data:\n"
            f"  type: {PACKAGE}.fault_datasets.TokenDataset\n"
            "  filepath: data/07_model_output/secret_store.csv\n"
            "  credentials: secret_store\n"
        )
    return project
