"""docker-compose.yml and the Dockerfile, checked statically (no container engine here), and
their two commands (serve, index build) run for real with the environment compose gives them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from serving import REPO, free_port, running_server

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _stages() -> dict[str, str]:
    """Dockerfile stage name -> its instructions (comments dropped)."""
    code = "\n".join(x for x in DOCKERFILE.splitlines() if not x.lstrip().startswith("#"))
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", code, flags=re.M | re.I)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_compose_services_volumes_and_healthcheck():
    service = COMPOSE["services"]["semsearch"]
    assert service["build"]["target"] in _stages()
    assert service["environment"]["SEMSEARCH_BACKEND"] == "onnx-int8"
    assert any(v.startswith("semsearch-data:") for v in service["volumes"])
    assert "semsearch-data" in COMPOSE["volumes"]
    assert "/health" in " ".join(service["healthcheck"]["test"])
    indexer = COMPOSE["services"]["indexer"]
    assert indexer["profiles"] == ["index"]
    assert indexer["command"][:3] == ["semsearch", "index", "build"]


def test_every_path_the_images_copy_or_mount_exists():
    for line in DOCKERFILE.splitlines():
        match = re.match(r"^COPY\s+(?!--from)(.+)$", line.strip())
        if match:
            *sources, _dest = match.group(1).split()
            for source in sources:
                assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_the_runtime_stage_installs_no_torch():
    runtime = _stages()["runtime"]
    assert "torch" not in runtime.replace("find_spec('torch') is not None", "")
    assert "pip install --no-cache-dir ." in runtime
    # The core dependencies (what `pip install .` brings) must not pull torch either.
    import tomllib

    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in core if d.lower().startswith("torch")]


def test_every_image_serves_as_an_unprivileged_user():
    stages = _stages()
    for name in ("runtime", "full"):
        users = re.findall(r"^USER\s+(\S+)\s*$", stages[name], flags=re.M)
        assert users, f"stage {name} sets no USER: it would serve as root"
        assert users[-1] not in ("root", "0"), f"stage {name} ends as {users[-1]}"
    # The user exists and owns the data volume it writes to.
    assert "useradd" in stages["runtime"] and "chown semsearch" in stages["runtime"]


def _container_env(service: dict, index_dir: Path) -> dict[str, str]:
    """The service's compose environment, with the volume path mapped to a test directory."""
    env = {k: str(v) for k, v in service["environment"].items()}
    env = {k: v.replace("/data/index", str(index_dir)) for k, v in env.items()}
    return {k: v for k, v in env.items() if not v.startswith("${")}


def _run_as_compose(command: list[str], replacements: dict[str, str]) -> list[str]:
    assert command[0] == "semsearch"
    return [sys.executable, "-m", "semsearch", *[replacements.get(a, a) for a in command[1:]]]


def test_compose_commands_index_and_serve_for_real(tmp_path):
    index_dir = tmp_path / "index"
    indexer = COMPOSE["services"]["indexer"]
    docs_mount = next(v for v in indexer["volumes"] if v.endswith(":/input:ro"))
    docs = REPO / docs_mount.split(":")[0]
    env = {**os.environ, **_container_env(indexer, index_dir)}
    build = _run_as_compose(
        indexer["command"], {"/input": str(docs), "/data/index": str(index_dir)}
    )
    result = subprocess.run(build, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr

    service = COMPOSE["services"]["semsearch"]
    port = free_port()
    serve = _run_as_compose(service["command"], {"0.0.0.0": "127.0.0.1", "8000": str(port)})
    env = {**os.environ, **_container_env(service, index_dir)}
    with running_server(serve, port, env) as base:
        info = httpx.get(f"{base}/info", timeout=10).json()
        assert info["encoder"]["backend"] == "onnx-int8"
        assert info["index"]["count"] == len(list(docs.iterdir()))
        hits = httpx.post(
            f"{base}/search", json={"query": "approximate nearest neighbour indexes", "k": 1}
        ).json()["hits"]
        assert hits[0]["id"].startswith("faiss")
        with pytest.raises(httpx.HTTPStatusError):  # generation is off in this image
            httpx.post(f"{base}/generate", json={"prompt": "x"}).raise_for_status()
