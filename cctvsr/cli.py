"""The `cctvsr` command line: argument handling and wiring only; the work lives in the stages."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cctvsr import __version__
from cctvsr.errors import CctvsrError, InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Clear, honest ×4 super-resolution of faces from surveillance video (Aakerberg et al.).",
)
out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)

MODEL_HELP = "Registry name (see `cctvsr models`), model directory, or ESRGAN/Real-ESRGAN .pth/.safetensors file."
DEVICE_HELP = "auto (CUDA when usable, else CPU), cpu or cuda."
PRECISION_HELP = (
    "auto = fp16 + channels_last on CUDA, bf16 autocast on CPUs with AMX/AVX512-BF16, fp32 elsewhere; "
    "or fp32, bf16, fp16 (CUDA only)."
)


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user can cause become one line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except CctvsrError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None
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


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


@app.command()
def upscale(
    inputs: Optional[list[Path]] = typer.Argument(None, help="Images and/or folders of images (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the ×4 PNGs (created; sub-folders mirror input folders)."),
    model: str = typer.Option("realesrgan-x4plus", help=MODEL_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    batch_size: int = typer.Option(8, min=1, help="Most same-size images run through the generator at once."),
    tile: int = typer.Option(
        256, min=0, help="Images larger than tile + 2×overlap px are processed in tiles of this size (0 = never tile)."
    ),
    tile_overlap: int = typer.Option(16, min=1, help="Context px each tile borrows from its neighbours, blended away."),
    demo: bool = typer.Option(
        False, "--demo", help="Add the embedded demo: a real photo (skimage astronaut) reduced to 128×128, restored ×4."
    ),
) -> None:
    """Super-resolve whole images ×4 at whatever size they have (png, jpg, bmp, tiff, webp).

    Grey images stay grey, an alpha channel is carried through; unreadable files are reported and
    skipped, the others written, and the exit code is 1 when any file failed.
    """
    import cv2

    from cctvsr import demo as demo_input
    from cctvsr.metrics import st_lpips
    from cctvsr.images import read_image
    from cctvsr.sr.engine import SuperResolver
    from cctvsr.sr.weights import load_generator_weights
    from cctvsr.upscale import plan_jobs, run_jobs

    with user_errors():
        sources = list(inputs or [])
        if demo:
            sources.append(demo_input.write_demo_input(out / "demo-input"))
        if not sources:
            raise InputError("give at least one image or folder (or --demo)")
        jobs = plan_jobs(sources, out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{out}: cannot create output folder ({exc.strerror})") from None
        weights = load_generator_weights(model)
        resolver = SuperResolver(
            weights, device=device, precision=precision, batch_size=batch_size, tile=tile, tile_overlap=tile_overlap
        )
        err_console.print(f"model [bold]{weights.name}[/] on {resolver.plan.describe()}")
        with _progress() as progress:
            task = progress.add_task("upscaling", total=len(jobs))
            summary = run_jobs(jobs, resolver, on_progress=lambda done: progress.update(task, completed=done))

        table = Table(title="upscale", show_header=False)
        table.add_row("written", f"{len(summary.written)} PNG in {out}")
        table.add_row("failed", str(len(summary.failed)))
        table.add_row("model", f"{weights.name} (sha256 {weights.sha256[:12]})")
        table.add_row("device", resolver.plan.describe())
        rate = summary.lr_pixels / summary.seconds if summary.seconds else 0.0
        table.add_row("speed", f"{summary.lr_pixels / 1e6:.3f} LR Mpx in {summary.seconds:.1f} s ({rate:,.0f} px/s)")
        if demo and jobs[-1].destination in summary.written:
            truth = demo_input.demo_ground_truth()
            restored = read_image(jobs[-1].destination).rgb
            bicubic = cv2.resize(read_image(jobs[-1].source).rgb, truth.shape[1::-1], interpolation=cv2.INTER_CUBIC)
            table.add_row(
                "demo",
                f"{jobs[-1].destination}: ST-LPIPS to the original photo {st_lpips(restored, truth):.3f}"
                f" (bicubic {st_lpips(bicubic, truth):.3f}; lower is closer)",
            )
        out_console.print(table)
        if summary.failed:
            for path, reason in summary.failed:
                err_console.print(f"[bold red]failed:[/] {reason}")
            names = ", ".join(str(path) for path, _ in summary.failed)
            err_console.print(f"[bold red]error:[/] {len(summary.failed)} of {len(jobs)} images failed: {names}")
            raise typer.Exit(1)


@app.command()
def models() -> None:
    """List every model cctvsr knows, whether its weights are here, and what can run them."""
    import torch

    from cctvsr.assets import STLPIPS_ALEX
    from cctvsr.sr.engine import cpu_has_native_bf16
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

        devices = Table(title="Devices and precisions usable here")
        for column in ("backend", "device", "precisions", "note"):
            devices.add_column(column)
        bf16 = "native (AMX/AVX512-BF16)" if cpu_has_native_bf16() else "emulated: several times slower than fp32"
        auto_cpu = "bf16" if cpu_has_native_bf16() else "fp32"
        devices.add_row("torch", "cpu", "fp32, bf16", f"auto = {auto_cpu} + channels_last; bf16 {bf16}")
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                devices.add_row("torch", f"cuda:{index} {torch.cuda.get_device_name(index)}", "fp16, bf16, fp32", "auto = fp16 + channels_last")
        else:
            devices.add_row("torch", "cuda", "-", "no CUDA device usable by this PyTorch build")
        out_console.print(devices)

        status = "present" if STLPIPS_ALEX.locate() else f"missing (pip install {STLPIPS_ALEX.distribution})"
        out_console.print(f"perceptual metric: ST-LPIPS AlexNet ({STLPIPS_ALEX.licence}) from pip:{STLPIPS_ALEX.distribution}: {status}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
