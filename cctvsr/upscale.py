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
from typing import Callable, Iterator, Sequence

from cctvsr.errors import CctvsrError, InputError
from cctvsr.evidence import files_under, require_regular_file
from cctvsr.images import IMAGE_SUFFIXES, DecodedImage, compose_output, read_image, write_png
from cctvsr.report import sr_png_text
from cctvsr.sr.engine import SuperResolver

GROUP_PIXELS = 1 << 20  # LR pixels decoded ahead of the generator at most (plus one image)
GROUP_FILES = 16


@dataclass(frozen=True)
class UpscaleJob:
    source: Path
    destination: Path


@dataclass
class UpscaleSummary:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    lr_pixels: int = 0
    seconds: float = 0.0


def _images_under(folder: Path) -> list[Path]:
    return [p for p in files_under(folder) if p.suffix.lower() in IMAGE_SUFFIXES]


def plan_jobs(inputs: Sequence[Path], out_dir: Path) -> list[UpscaleJob]:
    """Map each input image to `<out>/<relative path>/<stem>.png`; names that would collide keep
    their extension (`a_jpg.png`), and no output may overwrite an input."""
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            found = _images_under(item)
            if not found:
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
