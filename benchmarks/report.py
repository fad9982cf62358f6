"""Summaries, targets and the three output files of the benchmark.

``results.json``: machine, settings, every timing and memory sample, summary
rows and target verdicts. ``results.md``: the same as markdown tables.
``benchmark.png``: time relative to SequentialRunner per workload, and the cost
per node of the W1 fan-out against its size.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from harness import (
    DASK_LOCAL,
    DASK_WARM,
    LOCAL_ONLY,
    PARALLEL,
    RUNNERS,
    SEQUENTIAL,
)

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


def targets_table(verdicts: list[dict[str, Any]]) -> str:
    lines = ["| Target | Requirement | Measured | Met |", "|---|---|---:|---|"]
    for v in verdicts:
        measured = v["measured"]
        if measured is None:
            shown, met = "–", "not measured"
        else:
            unit = {"overhead_ms_per_node": " ms/node", "median_s": " s"}.get(
                v["metric"], "×"
            )
            shown = f"{measured:.3f}{unit}"
            met = "met" if v["met"] else "**not met**"
        if not v["comparable"]:
            met += " (quick mode: not comparable)"
        lines.append(f"| {v['target']} | {v['description']} | {shown} | {met} |")
    return "\n".join(lines)


def markdown(
    rows: list[dict[str, Any]],
    verdicts: list[dict[str, Any]],
    machine: dict[str, Any],
    settings: dict[str, Any],
) -> str:
    sizes = settings["sizes"]
    cal = settings["w2_calibration"]
    logging_info = settings["logging"]
    levels = ", ".join(f"`{k}`={v}" for k, v in logging_info["levels"].items())
    source = settings.get("runner_source") or {
        "commit": "unknown",
        "runner_uncommitted_changes": False,
        "dask_runner_options": {},
    }
    dirty = (
        " plus uncommitted changes to the runner"
        if source["runner_uncommitted_changes"]
        else ""
    )
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

Mode: **{settings["mode"]}**, {settings["repeats"]} repetition(s) per runner, runners
interleaved (each repetition runs every runner once, starting from a different one).
Total benchmark time {settings["total_seconds"]} s.

## Machine

| nproc | CPU | RAM | Python | kedro | dask | distributed | numpy |
|---:|---|---:|---|---|---|---|---|
{machine_row}

Load average (1, 5, 15 min) when the benchmark started:
{machine["load_average_at_start"]}; when it ended: {machine.get("load_average_at_end")}.

## Settings

- DaskRunner measured: repository commit `{source["commit"]}`{dirty}; options
  set by the benchmark: `{source["dask_runner_options"]}` (all others default).
- Runners: SequentialRunner; ThreadRunner and ParallelRunner with
  `max_workers={settings["pool_workers"]}`; DaskRunner on an embedded LocalCluster
  (`client_args={settings["local_cluster_args"]}`, cluster start and stop timed);
  DaskRunner on a warm cluster (`dask scheduler` + 2 `dask worker --nthreads 1`
  started once before timing, `client_args={{"address": ...}}`).
- Timed: constructing the runner and `runner.run(pipeline, catalog)`; pipeline and
  catalog are built before the clock starts.
- Logging: {levels} in the driver ({logging_info["driver"]}) and on every
  worker ({logging_info["workers"]}); ParallelRunner's forked pool inherits the
  driver's levels. Same for every runner.
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

## Targets

{targets_table(verdicts)}

## Results

{results_table(rows)}

## W1-scale: cost per node (ms = median time / nodes) of the fan-out

{scale_table(rows)}
"""


# --------------------------------------------------------------------------- #
# Chart
# --------------------------------------------------------------------------- #
def chart(
    path: Path,
    rows: list[dict[str, Any]],
    machine: dict[str, Any],
    settings: dict[str, Any],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [
        c
        for c in ("W1 fan-out", "W1 chain", "W2 CPU", "W3 data", "W4 start-up")
        if any(r["case"] == c for r in rows)
    ]
    by_key = {(r["case"], r["runner"]): r for r in rows}
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 2]}
    )
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
    left.set_title("Time relative to SequentialRunner (lower is better)")
    left.legend(fontsize=8, loc="upper left")

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
    right.set_title("W1-scale: cost per node (flat = linear)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(
        f"Kedro {machine['kedro']} runners vs DaskRunner — {machine['nproc']} cores "
        f"({machine['cpu_model']}), distributed {machine['distributed']}, "
        f"{settings['mode']} mode, {settings['repeats']} repetition(s)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_all(
    out: Path,
    records: list[dict[str, Any]],
    machine: dict[str, Any],
    settings: dict[str, Any],
) -> list[Path]:
    rows = summarise(records)
    verdicts = evaluate_targets(rows, quick=settings["mode"] == "quick")
    md_path, json_path, png_path = (
        out / "results.md",
        out / "results.json",
        out / "benchmark.png",
    )
    md_path.write_text(markdown(rows, verdicts, machine, settings), encoding="utf-8")
    json_path.write_text(
        json.dumps(
            {
                "machine": machine,
                "settings": settings,
                "targets": verdicts,
                "summary": rows,
                "runs": records,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    chart(png_path, rows, machine, settings)
    return [md_path, json_path, png_path]
