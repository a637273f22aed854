"""cctvsr.fusion on real faces: registration accuracy, fusion beats any single frame, refusals."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cctvsr.fusion import fuse_track, register
from cctvsr.fusion.grid import GRID, luma
from cctvsr.fusion.register import Registration, _lr_points

# (file, x1, y1, x2, y2) face boxes (CenterFace on the photo) of two different people
FACES = {
    "obama": ("face_recognition__obama.jpg", 373, 93, 614, 427),
    "biden": ("face_recognition__biden.jpg", 428, 164, 715, 568),
}
LR = 32


def _region(shared_data: Path, key: str, side: int) -> np.ndarray:
    """A square RGB region of `side` px, three face widths wide, centred on the face."""
    name, x1, y1, x2, y2 = FACES[key]
    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "faces_hq" / name)), cv2.COLOR_BGR2RGB)
    cx, cy, face = (x1 + x2) / 2, (y1 + y2) / 2, 1.1 * max(x2 - x1, y2 - y1)
    s = side / (3 * face)
    m = np.float32([[s, 0, side / 2 - s * cx], [0, s, side / 2 - s * cy]])
    return cv2.warpAffine(cv2.GaussianBlur(rgb, (0, 0), 0.4 / s), m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def _view(region: np.ndarray, dx: float, dy: float, angle: float) -> np.ndarray:
    """The region moved by (dx, dy) HR px and rotated by `angle` degrees about its centre."""
    c = (region.shape[1] - 1) / 2
    m = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(region.astype(np.float32), m, region.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _lr(hr: np.ndarray) -> np.ndarray:
    """Blur (σ 0.5 LR px), ×4 box downsample, central LR×LR crop — as float."""
    small = cv2.resize(cv2.GaussianBlur(hr, (0, 0), 2.0), None, fx=1 / GRID, fy=1 / GRID, interpolation=cv2.INTER_AREA)
    lo = (small.shape[0] - LR) // 2
    return small[lo : lo + LR, lo : lo + LR]


@pytest.fixture(scope="module")
def obama(shared_data: Path) -> np.ndarray:
    return _region(shared_data, "obama", 3 * LR * GRID)


def test_registration_recovers_subpixel_shift_and_rotation(obama: np.ndarray) -> None:
    ref = luma(_lr(obama))
    dx_lr, dy_lr, angle = 0.37, -0.81, 2.0
    moved = luma(_lr(_view(obama, dx_lr * GRID, dy_lr * GRID, angle)))
    reg = register(ref, moved, use_flow=False)
    assert reg.ok, reg.reason
    # where does the reference's centre land in the moved frame? the known motion says: rotated about
    # the region centre (the crop centre too), then shifted by (dx, dy)
    c = (LR - 1) / 2
    px, py = np.array([[c + 5.0]]).astype(np.float32), np.array([[c - 4.0]]).astype(np.float32)
    reg_no_flow = Registration(reg.warp, None, reg.residual, reg.correlation, True)
    fx, fy = _lr_points(reg_no_flow, px, py)
    a = math.radians(angle)  # cv2's positive angle turns the image anticlockwise on screen
    ex = c + math.cos(a) * 5.0 + math.sin(a) * -4.0 + dx_lr
    ey = c - math.sin(a) * 5.0 + math.cos(a) * -4.0 + dy_lr
    assert math.hypot(float(fx[0, 0]) - ex, float(fy[0, 0]) - ey) < 0.1  # LR px
    lin = reg.warp[:, :2]
    assert abs(math.degrees(math.atan2(lin[1, 0], lin[0, 0])) + angle) < 0.2


def _y(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32)


def test_fusion_of_noisy_copies_beats_every_single_copy(obama: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    truths, crops = [], []
    lo = (obama.shape[0] - LR * GRID) // 2
    for _ in range(8):
        hr = _view(obama, *(rng.uniform(-1.5, 1.5, 2) * GRID), rng.uniform(-2, 2))
        truths.append(_y(hr[lo : lo + LR * GRID, lo : lo + LR * GRID]))
        crops.append(np.clip(np.rint(_lr(hr) + rng.normal(0, 8, (LR, LR, 3))), 0, 255).astype(np.uint8))
    result = fuse_track(crops, blur_sigma=0.5, noise_sigma=8.0)
    assert result.ok, result.reason
    assert len(result.used) == 8 and result.consistent

    m = GRID * 3  # the crop edge sees outside the face differently in every frame

    def rms(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(np.mean((a - b)[m:-m, m:-m] ** 2)))

    fused = rms(_y(result.fused_x4), truths[result.reference])
    singles = [rms(_y(cv2.resize(c, None, fx=GRID, fy=GRID, interpolation=cv2.INTER_CUBIC)), t) for c, t in zip(crops, truths)]
    # measured: 0.74 of the best copy's error; with registration replaced by the identity, 1.34
    assert fused < 0.85 * min(singles), (fused, singles)


def test_two_frames_give_no_fused_output(obama: np.ndarray) -> None:
    crops = [np.clip(_lr(_view(obama, d, 0, 0)), 0, 255).astype(np.uint8) for d in (0.0, 2.0)]
    result = fuse_track(crops, min_frames=4)
    assert not result.ok and result.fused_x4 is None and result.fused_x1 is None
    assert "2 frames" in result.reason
    assert set(result.rejected) == {0, 1}
    assert result.manifest()["fused"] is False


def test_a_frame_of_another_face_is_rejected(shared_data: Path, obama: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    crops = [np.clip(np.rint(_lr(_view(obama, *(rng.uniform(-1, 1, 2) * GRID), 0)) + rng.normal(0, 4, (LR, LR, 3))), 0, 255).astype(np.uint8) for _ in range(6)]
    biden = _region(shared_data, "biden", 3 * LR * GRID)
    crops.insert(3, np.clip(np.rint(_lr(biden)), 0, 255).astype(np.uint8))
    result = fuse_track(crops, blur_sigma=0.5, noise_sigma=4.0)
    assert result.ok, result.reason
    assert 3 in result.rejected and 3 not in result.used, result.manifest()
    assert result.rejected[3]  # with its reason
    assert sorted(result.used) == [0, 1, 2, 4, 5, 6]
    manifest = result.manifest()
    assert manifest["frames_used"] == result.used and "3" in manifest["frames_rejected"]
