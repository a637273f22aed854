#!/usr/bin/env bash
# GPU benchmark, in one go, on a machine with CUDA and its own PyTorch build:
#   1. the torch CUDA path in fp16 and bf16 against fp32: PSNR and crops/s at 32×32, 64×64 and
#      128×128 LR, batch 1 and 32 (real face crops, SuperResolver.upscale as `upscale` runs it);
#   2. the ONNX Runtime GPU providers and native TensorRT, where those packages work here, on the
#      same crops (fp16 graphs, exported and parity-checked into the cache first);
#   3. a short table at the end;
#   4. enhance's throughput on the GPU (benchmarks/throughput.py --device cuda, parts 1 and 3, --quick):
#      decoding on the CPU, detection (ONNX Runtime CUDA) and SR (torch CUDA) on the GPU, × real time.
# Usage: benchmarks/gpu.sh [PYTHON]   (default: .venv/bin/python, else python3)
# Exits 3 with a one-line message when no CUDA device is usable by that Python's PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu.sh: no CUDA device usable by $PY's PyTorch (install a CUDA build of torch on a machine with an NVIDIA GPU)" >&2
  exit 3
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

"$PY" - <<'PY'
import math, sys, time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from sr_throughput import DEFAULT_FACES_DIR, load_face_squares, make_crops, table  # noqa: E402

from cctvsr.sr.backends import create_resolver  # noqa: E402
from cctvsr.sr.onnx_runtime import CPU_EP, usable_providers  # noqa: E402
from cctvsr.sr.tensorrt import tensorrt_status  # noqa: E402

SIDES, BATCHES, PASSES = (32, 64, 128), (1, 32), 3
# The fp32 reference is true fp32: PyTorch would otherwise run CUDA convolutions in TF32.
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
MODEL = "realesrgan-x4plus"
squares, note = load_face_squares(DEFAULT_FACES_DIR)
print(f"gpu: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; faces: {note}", flush=True)


def crops_for(side: int, batch: int) -> list[np.ndarray]:
    return [c.image for c in make_crops(squares, [side] * batch)]


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    x = np.concatenate([i.reshape(-1) for i in a]).astype(np.float64)
    y = np.concatenate([i.reshape(-1) for i in b]).astype(np.float64)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def timed(resolver, crops: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """Crops/s: the fastest of PASSES passes after one untimed warm-up pass (same shapes)."""
    out = resolver.upscale(crops)
    best = math.inf
    for _ in range(PASSES):
        torch.cuda.synchronize()
        start = time.perf_counter()
        resolver.upscale(crops)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return len(crops) / best, out


configs = [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16")]
if any(p != CPU_EP for p in usable_providers()):
    configs.append(("onnx", "fp16"))
else:
    print(f"onnxruntime: no GPU provider usable here ({', '.join(usable_providers())}): ONNX Runtime rows skipped")
trt_ok, trt_note = tensorrt_status()
configs += [("tensorrt", "fp16")] if trt_ok else []
print(f"tensorrt: {trt_note}", flush=True)

rows, reference = [], {}
for backend, precision in configs:
    # The batcher holds about one tile window of pixels per batch: tile 704 (window 736 px) lets it
    # form batches of 32 at 128 px, as asked; smaller sizes reach 32 anyway.
    resolver = create_resolver(MODEL, backend=backend, device="cuda", precision=precision, batch_size=32, tile=704,
                               warn=lambda m: print(f"warning: {m}", flush=True))
    plan = resolver.plan.describe()
    for side in SIDES:
        for batch in BATCHES:
            crops = crops_for(side, batch)
            rate, out = timed(resolver, crops)
            key = (side, batch)
            if (backend, precision) == ("torch", "fp32"):
                reference[key] = out
            db = psnr(out, reference[key])
            rows.append([backend, precision, plan, f"{side}×{side}", str(batch), f"{rate:8.1f}",
                         "ref" if (backend, precision) == ("torch", "fp32") else ("inf" if db == math.inf else f"{db:.1f}")])
            print(f"  {backend} {precision} {side}px batch {batch}: {rate:.1f} crops/s, PSNR vs torch fp32 {rows[-1][-1]}", flush=True)
    del resolver
    torch.cuda.empty_cache()

fp32 = {(r[3], r[4]): float(r[5]) for r in rows if r[:2] == ["torch", "fp32"]}
for r in rows:
    r.append(f"{float(r[5]) / fp32[(r[3], r[4])]:.2f}×")
print()
print(table(["backend", "precision", "plan", "LR size", "batch", "crops/s", "PSNR dB vs torch fp32", "vs torch fp32"], rows,
            [False, False, False, True, True, True, True, True]))
PY

echo
echo "== enhance throughput on the GPU (benchmarks/throughput.py --device cuda --parts 1,3 --quick)"
"$PY" benchmarks/throughput.py --device cuda --parts 1,3 --quick
