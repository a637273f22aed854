"""One training stage of the generator: the step, EMA, validation and checkpoints.

A stage is "pixel" (L1 only: the faithful, PSNR-oriented model, ESRGAN's first stage) or "gan"
(the paper's mix of L1, relativistic adversarial and perceptual losses). The stage's state is
plain tensors and numbers, saved as a checkpoint directory written whole and then renamed, so a
run can stop anywhere (Ctrl-C included) and resume to the same weights bit for bit on CPU.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from cctvsr.device import reduced_dtype, resolve_precision
from cctvsr.errors import InputError
from cctvsr.fsutil import atomic_path
from cctvsr.images import write_png
from cctvsr.metrics import psnr, ssim, st_lpips
from cctvsr.sr.rrdb import RRDBNet
from cctvsr.train.data import IterationSampler, PairDataset, TrainingPair, to_image, to_tensor
from cctvsr.train.discriminator import PatchDiscriminator
from cctvsr.train.losses import relativistic_d_loss, relativistic_g_loss

STAGES = ("pixel", "gan")
CHECKPOINT_PREFIX = "checkpoint-"
GRID_FACES = 4


@dataclass(frozen=True, kw_only=True)
class StageSettings:
    """Everything that decides a stage's arithmetic; a resumed stage must match it exactly. The
    fields `finetune` has flags for take their defaults from its options
    (`cctvsr.jobs.finetune.stage_settings`); the others are fixed here."""

    stage: str
    iters: int
    batch_size: int
    lr_patch: int
    learning_rate: float
    betas: tuple[float, float] = (0.9, 0.99)
    decay_at: tuple[float, ...] = (0.5, 0.75)  # fractions of iters where the learning rate halves
    decay_gamma: float = 0.5
    l1_weight: float
    adv_weight: float
    perceptual_weight: float
    ema_decay: float = 0.999
    grad_clip: float = 10.0
    seed: int

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise InputError(f"unknown stage {self.stage!r}")
        if self.iters < 1 or self.batch_size < 1 or self.lr_patch < 8:
            raise InputError("--iters and --batch-size must be at least 1 and --lr-patch at least 8")
        weights = (self.l1_weight, self.adv_weight, self.perceptual_weight)
        if any(w < 0 or not math.isfinite(w) for w in weights):
            raise InputError(f"loss weights must be finite and >= 0, got {weights}")
        if self.stage == "gan" and not any(weights):
            raise InputError("every loss weight is 0: nothing to train")

    @property
    def milestones(self) -> list[int]:
        return sorted({max(1, round(f * self.iters)) for f in self.decay_at})

    @property
    def uses_discriminator(self) -> bool:
        return self.stage == "gan" and self.adv_weight > 0

    @property
    def uses_perceptual(self) -> bool:
        return self.stage == "gan" and self.perceptual_weight > 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationResult:
    step: int
    psnr: float
    ssim: float
    perceptual: float  # ST-LPIPS, the metrics module's yardstick, whatever the training loss used

    def better_than(self, other: ValidationResult | None, stage: str) -> bool:
        """Pixel stages keep the highest PSNR (fidelity), GAN stages the lowest perceptual distance."""
        if other is None:
            return True
        return self.psnr > other.psnr if stage == "pixel" else self.perceptual < other.perceptual


@dataclass
class StageHooks:
    step: Callable[[int, dict[str, float]], None] = lambda step, losses: None
    validated: Callable[[ValidationResult], None] = lambda result: None
    saved: Callable[[int], None] = lambda step: None


class StageTrainer:
    """G (and for the GAN stage D) with their optimisers, schedules and G's moving average."""

    def __init__(
        self,
        settings: StageSettings,
        generator: RRDBNet,
        device: torch.device,
        perceptual: nn.Module | None = None,
        amp: str = "fp32",
    ) -> None:
        self.settings, self.device = settings, device
        self.amp_dtype = reduced_dtype(resolve_precision(amp, device))  # fp16 with loss scaling
        self.g = generator.to(device).train().requires_grad_(True)
        self.ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        self.perceptual = perceptual if settings.uses_perceptual else None
        if settings.uses_perceptual and perceptual is None:
            raise ValueError("the GAN stage with a perceptual weight needs a perceptual network")
        torch.manual_seed(settings.seed)
        self.d = PatchDiscriminator().to(device) if settings.uses_discriminator else None
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=settings.learning_rate, betas=settings.betas)
        self.sched_g = torch.optim.lr_scheduler.MultiStepLR(self.opt_g, settings.milestones, settings.decay_gamma)
        self.opt_d = self.sched_d = None
        if self.d is not None:
            self.opt_d = torch.optim.Adam(self.d.parameters(), lr=settings.learning_rate, betas=settings.betas)
            self.sched_d = torch.optim.lr_scheduler.MultiStepLR(self.opt_d, settings.milestones, settings.decay_gamma)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.skipped = 0
        self.best: ValidationResult | None = None
        self.reference: dict[str, dict[str, float]] = {}  # "initial" and "bicubic" validation metrics

    # --- one iteration ----------------------------------------------------------------------

    def _autocast(self) -> torch.autocast:
        dtype = self.amp_dtype or torch.float32
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.amp_dtype is not None)

    def generator_loss(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """G's loss on a batch, its parts (detached) and G's output, without touching any optimiser."""
        s = self.settings
        with self._autocast():
            sr = self.g(lr)
            l1 = F.l1_loss(sr.float(), hr)
            if s.stage == "pixel":
                return l1, {"l1": l1.detach()}, sr
            parts = {"l1": l1}
            total = s.l1_weight * l1
            if self.d is not None:
                self.d.requires_grad_(False)
                real_logits = self.d(hr).detach()
                parts["adv"] = relativistic_g_loss(real_logits, self.d(sr))
                total = total + s.adv_weight * parts["adv"]
            if self.perceptual is not None:
                parts["perceptual"] = self.perceptual(sr.float().clamp(0, 1), hr).mean()
                total = total + s.perceptual_weight * parts["perceptual"]
        return total, {k: v.detach() for k, v in parts.items()}, sr

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        lr, hr = lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)
        self.opt_g.zero_grad(set_to_none=True)
        total, parts, sr = self.generator_loss(lr, hr)
        stepped = self._apply(total, self.g, self.opt_g)
        losses = {k: float(v) for k, v in parts.items()} | {"g_total": float(total.detach())}
        if self.d is not None:
            self.d.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                d_loss = relativistic_d_loss(self.d(hr), self.d(sr.detach()))
            self._apply(d_loss, self.d, self.opt_d)
            self.sched_d.step()
            losses["d"] = float(d_loss.detach())
        self.sched_g.step()
        self.scaler.update()
        if stepped:
            self._update_ema()
        self.step += 1
        return losses

    def _apply(self, loss: torch.Tensor, net: nn.Module, optimiser: torch.optim.Optimizer) -> bool:
        """Backward and step, unless the gradient is not finite (then skipped and counted)."""
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimiser)
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), self.settings.grad_clip)
        if not torch.isfinite(norm):
            optimiser.zero_grad(set_to_none=True)
            self.skipped += 1
            return False
        self.scaler.step(optimiser)
        return True

    @torch.no_grad()
    def _update_ema(self) -> None:
        weight = 1.0 - self.settings.ema_decay
        for average, current in zip(self.ema.parameters(), self.g.parameters()):
            average.lerp_(current.detach(), weight)

    # --- validation ---------------------------------------------------------------------------

    @torch.no_grad()
    def upscale(self, model: nn.Module, pairs: list[TrainingPair]) -> list[np.ndarray]:
        outs = []
        for start in range(0, len(pairs), 16):
            lr = torch.stack([to_tensor(p.lr) for p in pairs[start : start + 16]]).to(self.device)
            outs += [to_image(t) for t in model(lr)]
        return outs

    def validate(self, pairs: list[TrainingPair], model: nn.Module | None = None) -> ValidationResult:
        outs = self.upscale(self.ema if model is None else model, pairs)
        return _scores(self.step, outs, pairs)

    # --- checkpoints --------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """A checkpoint directory for the current step, written aside and renamed into place."""
        final = folder / f"{CHECKPOINT_PREFIX}{self.step:08d}"
        if final.exists():
            return final
        tmp = folder / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(_cpu(self.g.state_dict()), str(tmp / "generator.safetensors"), {"step": str(self.step)})
        save_file(_cpu(self.ema.state_dict()), str(tmp / "ema.safetensors"), {"step": str(self.step)})
        state = {
            "step": self.step,
            "skipped": self.skipped,
            "settings": json.dumps(self.settings.to_json(), sort_keys=True),
            "best": json.dumps(asdict(self.best) if self.best else None),
            "reference": json.dumps(self.reference),
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.d is not None:
            state |= {"d": self.d.state_dict(), "opt_d": self.opt_d.state_dict(), "sched_d": self.sched_d.state_dict()}
        torch.save(state, tmp / "state.pt")
        for path in tmp.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
        for old in checkpoints(folder)[:-2]:  # keep the newest two
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load(self, checkpoint: Path) -> None:
        try:
            state = torch.load(checkpoint / "state.pt", map_location=self.device, weights_only=True)
            g_state = load_file(str(checkpoint / "generator.safetensors"), device=str(self.device))
            ema_state = load_file(str(checkpoint / "ema.safetensors"), device=str(self.device))
        except Exception as exc:  # torch and safetensors raise several unrelated types
            raise InputError(f"{checkpoint}: unreadable checkpoint ({str(exc).splitlines()[0][:160]})") from None
        saved = json.loads(state["settings"])
        if saved != json.loads(json.dumps(self.settings.to_json(), sort_keys=True)):
            changed = sorted(k for k in saved if saved[k] != json.loads(json.dumps(self.settings.to_json()))[k])
            raise InputError(f"{checkpoint}: --resume with other settings than the run had ({', '.join(changed)})")
        self.g.load_state_dict(g_state)
        self.ema.load_state_dict(ema_state)
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.scaler.load_state_dict(state["scaler"])
        if self.d is not None:
            self.d.load_state_dict(state["d"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        self.step, self.skipped = int(state["step"]), int(state["skipped"])
        best = json.loads(state["best"])
        self.best = ValidationResult(**best) if best else None
        self.reference = json.loads(state["reference"])


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first (a half-written one has a .tmp name)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _scores(step: int, outs: list[np.ndarray], pairs: list[TrainingPair]) -> ValidationResult:
    return ValidationResult(
        step=step,
        psnr=float(np.mean([psnr(o, p.hr) for o, p in zip(outs, pairs)])),
        ssim=float(np.mean([ssim(o, p.hr) for o, p in zip(outs, pairs)])),
        perceptual=float(np.mean([st_lpips(o, p.hr) for o, p in zip(outs, pairs)])),
    )


def bicubic(pairs: list[TrainingPair]) -> list[np.ndarray]:
    return [cv2.resize(p.lr, p.hr.shape[1::-1], interpolation=cv2.INTER_CUBIC) for p in pairs]


def bicubic_scores(pairs: list[TrainingPair]) -> ValidationResult:
    return _scores(0, bicubic(pairs), pairs)


def write_grid(path: Path, pairs: list[TrainingPair], outs: list[np.ndarray]) -> None:
    """LR (nearest, ×4) | bicubic | SR | HR, one row per face, for the eye."""
    rows = []
    for pair, out, cubic in zip(pairs[:GRID_FACES], outs, bicubic(pairs[:GRID_FACES])):
        nearest = cv2.resize(pair.lr, pair.hr.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        rows.append(np.hstack([nearest, cubic, out, pair.hr]))
    write_png(path, np.vstack(rows))


@dataclass
class StageRun:
    """Where a stage keeps its state, and how often it validates and saves."""

    folder: Path
    val_every: int
    save_every: int
    workers: int = 0
    hooks: StageHooks = field(default_factory=StageHooks)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def run_stage(trainer: StageTrainer, dataset: PairDataset, val_pairs: list[TrainingPair], run: StageRun) -> ValidationResult:
    """Train from trainer.step to settings.iters; the best validation result of the stage (its EMA
    weights are in `best.safetensors`). Ctrl-C saves a checkpoint before it propagates."""
    s = trainer.settings
    metrics_log = run.folder / "metrics.jsonl"
    if trainer.step == 0 and not trainer.reference:
        trainer.reference = {"initial": asdict(trainer.validate(val_pairs)), "bicubic": asdict(bicubic_scores(val_pairs))}
    loader = DataLoader(
        dataset,
        batch_size=s.batch_size,
        sampler=IterationSampler(trainer.step, s.iters, s.batch_size),
        num_workers=run.workers,
        worker_init_fn=_worker_init if run.workers else None,
        persistent_workers=False,
    )
    try:
        for lr, hr in loader:
            losses = trainer.train_step(lr, hr)
            run.hooks.step(trainer.step, losses)
            last = trainer.step == s.iters
            if trainer.step % run.val_every == 0 or last:
                _validate(trainer, val_pairs, run, metrics_log, losses)
            if trainer.step % run.save_every == 0 or last:
                trainer.save(run.folder)
                run.hooks.saved(trainer.step)
    except KeyboardInterrupt:
        trainer.save(run.folder)
        run.hooks.saved(trainer.step)
        raise
    if trainer.best is None:  # resumed at the very end: nothing left to validate
        _validate(trainer, val_pairs, run, metrics_log, {})
    return trainer.best


def _validate(trainer: StageTrainer, val_pairs: list[TrainingPair], run: StageRun, log: Path, losses: dict[str, float]) -> None:
    outs = trainer.upscale(trainer.ema, val_pairs)
    result = _scores(trainer.step, outs, val_pairs)
    write_grid(run.folder / "val" / f"step-{trainer.step:08d}.png", val_pairs, outs)
    if result.better_than(trainer.best, trainer.settings.stage):
        trainer.best = result
        with atomic_path(run.folder / "best.safetensors") as tmp:
            save_file(_cpu(trainer.ema.state_dict()), str(tmp), {"step": str(trainer.step)})
    record = {
        "stage": trainer.settings.stage, **asdict(result), "losses": losses, "best_step": trainer.best.step,
        "bicubic": trainer.reference.get("bicubic"), "initial": trainer.reference.get("initial"),
    }
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    run.hooks.validated(result)
