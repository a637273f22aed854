"""What every resumable command (`enhance`, `calibrate`, `finetune`) does when it reopens a folder:
read its identity file safely, remove a killed run's temporary files, and verify every file the
run listed (exists, sha256) before continuing.

A listed file that is missing or changed is refused with the list, not re-created: the folder is
the record the manifest describes, and a file changed after it was written means that record was
tampered with or damaged. Re-creating it silently would hide that from the analyst, who must decide
(start a fresh `--out`, or restore the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from cctvsr.assets import sha256_file
from cctvsr.errors import InputError
from cctvsr.fsutil import atomic_path, remove_stale_temps

SHOWN = 3  # problems named in the one-line refusal; the count says how many more
UNVERSIONED = 1  # the schema of identity files written before they carried one (the format was the same)


def read_state(path: Path) -> dict[str, Any]:
    """A run's JSON identity file; a damaged one is a one-line refusal, never a traceback."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: unreadable or damaged; cannot resume from this folder (use a new --out)") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: not a cctvsr run file; cannot resume from this folder (use a new --out)")
    return value


def check_schema(state: dict[str, Any], expected: int, path: Path) -> None:
    """Refuse, in one line, an identity file written in another run format than this version reads
    (`"schema"`; a file without one is UNVERSIONED)."""
    found = state.get("schema", UNVERSIONED)
    if found != expected:
        raise InputError(
            f"{path}: written by a different cctvsr run format (schema {found}, this version reads {expected}); use a new --out"
        )


def write_state(path: Path, value: dict[str, Any]) -> None:
    """Write a run's identity file atomically; callers put their format's `"schema"` in `value`."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def verify_listed(folder: Path, listed: Iterable[tuple[str, str]]) -> int:
    """Check that every (relative path, sha256) the run listed is in `folder` unchanged; how many.
    Removes stale temporary files first. Refuses with the problems named."""
    remove_stale_temps(folder)
    problems: list[str] = []
    count = 0
    for rel, digest in listed:
        count += 1
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel} missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel} changed")
    if problems:
        shown = ", ".join(problems[:SHOWN]) + (f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
        raise InputError(
            f"--resume: {len(problems)} of {count} files the run listed in {folder} are missing or changed ({shown}); "
            "restore them or start a new --out"
        )
    return count
