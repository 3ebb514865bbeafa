"""Ray for `index build --ray`: imported on demand, a local Ray started for one build or a cluster
joined, quiet unless the log level is DEBUG, and how many encoder actors it has room for."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

RAY_HINT = "pip install 'semsearch[ray]'"
# Ray's loggers: their INFO lines ("Starting execution of Dataset ...") would tear the progress
# bar, and a failure reaches the caller as an exception anyway.
RAY_LOGGERS = ("ray", "ray.data")
IDLE_ACTORS_WARNING = "The minimum number of concurrent actors"
# CPUs left to the Ray Data tasks that read the input files, beside the encoder actors.
READER_CPUS = 1


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray for this build; else join this cluster
    workers: int | None = None  # encoder actors; None: as many as the CPUs hold
    threads_per_worker: int = 1  # the encoder's intra-op threads in each actor (its CPUs)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.threads_per_worker < 1:
            raise ValueError(f"threads per worker must be >= 1, got {self.threads_per_worker}")


def import_ray() -> Any:
    """The `ray` module with Ray Data, or an ImportError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"index build --ray needs Ray Data, which is not installed ({exc}): {RAY_HINT}",
            name="ray",
        ) from exc
    return ray


def local_cpus() -> int:
    """CPUs this process may run on (its affinity), as the ONNX encoder counts them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray for one build, as the `ray` module: the session this process already has (left
    running), else a new local Ray with room for the actors and a reader, else the cluster at
    `options.address`; one this function started is shut down afterwards."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = logging.getLogger().getEffectiveLevel() > logging.DEBUG
    level = logging.ERROR if quiet else logging.INFO
    common = {"logging_level": level, "log_to_driver": not quiet}
    if options.address is None:
        workers = options.workers or max(1, local_cpus() // options.threads_per_worker)
        cpus = workers * options.threads_per_worker + READER_CPUS
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **common)
    else:
        ray.init(address=options.address, **common)
    if quiet:  # a failure is raised, with its message; the remote tracebacks with DEBUG
        for name in RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        # An input smaller than one block per actor leaves actors idle: true, and harmless.
        warnings.filterwarnings("ignore", IDLE_ACTORS_WARNING, UserWarning)
    try:
        yield ray
    finally:
        ray.shutdown()


def plan_workers(ray: Any, options: RayOptions) -> int:
    """How many encoder actors to run: `options.workers`, refused when the Ray cluster cannot
    place them beside a reader, else as many as its CPUs hold beside one (at least one)."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    threads = options.threads_per_worker
    if options.workers is None:
        return max(1, (cpus - READER_CPUS) // threads)
    need = options.workers * threads + READER_CPUS
    if need > cpus:
        raise ValueError(
            f"--workers {options.workers} x --threads-per-worker {threads} needs {need} CPUs "
            f"(one more reads the inputs); the Ray cluster has {cpus}: ask for fewer workers, or "
            "add nodes"
        )
    return options.workers
