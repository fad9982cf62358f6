"""``DaskRunner`` end to end on the session's real Dask cluster, compared with
Kedro's ``SequentialRunner`` on the same pipelines and data."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dask.utils import key_split
from distributed import get_client, get_worker
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from {{ cookiecutter.python_package }}.runner import DaskClusterError, DaskRunner
from {{ cookiecutter.python_package }}.runner.dask_runner import add_default_memory_datasets

from .conftest import (
    of_run,
    scheduler_keys_in_memory,
    scheduler_task_keys,
    wait_until,
)

RUNNER_LOGGER = DaskRunner.__module__  # AbstractRunner logs as its class's module


# --------------------------------------------------------------------------- #
# Node functions (module level: the workers import them from this module)
# --------------------------------------------------------------------------- #
def prepare(raw: pd.DataFrame, factor: int) -> pd.DataFrame:
    return raw.assign(scaled=raw["value"] * factor)


def stats_by_group(df: pd.DataFrame) -> pd.DataFrame:
    return df.groupby("group", as_index=False)["scaled"].sum()


def top_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.nlargest(2, "scaled").reset_index(drop=True)


def row_count(df: pd.DataFrame) -> int:
    return len(df)


def combine(
    by_group: pd.DataFrame, top: pd.DataFrame, n_rows: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    summary = by_group.assign(n_rows=n_rows, top_total=int(top["scaled"].sum()))
    return summary, {"groups": len(by_group), "total": int(summary["scaled"].sum())}


def echo_pid(_data: Any) -> int:
    return os.getpid()


def make_early(n: int) -> list[int]:
    return list(range(n))


def use_early(early: list[int]) -> int:
    return sum(early)


def as_frame(values: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"value": values})


def wait_for_release(mid: int, _mid_again: int, early_node: str) -> dict[str, Any]:
    """Poll the scheduler, from inside a task, until the cluster no longer holds
    the result of ``early_node``; report the keys it holds at that point."""
    client = get_client()
    deadline = time.monotonic() + 10
    while True:
        keys = client.run_on_scheduler(scheduler_keys_in_memory)
        if not any(key[1] == early_node for key in keys if isinstance(key, tuple)):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return {"mid": mid, "keys": keys, "my_key": get_worker().get_current_task()}


def chunks(n: int):
    for i in range(n):
        yield pd.DataFrame({"chunk": [i], "square": [i * i]})


def last_square(df: pd.DataFrame) -> int:
    return int(df["square"].iloc[-1])


def boom(_data: Any) -> Any:
    raise ValueError("boom")


def current_key(_data: Any) -> str:
    return get_worker().get_current_task()


def keys_so_far(keys: list) -> list:
    return [*keys, get_worker().get_current_task()]


def slow_identity(data: Any) -> Any:
    time.sleep(0.5)
    return data


# --------------------------------------------------------------------------- #
# Hooks and catalogs
# --------------------------------------------------------------------------- #
class WhereHooks:
    """Writes one file per hook call recording where it ran."""

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory)

    def _record(self, hook: str, **fields: Any) -> None:
        try:
            worker = get_worker().address
        except ValueError:
            worker = None
        record = {"hook": hook, "pid": os.getpid(), "worker": worker, **fields}
        name = f"{hook}-{fields.get('node')}-{fields.get('dataset')}-{time.time_ns()}"
        Path(self.directory, name + ".json").write_text(json.dumps(record))

    @hook_impl
    def before_node_run(self, node):
        self._record("before_node_run", node=node.name)

    @hook_impl
    def after_node_run(self, node):
        self._record("after_node_run", node=node.name)

    @hook_impl
    def before_dataset_loaded(self, dataset_name, node):
        self._record("before_dataset_loaded", node=node.name, dataset=dataset_name)

    @hook_impl
    def after_dataset_saved(self, dataset_name, node):
        self._record("after_dataset_saved", node=node.name, dataset=dataset_name)


class RecordingCatalog(DataCatalog):
    """A catalog recording the ``release`` and ``confirm`` calls a runner makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str]] = []

    def release(self, ds_name: str) -> None:
        self.calls.append(("release", ds_name))
        super().release(ds_name)

    def confirm(self, ds_name: str) -> None:
        self.calls.append(("confirm", ds_name))
        super().confirm(ds_name)


class ConfirmableMemoryDataset(MemoryDataset):
    """A memory dataset that can be confirmed (``node(..., confirms=...)``)."""

    def confirm(self) -> None:
        pass


# --------------------------------------------------------------------------- #
# The fan-out / fan-in pipeline and its data
# --------------------------------------------------------------------------- #
RAW = pd.DataFrame(
    {"group": ["a", "b", "a", "c", "b", "a"], "value": [1, 2, 3, 4, 5, 6]}
)


def fan_pipeline() -> Pipeline:
    """raw (CSV) -> prepare -> prepared (memory) -> three branches: by_group
    (Parquet), top (memory) and n_rows (memory, undeclared) -> combine ->
    summary (CSV) and metrics (memory, a free output); top -> echo_pid -> pid
    (undeclared, a free output)."""
    return Pipeline(
        [
            node(prepare, ["raw", "params:factor"], "prepared", name="prepare"),
            node(stats_by_group, "prepared", "by_group", name="stats_by_group"),
            node(top_rows, "prepared", "top", name="top_rows"),
            node(row_count, "prepared", "n_rows", name="row_count"),
            node(
                combine,
                ["by_group", "top", "n_rows"],
                ["summary", "metrics"],
                name="combine",
            ),
            node(echo_pid, "top", "pid", name="echo_pid"),
        ]
    )


def fan_catalog(directory: Path, catalog_class: type = DataCatalog) -> DataCatalog:
    directory.mkdir(parents=True, exist_ok=True)
    raw = CSVDataset(filepath=str(directory / "raw.csv"), save_args={"index": False})
    raw.save(RAW)
    return catalog_class(
        datasets={
            "raw": raw,
            "params:factor": MemoryDataset(10),
            "prepared": MemoryDataset(),
            "by_group": ParquetDataset(filepath=str(directory / "by_group.parquet")),
            "top": MemoryDataset(),
            "summary": CSVDataset(
                filepath=str(directory / "summary.csv"), save_args={"index": False}
            ),
            "metrics": MemoryDataset(),
        }
    )


def _run_both(
    tmp_path: Path,
    pipeline: Pipeline,
    dask_runner: DaskRunner,
    catalog_factory=fan_catalog,
    **run_kwargs: Any,
) -> tuple[tuple[DataCatalog, dict], tuple[DataCatalog, dict]]:
    sequential_catalog = catalog_factory(tmp_path / "sequential")
    sequential = SequentialRunner().run(pipeline, sequential_catalog, **run_kwargs)
    dask_catalog = catalog_factory(tmp_path / "dask")
    dask = dask_runner.run(pipeline, dask_catalog, **run_kwargs)
    return (sequential_catalog, sequential), (dask_catalog, dask)


def _assert_same_fan_results(
    sequential_catalog: DataCatalog, dask_catalog: DataCatalog, directory: Path
) -> None:
    for name in ("summary", "by_group"):
        pd.testing.assert_frame_equal(
            dask_catalog.load(name), sequential_catalog.load(name)
        )
    # Persisted outputs were written to the Dask run's own files.
    assert (directory / "dask" / "summary.csv").is_file()
    assert (directory / "dask" / "by_group.parquet").is_file()
    assert dask_catalog.load("metrics") == sequential_catalog.load("metrics")
    assert dask_catalog.load("metrics") == {"groups": 3, "total": 210}


# --------------------------------------------------------------------------- #
# Results
# --------------------------------------------------------------------------- #
def test_results_equal_sequential_runner(tmp_path, client_args):
    (seq_catalog, seq_out), (dask_catalog, dask_out) = _run_both(
        tmp_path, fan_pipeline(), DaskRunner(client_args=client_args)
    )

    _assert_same_fan_results(seq_catalog, dask_catalog, tmp_path)
    # Same return value: the pipeline's outputs, as datasets.
    assert set(dask_out) == set(seq_out) == {"summary", "metrics", "pid"}
    pd.testing.assert_frame_equal(dask_out["summary"].load(), seq_out["summary"].load())


def test_free_outputs_come_back_to_the_driver(tmp_path, client_args):
    catalog = fan_catalog(tmp_path)

    result = DaskRunner(client_args=client_args).run(fan_pipeline(), catalog)

    # ``pid`` is not declared anywhere: it comes back from a worker process.
    assert result["pid"].load() == catalog.load("pid")
    assert isinstance(catalog.load("pid"), int)
    assert catalog.load("pid") != os.getpid()
    # A declared free output of a node with several outputs, too.
    assert result["metrics"].load() == {"groups": 3, "total": 210}


def test_what_existed_before_a_run_is_frozen_while_it_runs(tmp_path, client_args):
    """The objects that existed before the run are left out of garbage collection
    while it runs (``gc.freeze``), and collectable again after it: the lines the
    runner logs while it follows the run see them frozen, Kedro's last one not."""
    freeze_counts = []

    class FreezeCount(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            freeze_counts.append((record.getMessage(), gc.get_freeze_count()))

    runner_logger = logging.getLogger(DaskRunner.__module__)
    level = runner_logger.level
    handler = FreezeCount()
    runner_logger.addHandler(handler)
    runner_logger.setLevel(logging.INFO)
    try:
        DaskRunner(client_args=client_args).run(fan_pipeline(), fan_catalog(tmp_path))
    finally:
        runner_logger.removeHandler(handler)
        runner_logger.setLevel(level)

    *during, (last, after) = freeze_counts
    assert [line for line, _ in during if line.startswith("Completed node")]
    assert all(count > 0 for _, count in during), during
    assert last.startswith("Pipeline execution completed"), last
    assert after == gc.get_freeze_count() == 0


def test_objects_someone_else_froze_stay_frozen(tmp_path, client_args):
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        DaskRunner(client_args=client_args).run(fan_pipeline(), fan_catalog(tmp_path))
        # Some frozen objects are freed meanwhile; unfrozen, none would be left.
        assert gc.get_freeze_count() > frozen // 2, (frozen, gc.get_freeze_count())
    finally:
        gc.unfreeze()


def test_async_mode_gives_the_same_results(tmp_path, client_args):
    (seq_catalog, _), (dask_catalog, _) = _run_both(
        tmp_path, fan_pipeline(), DaskRunner(client_args=client_args, is_async=True)
    )

    _assert_same_fan_results(seq_catalog, dask_catalog, tmp_path)


def test_memory_pipeline_inputs_are_shipped(tmp_path, client_args):
    pipeline = Pipeline(
        [
            node(make_early, "n", "early", name="make_early"),
            node(use_early, "early", "total", name="use_early"),
            node(use_early, "early", "total_again", name="use_early_again"),
        ]
    )
    catalog = DataCatalog(datasets={"n": MemoryDataset(5)})

    DaskRunner(client_args=client_args).run(pipeline, catalog)

    assert catalog.load("total") == catalog.load("total_again") == 10


# --------------------------------------------------------------------------- #
# Memory on the cluster
# --------------------------------------------------------------------------- #
def test_intermediates_are_released_from_the_cluster(tmp_path, client_args, inspector):
    """make_early feeds two nodes, which both feed wait_for_release: four tasks
    (no linear chain to run as one)."""
    pipeline = Pipeline(
        [
            node(make_early, "n", "early", name="make_early"),
            node(use_early, "early", "mid", name="use_early"),
            node(use_early, "early", "mid_again", name="use_early_again"),
            node(
                wait_for_release,
                ["mid", "mid_again", "params:early_node"],
                "report",
                name="wait_for_release",
            ),
        ]
    )
    catalog = DataCatalog(
        datasets={
            "n": MemoryDataset(4),
            "params:early_node": MemoryDataset("make_early"),
        }
    )

    DaskRunner(client_args=client_args).run(pipeline, catalog)

    report = catalog.load("report")
    assert report["mid"] == 6
    group, name = report["my_key"]
    assert name == "wait_for_release"
    token = group.rsplit("-", 1)[1]
    run_keys = [key for key in report["keys"] if of_run(key, token)]
    # While the last node ran, the result it uses was still held...
    assert any(key[1] == "use_early" for key in run_keys), report["keys"]
    # ... but the first node's result, no longer needed, was released.
    assert not any(key[1] == "make_early" for key in run_keys), report["keys"]
    # And once the run is over, nothing of it is left on the cluster.
    assert wait_until(
        lambda: (
            not any(
                of_run(key, token)
                for key in inspector.run_on_scheduler(scheduler_task_keys)
            )
        )
    ), inspector.run_on_scheduler(scheduler_task_keys)


def test_task_keys_are_unique_per_run(client_args):
    pipeline = Pipeline([node(current_key, "x", "key", name="report_key")])
    keys = []
    for _ in range(2):
        catalog = DataCatalog(datasets={"x": MemoryDataset(1)})
        DaskRunner(client_args=client_args).run(pipeline, catalog)
        keys.append(catalog.load("key"))

    assert keys[0] != keys[1]
    # Named after the node; grouped by Dask (and its dashboard) by the function.
    assert [key[1] for key in keys] == ["report_key", "report_key"]
    assert [key_split(key) for key in keys] == ["current_key", "current_key"]


@pytest.mark.parametrize("fuse_chains", [True, False])
def test_a_linear_chain_runs_as_one_task_unless_told_otherwise(
    client_args, fuse_chains
):
    pipeline = Pipeline(
        [
            node(keys_so_far, "none_yet", "first_keys", name="first"),
            node(keys_so_far, "first_keys", "second_keys", name="second"),
            node(keys_so_far, "second_keys", "third_keys", name="third"),
        ]
    )
    catalog = DataCatalog(datasets={"none_yet": MemoryDataset([])})

    runner = DaskRunner(client_args=client_args, fuse_chains=fuse_chains)
    runner.run(pipeline, catalog)

    keys = catalog.load("third_keys")
    assert len(keys) == 3
    if fuse_chains:  # one task, named after the chain's last node
        assert {key[1] for key in keys} == {"third"}
    else:
        assert [key[1] for key in keys] == ["first", "second", "third"]


# --------------------------------------------------------------------------- #
# Hooks
# --------------------------------------------------------------------------- #
def test_node_and_dataset_hooks_run_on_the_workers(
    tmp_path, client_args, worker_addresses
):
    records_dir = tmp_path / "hooks"
    records_dir.mkdir()
    hook_manager = _create_hook_manager()
    hook_manager.register(WhereHooks(records_dir))

    DaskRunner(client_args=client_args).run(
        fan_pipeline(), fan_catalog(tmp_path / "data"), hook_manager=hook_manager
    )

    records = [json.loads(p.read_text()) for p in records_dir.glob("*.json")]
    by_hook: dict[str, set] = {}
    for record in records:
        by_hook.setdefault(record["hook"], set()).add(
            (record["node"], record.get("dataset"))
        )
    node_names = {n.name for n in fan_pipeline().nodes}
    assert {n for n, _ in by_hook["before_node_run"]} == node_names
    assert {n for n, _ in by_hook["after_node_run"]} == node_names
    assert ("prepare", "raw") in by_hook["before_dataset_loaded"]
    assert ("combine", "top") in by_hook["before_dataset_loaded"]
    assert ("stats_by_group", "by_group") in by_hook["after_dataset_saved"]
    assert ("combine", "summary") in by_hook["after_dataset_saved"]
    # They ran in the worker processes, not in the driver.
    assert os.getpid() not in {record["pid"] for record in records}
    addresses = {record["worker"] for record in records}
    assert addresses <= worker_addresses, (addresses, worker_addresses)
    assert None not in addresses


def test_unpicklable_hook_is_skipped_with_a_warning(tmp_path, client_args, caplog):
    class LocalHooks:  # defined in a function, holding a lock: cannot be pickled
        def __init__(self):
            import threading

            self.lock = threading.Lock()

        @hook_impl
        def before_node_run(self, node):
            pass

    hook_manager = _create_hook_manager()
    hook_manager.register(LocalHooks())
    catalog = DataCatalog(datasets={"n": MemoryDataset(3)})

    with caplog.at_level(logging.WARNING):
        DaskRunner(client_args=client_args).run(
            Pipeline([node(make_early, "n", "early", name="make_early")]),
            catalog,
            hook_manager=hook_manager,
        )

    assert catalog.load("early") == [0, 1, 2]
    assert "cannot be pickled" in caplog.text


# --------------------------------------------------------------------------- #
# Generators, only_missing_outputs
# --------------------------------------------------------------------------- #
def _generator_pipeline() -> Pipeline:
    return Pipeline(
        [
            node(chunks, "n", "frames", name="chunks"),
            node(last_square, "frames", "last", name="last_square"),
        ]
    )


def _generator_catalog(directory: Path) -> DataCatalog:
    return DataCatalog(datasets={"n": MemoryDataset(4)})


def test_generator_node_gives_the_same_results(tmp_path, client_args):
    (seq_catalog, _), (dask_catalog, _) = _run_both(
        tmp_path,
        _generator_pipeline(),
        DaskRunner(client_args=client_args),
        catalog_factory=_generator_catalog,
    )

    assert dask_catalog.load("last") == seq_catalog.load("last") == 9


def test_generator_node_with_async_fails_as_in_sequential_runner(client_args):
    errors = []
    for runner in (
        SequentialRunner(is_async=True),
        DaskRunner(client_args=client_args, is_async=True),
    ):
        with pytest.raises(ValueError, match="generator") as excinfo:
            runner.run(_generator_pipeline(), _generator_catalog(Path()))
        errors.append(str(excinfo.value))

    assert errors[0] == errors[1]


def _missing_outputs_pipeline() -> Pipeline:
    return Pipeline(
        [
            node(prepare, ["raw", "params:factor"], "prepared", name="prepare"),
            node(stats_by_group, "prepared", "by_group", name="stats_by_group"),
            node(top_rows, "by_group", "top", name="top_rows"),
        ]
    )


def _missing_outputs_catalog(directory: Path) -> DataCatalog:
    catalog = fan_catalog(directory)
    catalog["top"] = CSVDataset(
        filepath=str(directory / "top.csv"), save_args={"index": False}
    )
    return catalog


def test_only_missing_outputs_skips_nodes_with_persisted_outputs(
    tmp_path, client_args, caplog
):
    runner = DaskRunner(client_args=client_args)
    runner.run(_missing_outputs_pipeline(), _missing_outputs_catalog(tmp_path))
    by_group, top = tmp_path / "by_group.parquet", tmp_path / "top.csv"
    by_group_mtime = by_group.stat().st_mtime_ns
    expected_top = pd.read_csv(top)
    top.unlink()
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=RUNNER_LOGGER):
        runner.run(
            _missing_outputs_pipeline(),
            _missing_outputs_catalog(tmp_path),
            only_missing_outputs=True,
        )

    assert by_group.stat().st_mtime_ns == by_group_mtime  # not run again
    pd.testing.assert_frame_equal(pd.read_csv(top), expected_top)  # run again
    assert "Running 1 out of 3 nodes" in caplog.text
    completed = re.findall(r"Completed node: (\S+)", caplog.text)
    assert completed == ["top_rows"]

    # Nothing missing: nothing runs, and an empty run is fine.
    top_mtime = top.stat().st_mtime_ns
    runner.run(
        _missing_outputs_pipeline(),
        _missing_outputs_catalog(tmp_path),
        only_missing_outputs=True,
    )
    assert top.stat().st_mtime_ns == top_mtime


# --------------------------------------------------------------------------- #
# Failures
# --------------------------------------------------------------------------- #
def _failing_pipeline() -> Pipeline:
    return Pipeline(
        [
            node(prepare, ["raw", "params:factor"], "prepared", name="prepare"),
            node(stats_by_group, "prepared", "by_group", name="stats_by_group"),
            node(boom, "by_group", "never", name="explode"),
            node(top_rows, "never", "top", name="after_explode"),
        ]
    )


def test_failing_node_raises_its_error_and_suggests_a_resume(
    tmp_path, client_args, caplog, inspector
):
    seq_catalog = fan_catalog(tmp_path / "sequential")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError) as seq_exc:
        SequentialRunner().run(_failing_pipeline(), seq_catalog)
    seq_hint = [r.getMessage() for r in caplog.records if "--from-nodes" in r.message]
    caplog.clear()

    catalog = fan_catalog(tmp_path / "dask")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError) as excinfo:
        DaskRunner(client_args=client_args).run(_failing_pipeline(), catalog)

    error = excinfo.value
    assert type(error) is ValueError
    assert str(error) == str(seq_exc.value) == "boom"
    notes = getattr(error, "__notes__", [])
    assert any("explode" in note for note in notes), notes
    hints = [r for r in caplog.records if "--from-nodes" in r.getMessage()]
    assert [r.name for r in hints] == [RUNNER_LOGGER]
    assert [r.getMessage() for r in hints] == seq_hint
    assert '--from-nodes "explode"' in hints[0].getMessage()
    # What finished before the failure is intact.
    pd.testing.assert_frame_equal(
        catalog.load("by_group"), seq_catalog.load("by_group")
    )
    assert not (tmp_path / "dask" / "top.csv").exists()
    # Nothing of the failed run is left on the cluster.
    assert wait_until(lambda: not inspector.run_on_scheduler(scheduler_task_keys))


def test_failure_in_first_node_says_no_node_ran(tmp_path, client_args, caplog):
    pipeline = Pipeline([node(boom, "raw", "never", name="explode")])

    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="boom"):
        DaskRunner(client_args=client_args).run(pipeline, fan_catalog(tmp_path))

    assert "No nodes ran" in caplog.text


def test_unsatisfied_inputs_raise_as_in_sequential_runner(client_args):
    pipeline = Pipeline([node(use_early, "not_in_catalog", "out", name="use")])
    errors = []
    for runner in (SequentialRunner(), DaskRunner(client_args=client_args)):
        with pytest.raises(ValueError, match="not_in_catalog") as excinfo:
            runner.run(pipeline, DataCatalog())
        errors.append(str(excinfo.value))

    assert errors[0] == errors[1]


# --------------------------------------------------------------------------- #
# The driver's catalog
# --------------------------------------------------------------------------- #
def _confirm_pipeline() -> Pipeline:
    return Pipeline(
        [
            *fan_pipeline().nodes,
            node(
                slow_identity,
                "n_rows",
                "checked",
                name="checkpoint",
                confirms="checkpoint_ds",
            ),
        ]
    )


def _confirm_catalog(directory: Path) -> RecordingCatalog:
    catalog = fan_catalog(directory, RecordingCatalog)
    catalog["checkpoint_ds"] = ConfirmableMemoryDataset()
    return catalog


def test_release_and_confirm_calls_equal_sequential_runner(tmp_path, client_args):
    (seq_catalog, _), (dask_catalog, _) = _run_both(
        tmp_path,
        _confirm_pipeline(),
        DaskRunner(client_args=client_args),
        catalog_factory=_confirm_catalog,
    )

    assert ("confirm", "checkpoint_ds") in seq_catalog.calls
    assert any(call[0] == "release" for call in seq_catalog.calls)
    assert sorted(dask_catalog.calls) == sorted(seq_catalog.calls)


def _pattern_pipeline() -> Pipeline:
    return Pipeline(
        [
            node(make_early, "n", "early", name="make"),
            node(as_frame, "early", "total_csv", name="frame"),
        ]
    )


def _pattern_catalog(directory: Path) -> DataCatalog:
    return DataCatalog.from_config(
        {
            "n": {"type": "MemoryDataset", "data": 4},
            "{name}_csv": {
                "type": "pandas.CSVDataset",
                "filepath": str(directory / "{name}.csv"),
            },
        }
    )


def test_the_driver_s_catalog_ends_as_sequential_runner_s(tmp_path, client_args):
    """The in-memory datasets the runner adds before the run are those Kedro's
    warm-up would make: the catalog holds the same datasets, of the same types."""
    pipeline = _pattern_pipeline()
    catalogs = []
    for runner in (SequentialRunner(), DaskRunner(client_args=client_args)):
        catalog = _pattern_catalog(tmp_path / type(runner).__name__)
        runner.run(pipeline, catalog)
        catalogs.append(catalog)

    kinds = [
        {name: type(catalog.get(name)).__name__ for name in sorted(catalog.keys())}
        for catalog in catalogs
    ]
    assert kinds[0] == kinds[1]
    assert kinds[1]["early"] == "MemoryDataset"
    assert kinds[1]["total_csv"] == "CSVDataset"


def test_only_what_the_default_runtime_pattern_makes_is_added():
    class SharedMemoryCatalog(DataCatalog):
        default_runtime_patterns = {  # noqa: RUF012 - as DataCatalog declares it
            "{default}": {"type": "kedro.io.SharedMemoryDataset"}
        }

    pipeline = _pattern_pipeline()
    plain, shared = DataCatalog(), SharedMemoryCatalog()
    add_default_memory_datasets(pipeline, plain)
    add_default_memory_datasets(pipeline, shared)

    # "n", the pipeline's input, is Kedro's to report missing.
    assert sorted(plain.keys()) == ["early", "total_csv"]
    assert isinstance(plain.get("early"), MemoryDataset)
    assert list(shared.keys()) == []


def test_node_name_equal_to_a_memory_input_name(client_args):
    """Kedro lets a node share its name with a dataset; keys must not collide."""
    pipeline = Pipeline(
        [
            node(make_early, "n", "early", name="n"),
            node(use_early, "early", "total", name="use_early"),
        ]
    )
    results = []
    for runner in (SequentialRunner(), DaskRunner(client_args=client_args)):
        catalog = DataCatalog(datasets={"n": MemoryDataset(4)})
        runner.run(pipeline, catalog)
        results.append(catalog.load("total"))

    assert results == [6, 6]


def test_a_resource_no_worker_offers_fails_before_submitting(client_args, inspector):
    before = inspector.run_on_scheduler(scheduler_task_keys)
    runner = DaskRunner(
        client_args={**client_args, "worker_wait": 30},
        node_options=[{"nodes": ["second"], "resources": {"GPU": 1}}],
    )
    pipeline = Pipeline(
        [
            node(lambda x: x + 1, "a", "b", name="first"),
            node(lambda x: x * 2, "b", "c", name="second"),
        ]
    )
    started = time.monotonic()

    with pytest.raises(DaskClusterError) as excinfo:
        runner.run(pipeline, DataCatalog({"a": MemoryDataset(1)}))

    assert time.monotonic() - started < 10  # the workers are fixed: no waiting
    message = str(excinfo.value)
    assert "'second' needs {'GPU': 1}" in message
    assert "2 worker(s) offer {}" in message
    assert inspector.run_on_scheduler(scheduler_task_keys) == before
