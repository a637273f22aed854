"""Durable file writes: a reader sees the old file or the new one, never a half-written one, and
a rename survives a power cut (the folder is fsynced after it)."""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cctvsr.errors import OutputError, os_error_message, output_error

TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")  # what atomic_path's mkstemp names look like


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with threads writing files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def fsync_dir(folder: Path) -> None:
    """Make renames and creations inside `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`, and the
    folder fsynced. On any failure (a full disk included) the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def append_whole(fd: int, data: bytes) -> None:
    """Append `data` to an O_APPEND descriptor whole or not at all: a short or failed write (a full
    disk) is cut back off, so no torn line is ever left behind; then fsync."""
    start = os.fstat(fd).st_size
    try:
        written = 0
        while written < len(data):
            count = os.write(fd, data[written:])
            if count == 0:
                raise OSError(28, "No space left on device")
            written += count
        os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, start)
            os.fsync(fd)
        except OSError:
            pass
        raise output_error(exc) from None


def remove_stale_temps(folder: Path) -> int:
    """Delete the temporary files a killed run left (atomic_path's hidden `.name.XXXX.tmp`); how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.rglob(f"*{TEMP_SUFFIX}"):
        if path.is_file() and _TEMP_NAME.match(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def ensure_writable_folder(folder: Path, flag: str = "--out") -> None:
    """Prove `folder` will take files before any long work, without creating it: a run refused
    later for a bad option then leaves nothing behind. An existing folder gets a real probe write
    (it catches a full disk too); a new one needs its nearest existing parent to be a writable
    folder, checked without writing there (that parent may hold evidence)."""
    try:
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"{flag} {folder}: exists and is not a folder")
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".cctvsr-write-check.", suffix=TEMP_SUFFIX)
            try:
                os.write(fd, b"\0" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
            return
        parent = folder.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        space = os.statvfs(parent)
        if space.f_flag & os.ST_RDONLY:
            raise OSError(30, "Read-only file system")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
        if space.f_bavail == 0:
            raise OSError(28, "No space left on device")
    except OSError as exc:
        raise OutputError(f"{flag} {folder}: cannot write there ({_reason(exc)})") from None


def ensure_writable_file(path: Path, flag: str = "--out") -> None:
    """The folder of `path` exists (or is created) and takes a new file."""
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{flag} {path}: cannot write there (a part of the path is a file, not a folder)")
    ensure_writable_folder(parent, flag)


def _reason(exc: OSError) -> str:
    return os_error_message(OSError(exc.errno, exc.strerror))  # the path is already in the message
