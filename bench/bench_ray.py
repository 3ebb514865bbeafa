"""Index build docs/s: the local pipeline against `index build --ray` on this machine, and the rate
of one Ray encoder actor, for capacity plans.

Systems: the local pipeline (`index/ingest/pipeline.py`: one process, its encoder given W x T
threads) and Ray (`index/ingest/ray_build.py`: a local Ray started for each run, W actors of T
threads each, one reader), on the same real texts of the shipped corpus, each run into a fresh
collection. Each round runs both systems, in turn first, on a quarter of the texts and on all of
them; each figure is the median over rounds (ratios: the median of the per-round ratios).

End to end: documents stored over the whole call on all the texts, Ray's start-up (the cluster,
the actors loading their encoders) and shut-down included, as `semsearch index build` pays them.
Steady: the extra documents of the full run over its extra seconds (the marginal rate, free of
fixed costs): the rate a long build runs at, and what scales with actors; fixed: the seconds a
run costs beyond its documents at that rate. Ratio: Ray / local (the goal: within 20 %, >= 0.8,
in steady state on one machine). Per actor: Ray's steady rate / W, at T threads each.

    .venv/bin/python bench/bench_ray.py [--texts 4000] [--rounds 3] [--workers 1]
        [--threads-per-worker CPUS] [--backend auto] [--batch-size 32]

Results: bench/results/ray.json. The load average is printed with the table: the machine's cores
are shared, so read the ratios rather than the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SEMSEARCH_MODELS_DIR", str(ROOT / "models"))

import charts  # noqa: E402

NAME = "ray"


class Recorder:
    """A progress bar that notes when the first documents were written."""

    def __init__(self, total: int) -> None:
        self.first_write: float | None = None

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, added: int = 0, **_: Any) -> None:
        if added and self.first_write is None:
            self.first_write = time.perf_counter()

    def close(self) -> None:
        pass


def timed(build: Any, n: int) -> dict[str, float]:
    """Run `build(bar)` on `n` texts: documents stored (a long text is stored as its chunks, as
    BuildReport.docs_per_s counts), seconds, and the seconds to the first write."""
    bars: list[Recorder] = []

    def bar(total: int) -> Recorder:
        bars.append(Recorder(total))
        return bars[-1]

    started = time.perf_counter()
    report = build(bar)
    seconds = time.perf_counter() - started
    if report.documents != n or report.added != report.chunks:
        raise RuntimeError(f"the build read {report.documents} of {n} texts, wrote {report.added}")
    first = bars[0].first_write
    return {
        "docs": report.added,
        "seconds": seconds,
        "first_write_s": (first - started) if first is not None else seconds,
    }


def summarize(small: dict[str, float], full: dict[str, float]) -> dict[str, float]:
    steady = (full["docs"] - small["docs"]) / (full["seconds"] - small["seconds"])
    return {
        "e2e_docs_s": full["docs"] / full["seconds"],
        "steady_docs_s": steady,
        "fixed_s": full["seconds"] - full["docs"] / steady,
        "first_write_s": full["first_write_s"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="Ray encoder actors")
    parser.add_argument(
        "--threads-per-worker", type=int, default=None, help="default: this machine's CPUs"
    )
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from semsearch.encoder import load_embedder
    from semsearch.evaluation.corpus import real_texts
    from semsearch.index.ingest.pipeline import BuildOptions, build_index
    from semsearch.index.ingest.ray_build import build_index_ray
    from semsearch.index.ingest.ray_session import RayOptions, local_cpus
    from semsearch.index.ingest.ray_stages import EncoderSpec
    from semsearch.service.settings import Settings

    workers, threads = args.workers, args.threads_per_worker or local_cpus()
    embedder = load_embedder(backend=args.backend, threads=workers * threads)
    encoder = EncoderSpec.of(embedder, None, Settings().onnx_options())
    options = BuildOptions(batch_size=args.batch_size)
    ray_options = RayOptions(workers=workers, threads_per_worker=threads)
    texts = real_texts(args.texts)
    sizes = (len(texts) // 4, len(texts))
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    sources = {}
    for n in sizes:
        sources[n] = tmp / f"texts{n}.jsonl"
        sources[n].write_text(
            "".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(texts[:n])),
            encoding="utf-8",
        )

    def run(system: str, n: int) -> dict[str, float]:
        out = tmp / f"{system}-{n}"
        if system == "local":
            report = timed(
                lambda bar: build_index([sources[n]], out, embedder, options, bar=bar), n
            )
        else:
            report = timed(
                lambda bar: build_index_ray(
                    [sources[n]], out, embedder, encoder, options, ray_options, bar=bar
                ),
                n,
            )
        shutil.rmtree(out)
        return report

    runs: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    load_before = os.getloadavg()
    try:
        embedder.encode(texts[:64], batch_size=args.batch_size)  # warm
        for r in range(args.rounds):
            order = ("local", "ray") if r % 2 == 0 else ("ray", "local")
            for system in order:
                small, full = (run(system, n) for n in sizes)
                runs[system].append(summarize(small, full))
                print(f"round {r + 1} {system}: {runs[system][-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp)
    load_after = os.getloadavg()

    def median(system: str, key: str) -> float:
        return statistics.median(one[key] for one in runs[system])

    def ratio(key: str) -> float:
        pairs = zip(runs["ray"], runs["local"], strict=True)
        return statistics.median(ray[key] / local[key] for ray, local in pairs)

    results = {
        "run": charts.run_info(),
        "load_before": load_before,
        "load_after": load_after,
        "backend": embedder.backend,
        "texts": len(texts),
        "sizes": sizes,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "workers": workers,
        "threads_per_worker": threads,
        "local_threads": workers * threads,
        "runs": runs,
        "median": {s: {k: median(s, k) for k in runs[s][0]} for s in runs},
        "ratio_e2e": ratio("e2e_docs_s"),
        "ratio_steady": ratio("steady_docs_s"),
        "per_actor_docs_s": median("ray", "steady_docs_s") / workers,
    }
    charts.save_results(NAME, results)
    print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    m, w, t = results["median"], results["workers"], results["threads_per_worker"]
    load = charts.load_text(results["load_before"], results["load_after"])
    small, full = results["sizes"]
    print(
        f"\n{results['texts']:,} real texts (steady: the {full - small:,} beyond a run of "
        f"{small:,}), backend {results['backend']}, batch {results['batch_size']}, median of "
        f"{results['rounds']} rounds; {load} on {results['run']['cores']} cores shared with "
        "other work\n"
    )
    print(
        "| system | encoders x threads | end-to-end docs/s | steady docs/s | fixed s "
        "| first write s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for system, shape in (("local", f"1 x {w * t}"), ("ray", f"{w} actors x {t}")):
        s = m[system]
        print(
            f"| {system} | {shape} | {s['e2e_docs_s']:.1f} | {s['steady_docs_s']:.1f} | "
            f"{s['fixed_s']:.1f} | {s['first_write_s']:.1f} |"
        )
    print(
        f"\nRay / local: {results['ratio_steady']:.2f} steady (goal >= 0.80), "
        f"{results['ratio_e2e']:.2f} end to end on {results['texts']:,} texts"
    )
    print(
        f"per actor: {results['per_actor_docs_s']:.1f} docs/s steady at {t} "
        f"thread{'s' * (t != 1)} ({results['backend']}, these texts)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
