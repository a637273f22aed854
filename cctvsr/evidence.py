"""Inputs are evidence: nothing the tool writes may land on, in, or around them.

Every command names its inputs and outputs once and calls `keep_apart` before any work, so a
mistyped `--annotate clip.mp4` or `--out footage/` is refused instead of destroying or
polluting what it was handed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

from cctvsr.errors import InputError


def _resolved(path: Path) -> Path:
    """The absolute path with every existing symlink followed (missing tails are kept as written)."""
    return Path(os.path.realpath(path.expanduser()))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def keep_apart(outputs: Iterable[tuple[str, Path | None]], inputs: Iterable[Path | None]) -> None:
    """Refuse an output that is an input, lies inside an input folder, or contains an input.

    `outputs` are (flag, path) pairs, so the message names the option to change. Writing beside an
    input (`demo/out` next to `demo/clip.mp4`) is allowed.
    """
    sources = [(path, _resolved(path)) for path in inputs if path is not None]
    for flag, output in outputs:
        if output is None:
            continue
        target = _resolved(output)
        for given, source in sources:
            if target == source:
                raise InputError(f"{flag} {output} is the input {given}; inputs are never overwritten: choose another path")
            if source.is_dir() and _within(target, source):
                raise InputError(
                    f"{flag} {output} lies inside the input folder {given}; outputs there would be read as inputs: "
                    "choose a path outside it"
                )
            if _within(source, target):
                raise InputError(f"{flag} {output} contains the input {given}; choose a path beside it, not around it")


def require_regular_file(path: Path) -> None:
    """FIFOs, sockets and devices are refused: reading one can block forever or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        raise InputError(f"{path}: is a {kind}, not a regular file; give a file, a folder or a stream URL")


RUN_SIGNATURE = ("run.json", "manifest.jsonl")  # what every folder `enhance` writes for an input holds


def files_under(folder: Path, skipped: list[str] | None = None) -> list[Path]:
    """Every non-hidden entry below `folder` that is not a folder, sorted; `enhance` output folders
    are left out, so no command takes cctvsr's own outputs as new footage."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        if all(name in names for name in RUN_SIGNATURE):
            if skipped is not None and here != folder:
                skipped.append(f"{here}: a cctvsr output folder; not read as input")
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [here / name for name in names if not name.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)
