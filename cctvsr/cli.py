"""The `cctvsr` command line: argument handling and wiring only; the work lives in the stages."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.markup import escape
from rich.table import Table

from cctvsr import __version__
from cctvsr.errors import CctvsrError, OutputError, os_error_message
from cctvsr.jobs.calibrate import CalibrateOptions
from cctvsr.jobs.enhance import EnhanceOptions
from cctvsr.jobs.evaluate import EvaluateOptions, EvaluateSummary
from cctvsr.jobs.export import ExportOptions
from cctvsr.jobs.finetune import FinetuneOptions
from cctvsr.jobs.options import command_from
from cctvsr.jobs.upscale import UpscaleOptions
from cctvsr.terminal import (
    RateColumn, delta, err_console, fixed, out_console, pool_value, progress_bar, progress_counts, stopped_after, warn,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Clear, honest ×4 super-resolution of faces from surveillance video (Aakerberg et al.).",
)


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user can cause become one line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except CctvsrError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")  # messages quote paths and extras: [..] is text
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:  # the machine refused: read-only, full disk, permission, not a folder
        err_console.print(f"[bold red]error:[/] {escape(os_error_message(exc))}")
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


@app.command()
@command_from(UpscaleOptions)
def upscale(options: UpscaleOptions) -> None:
    """Super-resolve whole images ×4 at whatever size they have (png, jpg, bmp, tiff, webp).

    Grey images stay grey, an alpha channel is carried through; unreadable files are reported and skipped, the others written, and the exit code is 1 when any file failed.
    """
    from cctvsr.jobs.upscale import run

    progress = progress_bar()  # shown once the inputs passed their checks and the model is loaded
    task = progress.add_task("upscaling", start=False, visible=False)

    def started(what: str, files: int) -> None:
        err_console.print(what)
        progress.update(task, total=files, visible=True)
        progress.start_task(task)
        progress.start()

    with user_errors(), stopped_after(progress):
        summary = run(options, warn=warn, on_start=started, on_progress=lambda done: progress.update(task, completed=done))
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
@command_from(EnhanceOptions)
def enhance(options: EnhanceOptions) -> None:
    """Find, track and super-resolve ×4 the faces in surveillance video.

    Writes one folder per face track with the best views as LR | bicubic | SR PNGs, a manifest.jsonl (one line per saved face, with hashes and provenance), tracks.json and report.html. Super-resolved images are AI-enhanced, not original evidence, and are labelled so.
    """
    from cctvsr.jobs.enhance import run

    @contextmanager
    def progress(label: str) -> Iterator:  # -> Iterator[ProgressHooks]
        from cctvsr.pipeline import ProgressHooks

        with progress_counts() as bars:
            frames_task = bars.add_task(f"frames  {label}", total=None)
            found_task = bars.add_task("faces found", total=None)
            saved_task = bars.add_task("faces enhanced", total=None)
            yield ProgressHooks(
                frame=lambda n: bars.update(frames_task, completed=n),
                found=lambda n: bars.update(found_task, completed=n),
                saved=lambda n: bars.update(saved_task, completed=n),
            )

    with user_errors():
        summary = run(options, warn=warn, note=err_console.print, progress=progress, on_input=_print_enhanced)
    if summary.nodes:  # --ray: where the work ran
        nodes = Table(title="Ray nodes")
        for column in ("node", "units (decode … select)", "SR calls"):
            nodes.add_column(column)
        for node, counts in sorted(summary.nodes.items()):
            nodes.add_row(node, str(counts["units"]), str(counts["sr_calls"]))
        out_console.print(nodes)
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")
    if summary.failed:
        for label, reason in summary.failed:
            err_console.print(f"[bold red]failed:[/] {reason}")
        err_console.print(f"[bold red]error:[/] {len(summary.failed)} of {summary.inputs} inputs failed; the others were written")
        raise typer.Exit(1)


def _print_enhanced(done) -> None:  # done: jobs.enhance.InputSummary
    if done.result is None:
        out_console.print(f"{done.label}: already finished in {done.folder} (every listed file verified); left as it is")
        return
    result, stats, t = done.result, done.result.decode, done.result.times
    summary = Table(title=f"enhance {done.label}", show_header=False)
    summary.add_row("frames", f"{result.frames} processed ({stats.frames_decoded} decoded)")
    summary.add_row("faces", f"{result.faces_found} detected, {done.tracks} tracks kept")
    summary.add_row("searched", result.gate.describe())
    if result.gate.off:
        summary.add_row("[yellow]motion gate[/]", result.gate.off)
    if done.why_none:
        summary.add_row("[yellow]why none[/]", done.why_none)
    resumed = f" (+{result.faces_resumed} from the interrupted run)" if result.faces_resumed else ""
    plain = f"; {result.faces_not_enhanced} of them not enhanced (over --sr-max-face)" if result.faces_not_enhanced else ""
    summary.add_row("saved", f"{result.faces_saved} faces{resumed}{plain}")
    if result.tracks_fused:
        summary.add_row("fused", f"{result.tracks_fused} tracks from their registered frames (track_XXXX/fused_x4.png)")
    fuse = f", fuse {t.fuse:.1f}" if t.fuse else ""
    summary.add_row(
        "time (s)",
        f"decode {t.decode:.1f}, detect {t.detect:.1f}, track+select {t.track + t.select:.1f}{fuse}, "
        f"SR {t.sr:.1f}, write {t.write:.1f}; producer waited on SR {t.queue_wait:.1f}",
    )
    summary.add_row("output", f"{done.folder} (report.html, manifest.jsonl, tracks.json)")
    if done.annotated:
        summary.add_row("annotated", str(done.annotated))
    out_console.print(summary)


@app.command()
@command_from(CalibrateOptions)
def calibrate(options: CalibrateOptions) -> None:
    """Learn a camera's blur kernels, noise and compression from its own footage (KernelGAN + the paper's noise rule + JPEG estimation).

    Writes a DegradationPool that `finetune` and `evaluate` use to degrade faces the way this site's cameras do.
    """
    from cctvsr.jobs.calibrate import PoolView, run

    progress = progress_bar()  # started once the inputs passed their checks
    iteration_task = progress.add_task("KernelGAN iterations", total=options.kernel_iters, visible=False)
    tasks: dict[str, int] = {}
    current: list[str] = []

    def started(note: str | None) -> None:
        if note:
            err_console.print(note)
        progress.start()

    def on_stage(name: str, total: int) -> None:
        tasks[name] = progress.add_task(name, total=total)
        current[:] = [name]
        progress.update(iteration_task, visible=name == "kernels" and options.workers() == 1)

    with user_errors(), stopped_after(progress):
        result = run(
            options, warn=warn, on_start=started, on_stage=on_stage,
            on_step=lambda done: progress.update(tasks[current[0]], completed=done),
            on_kernel_iteration=lambda done, total: progress.update(iteration_task, completed=done, total=total),
        )
    if isinstance(result, PoolView):
        table = Table(title=f"pool {result.path}", show_header=False)
        for key, value in result.summary.items():
            table.add_row(key.replace("_", " "), pool_value(value))
        table.add_row("preview", str(result.preview))
        out_console.print(table)
        return
    report = result
    if report.kernels_resumed:
        err_console.print(f"resumed: {report.kernels_resumed} of {len(report.kernel_estimates)} kernels reused from the interrupted run")
    t = report.times
    table = Table(title=f"calibrate → {report.out}", show_header=False)
    table.add_row("footage", f"{report.inputs} inputs, {report.frames} frames sampled, {report.regions} regions")
    iters = [k["iterations"] for k in report.kernel_estimates]
    early = sum(k["stopped_early"] for k in report.kernel_estimates)
    table.add_row("kernels", f"{len(iters)} (iterations {min(iters)}–{max(iters)}, {early} stopped early), size {report.pool.kernels.shape[1]} px")
    sigma = report.noise_sigma
    if sigma:
        table.add_row("smooth patches", f"{len(report.pool.noise_patches)}, σ {sigma['mean']:.2f} ({sigma['min']:.2f}–{sigma['max']:.2f})")
    else:
        table.add_row("smooth patches", "none (the paper's rule finds none in compressed footage)")
    table.add_row("sensor noise", report.pool.summary()["sensor_noise"])
    table.add_row("finetune adds", report.pool.noise_model)
    c = report.compression
    table.add_row("compression", f"JPEG quality {c.quality:.1f} ± {c.spread:.1f} ({c.method}{', exact' if c.exact else ''})")
    table.add_row("time (s)", f"sampling {t.sampling:.1f}, noise {t.noise:.1f}, compression {t.compression:.1f}, kernels {t.kernels:.1f}")
    out_console.print(table)
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")


@app.command()
@command_from(FinetuneOptions)
def finetune(options: FinetuneOptions) -> None:
    """Fine-tune the generator on HR faces degraded with a site's pool (the paper's training), and write a model directory.

    Checkpoints are written atomically; Ctrl-C saves one first, and --resume continues bit for bit (on CPU). The best EMA generator by validation is exported; `--stage both` also keeps the pixel model so that `upscale`/`enhance --fidelity` can trade texture for faithfulness.
    """
    from cctvsr.jobs.finetune import FinetuneHooks, run
    from cctvsr.train.trainer import StageHooks

    progress = progress_bar(RateColumn())  # shown once every input passed its checks
    task = progress.add_task("", total=None)

    def started(name: str, start: int, total: int) -> None:
        progress.update(task, description=f"{name} stage", completed=start, total=total)
        if start:
            err_console.print(f"{name} stage: resumed at iteration {start}")

    def stepped(step: int, losses: dict[str, float]) -> None:
        shown = " ".join(f"{k} {fixed(v, 4)}" for k, v in losses.items())
        progress.update(task, completed=step, description=f"{shown}")

    hooks = FinetuneHooks(
        message=err_console.print,
        prepared=progress.start,
        stage_started=started,
        stage=StageHooks(
            step=stepped,
            validated=lambda r: progress.console.print(
                f"step {r.step}: validation PSNR {r.psnr:.2f} dB, SSIM {r.ssim:.4f}, ST-LPIPS {fixed(r.perceptual, 4)}"
            ),
        ),
    )
    with user_errors(), stopped_after(progress):
        summary = run(options, hooks)
    table = Table(title=f"finetune → {summary.model_dir}")
    for column in ("stage", "best step", "PSNR dB", "SSIM", "ST-LPIPS", "vs initial model", "vs bicubic"):
        table.add_column(column)
    for o in summary.outcomes:
        first, cubic = o.reference.get("initial", {}), o.reference.get("bicubic", {})
        table.add_row(
            o.stage, f"{o.best.step}/{o.iters}", f"{o.best.psnr:.2f}", f"{o.best.ssim:.4f}", fixed(o.best.perceptual, 4),
            delta(o.best, first), delta(o.best, cubic),
        )
    out_console.print(table)
    fidelity = " --fidelity 0.5" if len(summary.outcomes) == 2 else ""
    out_console.print(f"use it with: cctvsr enhance VIDEO --model {summary.model_dir}{fidelity}")


@app.command()
@command_from(EvaluateOptions)
def evaluate(options: EvaluateOptions) -> None:
    """Measure super-resolution on your own faces: the paper's protocol and metrics, bicubic and every --model side by side.

    PSNR/SSIM on Y and RGB, MS-SSIM, NLPD, ST-LPIPS, LPIPS-Alex and DISTS (when their backbones are in $TORCH_HOME/hub/checkpoints), and identity: the dlib descriptor distance of each output from its HR face. A metric that cannot run is listed as unavailable with the reason.
    """
    from cctvsr.jobs.evaluate import EvaluateHooks, run

    progress = progress_bar()  # shown once the inputs passed their checks and the work starts

    def task(what: str, total: int):
        progress.start()
        bar = progress.add_task(what, total=total)
        return lambda: progress.advance(bar)

    with user_errors(), stopped_after(progress):
        summary = run(options, EvaluateHooks(message=err_console.print, warn=warn, task=task))
    if summary.no_reference is not None:
        _print_no_reference(summary)
        return
    from cctvsr.evaluate.report import rich_table

    out_console.print(rich_table(summary.evaluation, f"evaluate: {summary.source}; {summary.protocol}"))
    out_console.print("written: " + ", ".join(str(p) for p in summary.paths.values()))


def _print_no_reference(summary: EvaluateSummary) -> None:
    found = summary.no_reference
    table = Table(
        title=f"image statistics of {found.faces} faces in {found.tracks} tracks of {summary.source} (descriptions, not quality scores)"
    )
    for column in ("statistic", "LR", "bicubic", "SR"):
        table.add_column(column, justify="right")
    for name, by_kind in found.statistics.items():
        table.add_row(name, *(f"{by_kind[k]:.3f}" if k in by_kind else "n/a" for k in ("lr", "bicubic", "sr")))
    out_console.print(table)
    if found.identity_consistency:
        ids = Table(title="identity consistency within tracks: mean pairwise dlib descriptor distance (lower = more alike)")
        for column in ("track", "faces", "SR", "bicubic"):
            ids.add_column(column, justify="right")
        for row in found.identity_consistency:
            ids.add_row(str(row["track"]), str(row["faces"]), f"{row['sr']:.4f}", f"{row['bicubic']:.4f}")
        out_console.print(ids)
    out_console.print(f"written: {summary.paths['no_reference']}")


@app.command()
def models() -> None:
    """List every model cctvsr knows, whether its weights are here, and what can run them."""
    from cctvsr.jobs.models import run

    with user_errors():
        summary = run()
    for generator in summary.generators:
        table = Table(title=generator.title, show_header=False)
        for row in generator.rows:
            table.add_row(*row)
        out_console.print(table)
    cards = Table(title="Model registry (cctvsr/models.toml)")
    cards.add_column("name", no_wrap=True)
    for column in ("kind", "licence", "source", "here"):
        cards.add_column(column)
    for name, kind, licence, source, here, usable in summary.cards:
        cards.add_row(name, kind, licence, source, here if usable else f"[yellow]{here}[/yellow]")
    out_console.print(cards)
    for hint in summary.hints:
        out_console.print(f"  {hint}", soft_wrap=True)
    devices = Table(title="Devices and precisions usable here")
    for column in ("backend", "device", "precisions", "note"):
        devices.add_column(column)
    for row in summary.devices:
        devices.add_row(*row)
    out_console.print(devices)
    out_console.print(summary.perceptual)


@app.command("export-onnx")
@command_from(ExportOptions)
def export_onnx(options: ExportOptions) -> None:
    """Export the generator to ONNX for ONNX Runtime and TensorRT: dynamic batch, height and width.

    Every export is compared with PyTorch fp32 on random face-sized inputs and a real photo (fp32: max abs diff ≤ 1e-3 and ≥ 60 dB PSNR, or the export fails); the result, the model name, weights sha256, --fidelity and cctvsr version are recorded in the file's metadata.
    """
    from cctvsr.jobs.export import run

    loading = err_console.status("loading weights …")  # transient: a bad --model stays a one-line error
    progress = progress_bar()  # the real model takes over a minute on a CPU: show each step
    task = progress.add_task("exporting", start=False, visible=False)
    begun: list[str] = []

    def started(steps: int) -> None:
        loading.stop()
        progress.update(task, total=steps, visible=True)
        progress.start_task(task)
        progress.start()

    def on_step(step: str) -> None:  # a step starting means the ones before it are done
        progress.update(task, description=step, completed=len(begun))
        begun.append(step)

    with user_errors(), stopped_after(progress):
        try:
            summary = run(options, warn=warn, on_loading=loading.start, on_start=started, on_step=on_step)
            progress.update(task, description="exported", completed=progress.tasks[0].total)
        finally:
            loading.stop()
    parity = summary.parity
    table = Table(title=f"export-onnx → {summary.path}", show_header=False)
    table.add_row("file", f"{summary.path} ({summary.size / 1e6:.1f} MB, opset {summary.opset}, {summary.precision})")
    table.add_row("model", f"{summary.name} (weights sha256 {summary.sha256[:12]})")
    if summary.fidelity is not None:
        table.add_row("fidelity", f"{summary.fidelity:g}")
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
