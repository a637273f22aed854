"""`cctvsr finetune` as plain steps: check every input, run the stages, export a model directory.

Everything a user can get wrong (pool, faces, --init, --out) is checked before the first
iteration. The run's state lives in `<out>/train/`; the model directory (`config.json` written
last) appears only when the last stage has finished. The training machinery (pairs, the stage
trainer, losses) lives in `cctvsr/train/`; torch and numpy are imported by the functions that
need them, so the CLI can build its flags from `FinetuneOptions` without them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from cctvsr import __version__
from cctvsr.errors import InputError
from cctvsr.jobs.options import REQUIRED, SrOptions, option, same_as
from cctvsr.run_folder import check_schema, read_state, write_state

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cctvsr.degrade.pool import DegradationPool
    from cctvsr.faces.detections import FaceDetector
    from cctvsr.sr.rrdb import RRDBConfig
    from cctvsr.sr.weights import GeneratorWeights
    from cctvsr.train.data import HrFaces
    from cctvsr.train.trainer import StageHooks, StageSettings, ValidationResult

RUN_SCHEMA = 1  # of <out>/train/run.json; a file without the field is schema 1
STAGE_PLANS = {"pixel": ("pixel",), "gan": ("gan",), "both": ("pixel", "gan")}
STAGE_OPTIONS = ("iters", "batch_size", "lr_patch", "learning_rate", "l1_weight", "adv_weight", "perceptual_weight", "seed")
CONFIG_ONLY = ("ema_decay", "grad_clip")  # StageSettings fields a --config may set, without a flag
TOML_KEYS = frozenset(STAGE_OPTIONS + CONFIG_ONLY + ("jpeg_prob", "perceptual", "val_fraction", "val_every", "save_every", "stage"))


def _shown(value: Any) -> str:
    return f"{value:.0e}".replace("e-0", "e-") if isinstance(value, float) and 0 < value < 1e-3 else str(value)


def setting(fallback: Any, help: str, **limits: Any) -> Any:
    """An option a --config file may set too. On the command line it defaults to None ("not given",
    so that a flag wins over the file and the file over `fallback`); `{}` in `help` shows `fallback`."""
    f = option(None, help.format(_shown(fallback)), **limits)
    return dataclasses.field(default=None, metadata={**f.metadata, "fallback": fallback})


def fallbacks() -> dict[str, Any]:
    """The value of every `setting` that neither a flag nor --config gives."""
    return {f.name: f.metadata["fallback"] for f in dataclasses.fields(FinetuneOptions) if "fallback" in f.metadata}


@dataclass(frozen=True, kw_only=True)
class FinetuneOptions:
    pool: Path = option(REQUIRED, "Degradation pool from `cctvsr calibrate` (site.pool.npz).")
    hr_dir: Path = option(REQUIRED, "Folder of high-quality face photos (searched recursively).")
    out: Path = option(REQUIRED, "Model directory to write (usable as --model); run state in <out>/train/.", "--out", "-o")
    init: str = option("realesrgan-x4plus", "Starting generator: a registry name, model directory, .pth, or none (fresh, needs --arch).")
    arch: Optional[str] = option(None, "BLOCKS,FEAT,GROW of a fresh RRDBNet for --init none (the real one is 23,64,32).")
    stage: Optional[str] = setting(
        "gan",
        "pixel (L1 only: the faithful model), gan (the paper's losses; default) or both (pixel, then GAN from it; exports "
        "the pair for --fidelity).",
    )
    config: Optional[Path] = option(None, "TOML file of options (flat keys named like the flags, with underscores); flags win.")
    iters: Optional[int] = setting(5000, "Iterations per stage (default {}).", min=1)
    batch_size: Optional[int] = setting(16, "Pairs per iteration (default {}).", min=1)
    lr_patch: Optional[int] = setting(32, "LR patch size; HR patches are 4× (default {}).", min=8)
    learning_rate: Optional[float] = setting(1e-4, "Adam learning rate (default {}), halved at 50 % and 75 % of the iterations.", min=0.0)
    l1_weight: Optional[float] = setting(0.01, "GAN stage: weight of L1 (default {}, the paper's).", min=0.0)
    adv_weight: Optional[float] = setting(0.005, "GAN stage: weight of the relativistic adversarial loss (default {}).", min=0.0)
    perceptual_weight: Optional[float] = setting(0.001, "GAN stage: weight of the perceptual loss (default {}).", min=0.0)
    perceptual: Optional[str] = setting("auto", "auto (LPIPS-AlexNet when its files are here, else ST-LPIPS), lpips or stlpips.")
    jpeg_prob: Optional[float] = setting(
        None, "Probability of JPEG on a training pair (default: the pool's; 0 = the paper's kernel + noise ablation)."
    )
    val_fraction: Optional[float] = setting(0.1, "Share of the HR photos held out for validation (default {}).")
    val_every: Optional[int] = setting(500, "Validate (and keep the best EMA generator) every N iterations (default {}).", min=1)
    save_every: Optional[int] = setting(500, "Checkpoint every N iterations (default {}).", min=1)
    seed: Optional[int] = setting(0, "Seed of the split, the pairs and a fresh network (default {}).", min=0)
    detect_faces: bool = option(True, "Crop each photo to its detected faces (MTCNN / SCRFD); off: each photo is one face.")
    workers: int = option(2, "DataLoader worker processes degrading pairs.", min=0)
    device: str = same_as(SrOptions, "device")
    precision: str = option(
        "auto", "Training arithmetic: auto (fp16 AMP on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32), fp32, bf16 or fp16."
    )
    resume: bool = option(False, "Continue the run in --out exactly where it stopped.", "--resume")


@dataclass
class StageOutcome:
    stage: str
    best: ValidationResult
    reference: dict[str, dict[str, float]]
    iters: int
    skipped: int


@dataclass
class FinetuneSummary:
    model_dir: Path
    outcomes: list[StageOutcome]


def _stage_hooks() -> StageHooks:
    from cctvsr.train.trainer import StageHooks

    return StageHooks()


@dataclass
class FinetuneHooks:
    message: Callable[[str], None] = lambda text: None
    prepared: Callable[[], None] = lambda: None  # every input checked and loaded; training starts
    stage_started: Callable[[str, int, int], None] = lambda stage, start, iters: None
    stage: StageHooks = field(default_factory=_stage_hooks)


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


def parse_arch(value: str | None) -> RRDBConfig | None:
    from cctvsr.sr.rrdb import RRDBConfig

    if value is None:
        return None
    try:
        blocks, feat, grow = (int(part) for part in value.split(","))
    except ValueError:
        raise InputError(f"--arch must be BLOCKS,FEAT,GROW (e.g. 23,64,32), got {value!r}") from None
    if min(blocks, feat, grow) < 1:
        raise InputError(f"--arch values must be positive, got {value!r}")
    return RRDBConfig(num_block=blocks, num_feat=feat, num_grow_ch=grow)


@dataclass(frozen=True)
class Settings:
    """The options with --config merged in (flags win) and every setting filled from its fallback."""

    options: FinetuneOptions
    given: dict[str, Any]  # the settings a flag or --config gave

    @classmethod
    def of(cls, options: FinetuneOptions) -> Settings:
        defaults = fallbacks()
        config = read_config(options.config) if options.config is not None else {}
        given = config | {name: getattr(options, name) for name in defaults if getattr(options, name) is not None}
        return cls(replace(options, **(defaults | {k: v for k, v in given.items() if k in defaults})), given)

    @property
    def stage_fields(self) -> dict[str, Any]:
        """StageSettings fields shared by the stages."""
        return {k: getattr(self.options, k) for k in STAGE_OPTIONS} | {k: self.given[k] for k in CONFIG_ONLY if k in self.given}

    @property
    def recorded(self) -> dict[str, Any]:
        """run.json's "settings" (schema 1): the stage settings a flag or --config gave, and iters and seed always."""
        return {k: v for k, v in self.stage_fields.items() if k in self.given or k in ("iters", "seed")}


def stage_settings(stage: str, **changes: Any) -> StageSettings:
    """A stage's settings: FinetuneOptions' fallbacks, with `changes` (any StageSettings field)."""
    from cctvsr.train.trainer import StageSettings

    return StageSettings(stage=stage, **({k: fallbacks()[k] for k in STAGE_OPTIONS} | changes))


def _check_out(out: Path, resume: bool) -> None:
    """--out must be writable and, unless resuming, not hold a model or a run already."""
    from cctvsr.fsutil import ensure_writable_folder

    ensure_writable_folder(out)
    busy = (out / "config.json").exists() or (out / "train").exists()
    if busy and not resume:
        raise InputError(f"{out}: already holds a model or a fine-tuning run; use --resume or another --out")
    if resume and not (out / "train" / "run.json").is_file():
        raise InputError(f"{out}: no fine-tuning run to resume")


def _initial_weights(options: FinetuneOptions, arch: RRDBConfig | None) -> GeneratorWeights:
    import torch

    from cctvsr.sr.rrdb import RRDBNet
    from cctvsr.sr.weights import GeneratorWeights, load_generator_weights, tensors_sha256

    if options.init != "none":
        return load_generator_weights(options.init)
    if arch is None:
        raise InputError("--init none needs --arch BLOCKS,FEAT,GROW")
    torch.manual_seed(options.seed)
    state = RRDBNet(arch).state_dict()
    return GeneratorWeights(name="fresh", config=arch, state_dict=state, sha256=tensors_sha256(state), source="none")


def _pixel_start(weights: GeneratorWeights) -> dict[str, torch.Tensor] | None:
    """The pixel-stage weights --init carries, if any: a pixel/GAN pair's pixel half, or the
    weights of a directory that `finetune --stage pixel` wrote."""
    if weights.pixel_state_dict is not None:
        return dict(weights.pixel_state_dict)
    if weights.metadata.get("stage") == "pixel":
        return dict(weights.state_dict)
    return None


def _run_identity(settings: Settings, pool_sha: str, init: GeneratorWeights, faces: int) -> dict[str, Any]:
    options = settings.options
    return {
        "schema": RUN_SCHEMA,
        "pool_sha256": pool_sha,
        "init": {"name": init.name, "sha256": init.sha256},
        "architecture": asdict(init.config),
        "stage": options.stage,
        "settings": settings.recorded,
        "jpeg_prob": options.jpeg_prob,
        "perceptual": options.perceptual,
        "val_fraction": options.val_fraction,
        "hr_faces": faces,
    }


def _record_run(train_dir: Path, identity: dict[str, Any], resume: bool) -> None:
    path = train_dir / "run.json"
    if resume:
        before = read_state(path)
        check_schema(before, RUN_SCHEMA, path)
        same = {k: v for k, v in identity.items() if k != "schema"}
        changed = sorted(k for k in set(before) - {"schema"} | set(same) if before.get(k) != same.get(k))
        if changed:
            raise InputError(f"{path.parent.parent}: --resume with a different pool, faces or options ({', '.join(changed)})")
        return
    train_dir.mkdir(parents=True, exist_ok=True)
    write_state(path, identity)


@dataclass
class PreparedRun:
    """A fine-tuning run whose every input has been checked: what `train` trains on."""

    settings: Settings
    pool: DegradationPool
    pool_sha: str
    init: GeneratorWeights
    plans: dict[str, StageSettings]
    found: HrFaces
    train_faces: list[np.ndarray]
    val_faces: list[np.ndarray]
    device: torch.device

    @property
    def options(self) -> FinetuneOptions:
        return self.settings.options


def prepare(
    settings: Settings, arch: RRDBConfig | None, detector: FaceDetector | None, message: Callable[[str], None] = lambda text: None
) -> PreparedRun:
    """Check and load everything a run needs, so that bad input fails before any training."""
    from cctvsr.assets import sha256_file
    from cctvsr.degrade.pool import DegradationPool
    from cctvsr.device import resolve_device, resolve_precision
    from cctvsr.train.data import augment, load_hr_faces, split_faces

    options = settings.options
    if options.stage not in STAGE_PLANS:
        raise InputError(f"unknown --stage {options.stage!r}: pixel, gan or both")
    pool = DegradationPool.load(options.pool)
    if options.jpeg_prob is not None:
        if not 0.0 <= options.jpeg_prob <= 1.0:
            raise InputError(f"--jpeg-prob must be within [0, 1], got {options.jpeg_prob}")
        pool = replace(pool, jpeg_prob=options.jpeg_prob)
    device = resolve_device(options.device)
    resolve_precision(options.precision, device)  # refused here, before any training
    _check_out(options.out, options.resume)
    init = _initial_weights(options, arch)
    plans = {stage: stage_settings(stage, **settings.stage_fields) for stage in STAGE_PLANS[options.stage]}
    first = plans[STAGE_PLANS[options.stage][0]]
    found = load_hr_faces(options.hr_dir, detector, min_size=max(128, first.lr_patch * pool.scale))
    message(f"HR faces: {found.describe()}")
    for note in found.notes:
        message(f"skipped: {note}")
    train_faces, val_faces = split_faces(found, options.val_fraction, first.seed)
    train_faces = augment(train_faces, first.lr_patch * pool.scale)
    message(f"{len(train_faces)} training faces after augmentation, {len(val_faces)} validation faces")
    message(f"camera noise: {pool.noise_model}")
    return PreparedRun(settings, pool, sha256_file(options.pool), init, plans, found, train_faces, val_faces, device)


def train(prepared: PreparedRun, hooks: FinetuneHooks | None = None) -> FinetuneSummary:
    """Train the planned stages (resuming where checkpoints exist) and export the model directory."""
    import torch
    from safetensors.torch import load_file

    from cctvsr.sr.rrdb import RRDBNet
    from cctvsr.sr.weights import save_model_dir
    from cctvsr.train.data import PairDataset, validation_pairs
    from cctvsr.train.losses import perceptual_network
    from cctvsr.train.trainer import StageRun, StageTrainer, checkpoints, run_stage

    hooks = hooks or FinetuneHooks()
    options, init, plans, pool = prepared.options, prepared.init, prepared.plans, prepared.pool
    perceptual, perceptual_name = (None, "none")
    if any(s.uses_perceptual for s in plans.values()):
        perceptual, perceptual_name = perceptual_network(options.perceptual, prepared.device)
        hooks.message(f"perceptual loss: {perceptual_name}")
    train_dir = options.out / "train"
    _record_run(train_dir, _run_identity(prepared.settings, prepared.pool_sha, init, len(prepared.found.faces)), options.resume)

    pixel_state = _pixel_start(init) if options.stage == "gan" else None
    start_state = dict(pixel_state) if pixel_state is not None else dict(init.state_dict)
    outcomes: list[StageOutcome] = []
    results: dict[str, dict[str, torch.Tensor]] = {}
    for stage, settings in plans.items():
        folder = train_dir / stage
        generator = RRDBNet(init.config)
        generator.load_state_dict(start_state)
        trainer = StageTrainer(settings, generator, prepared.device, perceptual, amp=options.precision)
        latest = checkpoints(folder)
        if latest:
            trainer.load(latest[-1])
        hooks.stage_started(stage, trainer.step, settings.iters)
        dataset = PairDataset(prepared.train_faces, pool, settings.lr_patch, settings.batch_size, settings.seed)
        val_pairs = validation_pairs(prepared.val_faces, pool, settings.lr_patch, settings.seed)
        if trainer.step == 0 and not trainer.reference:  # a full-size model takes minutes here: say so
            hooks.message(f"{stage} stage: measuring the starting model and bicubic on {len(val_pairs)} validation pairs first")
        run = StageRun(folder, options.val_every, options.save_every, options.workers, hooks.stage)
        best = run_stage(trainer, dataset, val_pairs, run)
        results[stage] = load_file(str(folder / "best.safetensors"))
        outcomes.append(StageOutcome(stage, best, trainer.reference, settings.iters, trainer.skipped))
        start_state = results[stage]
    if "pixel" in results:
        pixel_state = results["pixel"]
    final = results["gan"] if "gan" in results else results["pixel"]
    metadata = {
        "stage": options.stage,
        "pool": {"path": str(options.pool), "sha256": prepared.pool_sha, "jpeg_prob": pool.jpeg_prob, "jpeg_quality": pool.jpeg_quality,
                 "noise": pool.noise_model},
        "init": {"name": init.name, "sha256": init.sha256, "source": init.source},
        "parameters": {stage: s.to_json() for stage, s in plans.items()} | {"perceptual": perceptual_name},
        "metrics": {o.stage: {"best": asdict(o.best), **o.reference} for o in outcomes},
        "seed": next(iter(plans.values())).seed,
        "hr_faces": {"train": len(prepared.train_faces), "validation": len(prepared.val_faces), "found": prepared.found.describe()},
        "versions": {"cctvsr": __version__, "torch": torch.__version__},
    }
    pair = pixel_state if (pixel_state is not None and "gan" in results) else None
    save_model_dir(options.out, init.config, final, pixel_state_dict=pair, metadata=metadata)
    return FinetuneSummary(options.out, outcomes)


def run(options: FinetuneOptions, hooks: FinetuneHooks | None = None, detector: FaceDetector | None = None) -> FinetuneSummary:
    """The `finetune` command: merge --config, check every input (before any training), train, export.
    `detector` replaces the one --detect-faces would create (tests)."""
    from cctvsr.evidence import keep_apart

    hooks = hooks or FinetuneHooks()
    settings = Settings.of(options)
    init_path = Path(options.init) if Path(options.init).exists() else None
    keep_apart([("--out", options.out)], [options.pool, options.hr_dir, options.config, init_path])
    arch = parse_arch(options.arch)
    if detector is None and options.detect_faces:
        from cctvsr.faces.detect import create_detector

        detector, message = create_detector("auto", min_face=40, scales=(1.0,))  # large HQ faces: one scale
        hooks.message(message)
    prepared = prepare(settings, arch, detector, hooks.message)
    hooks.prepared()
    return train(prepared, hooks)
