"""The `cctvsr` command line: argument handling and wiring only; the work lives in the stages."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)
from rich.text import Text
from rich.table import Table

from cctvsr import __version__
from cctvsr.errors import CctvsrError, InputError, OutputError, os_error_message
from cctvsr.jobs.options import command_from
from cctvsr.jobs.upscale import UpscaleOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Clear, honest ×4 super-resolution of faces from surveillance video (Aakerberg et al.).",
)
out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)

ModelOpt = Annotated[
    str,
    typer.Option(
        help="Registry name (see `cctvsr models`), model directory, ESRGAN/Real-ESRGAN .pth/.safetensors file, "
        "or a .onnx written by `cctvsr export-onnx` (--backend onnx/tensorrt)."
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when usable, else CPU), cpu or cuda.")]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="auto = fp16 + channels_last on CUDA, bf16 autocast on CPUs with AMX/AVX512-BF16, fp32 elsewhere; "
        "or fp32, bf16, fp16 (CUDA only)."
    ),
]
BatchOpt = Annotated[int, typer.Option(min=1, help="Most same-size crops run through the generator at once.")]
TileOpt = Annotated[
    int, typer.Option(min=0, help="Crops larger than tile + 2×overlap px are processed in tiles of this size (0 = never tile).")
]
TileOverlapOpt = Annotated[int, typer.Option(min=1, help="Context px each tile borrows from its neighbours, blended away.")]
FidelityOpt = Annotated[
    Optional[float],
    typer.Option(
        help="For a model directory holding a pixel/GAN pair (`finetune --stage both`): 1 = the faithful pixel model, "
        "0 = the GAN model, in between their interpolation. Default: the GAN model."
    ),
]


BackendOpt = Annotated[
    Optional[str],
    typer.Option(
        help="torch; onnx (ONNX Runtime on the best provider that works here: a .onnx --model as it is, otherwise the "
        "weights exported once into the user cache); or tensorrt (a native engine built once and cached). "
        "Default: torch, or onnx for a .onnx --model."
    ),
]


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}")


def _resolver(
    model: str, device: str, precision: str, batch_size: int, tile: int, tile_overlap: int,
    fidelity: float | None = None, backend: str | None = None,
):  # -> SuperResolver
    from cctvsr.sr.backends import create_resolver

    return create_resolver(
        model, backend=backend, device=device, precision=precision, batch_size=batch_size, tile=tile,
        tile_overlap=tile_overlap, fidelity=fidelity, warn=_warn,
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user can cause become one line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except CctvsrError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:  # the machine refused: read-only, full disk, permission, not a folder
        err_console.print(f"[bold red]error:[/] {os_error_message(exc)}")
        raise typer.Exit(OutputError.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]: files already written are complete")
        raise typer.Exit(130) from None


def _version(value: bool) -> None:
    if value:
        out_console.print(f"cctvsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Clear, honest ×4 super-resolution of faces from surveillance video."""


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        if not task.speed:
            return Text("")
        return Text(f"{task.speed:6.1f}/s" if task.speed >= 10 else f"{task.speed:6.3f}/s", style="progress.data.speed")


def _progress_counts() -> Progress:
    """Counters with rates for work whose total is unknown (a stream, a video being decoded)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        TextColumn("{task.completed:>7.0f}"),
        _RateColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


def _progress(*extra: ProgressColumn) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


@app.command()
@command_from(UpscaleOptions)
def upscale(options: UpscaleOptions) -> None:
    """Super-resolve whole images ×4 at whatever size they have (png, jpg, bmp, tiff, webp).

    Grey images stay grey, an alpha channel is carried through; unreadable files are reported and skipped, the others written, and the exit code is 1 when any file failed.
    """
    from cctvsr.jobs.upscale import run

    progress = _progress()  # shown once the inputs passed their checks and the model is loaded
    task = progress.add_task("upscaling", start=False, visible=False)

    def started(what: str, files: int) -> None:
        err_console.print(what)
        progress.update(task, total=files, visible=True)
        progress.start_task(task)
        progress.start()

    with user_errors():
        try:
            summary = run(options, warn=_warn, on_start=started, on_progress=lambda done: progress.update(task, completed=done))
        finally:
            progress.stop()
    table = Table(title="upscale", show_header=False)
    table.add_row("written", f"{len(summary.written)} PNG in {options.out}")
    table.add_row("failed", str(len(summary.failed)))
    table.add_row("model", summary.model)
    table.add_row("device", summary.device)
    rate = summary.lr_pixels / summary.seconds if summary.seconds else 0.0
    table.add_row("speed", f"{summary.lr_pixels / 1e6:.3f} LR Mpx in {summary.seconds:.1f} s ({rate:,.0f} px/s)")
    if summary.demo:
        table.add_row(
            "demo",
            f"{summary.demo.path}: ST-LPIPS to the original photo {summary.demo.st_lpips:.3f}"
            f" (bicubic {summary.demo.bicubic_st_lpips:.3f}; lower is closer)",
        )
    out_console.print(table)
    if summary.failed:
        for path, reason in summary.failed:
            err_console.print(f"[bold red]failed:[/] {reason}")
        names = ", ".join(str(path) for path, _ in summary.failed)
        err_console.print(f"[bold red]error:[/] {len(summary.failed)} of {summary.planned} images failed: {names}")
        raise typer.Exit(1)


@app.command()
def enhance(
    source: str = typer.Argument(..., help="Video file (mp4, mkv, avi, ts, raw .h264/.264, gif, ...), folder of videos/images, image, or rtsp:// / http(s):// stream."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: one sub-folder per input (<stem>-<sha8>/)."),
    model: ModelOpt = "realesrgan-x4plus",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchOpt = 8,
    tile: TileOpt = 256,
    tile_overlap: TileOverlapOpt = 16,
    fidelity: FidelityOpt = None,
    backend: BackendOpt = None,
    detector: Annotated[str, typer.Option(help="auto (InsightFace SCRFD when its pack is on disk, else the embedded CenterFace), centerface, mtcnn, or insightface.")] = "auto",
    insightface_pack: Annotated[str, typer.Option(help="InsightFace model pack for --detector insightface/auto: buffalo_l or buffalo_sc (non-commercial weights).")] = "buffalo_l",
    min_face: Annotated[int, typer.Option(min=1, help="Ignore faces whose box is smaller than this many px (CenterFace at ×1,2 finds most real faces of 12 px and more).")] = 10,
    det_scales: Annotated[str, typer.Option(help="Frame sizes CenterFace looks at, comma-separated: 1 = as it is (large faces), 2 = enlarged ×2 (faces under ~20 px; with 1, only around the weak peaks of the ×1 pass).")] = "1,2",
    det_threshold: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Detection score threshold (default: the detector's own).")] = None,
    best: Annotated[int, typer.Option(min=1, help="Best faces kept per track (by detector score, size, sharpness, pose, exposure).")] = 3,
    all_frames: Annotated[bool, typer.Option("--all-frames", help="Keep and enhance every face of every track, not only the best.")] = False,
    margin: Annotated[float, typer.Option(min=0.0, max=2.0, help="Crop margin around the face box, as a fraction of its size per side (clipped to the frame, never padded).")] = 0.4,
    min_track_len: Annotated[int, typer.Option(min=1, help="Tracks seen in fewer frames than this are dropped as false alarms.")] = 3,
    every: Annotated[int, typer.Option(min=1, help="Process every Nth frame.")] = 1,
    fps: Annotated[Optional[float], typer.Option(min=0.001, help="Process at most this many frames per second (by timestamp).")] = None,
    start: Annotated[Optional[float], typer.Option(min=0.0, help="Start at this time, seconds.")] = None,
    end: Annotated[Optional[float], typer.Option(min=0.0, help="Stop at this time, seconds.")] = None,
    time_offset: Annotated[float, typer.Option(help="Seconds added to the container's creation time (to correct a DVR clock).")] = 0.0,
    reconnect: Annotated[int, typer.Option(min=0, help="Reconnect attempts when a stream drops (exponential back-off).")] = 3,
    annotate: Annotated[Optional[Path], typer.Option(help="Also write the input with face boxes and track ids drawn (a single video input).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out (same input, options and model).")] = False,
) -> None:
    """Find, track and super-resolve ×4 the faces in surveillance video.

    Writes one folder per face track with the best views as LR | bicubic | SR PNGs, a manifest.jsonl (one line per saved face, with hashes and provenance), tracks.json and report.html. Super-resolved images are AI-enhanced, not original evidence, and are labelled so.
    """
    from cctvsr.annotate import AnnotatedVideo
    from cctvsr.enhance import (
        FAILED_FILE, FINISHED_FILE, MANIFEST_FILE, check_out_dir, discard_failed_start, library_versions, output_folder, prepare_folder,
        run_identity, tracks_document, why_no_faces, write_summaries,
    )
    from cctvsr.evidence import keep_apart
    from cctvsr.faces.detect import create_detector
    from cctvsr.faces.track import FaceTracker
    from cctvsr.fsutil import ensure_writable_file, ensure_writable_folder
    from cctvsr.manifest import ManifestWriter
    from cctvsr.pipeline import EnhanceOptions, FaceWriter, ProgressHooks, run_enhance
    from cctvsr.run_folder import write_state
    from cctvsr.video import FrameSampling, list_sources

    with user_errors():
        if end is not None and start is not None and end <= start:
            raise InputError("--end must be after --start")
        check_out_dir(out, resume)
        skipped: list[str] = []
        sources = list_sources(source, skipped=skipped)
        if sources[0].kind != "stream":
            keep_apart([("--out", out), ("--annotate", annotate)], [Path(source), *(item.path for item in sources)])
        if annotate is not None and (len(sources) != 1 or sources[0].kind == "image"):
            raise InputError("--annotate needs a single video or stream input")
        if annotate is not None:
            ensure_writable_file(annotate, "--annotate")
        ensure_writable_folder(out)
        options = EnhanceOptions(
            best=best, all_frames=all_frames, margin=margin, min_track_len=min_track_len,
            sampling=FrameSampling(every=every, fps=fps, start=start, end=end), time_offset=time_offset, reconnect=reconnect,
        )
        face_detector, message = create_detector(
            detector, pack=insightface_pack, min_face=min_face, threshold=det_threshold, scales=_det_scales(det_scales)
        )
        err_console.print(message)
        resolver = _resolver(model, device, precision, batch_size, tile, tile_overlap, fidelity, backend)
        weights = resolver.weights
        model_info = {"name": weights.name, "sha256": weights.sha256, "source": weights.source}
        err_console.print(f"model [bold]{weights.name}[/] on {resolver.plan.describe()}")
        versions = library_versions()

        warnings: list[str] = list(skipped)
        failed: list[tuple[str, str]] = []
        for item in sources:
            folder = output_folder(out, item)
            identity = run_identity(item, options, face_detector.name, model_info, resolver.plan.describe())
            try:
                state = prepare_folder(folder, identity, resume)
            except CctvsrError as exc:
                if len(sources) == 1:
                    raise
                failed.append((item.label, str(exc)))
                continue
            if state.finished is not None:
                out_console.print(f"{item.label}: already finished in {folder} (every listed file verified); left as it is")
                continue
            common = {
                "input": {"label": item.label, "sha256": item.sha256},
                "detector": face_detector.name,
                "model": model_info,
                "backend": resolver.plan.backend,
                "device": resolver.plan.device.type,
                "precision": resolver.plan.precision,
                "options": options.to_json(),
                "versions": versions,
            }
            annotated = AnnotatedVideo(annotate) if annotate else None
            try:
                with _progress_counts() as progress, ManifestWriter(folder / MANIFEST_FILE) as manifest:
                    frames_task = progress.add_task(f"frames  {item.label}", total=None)
                    found_task = progress.add_task("faces found", total=None)
                    saved_task = progress.add_task("faces enhanced", total=None)
                    hooks = ProgressHooks(
                        frame=lambda n: progress.update(frames_task, completed=n),
                        found=lambda n: progress.update(found_task, completed=n),
                        saved=lambda n: progress.update(saved_task, completed=n),
                    )
                    result = run_enhance(
                        item, options, face_detector, lambda rate: FaceTracker(rate, min_track_len=min_track_len), resolver,
                        FaceWriter(folder, manifest, common, f"{weights.name} (sha256 {weights.sha256[:12]})"),
                        done=state.done, hooks=hooks, on_frame=annotated.add if annotated else None,
                    )
            except BaseException as exc:
                if annotated:
                    annotated.abort()
                if isinstance(exc, InputError):
                    discard_failed_start(folder, state)
                    if len(sources) > 1:  # one damaged file never stops the others
                        failed.append((item.label, str(exc)))
                        continue
                raise
            if annotated:
                annotated.close()
            document = tracks_document(item, model_info, result, folder)
            write_summaries(folder, document)
            stats = result.decode
            write_state(folder / FINISHED_FILE, {
                "frames": result.frames, "frames_decoded": stats.frames_decoded, "faces_found": result.faces_found,
                "tracks": len(document["tracks"]), "faces_saved": result.faces_saved + result.faces_resumed,
                "damaged_skipped": stats.errors_skipped, "warnings": list(stats.warnings),
            })
            t = result.times
            summary = Table(title=f"enhance {item.label}", show_header=False)
            summary.add_row("frames", f"{result.frames} processed ({stats.frames_decoded} decoded)")
            summary.add_row("faces", f"{result.faces_found} detected, {len(document['tracks'])} tracks kept")
            empty = why_no_faces(result, len(document["tracks"]), face_detector.min_face, min_track_len)
            if empty:
                summary.add_row("[yellow]why none[/]", empty)
                warnings.append(f"{item.label}: {empty}")
            resumed = f" (+{result.faces_resumed} from the interrupted run)" if result.faces_resumed else ""
            summary.add_row("saved", f"{result.faces_saved} faces enhanced{resumed}")
            summary.add_row(
                "time (s)",
                f"decode {t.decode:.1f}, detect {t.detect:.1f}, track+select {t.track + t.select:.1f}, "
                f"SR {t.sr:.1f}, write {t.write:.1f}; producer waited on SR {t.queue_wait:.1f}",
            )
            summary.add_row("output", f"{folder} (report.html, manifest.jsonl, tracks.json)")
            if annotate:
                summary.add_row("annotated", str(annotate))
            out_console.print(summary)
            if stats.errors_skipped or stats.reconnects:
                warnings.append(
                    f"{item.label}: {stats.errors_skipped} damaged packets/frames skipped, {stats.reconnects} reconnect attempt(s)"
                )
            warnings += stats.warnings  # each already names its input
        if failed:
            write_state(out / FAILED_FILE, {"failed": [{"input": label, "reason": reason} for label, reason in failed], "skipped": skipped})
        else:
            (out / FAILED_FILE).unlink(missing_ok=True)
        for warning in warnings:
            err_console.print(f"[yellow]warning:[/] {warning}")
        if failed:
            for label, reason in failed:
                err_console.print(f"[bold red]failed:[/] {reason}")
            err_console.print(f"[bold red]error:[/] {len(failed)} of {len(sources)} inputs failed; the others were written")
            raise typer.Exit(1)


@app.command()
def calibrate(
    camera_dir: Annotated[Optional[Path], typer.Option(help="Footage of one site: videos and/or images, searched recursively.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The pool file to write (e.g. site.pool.npz).")] = None,
    show: Annotated[Optional[Path], typer.Option(help="Summarise an existing pool and write a preview PNG beside it, instead.")] = None,
    max_frames: Annotated[int, typer.Option(min=1, help="Frames sampled evenly across all the footage.")] = 64,
    faces_only: Annotated[bool, typer.Option("--faces-only", help="Estimate from detected faces of at least 64 px (as the paper did), not whole frames.")] = False,
    kernels: Annotated[int, typer.Option(min=1, help="Blur kernels to estimate (KernelGAN, one region each).")] = 8,
    kernel_iters: Annotated[int, typer.Option(min=1, help="Most KernelGAN iterations per kernel (the paper's 3000); it stops early once the kernel stops changing.")] = 3000,
    jobs: Annotated[int, typer.Option(min=0, help="Kernels estimated side by side, one process and one thread each (0 = one per CPU core).")] = 0,
    max_noise_patches: Annotated[int, typer.Option(min=0, help="Most noise patches kept.")] = 1000,
    jpeg_prob: Annotated[float, typer.Option(min=0.0, max=1.0, help="Probability that training degradation applies JPEG at the estimated quality.")] = 0.9,
    precision: Annotated[str, typer.Option(help="KernelGAN arithmetic: auto (bf16 where the CPU has it natively), fp32 or bf16.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed: a rerun with the same footage and options gives the same pool.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the kernels an interrupted calibration finished.")] = False,
) -> None:
    """Learn a camera's blur kernels, noise and compression from its own footage (KernelGAN + the paper's noise rule + JPEG estimation).

    Writes a DegradationPool that `finetune` and `evaluate` use to degrade faces the way this site's cameras do.
    """
    from cctvsr.calibrate import CalibrationOptions, calibrate as run_calibration
    from cctvsr.evidence import keep_apart
    from cctvsr.fsutil import ensure_writable_file
    from cctvsr.degrade.pool import DegradationPool
    from cctvsr.video import list_sources

    with user_errors():
        if show is not None:
            pool = DegradationPool.load(show)
            table = Table(title=f"pool {show}", show_header=False)
            for key, value in pool.summary().items():
                table.add_row(key.replace("_", " "), _pool_value(value))
            preview = show.with_name(show.name.removesuffix(".npz") + ".preview.png")
            pool.preview(preview)
            table.add_row("preview", str(preview))
            out_console.print(table)
            return
        if camera_dir is None or out is None:
            raise InputError("give --camera-dir and --out (or --show POOL)")
        if out.exists() and not resume:
            raise InputError(f"{out} exists; choose another --out or delete it first")
        if not camera_dir.is_dir():
            raise InputError(f"{camera_dir}: not a folder")
        keep_apart([("--out", out), ("--out", out.with_name(out.name + ".partial"))], [camera_dir])
        ensure_writable_file(out)
        skipped: list[str] = []
        sources = list_sources(str(camera_dir), skipped=skipped)
        for note in skipped:
            _warn(note)
        options = CalibrationOptions(
            max_frames=max_frames, faces_only=faces_only, seed=seed, kernels=kernels, kernel_iters=kernel_iters,
            precision=precision, max_noise_patches=max_noise_patches, jpeg_prob=jpeg_prob,
        )
        detector = None
        if faces_only:
            from cctvsr.faces.detect import create_detector

            detector, message = create_detector("auto")
            err_console.print(message)
        with _progress() as progress:
            tasks: dict[str, int] = {}
            current: list[str] = []
            iteration_task = progress.add_task("KernelGAN iterations", total=kernel_iters, visible=False)

            def on_stage(name: str, total: int) -> None:
                tasks[name] = progress.add_task(name, total=total)
                current[:] = [name]
                progress.update(iteration_task, visible=name == "kernels" and (jobs or os.cpu_count()) == 1)

            def on_iteration(done: int, total: int) -> None:
                progress.update(iteration_task, completed=done, total=total)

            report = run_calibration(
                sources, out, options, detector=detector, resume=resume, on_stage=on_stage,
                on_step=lambda done: progress.update(tasks[current[0]], completed=done),
                on_kernel_iteration=on_iteration, jobs=jobs or os.cpu_count() or 1,
            )
        if report.kernels_resumed:
            err_console.print(f"resumed: {report.kernels_resumed} of {len(report.kernel_estimates)} kernels reused from the interrupted run")
        summary = report.pool.summary()
        t = report.times
        table = Table(title=f"calibrate → {out}", show_header=False)
        table.add_row("footage", f"{len(sources)} inputs, {report.frames} frames sampled, {report.regions} regions")
        iters = [k["iterations"] for k in report.kernel_estimates]
        early = sum(k["stopped_early"] for k in report.kernel_estimates)
        table.add_row("kernels", f"{len(iters)} (iterations {min(iters)}–{max(iters)}, {early} stopped early), size {report.pool.kernels.shape[1]} px")
        sigma = summary["noise_sigma"]
        if sigma:
            table.add_row("noise", f"{len(report.pool.noise_patches)} patches, σ {sigma['mean']:.2f} ({sigma['min']:.2f}–{sigma['max']:.2f})")
        else:
            table.add_row("noise", "[yellow]none[/]: no smooth patch found")
            report.warnings.append(
                "no noise patch found: the paper's smooth-patch rule finds none in compressed or textured footage, so "
                "finetune will train without this camera's noise"
            )
        c = report.compression
        table.add_row("compression", f"JPEG quality {c.quality:.1f} ± {c.spread:.1f} ({c.method}{', exact' if c.exact else ''})")
        table.add_row("time (s)", f"sampling {t.sampling:.1f}, noise {t.noise:.1f}, compression {t.compression:.1f}, kernels {t.kernels:.1f}")
        out_console.print(table)
        for warning in report.warnings:
            err_console.print(f"[yellow]warning:[/] {warning}")


def _pool_value(value: object) -> str:
    """A pool summary value as a person reads it: stats as mean (min–max), nothing as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, dict) and set(value) == {"mean", "min", "max"}:
        return f"mean {value['mean']:.3g} ({value['min']:.3g}–{value['max']:.3g})"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _det_scales(text: str) -> tuple[float, ...]:
    from cctvsr.faces.scales import parse_scales

    try:
        return parse_scales(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _arch(value: str | None):  # -> RRDBConfig | None
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


@app.command()
def finetune(
    pool: Path = typer.Option(..., help="Degradation pool from `cctvsr calibrate` (site.pool.npz)."),
    hr_dir: Path = typer.Option(..., help="Folder of high-quality face photos (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write (usable as --model); run state in <out>/train/."),
    init: Annotated[str, typer.Option(help="Starting generator: a registry name, model directory, .pth, or none (fresh, needs --arch).")] = "realesrgan-x4plus",
    arch: Annotated[Optional[str], typer.Option(help="BLOCKS,FEAT,GROW of a fresh RRDBNet for --init none (the real one is 23,64,32).")] = None,
    stage: Annotated[Optional[str], typer.Option(help="pixel (L1 only: the faithful model), gan (the paper's losses; default) or both (pixel, then GAN from it; exports the pair for --fidelity).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file of options (flat keys named like the flags, with underscores); flags win.")] = None,
    iters: Annotated[Optional[int], typer.Option(min=1, help="Iterations per stage (default 5000).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Pairs per iteration (default 16).")] = None,
    lr_patch: Annotated[Optional[int], typer.Option(min=8, help="LR patch size; HR patches are 4× (default 32).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(min=0.0, help="Adam learning rate (default 1e-4), halved at 50 % and 75 % of the iterations.")] = None,
    l1_weight: Annotated[Optional[float], typer.Option(min=0.0, help="GAN stage: weight of L1 (default 0.01, the paper's).")] = None,
    adv_weight: Annotated[Optional[float], typer.Option(min=0.0, help="GAN stage: weight of the relativistic adversarial loss (default 0.005).")] = None,
    perceptual_weight: Annotated[Optional[float], typer.Option(min=0.0, help="GAN stage: weight of the perceptual loss (default 0.001).")] = None,
    perceptual: Annotated[Optional[str], typer.Option(help="auto (LPIPS-AlexNet when its files are here, else ST-LPIPS), lpips or stlpips.")] = None,
    jpeg_prob: Annotated[Optional[float], typer.Option(help="Probability of JPEG on a training pair (default: the pool's; 0 = the paper's kernel + noise ablation).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Share of the HR photos held out for validation (default 0.1).")] = None,
    val_every: Annotated[Optional[int], typer.Option(min=1, help="Validate (and keep the best EMA generator) every N iterations (default 500).")] = None,
    save_every: Annotated[Optional[int], typer.Option(min=1, help="Checkpoint every N iterations (default 500).")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="Seed of the split, the pairs and a fresh network (default 0).")] = None,
    detect_faces: Annotated[bool, typer.Option(help="Crop each photo to its detected faces (MTCNN / SCRFD); off: each photo is one face.")] = True,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes degrading pairs.")] = 2,
    device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option(help="Training arithmetic: auto (fp16 AMP on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32), fp32, bf16 or fp16.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out exactly where it stopped.")] = False,
) -> None:
    """Fine-tune the generator on HR faces degraded with a site's pool (the paper's training), and write a model directory.

    Checkpoints are written atomically; Ctrl-C saves one first, and --resume continues bit for bit (on CPU). The best EMA generator by validation is exported; `--stage both` also keeps the pixel model so that `upscale`/`enhance --fidelity` can trade texture for faithfulness.
    """
    from cctvsr.evidence import keep_apart
    from cctvsr.train.finetune import FinetuneHooks, FinetuneRequest, prepare_finetune, read_config, run_finetune
    from cctvsr.train.trainer import StageHooks

    with user_errors():
        flags = {
            "stage": stage, "iters": iters, "batch_size": batch_size, "lr_patch": lr_patch, "learning_rate": learning_rate,
            "l1_weight": l1_weight, "adv_weight": adv_weight, "perceptual_weight": perceptual_weight, "perceptual": perceptual,
            "jpeg_prob": jpeg_prob, "val_fraction": val_fraction, "val_every": val_every, "save_every": save_every, "seed": seed,
        }
        options = {"stage": "gan", "iters": 5000, "perceptual": "auto", "val_fraction": 0.1, "val_every": 500, "save_every": 500, "seed": 0}
        options |= read_config(config) if config is not None else {}
        options |= {k: v for k, v in flags.items() if v is not None}
        top = {k: options.pop(k) for k in ("stage", "perceptual", "val_fraction", "val_every", "save_every", "jpeg_prob") if k in options}
        keep_apart([("--out", out)], [pool, hr_dir, config, Path(init) if Path(init).exists() else None])
        request = FinetuneRequest(
            pool=pool, hr_dir=hr_dir, out=out, init=init, arch=_arch(arch), settings=options, workers=workers,
            resume=resume, device=device, precision=precision, **top,
        )
        detector = None
        if detect_faces:
            from cctvsr.faces.detect import create_detector

            detector, message = create_detector("auto", min_face=40, scales=(1.0,))  # large HQ faces: one scale
            err_console.print(message)
        prepared = prepare_finetune(request, detector, err_console.print)
        with _progress(_RateColumn()) as progress:
            task = progress.add_task("", total=None)

            def started(name: str, start: int, total: int) -> None:
                progress.update(task, description=f"{name} stage", completed=start, total=total)
                if start:
                    err_console.print(f"{name} stage: resumed at iteration {start}")

            def stepped(step: int, losses: dict[str, float]) -> None:
                shown = " ".join(f"{k} {_fixed(v, 4)}" for k, v in losses.items())
                progress.update(task, completed=step, description=f"{shown}")

            hooks = FinetuneHooks(
                message=err_console.print,
                stage_started=started,
                stage=StageHooks(
                    step=stepped,
                    validated=lambda r: progress.console.print(
                        f"step {r.step}: validation PSNR {r.psnr:.2f} dB, SSIM {r.ssim:.4f}, ST-LPIPS {_fixed(r.perceptual, 4)}"
                    ),
                ),
            )
            model_dir, outcomes = run_finetune(prepared, hooks)
        table = Table(title=f"finetune → {model_dir}")
        for column in ("stage", "best step", "PSNR dB", "SSIM", "ST-LPIPS", "vs initial model", "vs bicubic"):
            table.add_column(column)
        for o in outcomes:
            first, cubic = o.reference.get("initial", {}), o.reference.get("bicubic", {})
            table.add_row(
                o.stage, f"{o.best.step}/{o.iters}", f"{o.best.psnr:.2f}", f"{o.best.ssim:.4f}", _fixed(o.best.perceptual, 4),
                _delta(o.best, first), _delta(o.best, cubic),
            )
        out_console.print(table)
        out_console.print(f"use it with: cctvsr enhance VIDEO --model {model_dir}" + (" --fidelity 0.5" if len(outcomes) == 2 else ""))


def _fixed(value: float, places: int, signed: bool = False) -> str:
    """`value` to `places` decimals, never '-0.0000': what rounds to zero reads as 0, without a sign
    that would claim a direction (a tiny negative ST-LPIPS or difference is float noise)."""
    text = f"{value:{'+' if signed else ''}.{places}f}"
    return f"{0.0:.{places}f}" if float(text) == 0 else text


def _delta(best, reference: dict[str, float]) -> str:
    if not reference:
        return "-"
    return (
        f"PSNR {_fixed(best.psnr - reference['psnr'], 2, signed=True)} dB, "
        f"ST-LPIPS {_fixed(best.perceptual - reference['perceptual'], 4, signed=True)}"
    )


EvalModelOpt = Annotated[
    Optional[list[str]],
    typer.Option("--model", help="Model to compare with bicubic; repeat for several. Registry name, model directory or weights file (as `upscale --model`)."),
]


def _evaluation_methods(
    models: list[str], fidelities: list[float], device: str, precision: str, batch_size: int, tile: int, tile_overlap: int,
    backend: str | None,
):
    """Bicubic, then each model through the SuperResolver users run; a model directory with a
    pixel/GAN pair once per --fidelity value (without --fidelity: its GAN model)."""
    from cctvsr.evaluate.scoring import BICUBIC, Method

    methods = [BICUBIC]
    paired = False
    for name in models:
        resolver = _resolver(name, device, precision, batch_size, tile, tile_overlap, None, backend)
        resolvers = [resolver]
        if fidelities and getattr(resolver.weights, "has_fidelity_pair", False):  # an ONNX graph has one weight set
            paired = True
            resolvers = [_resolver(name, device, precision, batch_size, tile, tile_overlap, f, backend) for f in fidelities]
        for r in resolvers:
            label = r.weights.name
            if any(m.name == label for m in methods):
                label = f"{label} #{len(methods)}"
            methods.append(Method(label, r.upscale, f"{r.weights.source} (sha256 {r.weights.sha256[:12]}) on {r.plan.describe()}"))
    if fidelities and not paired:
        raise InputError("--fidelity needs a --model directory with a pixel/GAN pair (from `cctvsr finetune --stage both`)")
    return methods


def _evaluate_no_reference(folder: Path, tracks: list, out: Path, identity: bool) -> None:
    """Real footage without ground truth: labelled image statistics and per-track identity consistency."""
    from cctvsr.evaluate.noref import identity_consistency, image_statistics
    from cctvsr.evaluate.report import write_json

    faces = sum(len(t.faces) for t in tracks)
    with _progress() as progress:
        task = progress.add_task("measuring", total=2 if identity else 1)
        stats = image_statistics(tracks)
        progress.advance(task)
        consistency = identity_consistency(tracks) if identity else []
        progress.advance(task)
    table = Table(title=f"image statistics of {faces} faces in {len(tracks)} tracks of {folder} (descriptions, not quality scores)")
    for column in ("statistic", "LR", "bicubic", "SR"):
        table.add_column(column, justify="right")
    for name, by_kind in stats.items():
        table.add_row(name, *(f"{by_kind[k]:.3f}" if k in by_kind else "n/a" for k in ("lr", "bicubic", "sr")))
    out_console.print(table)
    if consistency:
        ids = Table(title="identity consistency within tracks: mean pairwise dlib descriptor distance (lower = more alike)")
        for column in ("track", "faces", "SR", "bicubic"):
            ids.add_column(column, justify="right")
        for row in consistency:
            ids.add_row(str(row["track"]), str(row["faces"]), f"{row['sr']:.4f}", f"{row['bicubic']:.4f}")
        out_console.print(ids)
    path = out / "no_reference.json"
    write_json(path, {"source": str(folder), "faces": faces, "tracks": len(tracks), "statistics": stats, "identity_consistency": consistency})
    out_console.print(f"written: {path}")


@app.command()
def evaluate(
    hr_dir: Annotated[Optional[Path], typer.Option(help="Folder of high-quality face photos (searched recursively); cropped to each face as `finetune` does.")] = None,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for evaluation.csv, evaluation.json and sheet.png."),
    model: EvalModelOpt = None,
    fidelity: Annotated[Optional[list[float]], typer.Option(min=0.0, max=1.0, help="Evaluate model directories with a pixel/GAN pair at this fidelity (1 = pixel, 0 = GAN); repeat to compare several.")] = None,
    protocol: Annotated[str, typer.Option(help="paper: kernel + Gaussian noise σ 8 + JPEG 30 (the paper's test; kernels from --pool, else built-in); pool: the --pool site degradation.")] = "paper",
    pool: Annotated[Optional[Path], typer.Option(help="Degradation pool from `cctvsr calibrate` (site.pool.npz).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the degradation: the same faces, protocol and seed give the same LR set.")] = 0,
    hr_size: Annotated[int, typer.Option(min=0, help="Ground-truth faces are their centred square shrunk to this many px (a multiple of 4; LR is a quarter); 0 = each face at its own size. Smaller faces are skipped.")] = 256,
    max_faces: Annotated[int, typer.Option(min=0, help="Evaluate only the first N faces (0 = all).")] = 0,
    save_lr: Annotated[Optional[Path], typer.Option(help="Also write the HR/LR set here (hr/, lr/, set.json) for re-use with --lr-dir.")] = None,
    lr_dir: Annotated[Optional[Path], typer.Option(help="Re-use a set written by --save-lr instead of degrading --hr-dir.")] = None,
    sheet_faces: Annotated[int, typer.Option(min=0, help="Faces on the side-by-side sheet.png (0 = no sheet).")] = 4,
    identity: Annotated[bool, typer.Option(help="Measure identity with dlib face descriptors (offline; CC0 weights).")] = True,
    detect_faces: Annotated[bool, typer.Option(help="Crop each photo to its detected faces (MTCNN / SCRFD); off: each photo is one face.")] = True,
    no_reference: Annotated[Optional[Path], typer.Option(help="Real footage without ground truth: an `enhance` output folder. Reports image statistics (not quality scores) of LR, bicubic and SR, and identity consistency within each track.")] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchOpt = 8,
    tile: TileOpt = 256,
    tile_overlap: TileOverlapOpt = 16,
    backend: BackendOpt = None,
) -> None:
    """Measure super-resolution on your own faces: the paper's protocol and metrics, bicubic and every --model side by side.

    PSNR/SSIM on Y and RGB, MS-SSIM, NLPD, ST-LPIPS, LPIPS-Alex and DISTS (when their backbones are in $TORCH_HOME/hub/checkpoints), and identity: the dlib descriptor distance of each output from its HR face. A metric that cannot run is listed as unavailable with the reason.
    """
    from cctvsr.evaluate.protocols import faces_for_evaluation, load_pairs, make_pairs, make_protocol, save_pairs
    from cctvsr.evidence import keep_apart
    from cctvsr.fsutil import ensure_writable_folder
    from cctvsr.evaluate.report import rich_table, write_outputs
    from cctvsr.evaluate.scoring import Evaluation, build_metrics, run_methods, score_results

    with user_errors():
        # Every option and input is checked first, then the outputs, then the long work starts.
        model_paths = [Path(m) for m in model or [] if Path(m).exists()]
        outputs = [("--out", out), ("--save-lr", save_lr)]
        if no_reference is not None:
            if hr_dir is not None or lr_dir is not None or model:
                raise InputError("--no-reference measures an enhance output as it is: no --hr-dir, --lr-dir or --model")
            from cctvsr.evaluate.noref import find_tracks

            tracks = find_tracks(no_reference)
            keep_apart(outputs, [no_reference])
            ensure_writable_folder(out)
            _evaluate_no_reference(no_reference, tracks, out, identity)
            return
        if (hr_dir is None) == (lr_dir is None):
            raise InputError("give either --hr-dir (faces to degrade) or --lr-dir (a set saved with --save-lr)")
        if hr_size % 4:
            raise InputError(f"--hr-size must be a multiple of 4, got {hr_size}")
        if lr_dir is not None and save_lr is not None:
            raise InputError("--save-lr with --lr-dir would only copy the set")
        chosen = make_protocol(protocol, pool, seed) if lr_dir is None else None
        methods = _evaluation_methods(model or [], fidelity or [], device, precision, batch_size, tile, tile_overlap, backend)
        if lr_dir is not None:
            pairs, described = load_pairs(lr_dir)
            if max_faces:
                pairs = pairs[:max_faces]
            source = f"{len(pairs)} faces from the saved set {lr_dir}"
        keep_apart(outputs, [hr_dir, lr_dir, pool, *model_paths])
        ensure_writable_folder(out)  # before any super-resolution or scoring
        if not model:  # a baseline on its own is legitimate, but rarely what was meant
            _warn(
                "no --model: only bicubic is measured; add --model realesrgan-x4plus (or a model directory or weights file; "
                "repeat --model for several) to compare super-resolution with it"
            )
        if lr_dir is None:
            detector = None
            if detect_faces:
                from cctvsr.faces.detect import create_detector

                detector, message = create_detector("auto", min_face=40, scales=(1.0,))  # large HQ faces: one scale
                err_console.print(message)
            found = faces_for_evaluation(hr_dir, detector, hr_size, max_faces)
            pairs = make_pairs(found.faces, found.sources, chosen, hr_size)
            described = chosen.describe()
            source = f"{len(pairs)} faces of {hr_dir} ({found.describe()})"
            if save_lr is not None:
                save_pairs(save_lr, pairs, chosen, hr_size)
        metric_list = build_metrics(min(min(p.hr.shape[:2]) for p in pairs), with_identity=identity)
        err_console.print(f"{source}; protocol {described}")
        with _progress() as progress:
            sr_task = progress.add_task("super-resolving", total=len(pairs) * len(methods))
            results = run_methods(pairs, methods, on_face=lambda: progress.advance(sr_task))
            score_task = progress.add_task("scoring", total=len(pairs) * len(methods))
            score_results(pairs, metric_list, results, on_face=lambda: progress.advance(score_task))
        evaluation = Evaluation(pairs, metric_list, results, described)
        extra = {"source": source, "hr_size": hr_size, "seed": seed}
        paths = write_outputs(out, evaluation, extra, sheet_faces)
        out_console.print(rich_table(evaluation, f"evaluate: {source}; {described}"))
        out_console.print("written: " + ", ".join(str(p) for p in paths.values()))


@app.command()
def models() -> None:
    """List every model cctvsr knows, whether its weights are here, and what can run them."""
    from cctvsr import registry
    from cctvsr.device import probe_hardware
    from cctvsr.sr.onnx_runtime import CPU_EP, PROVIDER_ORDER, usable_providers
    from cctvsr.sr.tensorrt import tensorrt_status
    from cctvsr.sr.weights import DEFAULT_MODEL, REGISTRY, weights_status

    with user_errors():
        for spec in REGISTRY.values():
            c = spec.config
            table = Table(title=f"model {spec.name}" + (" (default)" if spec.name == DEFAULT_MODEL else ""), show_header=False)
            table.add_row("about", spec.description)
            table.add_row("architecture", f"RRDBNet ×{c.scale}: {c.num_block} blocks, {c.num_feat} features, growth {c.num_grow_ch}")
            table.add_row("source", spec.source)
            table.add_row("licence", spec.licence)
            table.add_row("weights", weights_status(spec))
            out_console.print(table)

        # Every card of the registry (cctvsr/models.toml): files up to 64 MiB are sha256-checked, larger ones by size.
        cards = Table(title="Model registry (cctvsr/models.toml)")
        for column in ("name", "kind", "licence", "source", "here"):
            cards.add_column(column)
        for card in registry.cards():
            usable, status = registry.card_status(card)
            cards.add_row(card.name, card.kind, card.licence, card.source, status if usable else f"[yellow]{status}[/yellow]")
        out_console.print(cards)

        devices = Table(title="Devices and precisions usable here")
        for column in ("backend", "device", "precisions", "note"):
            devices.add_column(column)
        hardware = probe_hardware()
        bf16 = "native (AMX/AVX512-BF16)" if hardware.cpu_native_bf16 else "emulated: several times slower than fp32"
        auto_cpu = "bf16" if hardware.cpu_native_bf16 else "fp32"
        devices.add_row("torch", "cpu", "fp32, bf16", f"auto = {auto_cpu} + channels_last; bf16 {bf16}")
        for index, gpu in enumerate(hardware.cuda_devices):
            devices.add_row("torch", f"cuda:{index} {gpu}", "fp16, bf16, fp32", "auto = fp16 + channels_last")
        if not hardware.cuda_devices:
            devices.add_row("torch", "cuda", "-", "no CUDA device usable by this PyTorch build")
        providers = usable_providers()
        for name in PROVIDER_ORDER:
            note = "usable" if name in providers else "not usable here"
            if name == CPU_EP:
                devices.add_row("onnx", "cpu", "fp32", f"ONNX Runtime {name}: {note}")
            else:
                devices.add_row("onnx", "cuda", "fp16, fp32" if name in providers else "-", f"ONNX Runtime {name}: {note}")
        trt_usable, trt_note = tensorrt_status()
        devices.add_row("tensorrt", "cuda", "fp16, fp32" if trt_usable else "-", trt_note)
        out_console.print(devices)

        stlpips = registry.packaged("stlpips-alex")
        status = "present" if stlpips.locate() else f"missing (pip install {stlpips.distribution})"
        out_console.print(f"perceptual metric: ST-LPIPS AlexNet ({stlpips.licence}) from pip:{stlpips.distribution}: {status}")


@app.command("export-onnx")
def export_onnx(
    out: Annotated[Path, typer.Option("--out", "-o", help="The .onnx file to write (atomically; nothing is left there if the export fails).")],
    model: ModelOpt = "realesrgan-x4plus",
    fp16: Annotated[bool, typer.Option("--fp16", help="Export an fp16 graph (for CUDA / TensorRT); its parity is checked where CUDA ONNX Runtime runs.")] = False,
    fidelity: FidelityOpt = None,
    opset: Annotated[int, typer.Option(min=17, help="ONNX opset (17 or newer).")] = 17,
) -> None:
    """Export the generator to ONNX for ONNX Runtime and TensorRT: dynamic batch, height and width.

    Every export is compared with PyTorch fp32 on random face-sized inputs and a real photo (fp32: max abs diff ≤ 1e-3 and ≥ 60 dB PSNR, or the export fails); the result, the model name, weights sha256, --fidelity and cctvsr version are recorded in the file's metadata.
    """
    from cctvsr.evidence import keep_apart
    from cctvsr.fsutil import ensure_writable_file
    from cctvsr.sr.backends import load_weights
    from cctvsr.sr.export import EXPORT_STEPS, export_onnx as run_export

    with user_errors():
        keep_apart([("--out", out)], [Path(model)] if Path(model).exists() else [])
        ensure_writable_file(out)
        with err_console.status("loading weights …"):  # transient: a bad --model stays a one-line error
            weights = load_weights(model, fidelity)
        with _progress() as progress:  # the real model takes over a minute on a CPU: show each step
            task = progress.add_task("exporting", total=EXPORT_STEPS)
            started: list[str] = []

            def on_step(step: str) -> None:  # a step starting means the ones before it are done
                progress.update(task, description=step, completed=len(started))
                started.append(step)

            graph = run_export(weights, out, fp16=fp16, opset=opset, warn=_warn, on_step=on_step)
            progress.update(task, description="exported", completed=EXPORT_STEPS)
        parity = graph.parity
        table = Table(title=f"export-onnx → {out}", show_header=False)
        table.add_row("file", f"{out} ({out.stat().st_size / 1e6:.1f} MB, opset {graph.opset}, {graph.precision})")
        table.add_row("model", f"{graph.name} (weights sha256 {graph.sha256[:12]})")
        if fidelity is not None:
            table.add_row("fidelity", f"{fidelity:g}")
        if parity["checked"]:
            table.add_row("parity", f"{parity['provider']}: max abs diff {parity['max_abs_diff']:.2e}, PSNR ≥ {parity['min_psnr_db']:.1f} dB ({parity['limit']})")
            for case in parity["cases"]:
                table.add_row("", f"{case['label']}: {case['max_abs_diff']:.2e}, {case['psnr_db']:.1f} dB")
        else:
            table.add_row("parity", "unchecked (no CUDA ONNX Runtime here)")
        out_console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
