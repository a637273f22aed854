"""Backends: crops/s of the same real face crops through every backend usable here, in one run.

Why this script exists: `--backend onnx` is for deployments without PyTorch, and on a CPU it must
not cost more than it saves; on a GPU, TensorRT and CUDA ONNX Runtime are why one exports at all.
Ratios only mean something when every backend runs in the same process on the same crops, so
everything is measured in one run, round-robin (see sr_throughput.Bench), through
`SuperResolver.upscale` (the same batching, tiling and output conversion for every backend).

Measured: torch CPU fp32, torch CPU default precision (what `auto` picks here), ONNX Runtime CPU
(fp32 graph), and where present torch CUDA (fp16), ONNX Runtime on each usable GPU provider (fp16
graph) and native TensorRT (fp16); their ratios to torch CPU fp32 and the PSNR of each output to
torch CPU fp32's.

Run:  .venv/bin/python benchmarks/backends.py --quick   (≈ 1–2 min on an idle 2-core CPU)
      .venv/bin/python benchmarks/backends.py --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sr_throughput import (  # noqa: E402  (a sibling script, not a package)
    DEFAULT_FACES_DIR, DEFAULT_SIZES, QUICK_SIZES, Bench, Measurement, fmt_db, joint_psnr, load_face_squares,
    log, make_crops, parse_sizes, table,
)

from cctvsr.device import describe_cpu  # noqa: E402
from cctvsr.sr.backends import create_resolver  # noqa: E402
from cctvsr.sr.onnx_runtime import CPU_EP, usable_providers  # noqa: E402
from cctvsr.sr.tensorrt import tensorrt_status  # noqa: E402


def configurations(model: str, gpu: bool) -> list[tuple[str, dict]]:
    """(label, create_resolver options) for every backend usable here; torch CPU fp32 first."""
    configs = [
        ("torch cpu fp32", {"backend": "torch", "device": "cpu", "precision": "fp32"}),
        ("torch cpu default (auto)", {"backend": "torch", "device": "cpu", "precision": "auto"}),
        ("onnxruntime cpu fp32", {"backend": "onnx", "device": "cpu", "precision": "fp32"}),
    ]
    if gpu:
        configs.append(("torch cuda fp16", {"backend": "torch", "device": "cuda", "precision": "fp16"}))
    if any(name != CPU_EP for name in usable_providers()):
        configs.append(("onnxruntime cuda fp16 (best GPU provider)", {"backend": "onnx", "device": "cuda", "precision": "fp16"}))
    if tensorrt_status()[0]:
        configs.append(("tensorrt fp16 (native engine)", {"backend": "tensorrt", "device": "cuda", "precision": "fp16"}))
    return configs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Crops/s of torch CPU (fp32, default), ONNX Runtime CPU and every GPU backend present, on the same real face crops.")
    parser.add_argument("--faces-dir", type=Path, default=DEFAULT_FACES_DIR, help="folder of the portraits (default: %(default)s)")
    parser.add_argument("--sizes", type=parse_sizes, default=None, help=f"crop sizes in px (default: {','.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--quick", action="store_true", help=f"fewer, smaller crops ({','.join(map(str, QUICK_SIZES))}) unless --sizes is given")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per configuration; the fastest counts (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime alike (default: torch's choice)")
    parser.add_argument("--model", default="realesrgan-x4plus", help="generator (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        print("error: --repeats must be at least 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)  # the ONNX Runtime runner takes torch's thread count too
    wall = time.perf_counter()
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    squares, note = load_face_squares(args.faces_dir)
    crops = make_crops(squares, sizes)
    gpu = torch.cuda.is_available()

    print("Backends benchmark (SuperResolver.upscale, same crops, one run)")
    print(f"model: {args.model}; faces: {note}")
    print(f"crops: {len(crops)}, sizes {','.join(map(str, sizes))} px; {args.repeats} timed pass(es) after one warm-up, round-robin")
    print(f"cpu: {describe_cpu()}, {torch.get_num_threads()} threads; torch {torch.__version__}")
    print(f"onnxruntime providers usable here: {', '.join(usable_providers())}; tensorrt: {tensorrt_status()[1]}")

    bench_cpu, bench_gpu = Bench(torch.device("cpu")), Bench(torch.device("cuda" if gpu else "cpu"))
    plans: dict[str, str] = {}
    measurements: list[Measurement] = []
    for label, options in configurations(args.model, gpu):
        log(f"setting up {label} (an ONNX export or TensorRT engine is made once into the cache) …")
        resolver = create_resolver(args.model, warn=lambda m: log(f"warning: {m}"), **options)
        plans[label] = resolver.plan.describe()
        bench = bench_gpu if options["device"] == "cuda" else bench_cpu
        measurements.append(bench.add(label, label, lambda r=resolver: r.upscale, crops))
    bench_cpu.run(args.repeats)
    if bench_gpu.measurements:
        bench_gpu.run(args.repeats)

    base = measurements[0]
    rows = []
    for m in measurements:
        crops_per_s = len(m.crops) / m.seconds_per_pass
        psnr, worst = joint_psnr(m.outputs, base.outputs)
        rows.append([m.label, plans[m.label], f"{m.seconds_per_pass:.2f}", f"{crops_per_s:.2f}", f"{m.rate / base.rate:.2f}×", fmt_db(psnr), fmt_db(worst)])
    print()
    print(table(["configuration", "plan", "s/pass", "crops/s", "vs torch cpu fp32", "PSNR dB", "worst crop"], rows, [False, False, True, True, True, True, True]))
    by_label = {m.label: m for m in measurements}
    ort, default = by_label["onnxruntime cpu fp32"], by_label["torch cpu default (auto)"]
    print(f"\nonnxruntime cpu / torch cpu fp32 = {ort.rate / base.rate:.2f}×; onnxruntime cpu / torch cpu default = {ort.rate / default.rate:.2f}×")
    print(f"wall time: {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
