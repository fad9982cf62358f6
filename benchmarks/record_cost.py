"""What recording a DaskRunner run costs per node (issue 11): a benchmark, not a test.

    python benchmarks/record_cost.py                  # 500 nodes, 9 rounds
    python benchmarks/record_cost.py --nodes 200 --repeats 5 --out /tmp/rc.md
    python benchmarks/record_cost.py --starter-ref HEAD   # the committed starter

Renders the starter (``harness.prepare_environment``: package ``bench_project``,
the benchmark's quiet logging), starts a warm cluster (``dask scheduler`` and two
``dask worker --nthreads 1`` on 127.0.0.1, the workers from the project root with
its ``src`` on ``PYTHONPATH``) and runs the W1 workloads of ``workloads.py`` (a
fan-out of N trivial consumers of one node, N + 1 nodes; a chain of N trivial
nodes) with the DaskRunner in four set-ups, interleaved (every round runs each
set-up once, in a shuffled order), after one untimed warm-up run of each:

- ``baseline``: the runner with its recording code paths stubbed out: no
  ``RunRecorder`` on the driver (``dask_runner.RunRecorder`` a no-op, no
  ``run_params_of``) and no ``measured`` on the workers (``worker.measured`` a
  bare ``nullcontext``). What the runner costs without any of issue 11.
- ``off``: recording off as shipped: kedro-viz installed, but a partial run
  (``run_params`` with ``tags``, told by ``RunParamsHook``) and no ``run_record``,
  so ``RunRecorder.wanted`` is false: no topic, no meter, nothing written.
- ``viz``: what every full run does once kedro-viz is installed: each node
  measured on its worker and sent as a Dask event (through the worker's outbox,
  ``node_logs.send``); the driver collects the events as they arrive and writes
  ``.viz/kedro_pipeline_events.json``.
- ``record``: ``viz`` plus ``dask_runner.run_record``: the JSON run record and
  its bokeh timeline (``.html``) written by the driver.

Every set-up gets the same hook manager (Kedro's, with ``RunParamsHook``
registered) and the same options (``progress: false``; ``ship_code: false``, the
workers import the project from ``PYTHONPATH``, so the stubs set on them hold and
no per-run package import adds noise). The driver runs in the project's root,
so the Kedro-Viz file is written where ``kedro viz`` reads it.

Per run it takes: the wall time of ``runner.run``; the time the driver spends
writing (``RunRecorder._write``, wrapped with a timer); the workers' compute time
of the run's tasks (Dask's task stream, summed). The cost per node of a set-up is
the median over rounds of (its time - ``baseline``'s time in the same round) /
nodes. Writes a Markdown report (default ``benchmarks/results/record-cost.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402

SETUPS = ("baseline", "off", "viz", "record")
TARGET_MS_PER_NODE = 0.1
DEFAULT_OUT = BENCH_DIR / "results" / "record-cost.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=9, help="rounds (>= 5)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--starter-ref", default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- #
# The set-ups
# --------------------------------------------------------------------------- #
def _stub_worker(on: bool) -> None:
    """On a worker (or the driver): ``worker.measured`` a bare ``nullcontext``
    while ``on``, the real one otherwise."""
    from bench_project.runner import worker

    real = worker.__dict__.setdefault("_bench_real_measured", worker.measured)
    worker.measured = (
        (lambda *args, **kwargs: contextlib.nullcontext(None)) if on else real
    )


class _NoRecorder:
    """``RunRecorder`` with nothing in it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @staticmethod
    def wanted(*args: Any) -> bool:
        return False

    def __enter__(self) -> _NoRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def all_tasks_finished(self) -> None:
        return None

    def wait_written(self) -> None:
        return None


@contextlib.contextmanager
def stubbed(client: Any) -> Iterator[None]:
    """The runner with its recording code paths stubbed out, driver and workers."""
    from bench_project.runner import dask_runner

    real = (dask_runner.RunRecorder, dask_runner.run_params_of)
    dask_runner.RunRecorder = _NoRecorder
    dask_runner.run_params_of = lambda hook_manager: None
    _stub_worker(True)
    client.run(_stub_worker, True)
    try:
        yield
    finally:
        dask_runner.RunRecorder, dask_runner.run_params_of = real
        _stub_worker(False)
        client.run(_stub_worker, False)


class WriteTimer:
    """Wraps ``RunRecorder._write`` to time what the driver spends writing: the
    wall time, and the CPU time of the thread that writes (``time.thread_time``:
    the writing alone, whatever the run's other threads do meanwhile)."""

    def __init__(self) -> None:
        from bench_project.runner.recording import RunRecorder

        self.seconds = 0.0
        self.cpu_seconds = 0.0
        real = RunRecorder._write

        def timed(recorder: Any, *args: Any) -> None:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                real(recorder, *args)
            finally:
                self.seconds += time.perf_counter() - start
                self.cpu_seconds += time.thread_time() - cpu

        RunRecorder._write = timed


def hook_manager(full_run: bool) -> Any:
    """Kedro's hook manager with ``RunParamsHook`` told a full or a partial run."""
    from bench_project.runner.compat import create_hook_manager
    from bench_project.runner.run_params import RunParamsHook

    manager = create_hook_manager()
    hook = RunParamsHook()
    hook.run_params = {"tags": None} if full_run else {"tags": ["bench"]}
    manager.register(hook)
    return manager


CPU_PARTS = ("driver", "scheduler", "workers")


def cpu_seconds(client: Any) -> dict[str, float]:
    """CPU time so far of this process (the driver, every thread), the scheduler
    and the workers (summed), each read in its own process (``time.process_time``,
    to the nanosecond; psutil reads other processes in 10 ms ticks)."""
    scheduler = client.run_on_scheduler(time.process_time)
    workers = client.run(time.process_time)
    return {
        "driver": time.process_time(),
        "scheduler": scheduler,
        "workers": sum(workers.values()),
    }


def run_once(
    setup: str, pipeline_factory: Any, ctx: dict[str, Any]
) -> dict[str, float]:
    """One timed run of ``setup``; returns wall, write, worker compute and CPU
    (driver, scheduler and workers) seconds."""
    import workloads
    from bench_project.runner import DaskRunner
    from distributed import get_task_stream

    warm, timer = ctx["warm"], ctx["timer"]
    options: dict[str, Any] = {"progress": False, "ship_code": False}
    if setup == "record":
        options["run_record"] = str(ctx["record_path"])
    pipeline = pipeline_factory()
    catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=False)
    manager = hook_manager(full_run=setup in ("viz", "record"))
    client = warm.control()
    client.run(__import__("gc").collect)
    stack = contextlib.ExitStack()
    with stack:
        if setup == "baseline":
            stack.enter_context(stubbed(client))
        timer.seconds = timer.cpu_seconds = 0.0
        with get_task_stream(client=client) as stream:
            cpu = cpu_seconds(client)
            start = time.perf_counter()
            runner = DaskRunner(client_args={"address": warm.address}, **options)
            runner.run(pipeline, catalog, hook_manager=manager)
            wall = time.perf_counter() - start
            cpu_end = cpu_seconds(client)
    compute = sum(
        part["stop"] - part["start"]
        for task in stream.data
        for part in task.get("startstops", ())
        if part.get("action") == "compute"
    )
    used = {f"cpu_{part}": cpu_end[part] - cpu[part] for part in CPU_PARTS}
    return {
        "wall": wall,
        "write": timer.seconds,
        "write_cpu": timer.cpu_seconds,
        "compute": compute,
        "cpu": sum(used.values()),
        **used,
    }


# --------------------------------------------------------------------------- #
# The driver's writing, in-process: what is fixed per run, what grows per node
# --------------------------------------------------------------------------- #
WRITE_SIZES = (100, 1000)
WRITE_REPEATS = 7


def _synthetic_runs(pipeline: Any) -> list[Any]:
    """A measured record per node of ``pipeline``, on two workers, one ms each."""
    from bench_project.runner.run_record import DatasetEvent, NodeRun

    return [
        NodeRun(
            node=node.name,
            worker=f"tcp://127.0.0.1:{40000 + i % 2}",
            start=1e9 + i * 1e-3,
            end=1e9 + i * 1e-3 + 5e-4,
            run_time=1e-4,
            datasets=tuple(
                [DatasetEvent(name, "loaded") for name in node.inputs]
                + [DatasetEvent(name, "saved") for name in node.outputs]
            ),
        )
        for i, node in enumerate(pipeline.nodes)
    ]


def write_costs(directory: Path) -> dict[str, dict[str, float]]:
    """Seconds each file the driver writes takes for ``WRITE_SIZES`` nodes (fan-out
    records, median of ``WRITE_REPEATS``), in this process: no cluster, no noise
    from it. Kedro-Viz's events file as every full run writes it; the JSON run
    record and the timeline as ``run_record`` adds them; and the timeline's page
    as bokeh makes it once, in the background, before it is kept."""
    import workloads
    from bench_project.runner import run_record

    full_run = {"tags": None}  # as hook_manager tells a full run
    writers = {
        "Kedro-Viz events file": lambda records, pipeline: run_record.write_viz_events(
            records,
            pipeline,
            directory / "events.json",
            start=1e9,
            end=1e9 + 1,
            run_params=full_run,
        ),
        "JSON run record": lambda records, pipeline: run_record.write_run_record(
            records, directory / "record.json", start=1e9, end=1e9 + 1
        ),
        "timeline (the kept page, the run's data)": lambda records, pipeline: (
            run_record.write_timeline(records, directory / "record.html")
        ),
        # What the first recorded run of a bokeh version pays, in the background.
        "timeline page made by bokeh (once)": lambda records, pipeline: (
            run_record._make_page("Dask run")
        ),
    }
    costs: dict[str, dict[str, float]] = {}
    for size in WRITE_SIZES:
        pipeline = workloads.fan_out(size - 1)
        records = _synthetic_runs(pipeline)
        for name, write in writers.items():
            write(records, pipeline)  # warm: imports, caches
            times = []
            for _ in range(WRITE_REPEATS):
                start = time.perf_counter()
                write(records, pipeline)
                times.append(time.perf_counter() - start)
            costs.setdefault(name, {})[str(size)] = statistics.median(times)
    return costs


def write_costs_table(costs: dict[str, dict[str, float]]) -> list[str]:
    """Each file's cost at each size, and the straight line through them: a fixed
    cost per run and a cost per node."""
    small, large = WRITE_SIZES
    lines = [
        "| file | "
        + " | ".join(f"{n} nodes ms" for n in WRITE_SIZES)
        + " | fixed ms per run | ms per node |",
        "|---|" + "---:|" * (len(WRITE_SIZES) + 2),
    ]
    for name, by_size in costs.items():
        per_node = (by_size[str(large)] - by_size[str(small)]) / (large - small)
        fixed = by_size[str(small)] - per_node * small
        lines.append(
            f"| {name} | "
            + " | ".join(_ms(by_size[str(n)]) for n in WRITE_SIZES)
            + f" | {_ms(fixed)} | {per_node * 1000:.4f} |"
        )
    return lines


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #
def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _per_node(values: list[float], nodes: int) -> str:
    return f"{statistics.median(values) * 1000 / nodes:+.3f}"


def _spread(values: list[float], nodes: int) -> str:
    if len(values) < 4:
        return "n/a"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1 * 1000 / nodes:+.3f} … {q3 * 1000 / nodes:+.3f}"


def summarise(runs: dict[str, list[dict[str, float]]], nodes: int) -> dict[str, Any]:
    """Medians per set-up and paired differences against ``baseline`` per round."""
    out: dict[str, Any] = {}
    base = runs["baseline"]
    for setup in SETUPS:
        mine = runs[setup]

        def paired(key: str, mine: list[dict[str, float]] = mine) -> list[float]:
            """This set-up's ``key`` less the baseline's, round by round."""
            return [m[key] - b[key] for m, b in zip(mine, base, strict=True)]

        out[setup] = {
            "wall": [m["wall"] for m in mine],
            "write": [m["write"] for m in mine],
            "write_cpu": [m["write_cpu"] for m in mine],
            "compute": [m["compute"] for m in mine],
            "diffs": paired("wall"),
            "compute_diffs": paired("compute"),
            "cpu": [m["cpu"] for m in mine],
            "cpu_diffs": paired("cpu"),
            **{f"cpu_{part}_diffs": paired(f"cpu_{part}") for part in CPU_PARTS},
            "nodes": nodes,
        }
    return out


def report(
    results: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    facts: dict,
    writing: dict[str, dict[str, float]],
) -> str:
    runner_dirty = facts["source"].get("runner_uncommitted_changes")
    lines = [
        "# Recording cost per node (issue 11)",
        "",
        f"`python benchmarks/record_cost.py --nodes {args.nodes} --repeats "
        f"{args.repeats}` on {facts['when']}; starter "
        f"{facts['source'].get('commit', '?')}"
        f"{' (runner with uncommitted changes)' if runner_dirty else ''}"
        f"{' at ' + args.starter_ref if args.starter_ref else ''}.",
        f"Machine: {facts['nproc']} cores, {facts['cpu_model']}, Python "
        f"{facts['python']}, kedro {facts['kedro']}, distributed "
        f"{facts['distributed']}, kedro-viz {facts['kedro_viz']}, bokeh "
        f"{facts['bokeh']}; load average {facts['load_average_at_start']} at "
        f"the start, {facts['load_end']} at the end.",
        "",
        "Warm cluster: `dask scheduler` + 2 `dask worker --nthreads 1` on 127.0.0.1;"
        " DaskRunner with `progress: false`, `ship_code: false`, every other option"
        " at its default (chains fused); Kedro and distributed logging at WARNING."
        f" {args.repeats} interleaved rounds after one warm-up run of each set-up.",
        "",
        "Set-ups: **baseline** the runner with its recording code stubbed out"
        " (driver and workers); **off** recording off as shipped (kedro-viz"
        " installed, a partial run, no `run_record`); **viz** a full run with"
        " kedro-viz installed (nodes measured, `.viz/kedro_pipeline_events.json`"
        " written); **record** `viz` plus `dask_runner.run_record` (JSON record"
        " and bokeh timeline written).",
        "",
        "Cost per node: median over rounds of (the set-up's run − the baseline's"
        " run in the same round) / nodes; IQR of those paired differences next"
        " to it. Driver write: `RunRecorder._write` (taking the measurements"
        " collected during the run, Kedro-Viz file, record, timeline), its wall"
        " time and the CPU time of its thread. Worker"
        " compute: the run's tasks'"
        " compute time from Dask's task stream, summed over workers. CPU: the"
        " CPU time the run took in the driver (every thread), the scheduler and"
        " the workers (`time.process_time` read in each process before and"
        " after the run), paired with the baseline like the wall time; the same"
        " split by process: driver / scheduler / workers.",
        "",
    ]
    verdicts = []
    for workload, per_setup in results.items():
        nodes = per_setup["baseline"]["nodes"]
        lines += [
            f"## {workload} ({nodes} nodes)",
            "",
            "| set-up | wall median (min–max) ms | cost ms/node vs baseline "
            "| IQR of paired diffs ms/node | driver write ms, wall / CPU (ms/node) "
            "| worker compute ms/node (vs baseline) "
            "| CPU ms/node vs baseline (IQR) "
            "| CPU ms/node vs baseline: driver / scheduler / workers |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for setup in SETUPS:
            r = per_setup[setup]
            write = statistics.median(r["write"])
            write_cpu = statistics.median(r["write_cpu"])
            compute = statistics.median(r["compute"])
            cost = "—" if setup == "baseline" else _per_node(r["diffs"], nodes)
            spread = "—" if setup == "baseline" else _spread(r["diffs"], nodes)
            cdiff = (
                ""
                if setup == "baseline"
                else f" ({_per_node(r['compute_diffs'], nodes)})"
            )
            cpu = (
                "—"
                if setup == "baseline"
                else f"{_per_node(r['cpu_diffs'], nodes)} "
                f"({_spread(r['cpu_diffs'], nodes)})"
            )
            split = (
                "—"
                if setup == "baseline"
                else " / ".join(
                    _per_node(r[f"cpu_{part}_diffs"], nodes) for part in CPU_PARTS
                )
            )
            lines.append(
                f"| {setup} | {_ms(statistics.median(r['wall']))} "
                f"({_ms(min(r['wall']))}–{_ms(max(r['wall']))}) | {cost} | {spread} "
                f"| {_ms(write)} / {_ms(write_cpu)} ({write * 1000 / nodes:.3f}"
                f" / {write_cpu * 1000 / nodes:.3f}) "
                f"| {compute * 1000 / nodes:.3f}{cdiff} | {cpu} | {split} |"
            )
            if setup != "baseline":
                for measure, key in (("wall", "diffs"), ("CPU", "cpu_diffs")):
                    per_node = statistics.median(r[key]) * 1000 / nodes
                    verdicts.append((workload, setup, measure, per_node, r[key], nodes))
        lines.append("")
    lines += [
        "## The driver's writing: fixed per run, and per node",
        "",
        "Each file the driver writes, timed in this process for a fan-out of "
        f"{' and '.join(str(n) for n in WRITE_SIZES)} nodes (synthetic records, "
        f"median of {WRITE_REPEATS}); the line through the two sizes splits it "
        "into a cost per run and a cost per node. In the runs above the `viz` "
        "set-up writes the first, `record` all three.",
        "",
        *write_costs_table(writing),
        "",
        "## Targets",
        "",
    ]
    for workload, setup, measure, per_node, diffs, nodes in verdicts:
        if setup == "off":
            q1, _, q3 = statistics.quantiles(diffs, n=4)
            inside = q1 <= 0 <= q3
            lines.append(
                f"- {workload}, off, {measure}: {per_node:+.3f} ms/node vs baseline;"
                " 0 is "
                f"{'inside' if inside else 'outside'} the IQR of the paired "
                f"differences ({q1 * 1000 / nodes:+.3f} … {q3 * 1000 / nodes:+.3f}):"
                f" {'within noise (met)' if inside else 'NOT within noise'}"
            )
        else:
            met = per_node <= TARGET_MS_PER_NODE
            lines.append(
                f"- {workload}, {setup}, {measure}: {per_node:+.3f} ms/node vs "
                "baseline, target "
                f"≤ {TARGET_MS_PER_NODE}: {'met' if met else 'NOT met'}"
            )
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeats < 5:
        raise SystemExit("--repeats: at least 5 rounds")
    env = harness.prepare_environment(args.starter_ref)
    from importlib.metadata import version

    import bokeh
    import workloads

    facts = harness.machine_facts()
    facts["source"] = env.source
    facts["kedro_viz"] = version("kedro-viz")
    facts["bokeh"] = bokeh.__version__
    facts["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    os.chdir(env.project_dir)  # where Kedro-Viz's events file goes
    rng = random.Random(args.seed)
    workloads_ = {
        "W1 fan-out": lambda: workloads.fan_out(args.nodes),
        "W1 chain": lambda: workloads.chain(args.nodes),
    }
    results: dict[str, dict[str, Any]] = {}
    with harness.warm_cluster(env.tmp_dir / "warm", worker_cwd=env.project_dir) as warm:
        ctx = {
            "warm": warm,
            "timer": WriteTimer(),
            "record_path": env.project_dir / "data" / "08_reporting" / "bench.json",
        }
        for name, factory in workloads_.items():
            nodes = len(factory().nodes)
            runs: dict[str, list[dict[str, float]]] = {s: [] for s in SETUPS}
            for setup in SETUPS:  # warm-up: imports (bokeh), first tasks
                run_once(setup, factory, ctx)
            for round_ in range(args.repeats):
                order = list(SETUPS)
                rng.shuffle(order)
                for setup in order:
                    runs[setup].append(run_once(setup, factory, ctx))
                print(
                    f"{name} round {round_ + 1}/{args.repeats}: "
                    + ", ".join(f"{s} {runs[s][-1]['wall']:.3f}s" for s in SETUPS),
                    flush=True,
                )
            results[name] = summarise(runs, nodes)
    writing = write_costs(env.tmp_dir)
    facts["load_end"] = [round(x, 2) for x in os.getloadavg()]
    text = report(results, args, facts, writing)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
