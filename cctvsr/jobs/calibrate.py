"""`cctvsr calibrate`: learn one site's degradation (blur kernels, noise, compression) from its own
footage and write it as a DegradationPool.

Frames are sampled evenly across every input; each kernel is estimated by KernelGAN on one region
(a whole frame, or a face of at least 64 px with `--faces-only`) and checkpointed as soon as it is
finished, so `--resume` after a kill only estimates the kernels that are missing.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from cctvsr import __version__
from cctvsr.errors import InputError
from cctvsr.jobs.options import option

if TYPE_CHECKING:  # the CLI builds its flags from CalibrateOptions before parsing: no numpy/av at import
    import numpy as np

    from cctvsr.degrade.jpeg import CompressionEstimate
    from cctvsr.degrade.kernels import KernelEstimate
    from cctvsr.degrade.pool import DegradationPool
    from cctvsr.faces.detections import FaceDetector
    from cctvsr.video import Frame, SourceInfo

MIN_FACE_REGION = 64  # px: KernelGAN needs room for its 64-px crops
MIN_FRAME = MIN_FACE_REGION  # px: footage whose every frame is smaller cannot be calibrated
SCHEMA = 1  # the checkpoint folder's format (state.json, kernels.jsonl, kernel_NNN.npz); raise it when that changes
EARLY_STOP = True  # KernelGAN stops once the kernel stops changing (recorded with the parameters)


@dataclass(frozen=True, kw_only=True)
class CalibrateOptions:
    """The `calibrate` flags; `parameters()` are the ones that decide the pool."""

    camera_dir: Optional[Path] = option(None, "Footage of one site: videos and/or images, searched recursively.")
    out: Optional[Path] = option(None, "The pool file to write (e.g. site.pool.npz).", "--out", "-o")
    show: Optional[Path] = option(None, "Summarise an existing pool and write a preview PNG beside it, instead.")
    max_frames: int = option(64, "Frames sampled evenly across all the footage.", min=1)
    faces_only: bool = option(
        False, "Estimate from detected faces of at least 64 px (as the paper did), not whole frames.", "--faces-only"
    )
    kernels: int = option(8, "Blur kernels to estimate (KernelGAN, one region each).", min=1)
    kernel_iters: int = option(
        3000, "Most KernelGAN iterations per kernel (the paper's 3000); it stops early once the kernel stops changing.", min=1
    )
    jobs: int = option(
        0, "Kernels estimated side by side, one process and one thread each (0 = one per CPU core).", min=0
    )
    max_noise_patches: int = option(1000, "Most noise patches kept.", min=0)
    jpeg_prob: float = option(
        0.9, "Probability that training degradation applies JPEG at the estimated quality.", min=0.0, max=1.0
    )
    precision: str = option("auto", "KernelGAN arithmetic: auto (bf16 where the CPU has it natively), fp32 or bf16.")
    seed: int = option(0, "Seed: a rerun with the same footage and options gives the same pool.")
    resume: bool = option(False, "Keep the kernels an interrupted calibration finished.", "--resume")

    def workers(self) -> int:
        """Processes estimating kernels side by side (`--jobs 0`: one per CPU core)."""
        return self.jobs or os.cpu_count() or 1

    def parameters(self) -> dict[str, Any]:
        """Everything that decides the pool (not where it goes, nor how many processes): recorded in
        the pool's metadata, and a resumed calibration must have the same."""
        return {
            "max_frames": self.max_frames, "faces_only": self.faces_only, "seed": self.seed, "kernels": self.kernels,
            "kernel_iters": self.kernel_iters, "early_stop": EARLY_STOP, "precision": self.precision,
            "max_noise_patches": self.max_noise_patches, "jpeg_prob": self.jpeg_prob,
        }


@dataclass
class CalibrationTimes:
    sampling: float = 0.0
    noise: float = 0.0
    compression: float = 0.0
    kernels: float = 0.0


@dataclass
class CalibrateSummary:
    """What a calibration found and wrote to `out`."""

    out: Path
    pool: DegradationPool
    inputs: int
    frames: int
    regions: int
    kernels_resumed: int
    compression: CompressionEstimate
    noise_sigma: dict[str, float] | None  # of the kept patches (mean, min, max); None when no smooth patch was found
    kernel_estimates: list[dict[str, Any]] = field(default_factory=list)
    times: CalibrationTimes = field(default_factory=CalibrationTimes)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PoolView:
    """`--show`: an existing pool's summary, and the preview PNG written beside it."""

    path: Path
    summary: dict[str, Any]
    preview: Path


def _frame_count(source: SourceInfo) -> int:
    """Frames in a file, from the container where it says, else by demuxing (no decoding)."""
    import av

    if source.kind == "image":
        return 1
    with av.open(str(source.path)) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)


def sample_frames(sources: Sequence[SourceInfo], max_frames: int, warnings: list[str]) -> list[tuple[SourceInfo, Frame]]:
    """Up to `max_frames` frames spread evenly over all the footage, in order."""
    import numpy as np

    from cctvsr.video import DecodeStats, read_frames

    if any(source.kind == "stream" for source in sources):
        raise InputError("calibrate needs recorded footage (files or folders), not a live stream")
    counts = [_frame_count(source) for source in sources]
    total = sum(counts)
    if total == 0:
        raise InputError("no frames found in the camera footage")
    wanted = set(np.unique(np.linspace(0, total - 1, min(max_frames, total)).round().astype(int)).tolist())
    sampled: list[tuple[SourceInfo, Frame]] = []
    offset = 0
    for source, count in zip(sources, counts):
        indices = {g - offset for g in wanted if offset <= g < offset + count}
        offset += count
        if not indices:
            continue
        stats = DecodeStats()
        frames = read_frames(source, stats=stats)
        try:
            for frame in frames:
                if frame.index in indices:
                    sampled.append((source, frame))
                if frame.index >= max(indices):
                    break
        finally:
            frames.close()  # type: ignore[attr-defined]
        warnings.extend(stats.warnings)
    if not sampled:
        raise InputError("no frame of the camera footage could be decoded")
    return sampled


def estimation_regions(
    frames: Sequence[Frame], faces_only: bool, detector: FaceDetector | None
) -> list[np.ndarray]:
    """Whole frames, or every face region of at least 64 px (the paper estimated from faces)."""
    from cctvsr.faces.crop import crop_face

    if not faces_only:
        return [frame.image for frame in frames]
    assert detector is not None
    regions = []
    for frame in frames:
        detections = detector.detect(frame.image)
        for box in detections.boxes:
            crop = crop_face(frame.image, box, margin=0.2)
            if min(crop.image.shape[:2]) >= MIN_FACE_REGION:
                regions.append(crop.image)
    return regions


def _usable(k4: np.ndarray) -> bool:
    """A blur the pool can use: finite, summing to 1, mass centred on the centre pixel (an early
    KernelGAN estimate can be a near-zero-sum pattern whose centre of mass is meaningless)."""
    import numpy as np

    if not np.all(np.isfinite(k4)) or abs(float(k4.sum()) - 1.0) > 1e-3:
        return False
    rows, cols = np.indices(k4.shape)
    centre = (k4.shape[0] - 1) / 2
    return max(abs(float((rows * k4).sum()) - centre), abs(float((cols * k4).sum()) - centre)) <= 0.5


def _pick(regions: Sequence[np.ndarray], count: int) -> list[int]:
    """`count` region indices spread evenly, so kernels come from all of the footage."""
    import numpy as np

    return np.unique(np.linspace(0, len(regions) - 1, count).round().astype(int)).tolist()


class KernelCheckpoint:
    """Finished kernels beside the output (`<out>.partial/`), valid only for the same inputs and options.
    Each kernel file is listed with its sha256 in `kernels.jsonl`, and `--resume` verifies them all.
    `state.json` holds `identity` and the folder's SCHEMA; a folder of another schema is refused."""

    def __init__(self, out: Path, identity: dict[str, Any], resume: bool) -> None:
        from cctvsr.output.manifest import read_manifest
        from cctvsr.run_folder import check_schema, read_state, verify_listed, write_state

        self.folder = out.with_name(out.name + ".partial")
        state = self.folder / "state.json"
        identity = {**identity, "schema": SCHEMA}
        self.listed: dict[str, str] = {}
        if self.folder.exists() and resume:
            found = read_state(state)
            check_schema(found, SCHEMA, state)
            if {**found, "schema": SCHEMA} != identity:  # a folder from before the schema field is schema 1
                raise InputError(f"--resume: the footage or options differ from the interrupted calibration in {self.folder}")
            self.listed = {r["path"]: r["sha256"] for r in read_manifest(self.folder / "kernels.jsonl")}
            verify_listed(self.folder, self.listed.items())
        else:
            if self.folder.exists():
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True)
            write_state(state, identity)

    def _path(self, index: int) -> Path:
        return self.folder / f"kernel_{index:03d}.npz"

    def load(self, index: int) -> KernelEstimate | None:
        import numpy as np

        from cctvsr.degrade.kernels import KernelEstimate

        if self._path(index).name not in self.listed:  # written but not listed: a kill between the two
            return None
        try:
            with np.load(self._path(index), allow_pickle=False) as data:
                return KernelEstimate(
                    k2=data["k2"], k4=data["k4"], iterations=int(data["iterations"]),
                    stopped_early=bool(data["stopped_early"]), seconds=float(data["seconds"]),
                )
        except (OSError, KeyError, ValueError):
            return None

    def save(self, index: int, estimate: KernelEstimate) -> None:
        import numpy as np

        from cctvsr.fsutil import atomic_path
        from cctvsr.output.manifest import ManifestWriter

        buffer = io.BytesIO()
        np.savez(buffer, k2=estimate.k2, k4=estimate.k4, iterations=estimate.iterations,
                 stopped_early=estimate.stopped_early, seconds=estimate.seconds)
        with atomic_path(self._path(index)) as tmp:
            tmp.write_bytes(buffer.getvalue())
        with ManifestWriter(self.folder / "kernels.jsonl") as ledger:
            ledger.append({"path": self._path(index).name, "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()})

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _ignore(*_: Any) -> None:
    return None


def run(
    options: CalibrateOptions,
    *,
    warn: Callable[[str], None] = _ignore,
    on_start: Callable[[str | None], None] = _ignore,
    on_stage: Callable[[str, int], None] = _ignore,
    on_step: Callable[[int], None] = _ignore,
    on_kernel_iteration: Callable[[int, int], None] | None = None,
) -> CalibrateSummary | PoolView:
    """The `calibrate` command: with --show, summarise an existing pool; otherwise check the inputs,
    then `on_start(note)` (the face detector's description under --faces-only, else None) as the
    work begins, each stage announced by `on_stage(name, total)` and advanced by `on_step(done)`."""
    from cctvsr.evidence import keep_apart
    from cctvsr.fsutil import ensure_writable_file
    from cctvsr.video import list_sources

    if options.show is not None:
        return view_pool(options.show)
    camera_dir, out = options.camera_dir, options.out
    if camera_dir is None or out is None:
        raise InputError("give --camera-dir and --out (or --show POOL)")
    if out.exists() and not options.resume:
        raise InputError(f"{out} exists; choose another --out or delete it first")
    if not camera_dir.is_dir():
        raise InputError(f"{camera_dir}: not a folder")
    keep_apart([("--out", out), ("--out", out.with_name(out.name + ".partial"))], [camera_dir])
    ensure_writable_file(out)
    skipped: list[str] = []
    sources = list_sources(str(camera_dir), skipped=skipped)
    for note in skipped:
        warn(note)
    detector, note = None, None
    if options.faces_only:
        from cctvsr.faces.detect import create_detector

        detector, note = create_detector("auto")
    on_start(note)
    summary = estimate_pool(
        sources, out, options, detector=detector, on_stage=on_stage, on_step=on_step,
        on_kernel_iteration=on_kernel_iteration,
    )
    if summary.pool.gaussian_sigmas is None and summary.noise_sigma is None:
        why = (summary.pool.noise or {}).get("note") or "no method applies to this footage"
        summary.warnings.append(
            f"the camera's noise could not be measured ({why}), so finetune will train without it"
        )
    return summary


def view_pool(path: Path) -> PoolView:
    """`--show`: load a pool (a damaged one is a one-line refusal) and write its preview beside it."""
    from cctvsr.degrade.pool import DegradationPool

    pool = DegradationPool.load(path)
    preview = path.with_name(path.name.removesuffix(".npz") + ".preview.png")
    summary = pool.summary()
    pool.preview(preview)
    return PoolView(path, summary, preview)


def estimate_pool(
    sources: Sequence[SourceInfo],
    out: Path,
    options: CalibrateOptions,
    *,
    detector: FaceDetector | None = None,
    on_stage: Callable[[str, int], None] = _ignore,
    on_step: Callable[[int], None] = _ignore,
    on_kernel_iteration: Callable[[int, int], None] | None = None,
) -> CalibrateSummary:
    """Estimate the pool and write it to `out` atomically; the checkpoint is removed on success.
    `options.workers()` processes estimate kernels side by side (the kernels do not depend on it)."""
    import numpy as np

    from cctvsr.degrade.camera_noise import measure_camera_noise
    from cctvsr.degrade.jpeg import estimate_compression
    from cctvsr.degrade.kernels import KernelEstimate, estimate_kernels
    from cctvsr.degrade.noise import NoisePatchCollector
    from cctvsr.degrade.pool import DegradationPool

    times, warnings = CalibrationTimes(), []
    parameters = options.parameters()
    identity = {
        "sources": [{"label": s.label, "sha256": s.sha256} for s in sources],
        "options": parameters,
        "cctvsr": __version__,
    }
    checkpoint = KernelCheckpoint(out, identity, options.resume)

    t0 = time.perf_counter()
    sampled = sample_frames(sources, options.max_frames, warnings)
    frames = [frame for _, frame in sampled]
    if frames and max(min(frame.image.shape[:2]) for frame in frames) < MIN_FRAME:
        raise InputError(f"every frame is smaller than {MIN_FRAME}×{MIN_FRAME} px; too small to calibrate from")
    regions = estimation_regions(frames, options.faces_only, detector)
    if len(regions) < options.kernels:
        what = f"face regions of at least {MIN_FACE_REGION} px" if options.faces_only else "frames"
        raise InputError(f"only {len(regions)} {what} found in the footage; need {options.kernels} (lower --kernels)")
    times.sampling = time.perf_counter() - t0

    t0 = time.perf_counter()
    on_stage("noise patches", len(regions))
    collector = NoisePatchCollector()
    for done, region in enumerate(regions, 1):
        collector.add(region)
        on_step(done)
    noise = collector.patches(options.max_noise_patches, np.random.default_rng(options.seed))
    patch_sigma = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2, axis=(1, 2, 3))).mean()) if len(noise) else None
    on_stage("sensor noise", 1)
    sensor = measure_camera_noise(sources, patch_sigma=patch_sigma, patches_frames=len(frames))
    on_step(1)
    times.noise = time.perf_counter() - t0

    t0 = time.perf_counter()
    on_stage("compression", 1)
    by_source = [(source.path, [f.image for src, f in sampled if src is source]) for source in sources]
    compression = estimate_compression([item for item in by_source if item[1]], max_frames=options.max_frames)
    on_step(1)
    times.compression = time.perf_counter() - t0

    t0 = time.perf_counter()
    picks = _pick(regions, options.kernels)
    on_stage("kernels", len(picks))
    found = {index: checkpoint.load(index) for index in range(len(picks))}
    by_index: dict[int, KernelEstimate] = {i: e for i, e in found.items() if e is not None}
    resumed = len(by_index)
    on_step(resumed)
    todo = [index for index in range(len(picks)) if index not in by_index]
    for position, estimate in estimate_kernels(
        [regions[picks[i]] for i in todo], [options.seed * 1000 + i for i in todo], jobs=options.workers(),
        iters=options.kernel_iters, precision=options.precision, early_stop=EARLY_STOP,
        progress=on_kernel_iteration,
    ):
        checkpoint.save(todo[position], estimate)
        by_index[todo[position]] = estimate
        on_step(len(by_index))
    estimates = [by_index[i] for i in range(len(picks))]
    times.kernels = time.perf_counter() - t0

    kernel_log = [
        {"region": int(i), "iterations": e.iterations, "stopped_early": e.stopped_early, "seconds": round(e.seconds, 2),
         "usable": _usable(e.k4)}
        for i, e in zip(picks, estimates)
    ]
    usable = [e.k4 for e, entry in zip(estimates, kernel_log) if entry["usable"]]
    if len(usable) < len(estimates):
        warnings.append(f"{len(estimates) - len(usable)} of {len(estimates)} kernels did not converge (not a centred blur) and were left out")
    if not usable:
        raise InputError("no blur kernel converged; raise --kernel-iters (the paper used 3000)")
    size = max(k.shape[0] for k in usable)
    kernels = np.stack([np.pad(k, (size - k.shape[0]) // 2) for k in usable]).astype(np.float32)
    metadata = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cctvsr": __version__,
        "sources": identity["sources"],
        "parameters": parameters,
        "seed": options.seed,
        "frames_sampled": len(frames),
        "regions": len(regions),
        "kernels": kernel_log,
        "noise": {"patches_found": len(collector), "patches_kept": int(len(noise))},
        "compression": asdict(compression),
    }
    pool = DegradationPool(
        kernels=kernels,
        noise_patches=noise,
        jpeg_quality=compression.quality,
        jpeg_prob=options.jpeg_prob,
        metadata=metadata,
        noise=sensor.header(),
    )
    pool.save(out)
    checkpoint.discard()
    return CalibrateSummary(
        out=out, pool=pool, inputs=len(sources), frames=len(frames), regions=len(regions), kernels_resumed=resumed,
        compression=compression, noise_sigma=pool.summary()["noise_sigma"], kernel_estimates=kernel_log, times=times,
        warnings=warnings,
    )
