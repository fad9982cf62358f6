"""Summaries, targets and the three output files of the benchmark.

The report gives its figures in the project's order: **1. as shipped** (the
rendered project's default logging on the driver and the workers), **2. tuned**
(Kedro logging at WARNING everywhere, the workloads W1-W4), **3. the plain-Dask
floor** (the W1 graph shapes without Kedro, on the as-shipped cluster).

``results.json``: machine, settings, target verdicts, the as-shipped
measurements (every timing and line count), the tuned summary rows and every
tuned timing and memory sample, the floor. ``results.md``: the same as markdown
tables. ``benchmark.png``: the as-shipped figures on top (W1 cost per node by
logging set-up with the plain-Dask floor, the quickstart demo's ratios, the
fresh start-ups), the tuned ones below (time relative to SequentialRunner per
workload, cost per node of the W1 fan-out against its size).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from as_shipped import DEMO_DASK, DEMO_SEQUENTIAL
from as_shipped_driver import (
    CLUSTER_OF,
    CONSOLE_DISCARDED,
    PLAIN,
    QUIET_ALL,
    QUIET_WORKERS,
    SEQUENTIAL_SHIPPED,
    SEQUENTIAL_TERMINAL,
    SHIPPED,
    SHIPPED_TERMINAL,
    VARIANTS,
)
from harness import (
    DASK_LOCAL,
    DASK_WARM,
    LOCAL_ONLY,
    PARALLEL,
    RUNNERS,
    SEQUENTIAL,
)

AS_SHIPPED = "as shipped"
TUNED = "tuned"
WORKER_LOGGING_LIMIT = 0.5  # ms per node: default-logging workers over quiet ones
WORKER_LOGGING_TEXT = (
    "Workers at the project's default logging cost <= 0.5 ms of CPU per node more "
    "than workers that log nothing (DaskRunner as shipped with the driver's "
    "console output discarded, so that the run lasts as long, against driver + "
    "workers at WARNING, warm cluster: the workers' CPU time per run above their "
    "idle use, medians)"
)
PLAIN_RATIO_LIMIT = 1.5  # DaskRunner as shipped / plain Dask, W1 fan-out
DEMO_TIME_LIMIT = 1.2  # kedro run with DaskRunner / with SequentialRunner
DEMO_LINES_LIMIT = 1.2
FRESH_START_LIMIT = 1.5  # s, every repetition
# How each warm as-shipped variant logs: (driver, workers).
VARIANT_LOGGING = {
    SHIPPED: ("project default", "project default"),
    QUIET_WORKERS: ("project default", "WARNING"),
    QUIET_ALL: ("WARNING", "WARNING"),
    CONSOLE_DISCARDED: ("project default, output discarded", "project default"),
    PLAIN: ("project default", "project default"),
    SEQUENTIAL_SHIPPED: ("project default", "–"),
    SHIPPED_TERMINAL: ("project default, on a terminal (rich)", "project default"),
    SEQUENTIAL_TERMINAL: ("project default, on a terminal (rich)", "–"),
}

TARGETS = [
    # (id, description, case, runner, metric, threshold)
    (
        "W1 fan-out",
        "DaskRunner (warm) adds <= 1.0 ms per node over Sequential",
        "W1 fan-out",
        DASK_WARM,
        "overhead_ms_per_node",
        1.0,
    ),
    (
        "W1 chain",
        "DaskRunner (warm) adds <= 1.0 ms per node over Sequential",
        "W1 chain",
        DASK_WARM,
        "overhead_ms_per_node",
        1.0,
    ),
    (
        "W2",
        "DaskRunner (warm) <= 0.55x SequentialRunner",
        "W2 CPU",
        DASK_WARM,
        "vs_sequential",
        0.55,
    ),
    (
        "W3 time",
        "DaskRunner (warm) <= 1.25x SequentialRunner",
        "W3 data",
        DASK_WARM,
        "vs_sequential",
        1.25,
    ),
    (
        "W3 vs Parallel",
        "DaskRunner (warm) <= 0.15x ParallelRunner",
        "W3 data",
        DASK_WARM,
        "vs_parallel",
        0.15,
    ),
    (
        "W3 memory",
        "DaskRunner (warm) peak worker memory <= 2.5x one intermediate",
        "W3 data",
        DASK_WARM,
        "worker_net_peak_x",
        2.5,
    ),
    (
        "W4",
        "DaskRunner (LocalCluster) start + run + stop, one node, <= 1.5 s",
        "W4 start-up",
        DASK_LOCAL,
        "median_s",
        1.5,
    ),
]
SCALE_GROWTH_LIMIT = 1.5  # cost per node at the largest size vs at 1,000 nodes


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per record: median, spread, ratios and per-node figures."""
    medians = {(r["case"], r["runner"]): _median(r["times_s"]) for r in records}
    rows = []
    for r in records:
        median = medians[(r["case"], r["runner"])]
        seq = medians.get((r["case"], SEQUENTIAL))
        par = medians.get((r["case"], PARALLEL))
        row: dict[str, Any] = {
            "case": r["case"],
            "workload": r["workload"],
            "runner": r["runner"],
            "nodes": r["nodes"],
            "runs": len(r["times_s"]),
            "median_s": median,
            "min_s": min(r["times_s"]) if r["times_s"] else None,
            "max_s": max(r["times_s"]) if r["times_s"] else None,
            "vs_sequential": (
                median / seq
                if median is not None and seq and r["runner"] != LOCAL_ONLY
                else None
            ),
            "vs_parallel": median / par if median is not None and par else None,
            "skipped": r.get("skipped", ""),
            "note": r.get("note", ""),
        }
        if r["workload"] in ("W1", "W1-scale") and median is not None:
            row["ms_per_node"] = median / r["nodes"] * 1e3
            if seq is not None:
                row["overhead_ms_per_node"] = (median - seq) / r["nodes"] * 1e3
        memory = r.get("memory")
        if memory:
            for key in (
                "worker_net_peak_x",
                "worker_peak_x",
                "worker_net_peak_mb",
                "worker_peak_rss_mb",
                "driver_net_peak_mb",
            ):
                row[key] = _median([m[key] for m in memory])
            managers = [
                m["manager_net_peak_mb"] for m in memory if "manager_net_peak_mb" in m
            ]
            if managers:
                row["manager_net_peak_mb"] = _median(managers)
        if r.get("phases"):
            for key in r["phases"][0]:
                row[f"{key}_median"] = _median([p[key] for p in r["phases"]])
        rows.append(row)
    return rows


def evaluate_targets(rows: list[dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    by_key = {(r["case"], r["runner"]): r for r in rows}
    verdicts = []
    for target_id, text, case, runner, metric, limit in TARGETS:
        row = by_key.get((case, runner))
        value = row.get(metric) if row else None
        verdicts.append(
            {
                "part": TUNED,
                "target": target_id,
                "description": text,
                "metric": metric,
                "threshold": limit,
                "measured": value,
                "met": None if value is None else bool(value <= limit),
                "comparable": not quick,
            }
        )
    verdicts.append(_scale_check(rows, quick))
    return verdicts


def _scale_check(rows: list[dict[str, Any]], quick: bool) -> dict[str, Any]:
    """Flatness of the warm DaskRunner's cost per node over the W1-scale sizes."""
    scale = sorted(
        (
            r
            for r in rows
            if r["workload"] == "W1-scale"
            and r["runner"] == DASK_WARM
            and r.get("ms_per_node") is not None
        ),
        key=lambda r: r["nodes"],
    )
    value = None
    if len(scale) >= 2:
        reference = scale[-2]
        value = scale[-1]["ms_per_node"] / reference["ms_per_node"]
        description = (
            f"DaskRunner (warm) W1-scale cost per node flat: at {scale[-1]['nodes']:,}"
            f" nodes <= {SCALE_GROWTH_LIMIT}x that at {reference['nodes']:,} nodes"
        )
    else:
        description = "DaskRunner (warm) W1-scale cost per node flat"
    return {
        "part": TUNED,
        "target": "W1-scale",
        "description": description,
        "metric": "growth of ms_per_node",
        "threshold": SCALE_GROWTH_LIMIT,
        "measured": value,
        "met": None if value is None else bool(value <= SCALE_GROWTH_LIMIT),
        "comparable": not quick,
    }


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #
def _fmt(value: float | None, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}{suffix}"


def _memory_cell(row: dict[str, Any]) -> str:
    if row.get("worker_net_peak_x") is None:
        return ""
    cell = (
        f"{row['worker_net_peak_x']:.2f}× ({row['worker_net_peak_mb']:.0f} MB net, "
        f"{row['worker_peak_rss_mb']:.0f} MB RSS)"
    )
    if row.get("manager_net_peak_mb") is not None:
        cell += f"; manager {row['manager_net_peak_mb']:.0f} MB net"
    return cell


def results_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Workload | Runner | Nodes | Runs | Median s | Min–max s | × Sequential "
        "| Δ ms/node vs Seq | Peak worker memory (× one intermediate) | Notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        if r["skipped"]:
            lines.append(
                f"| {r['case']} | {r['runner']} | {r['nodes']:,} | 0 | – | – | – | – "
                f"|  | {r['skipped']} |"
            )
            continue
        spread = f"{r['min_s']:.3f}–{r['max_s']:.3f}"
        overhead = r.get("overhead_ms_per_node")
        note = r["note"] if r["runner"] in (SEQUENTIAL, LOCAL_ONLY) else ""
        if r.get("start_s_median") is not None:
            note = (
                f"start {r['start_s_median']:.2f} s + close {r['stop_s_median']:.2f} s"
            )
        lines.append(
            f"| {r['case']} | {r['runner']} | {r['nodes']:,} | {r['runs']} "
            f"| {r['median_s']:.3f} | {spread} | {_fmt(r['vs_sequential'], 2, '×')} "
            f"| {_fmt(overhead, 3) if overhead is not None else ''} "
            f"| {_memory_cell(r)} | {note} |"
        )
    return "\n".join(lines)


def scale_table(rows: list[dict[str, Any]]) -> str:
    """Cost per node (ms, median time / nodes) of the fan-out at each size."""
    fan = [r for r in rows if r["case"] == "W1 fan-out" or r["workload"] == "W1-scale"]
    sizes = sorted({r["nodes"] for r in fan})
    lines = [
        "| Runner | " + " | ".join(f"{n:,} nodes" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for runner in RUNNERS:
        cells = []
        for n in sizes:
            row = next(
                (r for r in fan if r["runner"] == runner and r["nodes"] == n), None
            )
            if row is None or row.get("ms_per_node") is None:
                cells.append("skipped" if row and row["skipped"] else "–")
            else:
                cells.append(f"{row['ms_per_node']:.2f}")
        lines.append(f"| {runner} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# As shipped: summaries and targets
# --------------------------------------------------------------------------- #
def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "runs": len(values),
        "median": _median(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def _worker_cpu_ms_per_node(
    record: dict[str, Any], idle: dict[str, list[float]] | None
) -> dict[str, dict[str, float | None]]:
    """Median CPU milliseconds per node that each variant's runs cost the workers
    they ran on: ``raw``, and ``above_idle``, less what those workers use while
    idle over the run's wall time (``None``: not measured, or SequentialRunner)."""
    cpu: dict[str, dict[str, float | None]] = {"raw": {}, "above_idle": {}}
    per_node = 1e3 / record["nodes"]
    for variant in VARIANTS:
        runs = [
            (c, s)
            for c, s in zip(
                record.get("worker_cpu_s", {}).get(variant, []),
                record["times_s"][variant],
                strict=False,
            )
            if c is not None
        ]
        rates = (idle or {}).get(CLUSTER_OF.get(variant, ""))
        rate = statistics.fmean(rates) if rates else None
        raw = _median([c for c, _ in runs]) if runs else None
        above = _median([c - rate * s for c, s in runs]) if runs and rate else None
        cpu["raw"][variant] = None if raw is None else raw * per_node
        cpu["above_idle"][variant] = None if above is None else above * per_node
    return cpu


def summarise_as_shipped(data: dict[str, Any]) -> dict[str, Any]:
    """Medians, per-node costs and ratios of the as-shipped measurements."""
    summary: dict[str, Any] = {"warm": None, "demo": None, "fresh_start": None}
    warm = data.get("warm")
    if warm:
        rows, costs = [], {}
        for case, record in warm["cases"].items():
            nodes = record["nodes"]
            med = {v: _median(record["times_s"][v]) for v in VARIANTS}
            plain = med[PLAIN]
            for variant in VARIANTS:
                times = record["times_s"][variant]
                driver, workers = VARIANT_LOGGING[variant]
                rows.append(
                    {
                        "case": case,
                        "variant": variant,
                        "driver_logging": driver,
                        "worker_logging": workers,
                        "nodes": nodes,
                        "runs": len(times),
                        "median_s": med[variant],
                        "min_s": min(times),
                        "max_s": max(times),
                        "ms_per_node": med[variant] / nodes * 1e3,
                        "vs_plain": med[variant] / plain if plain else None,
                        "driver_lines": _median(record["driver_lines"][variant]),
                        "worker_lines": _median(record["worker_lines"][variant]),
                    }
                )

            def per_node(a: str, b: str, nodes: int = nodes) -> float:
                return (med[a] - med[b]) / nodes * 1e3  # noqa: B023 - used at once

            idle = warm.get("idle_cpu_per_s")
            cpu = _worker_cpu_ms_per_node(record, idle)
            # Against idle use where it was measured, else the raw CPU time.
            net = cpu["above_idle"] if idle else cpu["raw"]

            costs[case] = {
                "nodes": nodes,
                "worker_logging_ms_per_node": per_node(SHIPPED, QUIET_WORKERS),
                "worker_cpu_ms_per_node": cpu,
                "worker_logging_cpu_ms_per_node": (
                    net[CONSOLE_DISCARDED] - net[QUIET_ALL]
                    if net.get(CONSOLE_DISCARDED) is not None
                    and net.get(QUIET_ALL) is not None
                    else None
                ),
                "driver_logging_ms_per_node": per_node(QUIET_WORKERS, QUIET_ALL),
                "logging_ms_per_node": per_node(SHIPPED, QUIET_ALL),
                "shipped_vs_plain": med[SHIPPED] / plain if plain else None,
                "quiet_all_vs_plain": med[QUIET_ALL] / plain if plain else None,
                "terminal_vs_plain": (med[SHIPPED_TERMINAL] / plain if plain else None),
                "shipped_over_sequential_ms_per_node": per_node(
                    SHIPPED, SEQUENTIAL_SHIPPED
                ),
                "plain_ms_per_node": plain / nodes * 1e3,
            }
        summary["warm"] = {"rows": rows, "costs": costs}
    demo = data.get("demo")
    if demo:
        runners = {}
        for name, runs in demo["runs"].items():
            seconds = _spread([r["seconds"] for r in runs])
            lines = _spread([r["lines"] for r in runs])
            runners[name] = {"seconds": seconds, "lines": lines}
        seq, dask = runners[DEMO_SEQUENTIAL], runners[DEMO_DASK]
        summary["demo"] = {
            "runners": runners,
            "time_ratio": dask["seconds"]["median"] / seq["seconds"]["median"],
            "lines_ratio": dask["lines"]["median"] / seq["lines"]["median"],
        }
    fresh = data.get("fresh_start")
    if fresh:
        runs = fresh["runs"]
        summary["fresh_start"] = {
            "run_s": _spread([r["run_s"] for r in runs]),
            "process_s": _spread([r["process_s"] for r in runs]),
            "bootstrap_s": _spread([r["bootstrap_s"] for r in runs]),
        }
    return summary


def as_shipped_verdicts(summary: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    costs = (summary.get("warm") or {}).get("costs", {})
    demo = summary.get("demo") or {}
    fresh = summary.get("fresh_start") or {}
    specs = [
        (
            "W1 fan-out worker logging",
            WORKER_LOGGING_TEXT,
            "worker_logging_cpu_ms_per_node",
            costs.get("W1 fan-out", {}).get("worker_logging_cpu_ms_per_node"),
            WORKER_LOGGING_LIMIT,
        ),
        (
            "W1 chain worker logging",
            WORKER_LOGGING_TEXT,
            "worker_logging_cpu_ms_per_node",
            costs.get("W1 chain", {}).get("worker_logging_cpu_ms_per_node"),
            WORKER_LOGGING_LIMIT,
        ),
        (
            "W1 fan-out vs plain Dask",
            "DaskRunner as shipped <= 1.5x plain Dask `client.get` of the same "
            "graph shape on the same cluster",
            "ratio",
            costs.get("W1 fan-out", {}).get("shipped_vs_plain"),
            PLAIN_RATIO_LIMIT,
        ),
        (
            "Demo wall time",
            "Quickstart demo: `kedro run --runner dask_demo.runner.DaskRunner` <= "
            "1.2x `kedro run` (SequentialRunner), fresh processes, medians",
            "ratio",
            demo.get("time_ratio"),
            DEMO_TIME_LIMIT,
        ),
        (
            "Demo console lines",
            "Quickstart demo: lines printed by the DaskRunner run <= 1.2x those of "
            "the SequentialRunner run (stdout + stderr, 120 columns, no tty)",
            "ratio",
            demo.get("lines_ratio"),
            DEMO_LINES_LIMIT,
        ),
        (
            "Fresh start-up",
            "Embedded LocalCluster start + one node + stop in a fresh process <= "
            "1.5 s, every repetition (the maximum)",
            "max_s",
            (fresh.get("run_s") or {}).get("max"),
            FRESH_START_LIMIT,
        ),
    ]
    return [
        {
            "part": AS_SHIPPED,
            "target": target,
            "description": text,
            "metric": metric,
            "threshold": limit,
            "measured": value,
            "met": None if value is None else bool(value <= limit),
            "comparable": not quick,
        }
        for target, text, metric, value, limit in specs
    ]


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #
_UNITS = {
    "overhead_ms_per_node": " ms/node",
    "worker_logging_ms_per_node": " ms/node",
    "worker_logging_cpu_ms_per_node": " ms/node",
    "median_s": " s",
    "max_s": " s (max)",
}


def targets_table(verdicts: list[dict[str, Any]]) -> str:
    lines = [
        "| Part | Target | Requirement | Measured | Met |",
        "|---|---|---|---:|---|",
    ]
    for v in verdicts:
        measured = v["measured"]
        if measured is None:
            shown, met = "–", "not measured"
        else:
            shown = f"{measured:.3f}{_UNITS.get(v['metric'], '×')}"
            met = "met" if v["met"] else "**not met**"
        if not v["comparable"]:
            met += " (quick mode: not comparable)"
        lines.append(
            f"| {v['part']} | {v['target']} | {v['description']} | {shown} | {met} |"
        )
    return "\n".join(lines)


def _idle_text(warm: dict[str, Any] | None) -> str:
    idle = (warm or {}).get("idle_cpu_per_s")
    if not idle:
        return "not measured"
    return "measured before and after the timed runs: " + ", ".join(
        f"{name} cluster {' / '.join(f'{r:.3f}' for r in rates)} s per s"
        for name, rates in idle.items()
    )


def _cpu_cell(cpu: dict[str, dict[str, float | None]], variant: str) -> str:
    above, raw = cpu["above_idle"].get(variant), cpu["raw"].get(variant)
    if above is None:
        return _fmt(raw)
    return f"{above:.3f} ({raw:.3f})"


def _lines_cell(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def shipped_costs_table(summary: dict[str, Any]) -> str:
    lines = [
        "| Workload | Nodes | DaskRunner as shipped s | workers at WARNING s "
        "| driver + workers at WARNING s | Worker logging ms/node "
        "| Worker logging, workers' CPU ms/node "
        "| Driver logging ms/node | SequentialRunner as shipped s "
        "| As shipped vs Sequential ms/node |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = {(r["case"], r["variant"]): r for r in summary["rows"]}
    for case, cost in summary["costs"].items():
        cells = [
            f"{rows[(case, v)]['median_s']:.3f}"
            for v in (SHIPPED, QUIET_WORKERS, QUIET_ALL)
        ]
        lines.append(
            f"| {case} | {cost['nodes']:,} | "
            + " | ".join(cells)
            + f" | {cost['worker_logging_ms_per_node']:.3f} "
            f"| {_fmt(cost.get('worker_logging_cpu_ms_per_node'), 3, '')} "
            f"| {cost['driver_logging_ms_per_node']:.3f} "
            f"| {rows[(case, SEQUENTIAL_SHIPPED)]['median_s']:.3f} "
            f"| {cost['shipped_over_sequential_ms_per_node']:.3f} |"
        )
    return "\n".join(lines)


def shipped_variants_table(summary: dict[str, Any]) -> str:
    lines = [
        "| Workload | Variant | Driver logging | Worker logging | Nodes | Runs "
        "| Median s | Min–max s | ms/node | × plain Dask "
        "| Workers' CPU ms/node above idle (all) "
        "| Driver lines/run | Worker lines/run |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cpu = {
        case: cost.get("worker_cpu_ms_per_node") or {"raw": {}, "above_idle": {}}
        for case, cost in summary["costs"].items()
    }
    for r in summary["rows"]:
        lines.append(
            f"| {r['case']} | {r['variant']} | {r['driver_logging']} "
            f"| {r['worker_logging']} | {r['nodes']:,} | {r['runs']} "
            f"| {r['median_s']:.3f} | {r['min_s']:.3f}–{r['max_s']:.3f} "
            f"| {r['ms_per_node']:.3f} | {_fmt(r['vs_plain'], 2, '×')} "
            f"| {_cpu_cell(cpu[r['case']], r['variant'])} "
            f"| {_lines_cell(r['driver_lines'])} | {_lines_cell(r['worker_lines'])} |"
        )
    return "\n".join(lines)


def demo_table(summary: dict[str, Any], data: dict[str, Any]) -> str:
    lines = [
        "| Command | Runs | Median s | Min–max s | Lines (median) | Lines (min–max) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, figures in summary["runners"].items():
        sec, lns = figures["seconds"], figures["lines"]
        lines.append(
            f"| `{data['commands'][name]}` | {sec['runs']} | {sec['median']:.2f} "
            f"| {sec['min']:.2f}–{sec['max']:.2f} | {lns['median']:.0f} "
            f"| {lns['min']}–{lns['max']} |"
        )
    lines.append(
        f"| DaskRunner / SequentialRunner | | {summary['time_ratio']:.2f}× | "
        f"| {summary['lines_ratio']:.2f}× | |"
    )
    return "\n".join(lines)


def fresh_table(data: dict[str, Any], summary: dict[str, Any]) -> str:
    lines = [
        "| Repetition | Start + one node + stop s | Kedro bootstrap s "
        "| Runner import s | Whole process s | Console lines |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i, run in enumerate(data["runs"], 1):
        lines.append(
            f"| {i} | {run['run_s']:.3f} | {run['bootstrap_s']:.3f} "
            f"| {run['import_runner_s']:.3f} | {run['process_s']:.2f} "
            f"| {run['lines']} |"
        )
    run_s, process_s = summary["run_s"], summary["process_s"]
    lines.append(
        f"| median / max | {run_s['median']:.3f} / **{run_s['max']:.3f}** | | "
        f"| {process_s['median']:.2f} / {process_s['max']:.2f} | |"
    )
    return "\n".join(lines)


def floor_table(summary: dict[str, Any], tuned_rows: list[dict[str, Any]]) -> str:
    tuned = {r["case"]: r for r in tuned_rows if r["runner"] == DASK_WARM}
    rows = {(r["case"], r["variant"]): r for r in summary["rows"]}
    lines = [
        "| Workload | Tasks | Plain Dask median s | Min–max s | ms/task "
        "| DaskRunner as shipped × | DaskRunner, driver + workers at WARNING × "
        "| DaskRunner (warm), tuned part × |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, cost in summary["costs"].items():
        plain = rows[(case, PLAIN)]
        tuned_row = tuned.get(case)
        tuned_ratio = (
            tuned_row["median_s"] / plain["median_s"]
            if tuned_row and tuned_row.get("median_s") is not None
            else None
        )
        lines.append(
            f"| {case} | {plain['nodes']:,} | {plain['median_s']:.3f} "
            f"| {plain['min_s']:.3f}–{plain['max_s']:.3f} "
            f"| {cost['plain_ms_per_node']:.3f} | {cost['shipped_vs_plain']:.2f}× "
            f"| {cost['quiet_all_vs_plain']:.2f}× | {_fmt(tuned_ratio, 2, '×')} |"
        )
    return "\n".join(lines)


def _workers_line(states: dict[str, Any]) -> str:
    """The workers' logging, once if they all agree."""
    lines = sorted({_logging_line(state) for state in states.values()})
    return " / ".join(lines) or "–"


def _logging_line(state: dict[str, Any]) -> str:
    levels = ", ".join(f"`{k}` {v}" for k, v in state["levels"].items())
    return f"{levels}; root handlers {', '.join(state['root_handlers']) or 'none'}"


def as_shipped_markdown(
    data: dict[str, Any], summary: dict[str, Any], settings: dict[str, Any]
) -> str:
    shipped = settings.get("as_shipped") or {}
    parts = [
        "## 1. As shipped",
        "",
        "What a user of the rendered project gets: Kedro's logging from the "
        "project's `conf/logging.yml` (`kedro` and the package at INFO, rich "
        "console handler and `info.log`) in the driver and on the workers. Every "
        "process starts from the user's environment (no `KEDRO_LOGGING_CONFIG`, "
        "no `DASK_*` variables, so Dask's default configuration), from the "
        "project root, with `COLUMNS=120` and no tty; DaskRunner options all at "
        "their defaults. With no tty, the project's `kedro run` prints through "
        "the plain `console` handler of `conf/logging.yml` instead of rich's "
        "(`cli.console_logging`); the variants *on a terminal* print through "
        "rich as a terminal would have it (`TTY_COMPATIBLE=1`, rich's own "
        "switch: rich's handler and the live progress display).",
        "",
    ]
    warm = data.get("warm")
    if warm:
        log = warm["logging"]
        after = warm.get("logging_after") or log
        parts += [
            "### W1 on a warm cluster: what logging costs per node",
            "",
            f"- Clusters: `dask scheduler` (default configuration) + 2 workers "
            f"`{warm['worker_command']}`, started once. The as-shipped cluster's "
            "workers run from the project root without `KEDRO_LOGGING_CONFIG`, so "
            "Kedro, once imported there, takes its logging from the project's "
            "`conf/logging.yml`, as `kedro run` does. The quiet "
            "cluster is the tuned part's warm cluster: its workers are configured "
            "at WARNING (`KEDRO_LOGGING_CONFIG=benchmarks/logging.yml` and the "
            "`quiet_logging` preload). The runner may change a worker's levels "
            "during a run; the workers' logging as the timed runs found it "
            f"(as-shipped: {_workers_line(log['shipped_workers'])}; quiet: "
            f"{_workers_line(log['quiet_workers'])}) and as they left it "
            f"(as-shipped: {_workers_line(after['shipped_workers'])}; quiet: "
            f"{_workers_line(after['quiet_workers'])}).",
            "- Driver: a fresh process from the project root that does what "
            "`kedro run` does first (`bootstrap_project`, a hook manager as "
            "`KedroSession` builds it), then, for each run, "
            '`DaskRunner(client_args={"address": ...}).run(pipeline, '
            "DataCatalog(), hook_manager, run_id)` (runner construction and run "
            "timed) with its logging at the project's default "
            f"({_logging_line(log['driver_default'])}) or, for the last DaskRunner "
            f"variant, quietened in place ({_logging_line(log['driver_quiet'])}).",
            "- Plain Dask: the same driver's `client.get(graph, keys)` on the "
            "as-shipped cluster, with a client connected beforehand: fan-out = one "
            'task + n tasks reading it, keys `("noop-<token>", i)`, every result '
            'fetched; chain = n tasks, keys `("noop-<token>", i)`, the last '
            "fetched. Builtin functions (`int`, `operator.pos`).",
            f"- {shipped.get('w1_nodes', '?')} trivial consumers (fan-out) or nodes "
            f"(chain), {shipped.get('repeats', '?')} repetition(s), the six "
            "variants interleaved (each repetition starts from a different one), "
            "after untimed runs of each on pipelines of 3 and 40 nodes; "
            "`gc.collect()` in the driver and on both clusters' workers before "
            "each run. Lines: "
            "what the run added to the driver's console (stdout + stderr) and to "
            "both clusters' worker consoles.",
            "- Worker logging cost = (as shipped − workers at WARNING) / nodes; "
            "driver logging cost = (workers at WARNING − driver + workers at "
            "WARNING) / nodes; medians. Workers' CPU: the CPU time the run cost "
            "the processes of the workers it ran on (`time.process_time` on each, "
            "before and after), per node, less the CPU time those workers use "
            "while idle (Dask's heartbeats, monitors and event-loop ticks, "
            f"{_idle_text(warm)}) over the run's wall time: the "
            "as-shipped runs wait for the driver's console for seconds, during "
            "which idle workers still use it. The worker-logging target compares "
            "it between the as-shipped run whose driver's console output is "
            "discarded (its handlers replaced by a `NullHandler` for the run: "
            "the workers log and send every record as shipped, the driver "
            "receives and handles them, and the run lasts about as long as a "
            "quiet one) and the run whose driver and workers log nothing (the "
            "runner sets the workers' levels to the driver's for a run, so "
            "'workers at WARNING' still log the nodes' INFO records).",
            "",
            shipped_costs_table(summary["warm"]),
            "",
            shipped_variants_table(summary["warm"]),
            "",
        ]
    demo = data.get("demo")
    if demo:
        parts += [
            "### Quickstart demo: `kedro run` in fresh processes",
            "",
            "The README's quickstart: the starter rendered with `kedro new "
            '--starter <repo> --name "Dask Demo" --telemetry no`, then '
            f"`{demo['commands'][DEMO_SEQUENTIAL]}` and "
            f"`{demo['commands'][DEMO_DASK]}` (embedded LocalCluster) from its "
            f"root with the real `kedro` executable, {len(demo['order'])} "
            "repetition(s) interleaved"
            + (" after one untimed run of each" if demo["warmup"] else "")
            + ". Wall time from start to exit; lines = stdout + stderr as a "
            f"console without a tty shows them (`COLUMNS={demo['columns']}`).",
            "",
            demo_table(summary["demo"], demo),
            "",
        ]
    fresh = data.get("fresh_start")
    if fresh:
        parts += [
            "### Embedded start-up in a fresh process",
            "",
            "Each repetition a fresh Python process, started from the demo "
            "project's root, does what `kedro run --runner "
            "dask_demo.runner.DaskRunner` does for a one-node pipeline, in its "
            "order: `bootstrap_project`; the workers' forkserver started, then "
            "the runner (with distributed) imported and Kedro's logging applied "
            "again, as the project's `cli.run` does; a `KedroSession` loading "
            "the context, the pipelines and the catalog; then "
            "`DaskRunner().run(<one trivial node>, catalog, ...)`: the embedded "
            "LocalCluster's start, the node, the cluster's stop (timed). The "
            "whole process's wall time is shown too.",
            "",
            fresh_table(fresh, summary["fresh_start"]),
            "",
        ]
    if not (warm or demo or fresh):
        parts += ["Not run (`--parts` left it out).", ""]
    return "\n".join(parts)


def tuned_markdown(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    if not rows:
        return "## 2. Tuned: Kedro logging at WARNING\n\nNot run (`--parts`).\n"
    sizes = settings["sizes"]
    cal = settings["w2_calibration"]
    logging_info = settings["logging"]
    levels = ", ".join(f"`{k}`={v}" for k, v in logging_info["levels"].items())
    return f"""## 2. Tuned: Kedro logging at WARNING

Kedro's runners against the DaskRunner with every process's logging quietened,
as the benchmark measured until the as-shipped part was added.

### Settings

- Runners: SequentialRunner; ThreadRunner and ParallelRunner with
  `max_workers={settings["pool_workers"]}`; DaskRunner on an embedded LocalCluster
  (`client_args={settings["local_cluster_args"]}`, cluster start and stop timed);
  DaskRunner on a warm cluster (`dask scheduler` + 2 `dask worker --nthreads 1`
  started once before timing, from the project root, `client_args={{"address": ...}}`).
- Timed: constructing the runner and `runner.run(pipeline, catalog)`; pipeline and
  catalog are built before the clock starts. Runners interleaved (each repetition
  runs every runner once, starting from a different one).
- Logging: {levels} in the driver ({logging_info["driver"]}) and on every
  worker ({logging_info["workers"]}); ParallelRunner's forked pool inherits the
  driver's levels. Same for every runner. The driver does not configure the
  project (`kedro.framework.project.PACKAGE_NAME` unset), so the DaskRunner ships
  no code to the warm workers.
- Catalogs: W1, W2, W4 use an empty `DataCatalog` (datasets created by Kedro's
  default runtime pattern); ParallelRunner gets a `SharedMemoryDataCatalog`. W3
  declares every intermediate as `MemoryDataset(copy_mode="assign")` for
  Sequential, Thread and both Dask runners; ParallelRunner must use
  `SharedMemoryDataset` (a plain MemoryDataset cannot carry data between its
  processes).
- Sizes: W1 {sizes["w1_nodes"]:,} nodes; W1-scale fan-out at
  {", ".join(f"{n:,}" for n in sizes["scale_nodes"])} nodes (sizes above
  {sizes["single_run_max_nodes"]:,} run once; ParallelRunner only runs W1 pipelines of
  up to {sizes["parallel_max_nodes"]:,} trivial nodes); W2 {sizes["cpu_nodes"]} nodes of
  {cal["iterations"]:,} loop iterations (calibrated to {sizes["cpu_seconds"]} s,
  check run {cal["measured"]:.3f} s); W3 {sizes["data_nodes"]} nodes of
  {sizes["data_elements"] * 8 / 1e6:g} MB float64 arrays.
- Memory: peak RSS of the busiest worker process minus its idle RSS ("net"),
  sampled every 10 ms. Worker = the driver for Sequential/Thread, a pool process
  for Parallel (its manager process is shown apart), a Dask worker process for
  Dask. Idle RSS = the process's RSS just before the run (driver, warm workers;
  the driver's for Parallel's forked pool) or, for the LocalCluster the runner
  starts, that of an idle worker of such a cluster measured once beforehand.

### Results

{results_table(rows)}

### W1-scale: cost per node (ms = median time / nodes) of the fan-out

{scale_table(rows)}
"""


def floor_markdown(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    warm = summary.get("warm")
    if not warm:
        return "## 3. Plain-Dask floor\n\nNot run (it runs with the as-shipped part).\n"
    return f"""## 3. Plain-Dask floor

The W1 graph shapes run by Dask alone (`client.get` on the as-shipped warm
cluster, measured with the as-shipped variants, see part 1): what any Kedro
runner on this cluster pays at least. "×" = a DaskRunner's median over plain
Dask's; the tuned part's DaskRunner (warm) ran on the quiet cluster at another
time, so its ratio is indicative only.

{floor_table(warm, rows)}
"""


def markdown(
    rows: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    machine: dict[str, Any],
    settings: dict[str, Any],
    as_shipped: dict[str, Any],
    shipped_summary: dict[str, Any],
) -> str:
    source = settings.get("runner_source") or {
        "commit": "unknown",
        "runner_uncommitted_changes": False,
        "dask_runner_options": {},
    }
    dirty = (
        " plus uncommitted changes to the runner"
        if source.get("runner_uncommitted_changes")
        else ""
    )
    if source.get("template_uncommitted_changes") and not dirty:
        dirty = " plus uncommitted changes to the template"
    rendered = source.get("rendered_from", "working tree")
    machine_row = (
        "| "
        + " | ".join(
            [
                str(machine["nproc"]),
                machine["cpu_model"],
                f"{machine['ram_gib']} GiB",
                machine["python"],
                machine["kedro"],
                machine["dask"],
                machine["distributed"],
                machine["numpy"],
            ]
        )
        + " |"
    )
    return f"""# Kedro runners vs DaskRunner: benchmark results

Mode: **{settings["mode"]}**, {settings["repeats"]} repetition(s) per runner
(fresh-process measurements: {settings.get("fresh_repeats", "–")}). Total
benchmark time {settings["total_seconds"]} s.

Figures in the project's order: **1. as shipped** (the rendered project's
default logging, `conf/logging.yml`, on the driver and on the workers), **2.
tuned** (Kedro logging at WARNING everywhere), **3. the plain-Dask floor** (the
same graph shapes without Kedro, on the same cluster).

## Machine

| nproc | CPU | RAM | Python | kedro | dask | distributed | numpy |
|---:|---|---:|---|---|---|---|---|
{machine_row}

Load average (1, 5, 15 min) when the benchmark started:
{machine["load_average_at_start"]}; when it ended: {machine.get("load_average_at_end")}.

DaskRunner measured: repository commit `{source["commit"]}`{dirty}, rendered from
the {rendered}; options set by the tuned part: `{source.get("dask_runner_options")}`
(all others default; the as-shipped part sets none). Dask's
`distributed.scheduler.worker-saturation`: {settings.get("worker_saturation")}.

## Targets

{targets_table(verdicts)}

{as_shipped_markdown(as_shipped, shipped_summary, settings)}
{tuned_markdown(rows, settings)}
{floor_markdown(shipped_summary, rows)}"""


# --------------------------------------------------------------------------- #
# Chart
# --------------------------------------------------------------------------- #
_VARIANT_COLOURS = {
    PLAIN: "#999999",
    QUIET_ALL: "#55a868",
    CONSOLE_DISCARDED: "#8172b3",
    QUIET_WORKERS: "#dd8452",
    SHIPPED: "#c44e52",
    SEQUENTIAL_SHIPPED: "#4c72b0",
    SHIPPED_TERMINAL: "#e8a0a2",
    SEQUENTIAL_TERMINAL: "#a6bddb",
}


def _annotate(ax: Any, bars: Any, values: list[float], fmt: str) -> None:
    for bar, y in zip(bars, values, strict=True):
        ax.annotate(
            fmt.format(y),
            (bar.get_x() + bar.get_width() / 2, y),
            ha="center",
            va="bottom",
            fontsize=6,
            xytext=(0, 2),
            textcoords="offset points",
        )


def _chart_shipped_w1(ax: Any, summary: dict[str, Any] | None) -> None:
    ax.set_title("As shipped: W1, warm cluster (ms per node)", fontsize=9)
    if not summary:
        ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
        return
    cases = list(summary["costs"])
    order = [
        PLAIN,
        QUIET_ALL,
        CONSOLE_DISCARDED,
        QUIET_WORKERS,
        SHIPPED,
        SEQUENTIAL_SHIPPED,
        SHIPPED_TERMINAL,
        SEQUENTIAL_TERMINAL,
    ]
    width = 0.8 / len(order)
    rows = {(r["case"], r["variant"]): r for r in summary["rows"]}
    for i, variant in enumerate(order):
        xs = [j + (i - (len(order) - 1) / 2) * width for j in range(len(cases))]
        ys = [rows[(c, variant)]["ms_per_node"] for c in cases]
        bars = ax.bar(xs, ys, width, label=variant, color=_VARIANT_COLOURS[variant])
        _annotate(ax, bars, ys, "{:.2f}")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases)
    ax.set_ylabel("median time / nodes (ms)")
    ax.legend(fontsize=6, loc="upper right")


def _chart_demo(ax: Any, summary: dict[str, Any] | None) -> None:
    ax.set_title("As shipped: quickstart demo, DaskRunner / Sequential", fontsize=9)
    if not summary:
        ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
        return
    values = [summary["time_ratio"], summary["lines_ratio"]]
    bars = ax.bar(["wall time", "console lines"], values, 0.5, color="#c44e52")
    _annotate(ax, bars, values, "{:.2f}×")
    ax.axhline(DEMO_TIME_LIMIT, color="black", linestyle="--", linewidth=0.8)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.text(1.45, DEMO_TIME_LIMIT, "target", fontsize=6, va="bottom", ha="right")
    ax.set_ylabel("kedro run with DaskRunner / with SequentialRunner")
    ax.set_ylim(0, max([*values, DEMO_TIME_LIMIT]) * 1.25)


def _chart_fresh(ax: Any, data: dict[str, Any] | None) -> None:
    ax.set_title("As shipped: embedded start + one node + stop", fontsize=9)
    if not data:
        ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
        return
    runs = data["runs"]
    xs = list(range(1, len(runs) + 1))
    process = [r["process_s"] for r in runs]
    run_s = [r["run_s"] for r in runs]
    ax.bar(xs, process, 0.6, color="#cccccc", label="whole fresh process")
    bars = ax.bar(xs, run_s, 0.4, color="#c44e52", label="start + node + stop")
    _annotate(ax, bars, run_s, "{:.2f}")
    ax.axhline(FRESH_START_LIMIT, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xlabel("repetition (each a fresh process)")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=6, loc="upper right")


def chart(
    path: Path,
    rows: list[dict[str, Any]],
    machine: dict[str, Any],
    settings: dict[str, Any],
    as_shipped: dict[str, Any] | None = None,
    shipped_summary: dict[str, Any] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    as_shipped = as_shipped or {}
    shipped_summary = shipped_summary or {}
    fig = plt.figure(figsize=(15, 10))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1])
    _chart_shipped_w1(fig.add_subplot(grid[0, 0]), shipped_summary.get("warm"))
    _chart_demo(fig.add_subplot(grid[0, 1]), shipped_summary.get("demo"))
    _chart_fresh(fig.add_subplot(grid[0, 2]), as_shipped.get("fresh_start"))
    left = fig.add_subplot(grid[1, 0:2])
    right = fig.add_subplot(grid[1, 2])

    cases = [
        c
        for c in ("W1 fan-out", "W1 chain", "W2 CPU", "W3 data", "W4 start-up")
        if any(r["case"] == c for r in rows)
    ]
    by_key = {(r["case"], r["runner"]): r for r in rows}
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    width = 0.8 / len(RUNNERS)
    for i, runner in enumerate(RUNNERS):
        xs, ys = [], []
        for j, case in enumerate(cases):
            row = by_key.get((case, runner))
            if row and row.get("vs_sequential"):
                xs.append(j + (i - (len(RUNNERS) - 1) / 2) * width)
                ys.append(row["vs_sequential"])
        bars = left.bar(xs, ys, width, label=runner, color=colours[i])
        for bar, y in zip(bars, ys, strict=True):
            left.annotate(
                f"{y:.2g}",
                (bar.get_x() + bar.get_width() / 2, y),
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
                xytext=(0, 2),
                textcoords="offset points",
            )
    left.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    left.set_yscale("log")
    left.set_xticks(range(len(cases)))
    left.set_xticklabels(cases)
    left.set_ylabel("median time / SequentialRunner median (log)")
    left.set_title(
        "Tuned (logging at WARNING): time relative to SequentialRunner "
        "(lower is better)",
        fontsize=9,
    )
    if rows:
        left.legend(fontsize=7, loc="upper left")

    fan = [
        r
        for r in rows
        if (r["case"] == "W1 fan-out" or r["workload"] == "W1-scale")
        and r.get("ms_per_node") is not None
    ]
    for i, runner in enumerate(RUNNERS):
        points = sorted(
            (r["nodes"], r["ms_per_node"]) for r in fan if r["runner"] == runner
        )
        if points:
            right.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                label=runner,
                color=colours[i],
            )
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("nodes in the fan-out pipeline")
    right.set_ylabel("median time / nodes (ms, log)")
    right.set_title("Tuned: W1-scale cost per node (flat = linear)", fontsize=9)
    right.grid(True, which="both", alpha=0.3)
    if fan:
        right.legend(fontsize=7)
    fig.suptitle(
        f"Kedro {machine['kedro']} runners vs DaskRunner — {machine['nproc']} cores "
        f"({machine['cpu_model']}), distributed {machine['distributed']}, "
        f"{settings['mode']} mode, {settings['repeats']} repetition(s); "
        "top: as shipped, bottom: tuned",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(
    out: Path,
    records: list[dict[str, Any]],
    machine: dict[str, Any],
    settings: dict[str, Any],
    as_shipped: dict[str, Any] | None = None,
) -> list[Path]:
    as_shipped = as_shipped or {}
    quick = settings["mode"] == "quick"
    rows = summarise(records)
    shipped_summary = summarise_as_shipped(as_shipped)
    verdicts = as_shipped_verdicts(shipped_summary, quick)
    if rows:
        verdicts += evaluate_targets(rows, quick)
    md_path, json_path, png_path = (
        out / "results.md",
        out / "results.json",
        out / "benchmark.png",
    )
    md_path.write_text(
        markdown(rows, verdicts, machine, settings, as_shipped, shipped_summary),
        encoding="utf-8",
    )
    floor = None
    if shipped_summary.get("warm"):
        floor = {
            "cases": {
                case: {
                    "tasks": cost["nodes"],
                    "median_s": next(
                        r["median_s"]
                        for r in shipped_summary["warm"]["rows"]
                        if r["case"] == case and r["variant"] == PLAIN
                    ),
                    "ms_per_task": cost["plain_ms_per_node"],
                    "shipped_vs_plain": cost["shipped_vs_plain"],
                    "quiet_all_vs_plain": cost["quiet_all_vs_plain"],
                }
                for case, cost in shipped_summary["warm"]["costs"].items()
            }
        }
    json_path.write_text(
        json.dumps(
            {
                "machine": machine,
                "settings": settings,
                "sections": ["as_shipped", "tuned", "floor"],
                "targets": verdicts,
                "as_shipped": {"summary": shipped_summary, "data": as_shipped},
                "summary": rows,
                "runs": records,
                "floor": floor,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    chart(png_path, rows, machine, settings, as_shipped, shipped_summary)
    return [md_path, json_path, png_path]
