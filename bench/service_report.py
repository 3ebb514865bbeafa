"""bench/bench_service.py's results: per-round cells, the markdown tables with medians and
per-round ratios, the JSON written to bench/results/service.json, and the concurrency chart."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import charts

ROOT = Path(__file__).resolve().parents[1]
NAIVE, INFINITY = "naive ST torch", "infinity int8"
NAME = "service"


@dataclass(frozen=True)
class Workload:
    concurrency: int
    per_request: int  # texts per request

    @property
    def name(self) -> str:
        texts = "1 text" if self.per_request == 1 else f"{self.per_request} texts"
        return f"{texts}, c={self.concurrency}"


@dataclass
class Cell:
    """One system on one workload, one value per round."""

    sps: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # server CPU per request, all threads
    loop_ms: list[float] = field(default_factory=list)  # of it, the main (event-loop) thread
    client_ms: list[float] = field(default_factory=list)  # the load generator's CPU per request
    batch: list[float] = field(default_factory=list)  # ours: mean inputs per model call
    errors: int = 0
    first_error: str = ""


# --- report --------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratios(a: list[float], b: list[float], op: Callable[[float, float], float]) -> float:
    """Median over rounds of op(a_round, b_round); a failed round (a zero) counts as nan."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x and y]
    return med([op(x, y) for x, y in pairs]) if len(pairs) == len(a) else float("nan")


def fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in load)


@dataclass
class Run:
    args: argparse.Namespace
    workloads: list[Workload]
    servers: list[str]
    cells: dict[tuple[str, str], Cell]
    library: dict[str, dict[str, list[float]]]  # backend -> b1_p50_ms, b1_sps, b32_sps
    loads: list[tuple[float, float, float]]
    notes: list[str]


def table_main(run: Run) -> list[str]:
    lines = [
        "| workload | system | req/s | sentences/s | p50 ms | p99 ms | server CPU ms/req "
        "| of it main thread | inputs per model call | client CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for wl in run.workloads:
        for name in run.servers:
            c = run.cells[(wl.name, name)]
            batch = f"{med(c.batch):.1f}" if c.batch else "-"
            lines.append(
                f"| {wl.name} | {name} | {med(c.rps):.1f} | {med(c.sps):.1f} | {med(c.p50):.2f} "
                f"| {med(c.p99):.2f} | {med(c.cpu_ms):.2f} | {med(c.loop_ms):.2f} "
                f"| {batch} | {med(c.client_ms):.2f} | {c.errors} |"
            )
    return lines


def table_library(run: Run) -> list[str]:
    lines = [
        "| library in-process | batch-1 p50 ms | batch-1 sentences/s | batch-32 sentences/s |",
        "|---|---:|---:|---:|",
    ]
    for backend, lib in run.library.items():
        lines.append(
            f"| load_embedder({backend!r}) | {med(lib['b1_p50_ms']):.2f} "
            f"| {med(lib['b1_sps']):.1f} | {med(lib['b32_sps']):.1f} |"
        )
    return lines


def goal_rows(run: Run, backend: str) -> list[str]:
    ours = f"ours {backend}"
    c32 = run.cells.get((Workload(32, 1).name, ours))
    c1 = run.cells.get((Workload(1, 1).name, ours))
    lib = run.library.get(backend)
    rows: list[str] = []

    def row(goal: str, value: float, ok: bool, unit: str = "x") -> None:
        rows.append(f"| {ours} | {goal} | {value:.2f}{unit} | {'met' if ok else 'NOT met'} |")

    if c32 and lib:
        r = ratios(c32.sps, lib["b32_sps"], lambda a, b: a / b)
        row("c=32 sentences/s >= 0.8x library batch-32", r, r >= 0.8)
    if c1 and lib:
        d = ratios(c1.p50, lib["b1_p50_ms"], lambda a, b: a - b)
        row("c=1 p50 <= library batch-1 p50 + 2 ms", d, d <= 2.0, " ms")
    for peer, goal in ((NAIVE, 3.0), (INFINITY, 1.3)):
        other = run.cells.get((Workload(32, 1).name, peer))
        if c32 and other:
            r = ratios(c32.sps, other.sps, lambda a, b: a / b)
            row(f"c=32 sentences/s >= {goal}x {peer}", r, r >= goal)
        if c32 and other and peer == INFINITY:
            d = ratios(c32.p99, other.p99, lambda a, b: a - b)
            row(f"c=32 p99 lower than {peer} (ours - theirs)", d, d < 0, " ms")
    return rows


def report(run: Run) -> str:
    a = run.args
    env = [f"{k}={v}" for k, v in sorted(os.environ.items())
           if k.startswith("SEMSEARCH_") and not k.endswith("_DIR")]  # fmt: skip
    out = [
        f"## Service speed, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{a.rounds} rounds, each cell up to {a.requests} requests (32-text cells: "
        f"{max(16, a.requests // 8)}) or {a.seconds:g} s; {a.threads} intra-op thread(s) per model "
        f"(OMP_NUM_THREADS={a.threads}, OMP_WAIT_POLICY=PASSIVE); {os.cpu_count()} cores; "
        "medians over rounds.",
        "",
        f"SEMSEARCH_* set (directories not shown): {', '.join(env) or 'none'}",
        "",
        f"Load average (1/5/15 min): start {fmt_load(run.loads[0])}, "
        f"end {fmt_load(run.loads[-1])}; 1-min after each round: "
        + ", ".join(f"{x[0]:.2f}" for x in run.loads[1:-1]),
        "",
        *table_main(run),
        "",
        *table_library(run),
        "",
        "| system | goal (median of per-round values) | value | |",
        "|---|---|---:|---|",
    ]
    for backend in a.backends:
        out += goal_rows(run, backend)
    out.append("")
    out += [f"- {n}" for n in run.notes]
    return "\n".join(out)


# --- results and chart --------------------------------------------------------------------------


def results(run: Run, text: str) -> dict[str, Any]:
    """Everything measured, per round, with what a reader needs to judge the run."""
    info = charts.run_info() | {"load": charts.load_text(run.loads[0], run.loads[-1])}
    return {
        "run": info,
        "threads": run.args.threads,
        "rounds": run.args.rounds,
        "workloads": [vars(w) | {"name": w.name} for w in run.workloads],
        "systems": run.servers,
        "cells": {f"{w} | {n}": vars(c) for (w, n), c in run.cells.items()},
        "library": run.library,
        "loads": run.loads,
        "notes": run.notes,
        "report": text,
    }


def draw(res: dict[str, Any]) -> None:
    """Sentences/s and p99 latency of one-text requests against concurrency, per system."""
    plt = charts.pyplot()
    from matplotlib import ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5))
    fig.subplots_adjust(bottom=0.23, top=0.78, wspace=0.25)
    single = [w for w in res["workloads"] if w["per_request"] == 1]
    levels = [w["concurrency"] for w in single]
    colors = {}  # system -> its line's color, which its library line shares
    for system in res["systems"]:
        kind = (
            "ours" if system.startswith("ours") else "peer" if system == INFINITY else "reference"
        )
        cells = [res["cells"][f"{w['name']} | {system}"] for w in single]
        label = "naive FastAPI + sentence-transformers" if system == NAIVE else system
        style = {"marker": "o", "ms": 4, "color": charts.COLORS[kind], "label": label}
        if system.startswith("ours") and not system.endswith("int8"):
            style["color"] = charts.COLORS["other"]
        colors[system] = style["color"]
        left.plot(levels, [med(c["sps"]) for c in cells], **style)
        right.plot(levels, [med(c["p99"]) for c in cells], **style)
    for backend, lib in res["library"].items():
        color = colors.get(f"ours {backend}", charts.COLORS["ours"])
        left.axhline(med(lib["b32_sps"]), ls="--", lw=1, color=color,
                     label=f"library in-process, {backend}, batch 32")  # fmt: skip
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.minorticks_off()
        ax.set_xlabel("concurrent clients (one text per request)")
    left.set_ylabel("sentences per second (median of rounds)")
    left.set_ylim(bottom=0)
    right.set_ylabel("p99 latency, ms (median of rounds; log scale)")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.92), ncol=3, fontsize=8)
    threads = res["threads"]
    fig.suptitle(
        f"Service /embed throughput and tail latency against concurrency "
        f"({threads} model thread{'s' if threads > 1 else ''}, {res['rounds']} rounds)"
    )
    charts.save_chart(fig, "service_concurrency", res["run"])
