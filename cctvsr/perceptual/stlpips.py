"""Shift-tolerant LPIPS (Ghildyal & Liu 2022), AlexNet variant "shift_tolerant", written afresh.

Plain LPIPS punishes a one-pixel shift about as much as real damage, which would make every
super-resolved face that is slightly misregistered against its reference look bad. ST-LPIPS keeps
the LPIPS recipe but runs AlexNet's first conv at stride 1 and replaces every subsampling step
with a blur-then-subsample, so small shifts barely move the features.

The weights come from the `stlpips-pytorch` wheel (the registry's `stlpips-alex` card, BSD-2-Clause).
That package is not imported: it pulls in torchvision, IPython and torchsummary.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from cctvsr.errors import InputError, WeightsError

# Smallest height/width for which every reflect-padded blur still has more than 2 pixels to mirror
# (at 20 px the third blur step would see a 2-pixel map).
MIN_SIZE = 21

LAYER_CHANNELS = (64, 192, 384, 256, 256)

# File key prefix -> our module prefix. The file's names come from the reference package's
# nn.Sequential slices (index = position in AlexNet's feature list); ours say what the layer is.
_KEY_PREFIXES: dict[str, str] = {
    "scaling_layer.": "",
    "net.slice1.0.": "conv1.",
    "net.slice1.1.": "blur1.",
    "net.slice2.4.": "blur2.",
    "net.slice2.5.": "conv2.",
    "net.slice3.8.": "blur3.",
    "net.slice3.9.": "conv3.",
    "net.slice4.11.": "conv4.",
    "net.slice5.13.": "conv5.",
    **{f"lin{i}.model.1.": f"lins.{i}." for i in range(len(LAYER_CHANNELS))},
}


def _binomial_filter() -> torch.Tensor:
    """The normalised 3×3 [1,2,1]⊗[1,2,1] kernel: the mildest low-pass that removes aliasing."""
    row = torch.tensor([1.0, 2.0, 1.0])
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum()


class BlurPool(nn.Module):
    """Low-pass, then subsample by 2, so the subsampling grid's phase matters little."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # Stored in the weights file too; loaded from there so a changed file cannot go unnoticed.
        self.register_buffer("filt", _binomial_filter()[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Reflect pad of 2 (not 1) on every side: the trained weights expect this geometry.
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.filt, stride=2, groups=x.shape[1])


def remap_state_dict(file_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the reference package's keys to ours; any key without a rule is an error."""
    out: dict[str, torch.Tensor] = {}
    for key, value in file_state.items():
        for old, new in _KEY_PREFIXES.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            raise WeightsError(f"ST-LPIPS weights: unexpected key {key!r} (changed upstream?)")
    return out


def unit_normalise(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit length over channels, so that layers with large activations do not dominate."""
    return feat / (torch.sqrt(torch.sum(feat**2, dim=1, keepdim=True)) + eps)


class StLpips(nn.Module):
    """ST-LPIPS distance between two batches of RGB images; lower means more alike."""

    def __init__(self) -> None:
        super().__init__()
        # Placeholders; the trained values come from the weights file.
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=2)
        self.blur1 = BlurPool(64)
        self.blur2 = BlurPool(64)
        self.conv2 = nn.Conv2d(64, 192, kernel_size=5, padding=2)
        self.blur3 = BlurPool(192)
        self.conv3 = nn.Conv2d(192, 384, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LAYER_CHANNELS)

    @classmethod
    def from_file(cls, path: Path | str, device: torch.device | str = "cpu") -> StLpips:
        """Build the metric from a weights file, frozen: it is a fixed yardstick, not a model."""
        model = cls()
        try:
            file_state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several unrelated types for unreadable files
            raise WeightsError(f"cannot read ST-LPIPS weights {path}: {exc}") from exc
        try:
            model.load_state_dict(remap_state_dict(file_state), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise WeightsError(f"ST-LPIPS weights {path} do not fit the network: {first}") from exc
        model.eval().requires_grad_(False)
        return model.to(device)

    @classmethod
    def from_packaged(cls, device: torch.device | str = "cpu") -> StLpips:
        """The metric with the weights shipped by the stlpips-pytorch wheel (checksummed)."""
        from cctvsr.registry import packaged

        return cls.from_file(packaged("stlpips-alex").require(), device=device)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs LPIPS compares; `x` is already scaled to the network's input."""
        relu1 = F.relu(self.blur1(self.conv1(x)))
        h = self.blur2(F.max_pool2d(relu1, kernel_size=3, stride=1))
        relu2 = F.relu(self.conv2(h))
        h = self.blur3(F.max_pool2d(relu2, kernel_size=3, stride=1))
        relu3 = F.relu(self.conv3(h))
        relu4 = F.relu(self.conv4(relu3))
        relu5 = F.relu(self.conv5(relu4))
        return [relu1, relu2, relu3, relu4, relu5]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image, shape (N,), for NCHW RGB in [0, 1].

        Differentiable, so the finetune command can use it as a loss.
        """
        check_pair(x, y)
        # One pass over both batches: half the kernel launches, same numbers.
        both = torch.cat((x, y), dim=0) * 2.0 - 1.0
        return weighted_distance(self.features((both - self.shift) / self.scale), self.lins, x.shape[0])


def weighted_distance(feats: list[torch.Tensor], lins: nn.ModuleList, n: int) -> torch.Tensor:
    """The LPIPS sum: per layer, unit-normalised feature differences squared, weighted per channel
    by the linear head and averaged over space. feats hold x's batch then y's (n images each)."""
    total = feats[0].new_zeros(n)
    for feat, lin in zip(feats, lins):
        total = total + lin((unit_normalise(feat[:n]) - unit_normalise(feat[n:])) ** 2).mean(dim=(1, 2, 3))
    return total


def check_pair(x: torch.Tensor, y: torch.Tensor, min_size: int = MIN_SIZE, name: str = "ST-LPIPS") -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"{name} needs NCHW RGB tensors, got shape {tuple(x.shape)}")
    if x.shape != y.shape:
        raise InputError(f"{name} needs two tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (x.is_floating_point() and y.is_floating_point()):
        raise InputError(f"{name} needs float tensors in [0, 1], got {x.dtype} and {y.dtype}")
    h, w = x.shape[2:]
    if min(h, w) < min_size:
        raise InputError(f"{name} needs images of at least {min_size}×{min_size} px, got {w}×{h}")
