"""Benchmark Kedro's runners against the starter's DaskRunner.

    python benchmarks/run.py                 # full size, 3 repetitions
    python benchmarks/run.py --quick         # tiny sizes, 1 repetition (tests)
    python benchmarks/run.py --repeats 5 --out /tmp/bench
    python benchmarks/run.py --starter-ref HEAD   # the committed starter

Measures, in this order in the report: 1. the rendered project as shipped
(its default logging on the driver and the workers: the quickstart demo and
the embedded start-up in fresh processes, W1 on a warm cluster), 2. the tuned
set-up (logging at WARNING everywhere, workloads W1-W4), 3. plain Dask on the
W1 graph shapes (the floor). Writes ``results.md`` (tables), ``results.json``
(every timing) and ``benchmark.png`` (chart) to ``--out`` (default
``benchmarks/results/``). See ``benchmarks/README.md`` for what each part measures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results"


@dataclass(frozen=True)
class Sizes:
    w1_nodes: int
    scale_nodes: tuple[int, ...]
    cpu_nodes: int
    cpu_seconds: float
    data_nodes: int
    data_elements: int  # float64 items of one W3 intermediate
    single_run_max_nodes: int  # W1-scale sizes above this run once
    parallel_max_nodes: int  # ParallelRunner runs W1 / W1-scale up to this size
    fresh_repeats: int  # as shipped: fresh processes of the demo and start-up
    demo_warmup: bool  # as shipped: one untimed kedro run of each runner first


FULL = Sizes(
    w1_nodes=500,
    scale_nodes=(100, 1_000, 5_000),
    cpu_nodes=8,
    cpu_seconds=1.0,
    data_nodes=10,
    data_elements=25_000_000,  # 200 MB
    single_run_max_nodes=1_000,
    parallel_max_nodes=100,
    fresh_repeats=5,
    demo_warmup=True,
)
QUICK = Sizes(
    w1_nodes=10,
    scale_nodes=(5, 20, 40),
    cpu_nodes=2,
    cpu_seconds=0.05,
    data_nodes=3,
    data_elements=125_000,  # 1 MB
    single_run_max_nodes=20,
    parallel_max_nodes=10,
    fresh_repeats=1,
    demo_warmup=False,
)
PARTS = ("as-shipped", "tuned")


@dataclass
class Case:
    """One workload at one size, run by each runner ``repeats`` times."""

    key: str
    workload: str
    nodes: int
    pipeline: Any  # () -> Pipeline
    repeats: int
    assign: bool = False
    memory_unit: int | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    extra_runners: list[str] = field(default_factory=list)
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repetitions (default 3; 1 quick)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--fresh-repeats",
        type=int,
        default=None,
        help="fresh processes per as-shipped demo runner and start-up "
        "(default 5; 1 quick)",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated parts to run: as-shipped (with the plain-Dask "
        "floor), tuned (default both)",
    )
    parser.add_argument(
        "--starter-ref",
        default=None,
        help="render the starter as committed at this git ref (git archive) "
        "instead of the working tree",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated tuned workload prefixes to run (e.g. W1,W4); "
        "for debugging",
    )
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    sizes = QUICK if args.quick else FULL
    if args.fresh_repeats is None:
        args.fresh_repeats = sizes.fresh_repeats
    if args.repeats < 1 or args.fresh_repeats < 1:
        parser.error("--repeats and --fresh-repeats must be at least 1")
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown or not args.parts:
        parser.error(f"--parts takes {', '.join(PARTS)}; got {args.parts}")
    return args


def build_cases(sizes: Sizes, repeats: int, cpu_iterations: int) -> list[Case]:
    import harness
    import workloads

    n = sizes.w1_nodes
    parallel_skip = {
        harness.PARALLEL: (
            f"skipped: ParallelRunner runs W1 pipelines of at most "
            f"{sizes.parallel_max_nodes:,} trivial nodes (cost per node grows with "
            f"the catalog size, see README)"
        )
    }
    cases = [
        Case("W1 fan-out", "W1", n + 1, partial(workloads.fan_out, n), repeats),
        Case("W1 chain", "W1", n, partial(workloads.chain, n), repeats),
    ]
    for size in sizes.scale_nodes:
        case = Case(
            f"W1-scale {size}",
            "W1-scale",
            size + 1,
            partial(workloads.fan_out, size),
            repeats if size <= sizes.single_run_max_nodes else 1,
        )
        if size > sizes.single_run_max_nodes:
            case.note = f"1 repetition (sizes above {sizes.single_run_max_nodes:,})"
        cases.append(case)
    for case in cases:
        if case.nodes - 1 > sizes.parallel_max_nodes:
            case.skipped.update(parallel_skip)
    cases.append(
        Case(
            "W2 CPU",
            "W2",
            sizes.cpu_nodes,
            partial(workloads.cpu, sizes.cpu_nodes, cpu_iterations),
            repeats,
        )
    )
    unit = sizes.data_elements * 8
    cases.append(
        Case(
            "W3 data",
            "W3",
            sizes.data_nodes,
            partial(workloads.data_chain, sizes.data_nodes, sizes.data_elements),
            repeats,
            assign=True,
            memory_unit=unit,
            note=(
                'intermediates MemoryDataset(copy_mode="assign"); ParallelRunner: '
                "SharedMemoryDataset"
            ),
        )
    )
    cases.append(
        Case(
            "W4 start-up",
            "W4",
            1,
            workloads.single,
            repeats,
            extra_runners=[harness.LOCAL_ONLY],
            note="one trivial node; LocalCluster only: start + close, no client/run",
        )
    )
    return cases


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(BENCH_DIR))
    import harness

    # Before dask / kedro.framework.project are imported anywhere.
    os.environ.update(harness.quiet_environment())
    env = harness.prepare_environment(args.starter_ref)

    import dask.config
    import report
    import workloads

    sizes = QUICK if args.quick else FULL
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    machine = harness.machine_facts()
    print(f"Machine: {machine}", flush=True)
    print(f"Starter: {env.source}", flush=True)

    cases: list[Case] = []
    calibration = {"iterations": 0, "measured": 0.0}
    if "tuned" in args.parts:
        calibration = workloads.calibrate_spin(sizes.cpu_seconds)
        print(f"W2 calibration: {calibration}", flush=True)
        cases = build_cases(sizes, args.repeats, calibration["iterations"])
        if args.only:
            prefixes = tuple(p.strip() for p in args.only.split(",") if p.strip())
            cases = [c for c in cases if c.key.startswith(prefixes)]

    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    as_shipped_data: dict[str, Any] = {}
    try:
        if "as-shipped" in args.parts:
            # Fresh processes first, while no warm cluster idles next to them.
            as_shipped_data.update(run_fresh_processes(env, sizes, args))
        with harness.warm_cluster(
            env.tmp_dir / "warm-cluster", worker_cwd=env.project_dir
        ) as warm:
            ctx = harness.Context(env, warm)
            print(f"Warm cluster: {warm.address}, workers {warm.worker_pids}")
            if "as-shipped" in args.parts:
                import as_shipped

                as_shipped_data["warm"] = as_shipped.time_warm(
                    env, warm, sizes.w1_nodes, args.repeats, _say
                )
            if cases:
                warm_up(ctx)
                for case in cases:
                    records.extend(run_case(case, ctx))
    finally:
        shutil.rmtree(env.tmp_dir, ignore_errors=True)
    total = time.perf_counter() - started
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    settings = {
        "mode": "quick" if args.quick else "full",
        "parts": args.parts,
        "repeats": args.repeats,
        "fresh_repeats": args.fresh_repeats,
        "sizes": sizes.__dict__,
        "w2_calibration": calibration,
        "local_cluster_args": harness.LOCAL_CLUSTER_ARGS,
        "runner_source": env.source,
        "pool_workers": harness.POOL_WORKERS,
        "worker_saturation": dask.config.get(
            "distributed.scheduler.worker-saturation", None
        ),
        "as_shipped": {
            "w1_nodes": sizes.w1_nodes,
            "repeats": args.repeats,
            "fresh_repeats": args.fresh_repeats,
            "demo_warmup": sizes.demo_warmup,
            "console_columns": harness.CONSOLE_COLUMNS,
        },
        "logging": {
            "levels": env.logging_levels,
            "driver": f"KEDRO_LOGGING_CONFIG={harness.LOGGING_YML.name}",
            "workers": "quiet_logging preload (DASK_DISTRIBUTED__WORKER__PRELOAD)"
            " + client.run(quiet_logging.apply) on the warm cluster",
        },
        "total_seconds": round(total, 1),
    }
    paths = report.write_all(out, records, machine, settings, as_shipped_data)
    for path in paths:
        print(f"wrote {path}", flush=True)
    print(f"Benchmark finished in {total:.0f} s", flush=True)
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def run_fresh_processes(env: Any, sizes: Sizes, args: Any) -> dict[str, Any]:
    """The as-shipped measurements in fresh processes: the quickstart demo's
    ``kedro run`` with each runner, and the embedded start-up."""
    import as_shipped

    demo = as_shipped.render_demo(env.starter_dir, env.tmp_dir / "demo")
    print(f"Quickstart demo rendered: {demo}", flush=True)
    return {
        "demo": as_shipped.time_demo(demo, args.fresh_repeats, sizes.demo_warmup, _say),
        "fresh_start": as_shipped.time_fresh_start(demo, args.fresh_repeats, _say),
    }


def warm_up(ctx: Any) -> None:
    """One untimed tiny run per runner: imports and first-use costs are paid
    before any timing, on the driver, the warm workers and the disk cache."""
    import harness
    import workloads

    for name in harness.RUNNERS:
        for factory in (
            workloads.single,
            partial(workloads.fan_out, 3),
            partial(workloads.data_chain, 2, 1_000),
        ):
            harness.run_pipeline(name, ctx, factory, _catalog_factory(True))


def _catalog_factory(assign: bool) -> Any:
    import workloads

    def factory(pipeline: Any, shared_memory: bool) -> Any:
        return workloads.catalog(
            pipeline, shared_memory=shared_memory, assign_datasets=assign
        )

    return factory


def run_case(case: Case, ctx: Any) -> list[dict[str, Any]]:
    """Run ``case`` with every runner, interleaved: each repetition runs every
    runner once, starting from a different runner each time."""
    import harness

    all_names = [*harness.RUNNERS, *case.extra_runners]
    names = [n for n in all_names if n not in case.skipped]
    timings: dict[str, list[float]] = {n: [] for n in names}
    memory: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    phases: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    order_log = []
    for rep in range(case.repeats):
        shift = rep % len(names)
        order = names[shift:] + names[:shift]
        order_log.append(order)
        for name in order:
            if name == harness.LOCAL_ONLY:
                result = harness.time_local_cluster_only()
            else:
                result = harness.run_pipeline(
                    name,
                    ctx,
                    case.pipeline,
                    _catalog_factory(case.assign),
                    case.memory_unit,
                )
            timings[name].append(result.seconds)
            if result.memory:
                memory[name].append(result.memory)
            if result.extra:
                phases[name].append(result.extra)
            mem = (
                f"  worker net peak {result.memory['worker_net_peak_x']}x"
                if result.memory
                else ""
            )
            print(
                f"{case.key:<16} rep {rep + 1}/{case.repeats} {name:<28} "
                f"{result.seconds:8.3f} s{mem}",
                flush=True,
            )
    records = []
    for name in all_names:
        record = {
            "case": case.key,
            "workload": case.workload,
            "runner": name,
            "nodes": case.nodes,
            "repeats": case.repeats,
            "note": case.note,
            "order": order_log,
        }
        if name in case.skipped:
            record.update(times_s=[], skipped=case.skipped[name])
        else:
            record.update(
                times_s=timings[name],
                memory=memory[name] or None,
                phases=phases[name] or None,
            )
        records.append(record)
    return records


if __name__ == "__main__":
    sys.exit(main())
