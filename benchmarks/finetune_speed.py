"""Finetune speed: iterations/s of the full generator's training step at batch 16, LR 32 (HR 128).

Why this script exists: `cctvsr finetune` on a CPU is slow, and how slow decides what a user can
train without a GPU. This measures the real training step (`StageTrainer.train_step`: G forward
and backward, PatchGAN D step, L1 + relativistic GAN + ST-LPIPS, EMA) of the 23-block
realesrgan-x4plus on real face pairs degraded by a pool, for each arithmetic the machine offers:
fp32 and bf16 autocast on a CPU with native bf16 (AMX / AVX512-BF16; elsewhere bf16 is emulated and
only listed), and CUDA fp16 AMP where a GPU is present. It also times the pixel stage (L1 only).

Run:  .venv/bin/python benchmarks/finetune_speed.py            (≈ 3–6 min on a 2-core CPU)
      .venv/bin/python benchmarks/finetune_speed.py --steps 2 --batch-size 4   (quicker)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from cctvsr.degrade.pool import DegradationPool
from cctvsr.device import cpu_has_native_bf16
from cctvsr.jobs.finetune import stage_settings
from cctvsr.perceptual.stlpips import StLpips
from cctvsr.sr.weights import load_generator_weights
from cctvsr.train.data import PairDataset
from cctvsr.train.trainer import StageTrainer

FACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces_hq"


def _gaussian(sigma_y: float, sigma_x: float, size: int = 21) -> np.ndarray:
    grid = np.arange(size) - size // 2
    k = np.exp(-(grid[:, None] ** 2) / (2 * sigma_y**2) - grid[None, :] ** 2 / (2 * sigma_x**2))
    return (k / k.sum()).astype(np.float32)


def _pool() -> DegradationPool:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 4.0, (16, 32, 32, 3))
    noise -= noise.mean(axis=(1, 2), keepdims=True)
    return DegradationPool(kernels=np.stack([_gaussian(1.5, 2.2), _gaussian(2.0, 1.4)]), noise_patches=noise.astype(np.float32), jpeg_quality=40.0)


def _faces() -> list[np.ndarray]:
    paths = sorted(FACES_DIR.glob("*.jpg"))[:12]
    if not paths:
        sys.exit(f"no photos in {FACES_DIR}")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def _time(stage: str, device: torch.device, amp: str, batch: tuple[torch.Tensor, torch.Tensor], steps: int, perceptual) -> float:
    settings = stage_settings(stage, iters=steps + 1, batch_size=batch[0].shape[0])
    trainer = StageTrainer(settings, load_generator_weights("realesrgan-x4plus").build(), device, perceptual, amp=amp)
    trainer.train_step(*batch)  # warm-up: allocator, kernels, autotuning
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(*batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr-patch", type=int, default=32)
    args = parser.parse_args()
    dataset = PairDataset(_faces(), _pool(), args.lr_patch, args.batch_size, seed=0)
    lr, hr = (torch.stack(t) for t in zip(*(dataset[i] for i in range(args.batch_size))))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; batch {args.batch_size}, LR {args.lr_patch} → HR {4 * args.lr_patch}")
    rows: list[tuple[str, float]] = []
    configs = [("cpu", "fp32")]
    if cpu_has_native_bf16():
        configs.append(("cpu", "bf16"))
    else:
        print("CPU bf16: skipped (no AVX512-BF16 / AMX here: bf16 would be emulated, several times slower)")
    if torch.cuda.is_available():
        configs += [("cuda", "fp32"), ("cuda", "fp16")]
    for device_name, amp in configs:
        device = torch.device(device_name)
        perceptual = StLpips.from_packaged(device)
        for stage in ("pixel", "gan"):
            rate = _time(stage, device, amp, (lr.to(device), hr.to(device)), args.steps, perceptual)
            rows.append((f"{device_name} {amp} {stage}", rate))
            print(f"{device_name:4s} {amp:4s} {stage:5s}: {rate:.3f} it/s ({1 / rate:.1f} s/it)", flush=True)
    base = dict(rows)
    print("\nratios against cpu fp32 of the same stage:")
    for name, rate in rows:
        stage = name.split()[-1]
        print(f"  {name:16s} {rate / base[f'cpu fp32 {stage}']:.2f}×")


if __name__ == "__main__":
    main()
