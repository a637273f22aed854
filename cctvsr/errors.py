"""Errors a user (or the machine) can cause. The CLI prints them as one line and exits non-zero.

Exit codes: 0 success; 1 some inputs failed and the others were written; 2 bad input or option;
3 an output cannot be written (read-only, full disk, permission, not a folder); 130 interrupted.
"""

from __future__ import annotations

import errno


class CctvsrError(Exception):
    """Base of every error whose message is written for the user, not for us."""

    exit_code = 2


class InputError(CctvsrError):
    """A path, image or option the user gave cannot be used."""


class OutputError(CctvsrError):
    """An output cannot be written: the file system refused (read-only, full, permission)."""

    exit_code = 3


class WeightsError(CctvsrError):
    """Model weights are missing, corrupt, or do not fit the architecture."""


class ModelFormatError(WeightsError):
    """A model directory is of an unknown version or fails its checksums."""


class DeviceError(CctvsrError):
    """The requested device or precision is not available on this machine."""


class ExportError(CctvsrError):
    """An export that could not be made, or that does not compute what the PyTorch model does."""


_PLAIN = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder",
    errno.ENAMETOOLONG: "name too long",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the path and the reason in plain words."""
    reason = _PLAIN.get(exc.errno or 0) or exc.strerror or type(exc).__name__
    where = exc.filename if exc.filename is not None else None
    return f"{where}: {reason}" if where is not None else reason


def output_error(exc: OSError, what: str = "cannot write") -> OutputError:
    return OutputError(f"{what} {os_error_message(exc)}")
