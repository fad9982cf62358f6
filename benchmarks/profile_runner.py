"""Profiles behind the benchmark's misses: where DaskRunner's time goes.

    python benchmarks/profile_runner.py [--out DIR] [--chain N] [--fan-out N]

Needs the same environment as ``run.py`` (it renders the starter and starts its
own warm cluster). Writes ``profile.md`` and ``profile.json`` to ``--out``
(default ``benchmarks/results/``). Sections:

1. Chain: the W1 chain on the warm cluster with Dask's task stream: how long
   each node computes on its worker and how long the cluster takes between one
   node finishing and the next starting; the workers' statistical profile
   (``client.profile``) of the same run; the driver's cProfile.
2. Worker-side cost of one node: ``NodeTask`` (what every Dask task runs)
   unpickled and called in a loop under cProfile.
3. Fan-out scaling: CPU seconds per node of the driver, the scheduler and the
   workers at two sizes, and the driver's cProfile at the larger one.
4. Start-up: the phases of an embedded LocalCluster run, with and without the
   dashboard, and the import time of a bare worker interpreter.
5. W3 data chain: task stream of the 10 x 200 MB chain (compute, transfers,
   placement), the time to bring one array back to the driver and a raw
   loopback TCP transfer of the same size.
6. W2: how the eight 1 s nodes were spread over the two workers.
7. W1 fan-out and Dask's scheduler-side queuing: the fan-out on the warm cluster
   (Dask's default ``worker-saturation``) and on a second warm cluster whose
   scheduler has ``distributed.scheduler.worker-saturation: inf``, interleaved
   with SequentialRunner.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pickle
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results"


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def top_functions(profiler: cProfile.Profile, sort: str, limit: int) -> list[dict]:
    """The ``limit`` heaviest functions of a cProfile run, as plain rows."""
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in (
        stats.stats.items()  # type: ignore[attr-defined]
    ):
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "ncalls": ncalls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
            }
        )
    key = "cumtime_s" if sort == "cumulative" else "tottime_s"
    rows.sort(key=lambda r: r[key], reverse=True)
    return rows[:limit]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "benchmarks/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def profile_tree_self_time(tree: dict, limit: int) -> list[dict]:
    """Flatten a ``distributed`` profile tree into self-sample counts per frame."""
    counts: dict[str, int] = {}
    total = tree.get("count", 0) or 1

    def walk(node: dict) -> None:
        children = node.get("children", {})
        child_count = sum(c.get("count", 0) for c in children.values())
        own = node.get("count", 0) - child_count
        if own > 0:
            ident = node.get("identifier", node.get("description", "?"))
            desc = node.get("description")
            label = (
                f"{_short(desc.get('filename', ''))}:{desc.get('line_number', '')}"
                f"({desc.get('name', '')})"
                if isinstance(desc, dict)
                else str(ident)
            )
            counts[label] = counts.get(label, 0) + own
        for child in children.values():
            walk(child)

    walk(tree)
    rows = [
        {"frame": k, "samples": v, "share": round(v / total, 3)}
        for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
    ]
    return rows[:limit]


def inclusive_share(tree: dict, needles: tuple[str, ...]) -> dict[str, float]:
    """Share of samples whose stack contains a frame matching each needle."""
    total = tree.get("count", 0) or 1
    result = {}
    for needle in needles:

        def walk(node: dict, needle: str = needle) -> int:
            desc = node.get("description")
            name = (
                f"{desc.get('filename', '')}:{desc.get('name', '')}"
                if isinstance(desc, dict)
                else str(desc)
            )
            if needle in name:
                return node.get("count", 0)
            return sum(walk(c) for c in node.get("children", {}).values())

        result[needle] = round(walk(tree) / total, 3)
    return result


def stream_summary(records: list[dict], keys_prefix: str) -> dict[str, Any]:
    """Compute durations, gaps between consecutive nodes, placement and transfers
    from Dask task-stream records of one run's node tasks."""
    computes = []
    transfers = []
    for rec in records:
        if keys_prefix not in str(rec.get("key", "")):
            continue
        for ss in rec.get("startstops", []):
            if ss["action"] == "compute":
                computes.append((ss["start"], ss["stop"], rec.get("worker")))
            elif ss["action"] == "transfer":
                transfers.append(ss["stop"] - ss["start"])
    computes.sort()
    durations = [stop - start for start, stop, _ in computes]
    gaps = [computes[i + 1][0] - computes[i][1] for i in range(len(computes) - 1)]
    switches = sum(
        1 for i in range(len(computes) - 1) if computes[i][2] != computes[i + 1][2]
    )
    ms = 1e3
    return {
        "tasks": len(computes),
        "compute_ms_median": round(statistics.median(durations) * ms, 3)
        if durations
        else None,
        "compute_ms_mean": round(statistics.fmean(durations) * ms, 3)
        if durations
        else None,
        "gap_ms_median": round(statistics.median(gaps) * ms, 3) if gaps else None,
        "gap_ms_mean": round(statistics.fmean(gaps) * ms, 3) if gaps else None,
        "gap_ms_p10": round(_quantile(gaps, 0.1) * ms, 3) if gaps else None,
        "gap_ms_p90": round(_quantile(gaps, 0.9) * ms, 3) if gaps else None,
        "worker_switches": switches,
        "transfers": len(transfers),
        "transfer_s_total": round(sum(transfers), 3),
        "span_s": round(computes[-1][1] - computes[0][0], 3) if computes else None,
    }


def cpu_budget(ctx: Any, run: Any, nodes: int) -> dict[str, Any]:
    """CPU seconds (user + system) the driver, the scheduler, the workers and
    their nannies spend during ``run()``, next to its wall time."""
    import psutil

    roles = {"driver": [psutil.Process()]}
    roles["scheduler"] = [psutil.Process(ctx.warm.scheduler_pid)]
    roles["workers"] = [psutil.Process(p) for p in ctx.warm.worker_pids.values()]
    roles["nannies"] = [psutil.Process(p) for p in ctx.warm.nanny_pids]

    def cpu() -> dict[str, float]:
        return {
            role: sum(sum(p.cpu_times()[:2]) for p in procs)
            for role, procs in roles.items()
        }

    before = cpu()
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    after = cpu()
    used = {role: after[role] - before[role] for role in roles}
    result: dict[str, Any] = {"wall_s": round(wall, 3), "nodes": nodes}
    for role, seconds in used.items():
        result[f"{role}_cpu_s"] = round(seconds, 3)
    total = sum(used.values())
    result["total_cpu_s"] = round(total, 3)
    result["cpu_per_wall"] = round(total / wall, 2) if wall else None
    return result


def _cpu_table(budget: dict[str, Any]) -> str:
    nodes = budget["nodes"]
    rows = []
    for key, value in budget.items():
        if key.endswith("_cpu_s") or key == "wall_s":
            rows.append(
                {
                    "what": key,
                    "seconds": value,
                    "ms/node": round(value / nodes * 1e3, 3),
                }
            )
    rows.append({"what": "cpu_per_wall", "seconds": budget["cpu_per_wall"]})
    return _table(rows, ["what", "seconds", "ms/node"])


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- #
# Sections
# --------------------------------------------------------------------------- #
def chain_profile(ctx: Any, n: int) -> dict[str, Any]:
    import harness
    import workloads
    from distributed import get_task_stream

    client = ctx.warm.control()
    result: dict[str, Any] = {"nodes": n}

    # a) plain timing and the task stream
    pipeline = workloads.chain(n)
    catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=False)
    with get_task_stream(client=client) as stream:
        start = time.perf_counter()
        harness.make_runner(harness.DASK_WARM, ctx).run(pipeline, catalog)
        result["run_s"] = round(time.perf_counter() - start, 3)
    result["ms_per_node"] = round(result["run_s"] / n * 1e3, 3)
    result["task_stream"] = stream_summary(stream.data, "chain_")

    # b) SequentialRunner on the same chain, for the per-node baseline
    pipeline = workloads.chain(n)
    catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=False)
    start = time.perf_counter()
    harness.make_runner(harness.SEQUENTIAL, ctx).run(pipeline, catalog)
    result["sequential_run_s"] = round(time.perf_counter() - start, 3)

    # c) workers' statistical profile of one more run
    pipeline = workloads.chain(n)
    catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=False)
    begin = time.time()
    harness.make_runner(harness.DASK_WARM, ctx).run(pipeline, catalog)
    worker_tree = client.profile(start=begin)
    result["worker_profile_top_self"] = profile_tree_self_time(worker_tree, 15)
    result["worker_profile_inclusive"] = inclusive_share(
        worker_tree,
        (
            "worker.py:__call__",
            "data_catalog.py:__init__",
            "task.py:execute",
            "memory_dataset.py:_infer_copy_mode",
            "pickle",
        ),
    )
    result["worker_profile_samples"] = worker_tree.get("count", 0)

    # d) CPU seconds each process spends on one more run (2 cores to share)
    pipeline = workloads.chain(n)
    catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=False)
    result["cpu_budget"] = cpu_budget(
        ctx,
        lambda: harness.make_runner(harness.DASK_WARM, ctx).run(pipeline, catalog),
        n,
    )

    # e) the driver's cProfile of one more run
    result.update(driver_profile(ctx, workloads.chain(n), top=25))
    return result


def driver_profile(ctx: Any, pipeline: Any, top: int) -> dict[str, Any]:
    """The driver's cProfile of one warm DaskRunner run of ``pipeline``: the
    ``top`` functions by cumulative time and 15 by self time."""
    import harness
    import workloads

    catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=False)
    profiler = cProfile.Profile()
    profiler.enable()
    harness.make_runner(harness.DASK_WARM, ctx).run(pipeline, catalog)
    profiler.disable()
    return {
        "driver_top_cumulative": top_functions(profiler, "cumulative", top),
        "driver_top_self": top_functions(profiler, "tottime", 15),
    }


def node_task_cost(ctx: Any, repeats: int = 3000) -> dict[str, Any]:
    """What one Dask task costs a worker, without the cluster: unpickle a node's
    payload and call it, as the task does, in a loop."""
    import workloads
    from bench_project.runner.dask_runner import _pickled_run_context
    from bench_project.runner.graph import PipelineGraph

    pipeline = workloads.chain(2)
    catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=False)
    for name in pipeline.datasets():
        catalog.get(name, fallback_to_runtime_pattern=True)
    graph = PipelineGraph(pipeline, catalog)
    payload = graph.payload(pipeline.nodes[1])
    # As a task carries it: pickled, unpickled once per worker and run.
    context = _pickled_run_context(None, None, False, None, None, "cost")

    def one() -> Any:
        task = pickle.loads(payload)
        return task(context, 1)

    for _ in range(200):
        one()
    start = time.perf_counter()
    for _ in range(repeats):
        one()
    per_call = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        pickle.loads(payload)
    unpickle = (time.perf_counter() - start) / repeats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        one()
    profiler.disable()

    return {
        "payload_bytes": len(payload),
        "per_node_ms": round(per_call * 1e3, 4),
        "unpickle_ms": round(unpickle * 1e3, 4),
        "top_cumulative": top_functions(profiler, "cumulative", 20),
    }


def fan_out_scaling(ctx: Any, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Where a fan-out's time goes as it grows: CPU seconds per node of each
    process at each size, and the driver's cProfile at the largest size."""
    import harness
    import workloads

    result: dict[str, Any] = {"sizes": list(sizes), "cpu_budget": {}}
    for n in sizes:
        pipeline = workloads.fan_out(n)
        catalog = workloads.catalog(
            pipeline, shared_memory=False, assign_datasets=False
        )
        result["cpu_budget"][n + 1] = cpu_budget(
            ctx,
            lambda p=pipeline, c=catalog: harness.make_runner(
                harness.DASK_WARM, ctx
            ).run(p, c),
            n + 1,
        )
    n = max(sizes)
    result["driver_nodes"] = n + 1
    result.update(driver_profile(ctx, workloads.fan_out(n), top=30))
    return result


def cpu_workload(ctx: Any, nodes: int, seconds: float) -> dict[str, Any]:
    """W2 on the warm cluster with the task stream: how the independent nodes
    were spread over the two workers and how long each worker was busy."""
    import harness
    import workloads
    from distributed import get_task_stream

    iterations = workloads.calibrate_spin(seconds)["iterations"]
    client = ctx.warm.control()
    pipeline = workloads.cpu(nodes, iterations)
    catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=False)
    with get_task_stream(client=client) as stream:
        start = time.perf_counter()
        harness.make_runner(harness.DASK_WARM, ctx).run(pipeline, catalog)
        wall = time.perf_counter() - start
    per_worker: dict[str, dict[str, Any]] = {}
    first_start = None
    for rec in stream.data:
        if "cpu_" not in str(rec.get("key", "")):
            continue
        for ss in rec.get("startstops", []):
            if ss["action"] != "compute":
                continue
            entry = per_worker.setdefault(
                str(rec.get("worker")), {"tasks": 0, "busy_s": 0.0, "last_stop": 0.0}
            )
            entry["tasks"] += 1
            entry["busy_s"] += ss["stop"] - ss["start"]
            entry["last_stop"] = max(entry["last_stop"], ss["stop"])
            first_start = (
                ss["start"] if first_start is None else min(first_start, ss["start"])
            )
    for entry in per_worker.values():
        entry["busy_s"] = round(entry["busy_s"], 3)
        entry["finished_after_s"] = round(entry.pop("last_stop") - first_start, 3)
    return {
        "nodes": nodes,
        "iterations": iterations,
        "wall_s": round(wall, 3),
        "per_worker": per_worker,
    }


def startup_phases(repeats: int = 3) -> dict[str, Any]:
    """Phases of what ``DaskCluster._local_cluster`` + a one-node run do."""
    import harness
    import workloads
    from bench_project.runner import DaskRunner
    from distributed import Client, LocalCluster

    phases: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        phases.setdefault(name, []).append(value)

    for _ in range(repeats):
        for dashboard in ("127.0.0.1:8787", None):
            tag = "dashboard" if dashboard else "no dashboard"
            t0 = time.perf_counter()
            cluster = LocalCluster(
                **harness.LOCAL_CLUSTER_ARGS,
                host="127.0.0.1",
                dashboard_address=dashboard,
            )
            t1 = time.perf_counter()
            client = Client(cluster, set_as_default=True)
            t2 = time.perf_counter()
            pipeline = workloads.single()
            DaskRunner().run(
                pipeline,
                workloads.catalog(pipeline, shared_memory=False, assign_datasets=False),
            )
            t3 = time.perf_counter()
            client.close()
            t4 = time.perf_counter()
            cluster.close()
            t5 = time.perf_counter()
            add(f"LocalCluster start ({tag})", t1 - t0)
            add(f"Client connect ({tag})", t2 - t1)
            add(f"one-node run ({tag})", t3 - t2)
            add(f"client close ({tag})", t4 - t3)
            add(f"cluster close ({tag})", t5 - t4)
            add(f"total ({tag})", t5 - t0)
    imports = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import distributed, kedro.runner, numpy"],
            check=True,
            env=dict(os.environ),
        )
        imports.append(time.perf_counter() - start)
    phases["fresh interpreter: import distributed, kedro.runner, numpy"] = imports
    return {k: round(statistics.median(v), 3) for k, v in phases.items()}


def data_chain_profile(ctx: Any, n: int, elements: int) -> dict[str, Any]:
    import harness
    import workloads
    from distributed import get_task_stream

    client = ctx.warm.control()
    result: dict[str, Any] = {"nodes": n, "mb_per_array": elements * 8 / 1e6}
    for name in (harness.SEQUENTIAL, harness.DASK_WARM):
        pipeline = workloads.data_chain(n, elements)
        catalog = workloads.catalog(pipeline, shared_memory=False, assign_datasets=True)
        with get_task_stream(client=client) as stream:
            start = time.perf_counter()
            harness.make_runner(name, ctx).run(pipeline, catalog)
            result[f"{name} run_s"] = round(time.perf_counter() - start, 3)
        if name == harness.DASK_WARM:
            result["task_stream"] = stream_summary(stream.data, "arr_")
    # the final gather alone: an array of the same size from a worker to the
    # driver (numpy.ones: the plain scheduler can deserialise that task)
    import numpy as np

    future = client.submit(np.ones, elements, pure=False)
    client.gather(client.submit(len, future, pure=False))  # exists on a worker
    start = time.perf_counter()
    future.result()
    result["gather_one_array_s"] = round(time.perf_counter() - start, 3)
    del future
    result["raw_loopback_tcp_s"] = raw_loopback_seconds(elements * 8)
    start = time.perf_counter()
    workloads.add_one(workloads.make_array(elements))
    result["driver make+add_one_s"] = round(time.perf_counter() - start, 3)
    return result


def _receive(port_queue: Any, nbytes: int) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port_queue.put(server.getsockname()[1])
        conn, _ = server.accept()
        with conn:
            buffer = memoryview(bytearray(nbytes))
            got = 0
            while got < nbytes:
                got += conn.recv_into(buffer[got:], min(nbytes - got, 1 << 22))
            conn.sendall(b"k")


def raw_loopback_seconds(nbytes: int) -> float:
    """Seconds to push ``nbytes`` through a plain TCP socket on 127.0.0.1 to
    another process: the floor under any transfer of that size on this machine."""
    import multiprocessing
    import socket

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_receive, args=(queue, nbytes))
    proc.start()
    port = queue.get(timeout=60)
    payload = bytes(nbytes)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        start = time.perf_counter()
        conn.sendall(payload)
        conn.recv(1)
        seconds = time.perf_counter() - start
    proc.join(timeout=30)
    return round(seconds, 3)


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #
def _table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


SATURATION_ENV = "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"


def queuing_experiment(ctx: Any, n: int, repeats: int = 5) -> dict[str, Any]:
    """The W1 fan-out with and without Dask's scheduler-side queuing.

    With one task group per node function, the fan-out's ``n`` tasks form one
    large group with a single dependency: Dask deems them root-ish and, by
    default (``worker-saturation: 1.1``), sends each worker only about one task
    per thread at a time, the next after the previous one is reported done.
    """
    import harness
    import workloads

    os.environ[SATURATION_ENV] = "inf"  # read by the scheduler process it starts
    try:
        unqueued = harness.WarmCluster(2, ctx.env.tmp_dir / "warm-unqueued")
        unqueued.start()
    finally:
        del os.environ[SATURATION_ENV]
    unqueued_ctx = harness.Context(ctx.env, unqueued)
    variants = {
        harness.SEQUENTIAL: (harness.SEQUENTIAL, ctx),
        "DaskRunner (warm, default queuing)": (harness.DASK_WARM, ctx),
        "DaskRunner (warm, worker-saturation inf)": (harness.DASK_WARM, unqueued_ctx),
    }

    def catalog(pipeline: Any, shared: bool) -> Any:
        return workloads.catalog(pipeline, shared_memory=shared, assign_datasets=False)

    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for runner, runner_ctx in variants.values():  # untimed first run
            harness.run_pipeline(
                runner, runner_ctx, lambda: workloads.fan_out(3), catalog
            )
        for _ in range(repeats):
            for name, (runner, runner_ctx) in variants.items():
                result = harness.run_pipeline(
                    runner, runner_ctx, lambda: workloads.fan_out(n), catalog
                )
                times[name].append(round(result.seconds, 3))
    finally:
        unqueued.stop()
    sequential = statistics.median(times[harness.SEQUENTIAL])
    return {
        "nodes": n + 1,
        "runs": repeats,
        "seconds": times,
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "extra_ms_per_node_vs_sequential": {
            k: round((statistics.median(v) - sequential) / (n + 1) * 1e3, 3)
            for k, v in times.items()
            if k != harness.SEQUENTIAL
        },
    }


def markdown(data: dict[str, Any]) -> str:
    parts = ["# DaskRunner profiles\n", f"Machine: {data['machine']}\n"]
    if "chain" in data:
        c = data["chain"]
        parts += [
            f"## 1. W1 chain of {c['nodes']} nodes on the warm cluster\n",
            f"- DaskRunner run {c['run_s']} s ({c['ms_per_node']} ms/node); "
            f"SequentialRunner {c['sequential_run_s']} s.",
            f"- Task stream: {json.dumps(c['task_stream'])}",
            f"- Worker profile: {c['worker_profile_samples']} samples; inclusive "
            f"shares {json.dumps(c['worker_profile_inclusive'])}\n",
            _table(c["worker_profile_top_self"], ["frame", "samples", "share"]),
            "\nCPU seconds per process during one run (ms per node in brackets):\n",
            _cpu_table(c["cpu_budget"]),
            "\nDriver cProfile, top cumulative:\n",
            _table(
                c["driver_top_cumulative"],
                ["function", "ncalls", "tottime_s", "cumtime_s"],
            ),
            "",
        ]
    if "node_task" in data:
        t = data["node_task"]
        parts += [
            "## 2. Worker-side cost of one node (NodeTask, no cluster)\n",
            f"- payload {t['payload_bytes']} bytes; unpickle {t['unpickle_ms']} ms; "
            f"unpickle + run {t['per_node_ms']} ms per node\n",
            _table(
                t["top_cumulative"], ["function", "ncalls", "tottime_s", "cumtime_s"]
            ),
            "",
        ]
    if "fan_out" in data:
        f = data["fan_out"]
        parts.append("## 3. Fan-out on the warm cluster: CPU per node as it grows\n")
        for nodes, budget in f["cpu_budget"].items():
            parts += [f"{nodes} nodes:\n", _cpu_table(budget), ""]
        parts += [
            f"Driver cProfile at {f['driver_nodes']} nodes, top cumulative:\n",
            _table(
                f["driver_top_cumulative"],
                ["function", "ncalls", "tottime_s", "cumtime_s"],
            ),
            "\nTop self time:\n",
            _table(
                f["driver_top_self"], ["function", "ncalls", "tottime_s", "cumtime_s"]
            ),
            "",
        ]
    if "cpu" in data:
        parts += [
            "## 6. W2 CPU workload on the warm cluster: placement\n",
            f"```\n{json.dumps(data['cpu'], indent=2)}\n```\n",
        ]
    if "startup" in data:
        parts += [
            "## 4. Embedded LocalCluster start-up phases (median seconds)\n",
            _table(
                [{"phase": k, "seconds": v} for k, v in data["startup"].items()],
                ["phase", "seconds"],
            ),
            "",
        ]
    if "data_chain" in data:
        parts += [
            "## 5. W3 data chain\n",
            f"```\n{json.dumps(data['data_chain'], indent=2)}\n```\n",
        ]
    if "queuing" in data:
        parts += [
            "## 7. W1 fan-out with and without Dask's scheduler-side queuing\n",
            f"```\n{json.dumps(data['queuing'], indent=2)}\n```\n",
        ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Profile DaskRunner's hot paths.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--chain", type=int, default=500)
    parser.add_argument("--fan-out", default="1000,5000", help="fan-out sizes")
    parser.add_argument("--cpu-seconds", type=float, default=1.0)
    parser.add_argument("--data-elements", type=int, default=25_000_000)
    parser.add_argument(
        "--sections",
        default="chain,node_task,fan_out,cpu,data_chain,queuing,startup",
        help="comma-separated subset of sections",
    )
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    sys.path.insert(0, str(BENCH_DIR))
    import harness

    os.environ.update(harness.quiet_environment())
    env = harness.prepare_environment()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"machine": harness.machine_facts()}
    try:
        profile_sections(env, args, sections, data)
    finally:
        shutil.rmtree(env.tmp_dir, ignore_errors=True)
    (out / "profile.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    (out / "profile.md").write_text(markdown(data), encoding="utf-8")
    print(f"wrote {out / 'profile.md'} and {out / 'profile.json'}", flush=True)
    return 0


def profile_sections(env: Any, args: Any, sections: set[str], data: dict) -> None:
    import harness

    with harness.warm_cluster(env.tmp_dir / "warm-cluster") as warm:
        ctx = harness.Context(env, warm)
        import run as bench_run

        bench_run.warm_up(ctx)
        if "chain" in sections:
            print("profiling the chain ...", flush=True)
            data["chain"] = chain_profile(ctx, args.chain)
        if "node_task" in sections:
            print("profiling NodeTask ...", flush=True)
            data["node_task"] = node_task_cost(ctx)
        if "fan_out" in sections:
            print("profiling the fan-out scaling ...", flush=True)
            sizes = tuple(int(x) for x in args.fan_out.split(","))
            data["fan_out"] = fan_out_scaling(ctx, sizes)
        if "cpu" in sections:
            print("profiling the CPU workload ...", flush=True)
            data["cpu"] = cpu_workload(ctx, 8, args.cpu_seconds)
        if "data_chain" in sections:
            print("profiling the data chain ...", flush=True)
            data["data_chain"] = data_chain_profile(ctx, 10, args.data_elements)
        if "queuing" in sections:
            print("measuring the fan-out with and without queuing ...", flush=True)
            data["queuing"] = queuing_experiment(ctx, 500)
    if "startup" in sections:
        print("profiling start-up ...", flush=True)
        data["startup"] = startup_phases()


if __name__ == "__main__":
    sys.exit(main())
