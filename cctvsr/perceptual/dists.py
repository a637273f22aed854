"""DISTS (Ding, Ma, Wang & Simoncelli 2020): structure and texture similarity of VGG16 features.

Written afresh, without torchvision: VGG16's 13 convolutions with every max-pool replaced by an
L2 pool (a Hann-windowed, stride-2 root-mean-square), and per channel and layer, including the
input itself, a texture term (means) and a structure term (correlations) weighted by the
learned alpha/beta. The backbone is torchvision's ImageNet VGG16, used only when the user already
has it in `$TORCH_HOME/hub/checkpoints`; alpha/beta ship in the `DISTS-pytorch` wheel
(the registry's `dists` card). Both load with `weights_only=True`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cctvsr.errors import WeightsError
from cctvsr.perceptual.hub import check_named_sha256, hub_checkpoint, load_strict, load_tensors, torchvision_features
from cctvsr.perceptual.stlpips import check_pair
from cctvsr.registry import hub_checkpoint_name, packaged

DISTS_ALPHA_BETA = packaged("dists", "alpha_beta")
BACKBONE_FILE = hub_checkpoint_name("dists")  # torchvision's name; the suffix is its sha256 prefix
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics VGG16 was trained with
STD = (0.229, 0.224, 0.225)
# VGG16 convolutions per stage, and their indices in torchvision's `features` list.
STAGES = ((3, 64, 64), (64, 128, 128), (128, 256, 256, 256), (256, 512, 512, 512), (512, 512, 512, 512))
TORCHVISION_CONV_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CHANNELS = (3, 64, 128, 256, 512, 512)  # the input, then each stage's last ReLU
MIN_SIZE = 32  # four stride-2 pools leave at least 2×2 at the last stage
_C1 = _C2 = 1e-6


def backbone_path() -> Path:
    return hub_checkpoint(BACKBONE_FILE)


def missing_files() -> list[str]:
    """What DISTS lacks here, for the user; empty when it can run."""
    missing = []
    if not backbone_path().is_file():
        missing.append(f"the VGG16 backbone {backbone_path()}")
    if DISTS_ALPHA_BETA.locate() is None:
        missing.append(f"the DISTS weights (pip install {DISTS_ALPHA_BETA.distribution})")
    return missing


class L2Pool(nn.Module):
    """sqrt(Hann-window blur of x²), stride 2: a pool that does not alias like max-pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = np.hanning(5)[1:-1]
        window = torch.tensor(taps[:, None] * taps[None, :], dtype=torch.float32)
        self.register_buffer("window", (window / window.sum())[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.window, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class Dists(nn.Module):
    """DISTS distance between two batches of RGB images in [0, 1]; 0 for identical images."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.stages = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(c_in, c_out, 3, padding=1) for c_in, c_out in zip(stage[:-1], stage[1:])) for stage in STAGES
        )
        self.pools = nn.ModuleList(L2Pool(stage[0]) for stage in STAGES[1:])
        self.register_buffer("alpha", torch.zeros(1, sum(CHANNELS), 1, 1))
        self.register_buffer("beta", torch.zeros(1, sum(CHANNELS), 1, 1))

    @classmethod
    def from_files(cls, backbone: Path, alpha_beta: Path, device: torch.device | str = "cpu") -> Dists:
        """Strict load: all 13 VGG16 convolutions and alpha/beta; only the classifier may be left over."""
        names = [f"stages.{s}.{i}" for s, stage in enumerate(STAGES) for i in range(len(stage) - 1)]
        rename = {f"features.{t}.": f"{n}." for t, n in zip(TORCHVISION_CONV_INDEX, names)}
        state = torchvision_features(backbone, rename, "VGG16")
        weights = load_tensors(alpha_beta, "DISTS weights")
        if set(weights) != {"alpha", "beta"}:
            raise WeightsError(f"{alpha_beta}: expected tensors alpha and beta, found {sorted(weights)}")
        state.update(weights)
        return load_strict(cls(), state, "DISTS", device)

    @classmethod
    def from_torch_home(cls, device: torch.device | str = "cpu") -> Dists:
        missing = missing_files()
        if missing:
            raise WeightsError(f"DISTS needs {' and '.join(missing)}")
        check_named_sha256(backbone_path())
        return cls.from_files(backbone_path(), DISTS_ALPHA_BETA.require(), device=device)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input and the last ReLU of each of VGG16's five stages."""
        feats = [x]
        h = (x - self.mean) / self.std
        for index, convs in enumerate(self.stages):
            if index:
                h = self.pools[index - 1](h)
            for conv in convs:
                h = F.relu(conv(h))
            feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image, shape (N,), for NCHW RGB in [0, 1]."""
        check_pair(x, y, min_size=MIN_SIZE, name="DISTS")
        n = x.shape[0]
        feats = self.features(torch.cat((x, y), dim=0))
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, CHANNELS, dim=1)
        betas = torch.split(self.beta / total, CHANNELS, dim=1)
        score = x.new_zeros(n)
        for feat, alpha, beta in zip(feats, alphas, betas):
            fx, fy = feat[:n], feat[n:]
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            texture = (2 * mx * my + _C1) / (mx**2 + my**2 + _C1)
            vx, vy = ((fx - mx) ** 2).mean((2, 3), keepdim=True), ((fy - my) ** 2).mean((2, 3), keepdim=True)
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            structure = (2 * cov + _C2) / (vx + vy + _C2)
            score = score + (alpha * texture + beta * structure).sum(dim=(1, 2, 3))
        return 1.0 - score
