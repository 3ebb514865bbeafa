"""Results files and charts shared by the benchmark scripts.

Each script saves what it measured as JSON in `bench/results/<name>.json` (with the command, the
time and the load average of the run), then draws `docs/img/<name>.png` from that file alone, so
`--plot-only` redraws a chart without measuring again. matplotlib is only needed for drawing:
`pip install 'matplotlib>=3.8'` (the `bench` extra).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
IMG_DIR = ROOT / "docs" / "img"
# One colour per kind of system, the same in every chart.
COLORS = {
    "ours": "#1f77b4",
    "reference": "#7f7f7f",
    "peer": "#d62728",
    "other": "#2ca02c",
}


def run_info() -> dict[str, Any]:
    """What a reader needs to judge a run: the command, when, where, and how loaded."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    venv = Path(sys.executable).parent.parent.name
    return {
        "command": shlex.join([f"{venv}/bin/python", str(script), *sys.argv[1:]]),
        "utc": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def load_text(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    return f"load average {before[0]:.1f} before, {after[0]:.1f} after"


def save_results(name: str, data: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` (via a temporary file, so a crash leaves the old one)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    print(f"results: {path.relative_to(ROOT)}", file=sys.stderr)
    return path


def load_results(name: str) -> dict[str, Any]:
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"no {path.relative_to(ROOT)}: run the benchmark once without --plot-only")
    return json.loads(path.read_text())


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or the install hint."""
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit(
            "drawing the chart needs matplotlib: pip install 'matplotlib>=3.8' "
            "(or the project's `bench` extra)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def save_chart(fig: Any, name: str, run: dict[str, Any], note: str = "") -> Path:
    """Save `docs/img/<name>.png` with the run's command, time and load under the plot."""
    caption = f"{run['command']}\n{run['utc']} UTC, {run['cores']} cores, {run['load']}"
    if note:
        caption += f"; {note}"
    fig.text(0.01, 0.01, caption, fontsize=7, color="#555555", va="bottom", ha="left")
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    path = IMG_DIR / f"{name}.png"
    fig.savefig(path, dpi=100, metadata={"Software": None})
    print(f"chart: {path.relative_to(ROOT)}", file=sys.stderr)
    return path
