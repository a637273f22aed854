"""Where torch.hub keeps ImageNet backbones, and the check that a file there is the one its name claims.

cctvsr never downloads these files (torchvision's are the only source and torchvision is not a
dependency): a user who already has them in `$TORCH_HOME/hub/checkpoints` gets the metrics that
need them. Their names end in the first 8 hex digits of their sha256, which is checked on load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cctvsr.errors import WeightsError
from cctvsr.registry import sha256_file, torch_hub_dir


def hub_checkpoint(filename: str) -> Path:
    """$TORCH_HOME/hub/checkpoints/<filename> (TORCH_HOME defaulting as torch.hub does)."""
    return torch_hub_dir() / filename


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


def torchvision_features(path: Path, rename: dict[str, str], what: str) -> dict[str, torch.Tensor]:
    """A torchvision classifier checkpoint's `features.N.` tensors under our module names; any
    key that is neither a renamed feature layer nor the (unused) classifier is an error."""
    state: dict[str, torch.Tensor] = {}
    for key, value in load_tensors(path, f"{what} backbone").items():
        prefix = next((p for p in rename if key.startswith(p)), None)
        if prefix is not None:
            state[rename[prefix] + key[len(prefix) :]] = value
        elif not key.startswith("classifier."):
            raise WeightsError(f"{path}: unexpected key {key!r}: not torchvision's {what}")
    return state


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], what: str, device: torch.device | str) -> nn.Module:
    """Every parameter and buffer filled, nothing left over; the network frozen as a yardstick."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{what} weights do not fit the network: {str(exc).strip().splitlines()[0]}") from None
    return model.eval().requires_grad_(False).to(device)
