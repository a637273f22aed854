"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class CctvsrError(Exception):
    """Base of every error whose message is written for the user, not for us."""

    exit_code = 2


class InputError(CctvsrError):
    """A path, image or option the user gave cannot be used."""


class WeightsError(CctvsrError):
    """Model weights are missing, corrupt, or do not fit the architecture."""


class ModelFormatError(WeightsError):
    """A model directory is of an unknown version or fails its checksums."""


class DeviceError(CctvsrError):
    """The requested device or precision is not available on this machine."""


class ExportError(CctvsrError):
    """An export that could not be made, or that does not compute what the PyTorch model does."""
