"""Where torch.hub keeps ImageNet backbones, and the check that a file there is the one its name claims.

cctvsr never downloads these files (torchvision's are the only source and torchvision is not a
dependency): a user who already has them in `$TORCH_HOME/hub/checkpoints` gets the metrics that
need them. Their names end in the first 8 hex digits of their sha256, which is checked on load.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cctvsr.assets import sha256_file
from cctvsr.errors import WeightsError


def hub_checkpoint(filename: str) -> Path:
    """$TORCH_HOME/hub/checkpoints/<filename> (TORCH_HOME defaulting as torch.hub does)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub" / "checkpoints" / filename


def check_named_sha256(path: Path) -> None:
    """A torchvision checkpoint's name carries its sha256 prefix (`alexnet-owt-7be5be79.pth`)."""
    prefix = path.name.rsplit("-", 1)[1].split(".")[0]
    if not sha256_file(path).startswith(prefix):
        raise WeightsError(f"{path} does not match the sha256 its name carries (corrupt download?)")


def load_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True (never unpickles code); one line when unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for unreadable files
        raise WeightsError(f"cannot read {what} {path}: {str(exc).splitlines()[0]}") from None
