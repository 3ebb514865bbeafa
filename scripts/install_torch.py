"""Install the project's pinned torch, as a CPU build, into the Python that runs this script.

PyPI's Linux torch wheels are CUDA builds: several GB of nvidia-* libraries that semsearch never
uses. So this first asks pip, as it is configured here (indexes, find-links, constraints), which
wheel it would pick, reading only its metadata. A wheel that needs no CUDA library (a local CPU
wheel, macOS, Windows) is installed as pip found it, and nothing else is contacted; otherwise the
CPU build comes from PyTorch's CPU index (`$TORCH_CPU_INDEX_URL` names a mirror of it), checked the
same way before anything is downloaded. `make` runs this for both venvs, the Dockerfile for its
`full` image; a later `pip install '.[torch]'` finds the pin satisfied and keeps the build.

    python scripts/install_torch.py             # the pin in pyproject.toml's `torch` extra
    python scripts/install_torch.py --dry-run   # say what would be installed, install nothing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"
CPU_INDEX_ENV = "TORCH_CPU_INDEX_URL"


class SetupError(RuntimeError):
    """pip failed, or no CPU build of the pin can be found here."""


def pinned_torch(pyproject: Path = PYPROJECT) -> str:
    """The torch requirement of pyproject's `torch` extra, the one place the pin is written."""
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    pins = [r for r in extras["torch"] if r.replace(" ", "").lower().startswith("torch==")]
    if len(pins) != 1:
        raise SetupError(f"{pyproject}: expected one torch==X pin in the torch extra, got {pins}")
    return pins[0]


def cuda_requirements(requires: list[str]) -> list[str]:
    """The CUDA libraries among a torch wheel's requirements: what makes it a GPU build."""
    return [r for r in requires if r.strip().lower().startswith("nvidia-")]


def _pip(*args: str, capture: bool = True) -> str:
    """Run this Python's pip; its stdout when captured (an install shows its own progress)."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=capture, text=True)
    if result.returncode != 0:
        output = f":\n{result.stdout}{result.stderr}" if capture else ""
        raise SetupError(f"{' '.join(command)} failed{output}")
    return result.stdout or ""


def pick(requirement: str, *index_args: str) -> dict | None:
    """The wheel pip would install for `requirement` (its report entry), None if one already
    is. Only metadata is read, never the wheel itself where the index serves it separately."""
    report = _pip(
        "install", "--dry-run", "--quiet", "--no-deps", "--report", "-", *index_args, requirement
    )
    installs = json.loads(report)["install"]
    return installs[0] if installs else None


def _describe(item: dict) -> str:
    return f"{item['metadata']['version']} from {item['download_info']['url']}"


def plan(requirement: str, cpu_index: str) -> list[str] | None:
    """pip's index options that give a CPU build of `requirement` ([] if pip's own do), or None
    when a matching torch is installed already."""
    item = pick(requirement)
    if item is None:
        if cuda := _installed_torch_needs_cuda():
            raise SetupError(
                f"the installed torch is a CUDA build (it requires {cuda[:2]}...): remove this "
                "venv (`make clean`) and set it up again"
            )
        return None
    if not cuda_requirements(item["metadata"].get("requires_dist", [])):
        return []
    index_args = ["--extra-index-url", cpu_index]
    cpu_item = pick(requirement, *index_args)
    if cpu_item is None or cuda_requirements(cpu_item["metadata"].get("requires_dist", [])):
        raise SetupError(
            f"pip offers {requirement} only as a CUDA build here ({_describe(item)}) and "
            f"{cpu_index} has no CPU build of it for this platform; set {CPU_INDEX_ENV} to an "
            "index that does, or PIP_FIND_LINKS to a folder holding the CPU wheel"
        )
    return index_args


def _installed_torch_needs_cuda() -> list[str]:
    return cuda_requirements(metadata.requires("torch") or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirement", help="default: the pin in pyproject.toml")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    args = parser.parse_args(argv)
    cpu_index = os.environ.get(CPU_INDEX_ENV) or CPU_INDEX_URL
    try:
        requirement = args.requirement or pinned_torch()
        index_args = plan(requirement, cpu_index)
        if index_args is None:
            print(f"{requirement}: already installed")
            return 0
        where = "pip's configured indexes" if not index_args else index_args[-1]
        if args.dry_run:
            print(f"{requirement}: CPU build from {where}")
            return 0
        _pip("install", "--quiet", *index_args, requirement, capture=False)
        if cuda := _installed_torch_needs_cuda():
            raise SetupError(f"the torch just installed is a CUDA build (it requires {cuda})")
    except SetupError as e:
        print(f"install_torch: {e}", file=sys.stderr)
        return 1
    print(f"{requirement}: CPU build installed from {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
