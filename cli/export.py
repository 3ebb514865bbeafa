"""`semsearch export`: the encoder as ONNX artifacts, each with its accuracy report.

Needs the export toolchain (the `export` extra; `make artifacts` runs this in `.venv-export`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semsearch.cli.arguments import positive_int, setting_help
from semsearch.cli.exits import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    what = (
        "export the encoder to ONNX (fp32, fused fp32, optionally int8 for onnxruntime and for "
        "OpenVINO) with an accuracy report beside each artifact, and time the artifacts within "
        "the gates to choose what backend auto serves; needs the 'export' extra"
    )
    p = subparsers.add_parser("export", help=what, description=what)
    p.add_argument(
        "--quantize",
        choices=["int8"],
        help="also write the int8 artifacts, onnx-int8 and openvino-int8 (default: fp32 "
        "artifacts only)",
    )
    p.add_argument("--out", type=Path, help=setting_help("artifact directory", "onnx_dir"))
    p.add_argument(
        "--model-dir",
        type=Path,
        help=setting_help(
            "sentence-transformers model directory", "model_dir", "the bundled all-MiniLM-L6-v2"
        ),
    )
    p.add_argument(
        "--threads", type=positive_int, help="threads for the measurements (default: the runtime's)"
    )
    p.add_argument(
        "--search",
        nargs="?",
        const="onnx-int8",
        choices=["onnx-int8", "openvino-int8"],
        help="instead: export fp32 into --out (required: a scratch directory), quantize it with "
        "each int8 plan of docs/benchmarks.md's search table for that backend (onnx-int8 when "
        "no backend is named), measure each and print the table (default: off)",
    )
    p.set_defaults(run=run, prog=p.prog)


def run(args: argparse.Namespace) -> int:
    from semsearch.service.settings import Settings

    settings = Settings()
    model_dir = args.model_dir or settings.model_dir
    if args.search:
        if args.out is None:  # the variants would land beside the served artifacts
            raise UsageError("--search needs --out: a scratch directory for its variants")
        if args.search == "openvino-int8":
            from semsearch.evaluation.openvino_search import run_openvino_search as search
        else:
            from semsearch.evaluation.int8_search import run_search as search
        for line in search(args.out, model_dir=model_dir, threads=args.threads):
            print(line, flush=True)  # a row per plan as it is measured: a search takes minutes
        return 0
    from semsearch.evaluation.export import run_export

    out = args.out or settings.onnx_dir
    thresholds = settings.onnx_options().thresholds
    written = run_export(
        out, model_dir, quantize=args.quantize, threads=args.threads, thresholds=thresholds
    )
    for path in written:
        print(f"wrote {path} (+ {path.name}.accuracy.json)")
    return 0
