"""The manifest: one JSON line per saved face, appended, flushed and fsynced as each face is saved.

A line is appended whole or not at all (a short write on a full disk is cut back off). A run
killed mid-write can still leave a torn last line; reading ignores it and reopening for append
cuts it off, so `--resume` continues from the last complete record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cctvsr.errors import InputError
from cctvsr.fsutil import append_whole, fsync_dir


def _complete_prefix(data: bytes) -> bytes:
    """The bytes up to and including the last newline whose line parses as JSON."""
    end = data.rfind(b"\n") + 1
    while end > 0:
        start = data.rfind(b"\n", 0, end - 1) + 1
        try:
            json.loads(data[start:end])
            return data[:end]
        except json.JSONDecodeError:
            end = start
    return b""


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a torn last line (a kill mid-write) is ignored, damage elsewhere is not."""
    if not path.exists():
        return []
    data = path.read_bytes()
    good = _complete_prefix(data)
    records = []
    for number, line in enumerate(good.splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(f"{path}: line {number} is not valid JSON (manifest damaged)") from None
    tail = data[len(good) :]
    if tail.count(b"\n") > 1:
        raise InputError(f"{path}: damaged beyond its last line; refusing to resume from it")
    return records


class ManifestWriter:
    """Appends records durably; a reader never sees a half-written line except after a kill."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            good = _complete_prefix(path.read_bytes())
            with open(path, "rb+") as handle:
                handle.truncate(len(good))
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        if created:
            fsync_dir(path.parent)

    def append(self, record: dict[str, Any]) -> None:
        append_whole(self._fd, (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
