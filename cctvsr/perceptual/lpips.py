"""LPIPS with its AlexNet backbone (Zhang et al. 2018), the perceptual loss of Aakerberg et al.

Written afresh, without torchvision: the backbone is torchvision's ImageNet AlexNet checkpoint,
used only when the user already has it in `$TORCH_HOME/hub/checkpoints` (cctvsr never downloads
it), and the linear heads come from the `lpips` wheel (the registry's `lpips-alex` card). Both
files load with `weights_only=True`. Where either is missing, fine-tuning uses ST-LPIPS.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from cctvsr.errors import WeightsError
from cctvsr.perceptual.hub import check_named_sha256, hub_checkpoint, load_strict, load_tensors, torchvision_features
from cctvsr.perceptual.stlpips import LAYER_CHANNELS, check_pair, weighted_distance
from cctvsr.registry import hub_checkpoint_name, packaged

LPIPS_ALEX_HEADS = packaged("lpips-alex", "heads")
BACKBONE_FILE = hub_checkpoint_name("lpips-alex")  # torchvision's name; the suffix is its sha256 prefix
# LPIPS's input normalisation, for images scaled to [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
_BACKBONE_KEYS = {"features.0.": "conv1.", "features.3.": "conv2.", "features.6.": "conv3.", "features.8.": "conv4.", "features.10.": "conv5."}


def backbone_path() -> Path:
    """Where torch.hub keeps the AlexNet checkpoint: $TORCH_HOME/hub/checkpoints."""
    return hub_checkpoint(BACKBONE_FILE)


def missing_files() -> list[str]:
    """What LPIPS lacks here, for the user; empty when it can run."""
    missing = []
    if not backbone_path().is_file():
        missing.append(f"the AlexNet backbone {backbone_path()}")
    if LPIPS_ALEX_HEADS.locate() is None:
        missing.append("the LPIPS heads (pip install --no-deps lpips)")
    return missing


class LpipsAlex(nn.Module):
    """LPIPS distance between two batches of RGB images in [0, 1]; lower means more alike."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2)
        self.conv2 = nn.Conv2d(64, 192, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(192, 384, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LAYER_CHANNELS)

    @classmethod
    def from_files(cls, backbone: Path, heads: Path, device: torch.device | str = "cpu") -> LpipsAlex:
        """Strict load: every backbone conv and head filled, nothing left over but the classifier."""
        state = torchvision_features(backbone, _BACKBONE_KEYS, "AlexNet")
        for key, value in load_tensors(heads, "LPIPS heads").items():
            if not (key.startswith("lin") and key.endswith(".model.1.weight")):
                raise WeightsError(f"{heads}: unexpected key {key!r}: not LPIPS v0.1 heads")
            state[f"lins.{key[3:key.index('.')]}.weight"] = value
        model = cls()
        state.update(shift=model.shift, scale=model.scale)
        return load_strict(model, state, "LPIPS", device)

    @classmethod
    def from_torch_home(cls, device: torch.device | str = "cpu") -> LpipsAlex:
        missing = missing_files()
        if missing:
            raise WeightsError(f"LPIPS needs {' and '.join(missing)}; or use --perceptual stlpips")
        path = backbone_path()
        check_named_sha256(path)
        return cls.from_files(path, LPIPS_ALEX_HEADS.require(), device=device)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        relu1 = F.relu(self.conv1(x))
        relu2 = F.relu(self.conv2(F.max_pool2d(relu1, kernel_size=3, stride=2)))
        relu3 = F.relu(self.conv3(F.max_pool2d(relu2, kernel_size=3, stride=2)))
        relu4 = F.relu(self.conv4(relu3))
        relu5 = F.relu(self.conv5(relu4))
        return [relu1, relu2, relu3, relu4, relu5]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image, shape (N,), for NCHW RGB in [0, 1]; differentiable."""
        check_pair(x, y, min_size=32, name="LPIPS")
        both = torch.cat((x, y), dim=0) * 2.0 - 1.0
        return weighted_distance(self.features((both - self.shift) / self.scale), self.lins, x.shape[0])
