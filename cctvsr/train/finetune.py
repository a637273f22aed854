"""`cctvsr finetune` as plain steps: check every input, run the stages, export a model directory.

Everything a user can get wrong (pool, faces, --init, --out) is checked before the first
iteration. The run's state lives in `<out>/train/`; the model directory (`config.json` written
last) appears only when the last stage has finished.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from cctvsr import __version__
from cctvsr.assets import sha256_file
from cctvsr.run_folder import read_state, write_state
from cctvsr.degrade.pool import DegradationPool
from cctvsr.device import resolve_device, resolve_precision
from cctvsr.errors import InputError
from cctvsr.faces.detections import FaceDetector
from cctvsr.fsutil import ensure_writable_folder
from cctvsr.sr.rrdb import RRDBConfig, RRDBNet
from cctvsr.sr.weights import GeneratorWeights, load_generator_weights, save_model_dir, tensors_sha256
from cctvsr.train.data import HrFaces, PairDataset, augment, load_hr_faces, split_faces, validation_pairs
from cctvsr.train.losses import perceptual_network
from cctvsr.train.trainer import StageHooks, StageRun, StageSettings, StageTrainer, ValidationResult, checkpoints, run_stage

STAGE_PLANS = {"pixel": ("pixel",), "gan": ("gan",), "both": ("pixel", "gan")}
TOML_KEYS = frozenset(
    {"iters", "batch_size", "lr_patch", "learning_rate", "l1_weight", "adv_weight", "perceptual_weight", "ema_decay",
     "grad_clip", "seed", "jpeg_prob", "perceptual", "val_fraction", "val_every", "save_every", "stage"}
)


@dataclass(frozen=True)
class FinetuneRequest:
    pool: Path
    hr_dir: Path
    out: Path
    init: str = "realesrgan-x4plus"
    arch: RRDBConfig | None = None  # for init "none"
    stage: str = "gan"
    settings: dict[str, Any] = field(default_factory=dict)  # StageSettings fields shared by the stages
    jpeg_prob: float | None = None  # None: the pool's own
    perceptual: str = "auto"
    val_fraction: float = 0.1
    val_every: int = 500
    save_every: int = 500
    workers: int = 2
    resume: bool = False
    device: str = "auto"
    precision: str = "auto"  # autocast of the training step; see device.resolve_precision


@dataclass
class StageOutcome:
    stage: str
    best: ValidationResult
    reference: dict[str, dict[str, float]]
    iters: int
    skipped: int


@dataclass
class FinetuneHooks:
    message: Callable[[str], None] = lambda text: None
    stage_started: Callable[[str, int, int], None] = lambda stage, start, iters: None
    stage: StageHooks = field(default_factory=StageHooks)


def read_config(path: Path) -> dict[str, Any]:
    """Options from a TOML file (flat keys, the flags' names with underscores)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read --config ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(document) - TOML_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(TOML_KEYS))}")
    return document


def _check_out(out: Path, resume: bool) -> None:
    """--out must be writable and, unless resuming, not hold a model or a run already."""
    ensure_writable_folder(out)
    busy = (out / "config.json").exists() or (out / "train").exists()
    if busy and not resume:
        raise InputError(f"{out}: already holds a model or a fine-tuning run; use --resume or another --out")
    if resume and not (out / "train" / "run.json").is_file():
        raise InputError(f"{out}: no fine-tuning run to resume")


def _initial_weights(request: FinetuneRequest) -> GeneratorWeights:
    if request.init != "none":
        return load_generator_weights(request.init)
    if request.arch is None:
        raise InputError("--init none needs --arch BLOCKS,FEAT,GROW")
    torch.manual_seed(request.settings.get("seed", 0))
    state = RRDBNet(request.arch).state_dict()
    return GeneratorWeights(name="fresh", config=request.arch, state_dict=state, sha256=tensors_sha256(state), source="none")


def _pixel_start(weights: GeneratorWeights) -> dict[str, torch.Tensor] | None:
    """The pixel-stage weights --init carries, if any: a pixel/GAN pair's pixel half, or the
    weights of a directory that `finetune --stage pixel` wrote."""
    if weights.pixel_state_dict is not None:
        return dict(weights.pixel_state_dict)
    if weights.metadata.get("stage") == "pixel":
        return dict(weights.state_dict)
    return None


def _run_identity(request: FinetuneRequest, pool_sha: str, init: GeneratorWeights, faces: int) -> dict[str, Any]:
    return {
        "pool_sha256": pool_sha,
        "init": {"name": init.name, "sha256": init.sha256},
        "architecture": asdict(init.config),
        "stage": request.stage,
        "settings": request.settings,
        "jpeg_prob": request.jpeg_prob,
        "perceptual": request.perceptual,
        "val_fraction": request.val_fraction,
        "hr_faces": faces,
    }


def _record_run(train_dir: Path, identity: dict[str, Any], resume: bool) -> None:
    path = train_dir / "run.json"
    if resume:
        before = read_state(path)
        changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
        if changed:
            raise InputError(f"{path.parent.parent}: --resume with a different pool, faces or options ({', '.join(changed)})")
        return
    train_dir.mkdir(parents=True, exist_ok=True)
    write_state(path, identity)


@dataclass
class PreparedRun:
    """A fine-tuning run whose every input has been checked: what `run_finetune` trains on."""

    request: FinetuneRequest
    pool: DegradationPool
    pool_sha: str
    init: GeneratorWeights
    plans: dict[str, StageSettings]
    found: HrFaces
    train_faces: list[np.ndarray]
    val_faces: list[np.ndarray]
    device: torch.device


def prepare_finetune(request: FinetuneRequest, detector: FaceDetector | None, message: Callable[[str], None] = lambda text: None) -> PreparedRun:
    """Check and load everything a run needs, so that bad input fails before any training."""
    if request.stage not in STAGE_PLANS:
        raise InputError(f"unknown --stage {request.stage!r}: pixel, gan or both")
    pool = DegradationPool.load(request.pool)
    if request.jpeg_prob is not None:
        if not 0.0 <= request.jpeg_prob <= 1.0:
            raise InputError(f"--jpeg-prob must be within [0, 1], got {request.jpeg_prob}")
        pool = replace(pool, jpeg_prob=request.jpeg_prob)
    device = resolve_device(request.device)
    resolve_precision(request.precision, device)  # refused here, before any training
    _check_out(request.out, request.resume)
    init = _initial_weights(request)
    plans = {stage: StageSettings(stage=stage, **request.settings) for stage in STAGE_PLANS[request.stage]}
    first = plans[STAGE_PLANS[request.stage][0]]
    found = load_hr_faces(request.hr_dir, detector, min_size=max(128, first.lr_patch * pool.scale))
    message(f"HR faces: {found.describe()}")
    for note in found.notes:
        message(f"skipped: {note}")
    train_faces, val_faces = split_faces(found, request.val_fraction, first.seed)
    train_faces = augment(train_faces, first.lr_patch * pool.scale)
    message(f"{len(train_faces)} training faces after augmentation, {len(val_faces)} validation faces")
    return PreparedRun(request, pool, sha256_file(request.pool), init, plans, found, train_faces, val_faces, device)


def run_finetune(prepared: PreparedRun, hooks: FinetuneHooks | None = None) -> tuple[Path, list[StageOutcome]]:
    """Train the planned stages (resuming where checkpoints exist) and export the model directory."""
    hooks = hooks or FinetuneHooks()
    request, init, plans, pool = prepared.request, prepared.init, prepared.plans, prepared.pool
    perceptual, perceptual_name = (None, "none")
    if any(s.uses_perceptual for s in plans.values()):
        perceptual, perceptual_name = perceptual_network(request.perceptual, prepared.device)
        hooks.message(f"perceptual loss: {perceptual_name}")
    train_dir = request.out / "train"
    _record_run(train_dir, _run_identity(request, prepared.pool_sha, init, len(prepared.found.faces)), request.resume)

    pixel_state = _pixel_start(init) if request.stage == "gan" else None
    start_state = dict(pixel_state) if pixel_state is not None else dict(init.state_dict)
    outcomes: list[StageOutcome] = []
    results: dict[str, dict[str, torch.Tensor]] = {}
    for stage, settings in plans.items():
        folder = train_dir / stage
        generator = RRDBNet(init.config)
        generator.load_state_dict(start_state)
        trainer = StageTrainer(settings, generator, prepared.device, perceptual, amp=request.precision)
        latest = checkpoints(folder)
        if latest:
            trainer.load(latest[-1])
        hooks.stage_started(stage, trainer.step, settings.iters)
        dataset = PairDataset(prepared.train_faces, pool, settings.lr_patch, settings.batch_size, settings.seed)
        val_pairs = validation_pairs(prepared.val_faces, pool, settings.lr_patch, settings.seed)
        run = StageRun(folder, request.val_every, request.save_every, request.workers, hooks.stage)
        best = run_stage(trainer, dataset, val_pairs, run)
        results[stage] = load_file(str(folder / "best.safetensors"))
        outcomes.append(StageOutcome(stage, best, trainer.reference, settings.iters, trainer.skipped))
        start_state = results[stage]
    if "pixel" in results:
        pixel_state = results["pixel"]
    final = results["gan"] if "gan" in results else results["pixel"]
    metadata = {
        "stage": request.stage,
        "pool": {"path": str(request.pool), "sha256": prepared.pool_sha, "jpeg_prob": pool.jpeg_prob, "jpeg_quality": pool.jpeg_quality},
        "init": {"name": init.name, "sha256": init.sha256, "source": init.source},
        "parameters": {stage: s.to_json() for stage, s in plans.items()} | {"perceptual": perceptual_name},
        "metrics": {o.stage: {"best": asdict(o.best), **o.reference} for o in outcomes},
        "seed": next(iter(plans.values())).seed,
        "hr_faces": {"train": len(prepared.train_faces), "validation": len(prepared.val_faces), "found": prepared.found.describe()},
        "versions": {"cctvsr": __version__, "torch": torch.__version__},
    }
    pair = pixel_state if (pixel_state is not None and "gan" in results) else None
    save_model_dir(request.out, init.config, final, pixel_state_dict=pair, metadata=metadata)
    return request.out, outcomes


def finetune(request: FinetuneRequest, detector: FaceDetector | None, hooks: FinetuneHooks | None = None) -> tuple[Path, list[StageOutcome]]:
    """prepare_finetune, then run_finetune."""
    hooks = hooks or FinetuneHooks()
    return run_finetune(prepare_finetune(request, detector, hooks.message), hooks)
