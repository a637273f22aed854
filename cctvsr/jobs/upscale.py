"""`cctvsr upscale`: whole images of any size ×4, no detection.

Images are read in small groups so that same-size images (a folder of face crops from one track)
share generator batches while memory stays bounded; each result is written as soon as its group
is done, and an unreadable file is recorded and skipped, never fatal to the others.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

from cctvsr.errors import CctvsrError, InputError
from cctvsr.evidence import files_under, keep_apart, require_regular_file
from cctvsr.fsutil import ensure_writable_folder
from cctvsr.jobs.options import REQUIRED, SrOptions, argument, option
from cctvsr.output.report import sr_png_text

if TYPE_CHECKING:  # the CLI builds its flags from UpscaleOptions before parsing: no numpy/cv2 at import
    from cctvsr.images import DecodedImage
    from cctvsr.sr.engine import SuperResolver

GROUP_PIXELS = 1 << 20  # LR pixels decoded ahead of the generator at most (plus one image)
GROUP_FILES = 16


@dataclass(frozen=True, kw_only=True)
class UpscaleOptions:
    inputs: Optional[list[Path]] = argument("Images and/or folders of images (searched recursively).")
    out: Path = option(REQUIRED, "Folder for the ×4 PNGs (created; sub-folders mirror input folders).", "--out", "-o")
    sr: SrOptions = SrOptions()
    demo: bool = option(
        False, "Add the embedded demo: a real photo (skimage astronaut) reduced to 128×128, restored ×4.", "--demo"
    )


@dataclass(frozen=True)
class UpscaleJob:
    source: Path
    destination: Path


@dataclass(frozen=True)
class DemoScore:
    """How close the demo's restoration came to the original photo, beside bicubic's (lower is closer)."""

    path: Path
    st_lpips: float
    bicubic_st_lpips: float


@dataclass
class UpscaleSummary:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    lr_pixels: int = 0
    seconds: float = 0.0
    planned: int = 0
    model: str = ""  # name (sha256 prefix)
    device: str = ""
    demo: DemoScore | None = None


def _images_under(folder: Path) -> list[Path]:
    from cctvsr.images import IMAGE_SUFFIXES

    return [p for p in files_under(folder) if p.suffix.lower() in IMAGE_SUFFIXES]


def plan_jobs(inputs: Sequence[Path], out_dir: Path) -> list[UpscaleJob]:
    """Map each input image to `<out>/<relative path>/<stem>.png`; names that would collide keep
    their extension (`a_jpg.png`), and no output may overwrite an input."""
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            found = _images_under(item)
            if not found:
                from cctvsr.images import IMAGE_SUFFIXES

                raise InputError(f"{item}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
            pairs += [(path, path.relative_to(item)) for path in found]
        else:
            require_regular_file(item)
            pairs.append((item, Path(item.name)))
    stems = Counter(rel.with_suffix("") for _, rel in pairs)
    jobs = []
    for source, rel in pairs:
        name = rel.stem if stems[rel.with_suffix("")] == 1 else f"{rel.stem}_{rel.suffix.lstrip('.').lower()}"
        jobs.append(UpscaleJob(source, out_dir / rel.parent / f"{name}.png"))
    sources = {job.source.resolve() for job in jobs}
    for job in jobs:
        if job.destination.resolve() in sources:
            raise InputError(f"{job.destination}: output would overwrite an input; choose another --out")
    return jobs


def _groups(jobs: Sequence[UpscaleJob], summary: UpscaleSummary) -> Iterator[list[tuple[UpscaleJob, DecodedImage]]]:
    from cctvsr.images import read_image

    group: list[tuple[UpscaleJob, DecodedImage]] = []
    pixels = 0
    for job in jobs:
        try:
            image = read_image(job.source)
        except InputError as exc:
            summary.failed.append((job.source, str(exc)))
            continue
        group.append((job, image))
        pixels += image.rgb.shape[0] * image.rgb.shape[1]
        if pixels >= GROUP_PIXELS or len(group) >= GROUP_FILES:
            yield group
            group, pixels = [], 0
    if group:
        yield group


def run_jobs(
    jobs: Sequence[UpscaleJob],
    resolver: SuperResolver,
    on_progress: Callable[[int], None] | None = None,
) -> UpscaleSummary:
    """Upscale every job; `on_progress(done)` with the number of files finished (written or failed)."""
    from cctvsr.images import compose_output, write_png

    summary = UpscaleSummary()
    weights = resolver.weights
    label = sr_png_text(f"{weights.name} (sha256 {weights.sha256[:12]})")
    start = time.perf_counter()
    for group in _groups(jobs, summary):
        outputs = resolver.upscale([image.rgb for _, image in group])
        for (job, image), sr in zip(group, outputs):
            try:
                write_png(job.destination, compose_output(sr, image), label)
            except (OSError, CctvsrError) as exc:
                summary.failed.append((job.source, f"{job.destination}: cannot write ({exc})"))
                continue
            summary.written.append(job.destination)
            summary.lr_pixels += image.rgb.shape[0] * image.rgb.shape[1]
        if on_progress:
            on_progress(len(summary.written) + len(summary.failed))
    if on_progress:
        on_progress(len(summary.written) + len(summary.failed))
    summary.seconds = time.perf_counter() - start
    return summary


def run(
    options: UpscaleOptions,
    *,
    warn: Callable[[str], None] | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> UpscaleSummary:
    """The `upscale` command: plan every output, load the model, upscale; `on_start(what runs, files)`
    once the model is loaded."""
    from cctvsr import demo as demo_input

    sources = list(options.inputs or [])
    if not sources and not options.demo:
        raise InputError("give at least one image or folder (or --demo)")
    keep_apart([("--out", options.out)], sources)
    ensure_writable_folder(options.out)
    if options.demo:
        sources.append(demo_input.write_demo_input(options.out / "demo-input"))
    jobs = plan_jobs(sources, options.out)
    resolver = options.sr.resolver(warn)
    weights = resolver.weights
    if on_start:
        on_start(f"model [bold]{weights.name}[/] on {resolver.plan.describe()}", len(jobs))
    summary = run_jobs(jobs, resolver, on_progress)
    summary.planned = len(jobs)
    summary.model = f"{weights.name} (sha256 {weights.sha256[:12]})"
    summary.device = resolver.plan.describe()
    if options.demo and jobs[-1].destination in summary.written:
        summary.demo = _demo_score(jobs[-1])
    return summary


def _demo_score(job: UpscaleJob) -> DemoScore:
    import cv2

    from cctvsr import demo as demo_input
    from cctvsr.images import read_image
    from cctvsr.metrics import st_lpips

    truth = demo_input.demo_ground_truth()
    restored = read_image(job.destination).rgb
    bicubic = cv2.resize(read_image(job.source).rgb, truth.shape[1::-1], interpolation=cv2.INTER_CUBIC)
    return DemoScore(job.destination, st_lpips(restored, truth), st_lpips(bicubic, truth))
