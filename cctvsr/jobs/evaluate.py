"""`cctvsr evaluate`: bicubic and every --model on the same degraded faces, scored by the paper's
metrics and identity; or, with --no-reference, image statistics of an `enhance` output.

Every option and input is checked first, then the outputs, then the long work starts. numpy,
OpenCV and torch are imported by the functions that need them, so the CLI can build its flags from
`EvaluateOptions` without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cctvsr.errors import InputError
from cctvsr.jobs.options import REQUIRED, SrOptions, option, same_as

if TYPE_CHECKING:
    from cctvsr.evaluate.noref import NoReference
    from cctvsr.evaluate.scoring import Evaluation, Method


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    hr_dir: Optional[Path] = option(
        None, "Folder of high-quality face photos (searched recursively); cropped to each face as `finetune` does."
    )
    out: Path = option(REQUIRED, "Folder for evaluation.csv, evaluation.json and sheet.png.", "--out", "-o")
    model: Optional[list[str]] = option(
        None,
        "Model to compare with bicubic; repeat for several. Registry name, model directory or weights file (as `upscale --model`).",
        "--model",
    )
    fidelity: Optional[list[float]] = option(
        None,
        "Evaluate model directories with a pixel/GAN pair at this fidelity (1 = pixel, 0 = GAN); repeat to compare several.",
        min=0.0,
        max=1.0,
    )
    protocol: str = option(
        "paper",
        "paper: kernel + Gaussian noise σ 8 + JPEG 30 (the paper's test; kernels from --pool, else built-in); pool: the --pool "
        "site degradation.",
    )
    pool: Optional[Path] = option(None, "Degradation pool from `cctvsr calibrate` (site.pool.npz).")
    seed: int = option(0, "Seed of the degradation: the same faces, protocol and seed give the same LR set.")
    hr_size: int = option(
        256,
        "Ground-truth faces are their centred square shrunk to this many px (a multiple of 4; LR is a quarter); 0 = each face "
        "at its own size. Smaller faces are skipped.",
        min=0,
    )
    max_faces: int = option(0, "Evaluate only the first N faces (0 = all).", min=0)
    save_lr: Optional[Path] = option(None, "Also write the HR/LR set here (hr/, lr/, set.json) for re-use with --lr-dir.")
    lr_dir: Optional[Path] = option(None, "Re-use a set written by --save-lr instead of degrading --hr-dir.")
    sheet_faces: int = option(4, "Faces on the side-by-side sheet.png (0 = no sheet).", min=0)
    identity: bool = option(True, "Measure identity with dlib face descriptors (offline; CC0 weights).")
    detect_faces: bool = option(True, "Crop each photo to its detected faces (MTCNN / SCRFD); off: each photo is one face.")
    no_reference: Optional[Path] = option(
        None,
        "Real footage without ground truth: an `enhance` output folder. Reports image statistics (not quality scores) of LR, "
        "bicubic and SR, and identity consistency within each track.",
    )
    device: str = same_as(SrOptions, "device")
    precision: str = same_as(SrOptions, "precision")
    batch_size: int = same_as(SrOptions, "batch_size")
    tile: int = same_as(SrOptions, "tile")
    tile_overlap: int = same_as(SrOptions, "tile_overlap")
    backend: Optional[str] = same_as(SrOptions, "backend")

    def sr(self, model: str, fidelity: float | None = None) -> SrOptions:
        """How `model` is run: this command's shared super-resolution flags."""
        return SrOptions(
            model=model, device=self.device, precision=self.precision, batch_size=self.batch_size, tile=self.tile,
            tile_overlap=self.tile_overlap, fidelity=fidelity, backend=self.backend,
        )


@dataclass
class EvaluateHooks:
    message: Callable[[str], None] = lambda text: None
    warn: Callable[[str], None] | None = None
    # A progress bar: (what, total) → its advance-by-one callable.
    task: Callable[[str, int], Callable[[], None]] = lambda what, total: (lambda: None)


@dataclass
class EvaluateSummary:
    """With reference: `evaluation` and its files; --no-reference: `no_reference` and its JSON."""

    source: str = ""
    protocol: str = ""
    evaluation: Evaluation | None = None
    no_reference: NoReference | None = None
    paths: dict[str, Path] | None = None


def evaluation_methods(options: EvaluateOptions, warn: Callable[[str], None] | None = None) -> list[Method]:
    """Bicubic, then each model through the SuperResolver users run; a model directory with a
    pixel/GAN pair once per --fidelity value (without --fidelity: its GAN model)."""
    from cctvsr.evaluate.scoring import BICUBIC, Method

    fidelities = options.fidelity or []
    methods = [BICUBIC]
    paired = False
    for name in options.model or []:
        resolver = options.sr(name).resolver(warn)
        resolvers = [resolver]
        if fidelities and getattr(resolver.weights, "has_fidelity_pair", False):  # an ONNX graph has one weight set
            paired = True
            resolvers = [options.sr(name, f).resolver(warn) for f in fidelities]
        for r in resolvers:
            label = r.weights.name
            if any(m.name == label for m in methods):
                label = f"{label} #{len(methods)}"
            methods.append(Method(label, r.upscale, f"{r.weights.source} (sha256 {r.weights.sha256[:12]}) on {r.plan.describe()}"))
    if fidelities and not paired:
        raise InputError("--fidelity needs a --model directory with a pixel/GAN pair (from `cctvsr finetune --stage both`)")
    return methods


def _no_reference(options: EvaluateOptions, hooks: EvaluateHooks) -> EvaluateSummary:
    """Real footage without ground truth: labelled image statistics and per-track identity consistency."""
    from cctvsr.evaluate.noref import find_tracks, measure
    from cctvsr.evaluate.report import write_json
    from cctvsr.evidence import keep_apart
    from cctvsr.fsutil import ensure_writable_folder

    if options.hr_dir is not None or options.lr_dir is not None or options.model:
        raise InputError("--no-reference measures an enhance output as it is: no --hr-dir, --lr-dir or --model")
    folder = options.no_reference
    tracks = find_tracks(folder)
    keep_apart([("--out", options.out), ("--save-lr", options.save_lr)], [folder])
    ensure_writable_folder(options.out)
    found = measure(tracks, options.identity, hooks.task("measuring", 2 if options.identity else 1))
    path = options.out / "no_reference.json"
    write_json(path, {"source": str(folder), **found.to_json()})
    return EvaluateSummary(source=str(folder), no_reference=found, paths={"no_reference": path})


def run(options: EvaluateOptions, hooks: EvaluateHooks | None = None) -> EvaluateSummary:
    """The `evaluate` command: check, degrade (or load) the faces, super-resolve with every method,
    score, and write evaluation.csv, evaluation.json and sheet.png."""
    from cctvsr.evaluate.protocols import faces_for_evaluation, load_pairs, make_pairs, make_protocol, save_pairs
    from cctvsr.evaluate.report import write_outputs
    from cctvsr.evaluate.scoring import Evaluation, build_metrics, run_methods, score_results
    from cctvsr.evidence import keep_apart
    from cctvsr.fsutil import ensure_writable_folder

    hooks = hooks or EvaluateHooks()
    if options.no_reference is not None:
        return _no_reference(options, hooks)
    hr_dir, lr_dir, save_lr = options.hr_dir, options.lr_dir, options.save_lr
    if (hr_dir is None) == (lr_dir is None):
        raise InputError("give either --hr-dir (faces to degrade) or --lr-dir (a set saved with --save-lr)")
    if options.hr_size % 4:
        raise InputError(f"--hr-size must be a multiple of 4, got {options.hr_size}")
    if lr_dir is not None and save_lr is not None:
        raise InputError("--save-lr with --lr-dir would only copy the set")
    chosen = make_protocol(options.protocol, options.pool, options.seed) if lr_dir is None else None
    methods = evaluation_methods(options, hooks.warn)
    if lr_dir is not None:
        pairs, described = load_pairs(lr_dir)
        if options.max_faces:
            pairs = pairs[: options.max_faces]
        source = f"{len(pairs)} faces from the saved set {lr_dir}"
    model_paths = [Path(m) for m in options.model or [] if Path(m).exists()]
    keep_apart([("--out", options.out), ("--save-lr", save_lr)], [hr_dir, lr_dir, options.pool, *model_paths])
    ensure_writable_folder(options.out)  # before any super-resolution or scoring
    if not options.model and hooks.warn:  # a baseline on its own is legitimate, but rarely what was meant
        hooks.warn(
            "no --model: only bicubic is measured; add --model realesrgan-x4plus (or a model directory or weights file; "
            "repeat --model for several) to compare super-resolution with it"
        )
    if lr_dir is None:
        detector = None
        if options.detect_faces:
            from cctvsr.faces.detect import create_detector

            detector, message = create_detector("auto", min_face=40, scales=(1.0,))  # large HQ faces: one scale
            hooks.message(message)
        found = faces_for_evaluation(hr_dir, detector, options.hr_size, options.max_faces)
        pairs = make_pairs(found.faces, found.sources, chosen, options.hr_size)
        described = chosen.describe()
        source = f"{len(pairs)} faces of {hr_dir} ({found.describe()})"
        if save_lr is not None:
            save_pairs(save_lr, pairs, chosen, options.hr_size)
    metric_list = build_metrics(min(min(p.hr.shape[:2]) for p in pairs), with_identity=options.identity)
    hooks.message(f"{source}; protocol {described}")
    results = run_methods(pairs, methods, on_face=hooks.task("super-resolving", len(pairs) * len(methods)))
    score_results(pairs, metric_list, results, on_face=hooks.task("scoring", len(pairs) * len(methods)))
    evaluation = Evaluation(pairs, metric_list, results, described)
    extra = {"source": source, "hr_size": options.hr_size, "seed": options.seed}
    paths = write_outputs(options.out, evaluation, extra, options.sheet_faces)
    return EvaluateSummary(source=source, protocol=described, evaluation=evaluation, paths=paths)
