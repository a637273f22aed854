"""The fine-tuning losses: relativistic average GAN (ESRGAN) and the perceptual distance."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cctvsr.errors import InputError
from cctvsr.perceptual import lpips
from cctvsr.perceptual.stlpips import StLpips

PERCEPTUAL_KINDS = ("auto", "lpips", "stlpips")


def relativistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D learns that a real patch looks more real than the average fake one, and vice versa."""
    real = F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.zeros_like(fake_logits))
    return (real + fake) / 2


def relativistic_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The mirror image for G: both terms carry gradient through the fake logits (ESRGAN's RaGAN)."""
    real = F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.zeros_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.ones_like(fake_logits))
    return (real + fake) / 2


def perceptual_network(kind: str, device: torch.device) -> tuple[nn.Module, str]:
    """The frozen perceptual distance to train with, and its name for the run record: LPIPS-AlexNet
    (the paper's) when its files are here, else ST-LPIPS; 'lpips' insists on LPIPS."""
    if kind not in PERCEPTUAL_KINDS:
        raise InputError(f"unknown --perceptual {kind!r}: choose one of {', '.join(PERCEPTUAL_KINDS)}")
    if kind == "lpips" or (kind == "auto" and not lpips.missing_files()):
        return lpips.LpipsAlex.from_torch_home(device), "lpips-alex"
    return StLpips.from_packaged(device), "stlpips-alex"
