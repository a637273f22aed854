"""KernelGAN blur kernels: the ×4 composition, the collapsed generator, determinism, the kernel
constraints on the output, the helpers, and accuracy on a real photo with a known kernel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cctvsr.degrade import kernels
from cctvsr.degrade.kernels import (
    KernelEstimate,
    anisotropic_gaussian_kernel,
    bicubic_kernel_x4,
    centre_of_mass,
    clean_kernel,
    compose_x4,
    estimate_kernel,
    estimate_kernels,
    kernel_distance,
    long_axis_angle,
    x4_kernel,
)
from cctvsr.errors import DeviceError, InputError

TRUE_SIGMAS = (5.0, 2.0)  # HR pixels; against bicubic this is 0.150, the reference distance


@pytest.fixture
def one_thread() -> Iterator[None]:
    """KernelGAN's iteration is many tiny ops: on a busy 2-core machine a second thread only adds
    waiting (measured: D's forward pass 8 ms at one thread, 190 ms at two under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _known_lr(hr: np.ndarray, k4: np.ndarray) -> np.ndarray:
    """(hr ∗ k4)↓4: blur, then keep every 4th pixel, rounded to uint8."""
    blurred = cv2.filter2D(
        hr.astype(np.float32), -1, k4.astype(np.float32), borderType=cv2.BORDER_REFLECT_101
    )
    return np.clip(np.round(blurred[::4, ::4]), 0, 255).astype(np.uint8)


def _stride(x: torch.Tensor, k: np.ndarray, s: int) -> torch.Tensor:
    return F.conv2d(x, torch.from_numpy(k)[None, None], stride=s)


def _asymmetric_k2() -> np.ndarray:
    """A 13×13 ×2 kernel that is off-centre and lopsided, as a raw estimate is."""
    k = anisotropic_gaussian_kernel(13, 1.8, 0.8, np.radians(35.0))
    bump = np.roll(anisotropic_gaussian_kernel(13, 0.7, 0.7, 0.0), 2, axis=1)
    k = np.roll(k, (1, -1), axis=(0, 1)) + 0.3 * bump
    return k / k.sum()


def test_x4_kernel_at_stride_4_equals_two_stride_2_passes_of_k2(astronaut: np.ndarray) -> None:
    image = torch.from_numpy(astronaut[..., 1].astype(np.float64) / 255.0)[None, None]
    k2 = _asymmetric_k2()
    twice = _stride(_stride(image, k2, 2), k2, 2)
    once = _stride(image, compose_x4(k2), 4)
    assert once.shape == twice.shape == (1, 1, 119, 119)
    assert float((once - twice).abs().max()) < 1e-5


def test_x4_kernel_is_the_composition_centred_and_cropped(astronaut: np.ndarray) -> None:
    # k2 centred on its centre pixel: k4 needs no shift, only the crop to 99.9 % of the mass, so
    # at stride 4 it equals the two stride-2 passes up to that 0.1 %
    k2 = anisotropic_gaussian_kernel(13, 1.8, 0.8, np.radians(35.0))
    k4 = x4_kernel(k2)
    full = compose_x4(k2)
    cut = (full.shape[0] - k4.shape[0]) // 2
    assert k4.shape[0] % 2 == 1 and k4.shape[0] < full.shape[0]
    image = torch.from_numpy(astronaut[..., 1].astype(np.float64) / 255.0)[None, None]
    twice = _stride(_stride(image, k2, 2), k2, 2)
    once = _stride(image[..., cut:, cut:], k4, 4)[..., : twice.shape[-2], : twice.shape[-1]]
    assert float((once - twice).abs().max()) < 2e-3  # grey levels: < 0.5 of 255


def test_x4_kernel_is_odd_centred_and_sums_to_one() -> None:
    k4 = x4_kernel(_asymmetric_k2())
    assert k4.ndim == 2 and k4.shape[0] == k4.shape[1] and k4.shape[0] % 2 == 1
    assert k4.shape[0] < 37  # cropped, not the full 3·13 − 2 support
    assert abs(k4.sum() - 1.0) < 1e-9
    c = (k4.shape[0] - 1) / 2
    cy, cx = centre_of_mass(k4)
    assert abs(cy - c) < 0.01 and abs(cx - c) < 0.01  # exact before the crop; the cut 0.1 % moves it


def test_collapsed_generator_matches_the_layers_and_their_gradients(astronaut: np.ndarray) -> None:
    torch.manual_seed(0)
    g = kernels.LinearGenerator()
    kernels._init_weights(g, 1.0, torch.Generator().manual_seed(0))
    crop = torch.from_numpy(astronaut[100:164, 200:264].transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)
    x = crop.unsqueeze(1)  # the colours as a batch of single-channel images
    outs, grads = [], []
    for collapsed in (True, False):
        g.zero_grad()
        out = g(x, collapsed)
        (out**2).mean().backward()
        outs.append(out.detach())
        grads.append(torch.cat([c.weight.grad.flatten() for c in g.convs]))
    assert outs[0].shape == (3, 1, 26, 26)
    scale = float(outs[1].abs().max())
    assert float((outs[0] - outs[1]).abs().max()) < 1e-5 * scale
    assert float((grads[0] - grads[1]).norm()) < 1e-4 * float(grads[1].norm())


def test_bicubic_prior_is_aligned_pixel_for_pixel_with_the_generator() -> None:
    # a G whose kernel is the 7-tap bicubic ×2 kernel (centred in 13×13) reproduces the prior
    x = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    bic = torch.from_numpy(kernels._bicubic_kernel(2).astype(np.float32))[None, None]
    as_g = F.conv2d(x, F.pad(bic, (3, 3, 3, 3)), stride=2)
    assert as_g.shape == kernels._bicubic_x2(x, bic).shape == (3, 1, 26, 26)
    assert float((as_g - kernels._bicubic_x2(x, bic)).abs().max()) < 1e-6


def test_same_seed_gives_the_same_kernel_and_leaves_the_global_rng_alone(
    astronaut: np.ndarray, one_thread: None
) -> None:
    lr = _known_lr(astronaut, anisotropic_gaussian_kernel(31, *TRUE_SIGMAS, np.radians(30.0)))
    state = torch.get_rng_state()
    calls: list[tuple[int, int]] = []
    a = estimate_kernel(lr, iters=25, seed=3, precision="fp32", progress=lambda i, n: calls.append((i, n)))
    b = estimate_kernel(lr, iters=25, seed=3, precision="fp32")
    c = estimate_kernel(lr, iters=25, seed=4, precision="fp32")
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(a.k2, b.k2) and np.array_equal(a.k4, b.k4)
    assert not np.array_equal(a.k2, c.k2)
    assert calls == [(i, 25) for i in range(1, 26)]
    assert a.iterations == 25 and not a.stopped_early


def test_estimate_satisfies_the_kernel_constraints(astronaut: np.ndarray, one_thread: None) -> None:
    lr = _known_lr(astronaut, anisotropic_gaussian_kernel(31, *TRUE_SIGMAS, np.radians(30.0)))
    est = estimate_kernel(lr, iters=60, seed=0, precision="fp32")
    assert isinstance(est, KernelEstimate)
    assert est.k2.shape == (13, 13) and est.k2.dtype == np.float64
    assert abs(est.k2.sum() - 1.0) < 1e-9 and est.k2.min() >= 0.0
    assert est.k4.shape[0] == est.k4.shape[1] and est.k4.shape[0] % 2 == 1
    assert abs(est.k4.sum() - 1.0) < 1e-9
    c = (est.k4.shape[0] - 1) / 2
    assert all(abs(v - c) < 0.1 for v in centre_of_mass(est.k4))
    # k2 is trained towards its centre pixel (6, 6)
    assert all(abs(v - 6.0) < 1.0 for v in centre_of_mass(est.k2))
    assert est.seconds > 0


def test_bf16_runs_and_stays_close_to_fp32(astronaut: np.ndarray, one_thread: None) -> None:
    lr = _known_lr(astronaut, anisotropic_gaussian_kernel(31, *TRUE_SIGMAS, np.radians(30.0)))
    fp32 = estimate_kernel(lr, iters=30, seed=0, precision="fp32")
    bf16 = estimate_kernel(lr, iters=30, seed=0, precision="bf16")
    assert np.isfinite(bf16.k4).all()
    assert kernel_distance(fp32.k4, bf16.k4) < 0.05


def test_helpers_agree_on_a_known_kernel() -> None:
    k = anisotropic_gaussian_kernel(31, 5.0, 2.0, np.radians(30.0))
    assert k.shape == (31, 31) and abs(k.sum() - 1) < 1e-12
    assert abs(long_axis_angle(k) - 30.0) < 0.5
    # theta in radians, the angle back in degrees; sigma_y > sigma_x turns the long axis by 90°
    assert abs(long_axis_angle(anisotropic_gaussian_kernel(31, 5.0, 2.0, 2 * np.pi / 3)) - 120.0) < 0.5
    assert abs(long_axis_angle(anisotropic_gaussian_kernel(31, 2.0, 5.0, np.pi / 6)) - 120.0) < 0.5
    bic = bicubic_kernel_x4()
    assert bic.shape == (15, 15) and abs(bic.sum() - 1) < 1e-12
    assert centre_of_mass(bic) == pytest.approx((7.0, 7.0))
    assert kernel_distance(bic, k) == pytest.approx(0.150, abs=0.002)  # the reference
    assert kernel_distance(k, k) == 0.0
    assert kernel_distance(k, bic) == pytest.approx(kernel_distance(bic, k))
    # centring makes the distance blind to where the kernel sits and to padding
    shifted = np.roll(np.pad(k, 4), (3, -2), axis=(0, 1))
    assert kernel_distance(k, shifted) < 1e-9


def test_clean_kernel_keeps_a_compact_non_negative_core() -> None:
    k = anisotropic_gaussian_kernel(13, 1.5, 1.0, 0.0)
    noisy = k + np.random.default_rng(0).normal(0, 2e-3, k.shape)
    out = clean_kernel(noisy)
    assert out.min() >= 0 and abs(out.sum() - 1) < 1e-12
    assert np.count_nonzero(out) < 0.5 * out.size  # most of the floor is gone
    assert np.linalg.norm(out - k) < np.linalg.norm(noisy / noisy.sum() - k)


def test_early_stop_fires_only_after_the_first_lr_drop_once_k2_is_still() -> None:
    stop = kernels._EarlyStop()
    still = np.eye(3)
    fired = [n for n in range(1, 3001) if stop.should_stop(n, lambda: still)]
    assert fired[0] == kernels.LR_DROP_EVERY  # history from 500 on, first comparison at 750
    moving = kernels._EarlyStop()
    assert not any(moving.should_stop(n, lambda n=n: np.full((3, 3), n * 1e-3)) for n in range(1, 3001))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((64, 64), np.uint8), "(H, W, 3) uint8"),
        (np.zeros((64, 64, 3), np.float32), "(H, W, 3) uint8"),
        (np.zeros((40, 300, 3), np.uint8), "too small"),
    ],
)
def test_unusable_images_are_refused_with_one_line(image: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        estimate_kernel(image, iters=1)
    assert "\n" not in str(info.value)


def test_unknown_precision_and_zero_iterations_are_refused() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(DeviceError, match=r"unknown precision 'fp16' \(choose from auto, fp32, bf16\)"):
        estimate_kernel(image, iters=1, precision="fp16")
    with pytest.raises(InputError, match="at least 1"):
        estimate_kernel(image, iters=0)


# Large, sharp photos, each with its own kernel angle (as in benchmarks/calibrate_speed.py).
ACCURACY_IMAGES = (("deepface__img4.jpg", 30.0), ("deepface__img13.jpg", 120.0), ("deepface__img23.jpg", 75.0))
NOISE_SIGMA = 8.0


def test_estimate_beats_half_of_bicubic_on_every_real_photo_with_and_without_noise(shared_data: Path) -> None:
    """The calibrate default (early stopping, at most the paper's 3000 iterations), two processes."""
    truths, images = [], []
    for name, angle in ACCURACY_IMAGES:
        bgr = cv2.imread(str(shared_data / "faces_hq" / name), cv2.IMREAD_COLOR)
        assert bgr is not None
        truth = anisotropic_gaussian_kernel(31, *TRUE_SIGMAS, np.radians(angle))
        clean = _known_lr(np.ascontiguousarray(bgr[..., ::-1]), truth)
        noise = np.random.default_rng(1).normal(0, NOISE_SIGMA, clean.shape)
        truths += [truth, truth]
        images += [clean, np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)]
    found = dict(estimate_kernels(images, [0] * len(images), jobs=2, iters=3000, precision="fp32"))
    errors = [kernel_distance(found[i].k4, truth) for i, truth in enumerate(truths)]
    bicubic = kernel_distance(bicubic_kernel_x4(), truths[0])
    # measured here: clean 0.042 / 0.057 / 0.046, σ 8 0.062 / 0.041 / 0.037, bicubic 0.150
    assert max(errors) < 0.5 * bicubic, f"×4 kernel errors {[round(e, 3) for e in errors]} vs bicubic {bicubic:.3f}"
