"""What the terminal shows while a job runs: the two consoles, warnings, progress bars and figures.

The CLI prints results on stdout and everything else (progress, warnings, errors) on stderr, so a
command's table can be piped while its progress stays on screen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)
from rich.text import Text

out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}")


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        if not task.speed:
            return Text("")
        return Text(f"{task.speed:6.1f}/s" if task.speed >= 10 else f"{task.speed:6.3f}/s", style="progress.data.speed")


def progress_counts() -> Progress:
    """Counters with rates for work whose total is unknown (a stream, a video being decoded)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        TextColumn("{task.completed:>7.0f}"),
        RateColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


def progress_bar(*extra: ProgressColumn) -> Progress:
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


@contextmanager
def stopped_after(progress: Progress) -> Iterator[None]:
    """Stops `progress` after the block if the job started it (jobs start their bars only once their
    inputs passed their checks; stopping a bar never started prints a stray blank line)."""
    try:
        yield
    finally:
        if progress.live.is_started:
            progress.stop()


def fixed(value: float, places: int, signed: bool = False) -> str:
    """`value` to `places` decimals, never '-0.0000': what rounds to zero reads as 0, without a sign
    that would claim a direction (a tiny negative ST-LPIPS or difference is float noise)."""
    text = f"{value:{'+' if signed else ''}.{places}f}"
    return f"{0.0:.{places}f}" if float(text) == 0 else text


def delta(best, reference: dict[str, float]) -> str:
    """A validation result against a reference's, as signed differences."""
    if not reference:
        return "-"
    return (
        f"PSNR {fixed(best.psnr - reference['psnr'], 2, signed=True)} dB, "
        f"ST-LPIPS {fixed(best.perceptual - reference['perceptual'], 4, signed=True)}"
    )


def pool_value(value: object) -> str:
    """A pool summary value as a person reads it: stats as mean (min–max), nothing as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, dict) and set(value) == {"mean", "min", "max"}:
        return f"mean {value['mean']:.3g} ({value['min']:.3g}–{value['max']:.3g})"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
