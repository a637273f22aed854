"""The benchmark's metrics, each pinned on a fixed real pair against an implementation the code does
not call, and LPIPS/DISTS loading from a fabricated backbone in a temporary $TORCH_HOME."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.ndimage
import skimage.color
import torch
from torch import nn
from torch.nn import functional as F

from cctvsr import metrics
from cctvsr.assets import DISTS_ALPHA_BETA
from cctvsr.errors import InputError, WeightsError
from cctvsr.evaluate.scoring import build_metrics
from cctvsr.perceptual import dists, lpips

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def pair(astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A real 192×192 crop and its JPEG-30 + slightly blurred version (a fixed, realistic distortion)."""
    ref = np.ascontiguousarray(astronaut[40:232, 150:342])
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(cv2.GaussianBlur(ref, (0, 0), 0.8), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 30])
    return ref, cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _y(img: np.ndarray) -> np.ndarray:
    """skimage's own BT.601 conversion: another implementation of the same luma."""
    return skimage.color.rgb2ycbcr(img)[..., 0]


def test_psnr_y_and_rgb_match_the_formula_by_hand(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    mse_y = np.mean((_y(a) - _y(b)) ** 2)
    mse_rgb = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert metrics.psnr_y(b, a) == pytest.approx(10 * np.log10(255**2 / mse_y), abs=1e-6)
    assert metrics.psnr(b, a) == pytest.approx(10 * np.log10(255**2 / mse_rgb), abs=1e-6)
    assert metrics.psnr_y(a, a) == float("inf")


def test_ssim_y_and_rgb_match_torchmetrics_gaussian_ssim(pair: tuple[np.ndarray, np.ndarray]) -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    a, b = pair
    ya, yb = (torch.from_numpy(_y(x))[None, None] for x in (a, b))
    ra, rb = (torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None] for x in (a, b))
    assert metrics.ssim_y(b, a) == pytest.approx(float(tm_ssim(yb, ya, data_range=255.0)), abs=2e-3)
    assert metrics.ssim_rgb(b, a) == pytest.approx(float(tm_ssim(rb, ra, data_range=255.0)), abs=2e-3)
    assert 0.5 < metrics.ssim_y(b, a) < 0.99


def _ms_ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Wang, Simoncelli & Bovik 2003 in numpy: 5 scales, Gaussian σ 1.5 (11 taps), 2×2 mean pooling."""
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return scipy.ndimage.gaussian_filter(img, 1.5, truncate=5 / 1.5, mode="reflect")[5:-5, 5:-5]

    values = []
    for scale in range(5):
        mx, my = blur(x), blur(y)
        vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        cs = (2 * cov + c2) / (vx + vy + c2)
        values.append(np.mean(cs) if scale < 4 else np.mean((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs))
        h, w = (s - s % 2 for s in x.shape)
        x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    return float(np.prod([max(v, 0.0) ** w for v, w in zip(values, weights)]))


def test_ms_ssim_matches_a_numpy_implementation_of_the_paper(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    expected = _ms_ssim_by_hand(_y(b), _y(a))
    assert metrics.ms_ssim_y(b, a) == pytest.approx(expected, abs=5e-3)
    assert metrics.ms_ssim_y(a, a) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match="161"):
        metrics.ms_ssim_y(a[:128, :128], b[:128, :128])


def _nlpd_torch(a: np.ndarray, b: np.ndarray) -> float:
    """NLP_dist.m restated in torch the way the authors' MATLAB code runs it: symmetric-padded
    reduce, upsampling by zero insertion (pixel shuffle) with a replicated border, divisive
    normalisation by a 180°-rotated 3×3 filter (MATLAB conv2), RMS per level, mean over levels."""
    taps = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05], dtype=torch.float64)
    filt = (taps[:, None] * taps[None, :])[None, None]
    sigmas = metrics._NLPD_SIGMAS
    dn = [torch.tensor(f, dtype=torch.float64).flip(0, 1)[None, None] for f in metrics._NLPD_DN]

    def pyramid(img: torch.Tensor) -> list[torch.Tensor]:
        out, j = [], img
        for k in range(5):
            padded = torch.from_numpy(np.pad(j[0, 0].numpy(), 2, mode="symmetric"))[None, None]
            i = F.conv2d(padded, filt, stride=2)
            odd_h, odd_w = 2 * i.shape[2] - j.shape[2], 2 * i.shape[3] - j.shape[3]
            ip = F.pad(i, (1, 1, 1, 1), mode="replicate")
            up = F.pixel_shuffle(torch.cat([ip * 4, torch.zeros_like(ip), torch.zeros_like(ip), torch.zeros_like(ip)], 1), 2)
            conv = F.conv2d(F.pad(up, (2, 2, 2, 2)), filt)[:, :, 2 : up.shape[2] - 2 - odd_h, 2 : up.shape[3] - 2 - odd_w]
            band = j - conv
            out.append(band / (sigmas[k] + F.conv2d(F.pad(band.abs(), (1, 1, 1, 1)), dn[k])))
            j = i
        out.append(j / (sigmas[5] + F.conv2d(F.pad(j.abs(), (1, 1, 1, 1)), dn[5])))
        return out

    pa, pb = (pyramid(torch.from_numpy(_y(x) / 255.0)[None, None]) for x in (a, b))
    return float(torch.stack([((x - y) ** 2).mean().sqrt() for x, y in zip(pa, pb)]).mean())


def test_nlpd_matches_a_torch_restatement_of_the_authors_matlab_code(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    odd = (a[:189, :175], b[:189, :175])  # odd sizes exercise the expand's cropping
    assert metrics.nlpd(b, a) == pytest.approx(_nlpd_torch(b, a), rel=1e-9)
    assert metrics.nlpd(*odd) == pytest.approx(_nlpd_torch(*odd), rel=1e-9)
    assert metrics.nlpd(a, a) == 0.0


def test_nlpd_grows_with_the_strength_of_the_blur(astronaut: np.ndarray) -> None:
    values = [metrics.nlpd(cv2.GaussianBlur(astronaut, (0, 0), s), astronaut) for s in (0.5, 1.0, 2.0, 4.0)]
    assert values == sorted(values) and values[0] > 0


# --- networks whose backbones come from $TORCH_HOME ------------------------------------------------

VGG16_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
               (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512))


def _fabricated_vgg16() -> dict[str, torch.Tensor]:
    """torchvision's VGG16 key layout with seeded random values (and a classifier to be ignored)."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for index, c_in, c_out in VGG16_CONVS:
        state[f"features.{index}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(c_out, generator=g) * 0.01
    state["classifier.0.weight"] = torch.zeros(4, 8)
    return state


def _install(torch_home: Path, name: str, state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch, module) -> Path:
    """Save the fabricated backbone under a torchvision-style name carrying its own sha256 prefix."""
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = folder / f"{name}-{digest}.pth"
    tmp.rename(path)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(module, "BACKBONE_FILE", path.name)
    return path


def _dists_reference(state: dict[str, torch.Tensor], ab: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DISTS_pt.py's computation, restated on an nn.Sequential in torchvision's layout."""
    layers: list[nn.Module] = []
    convs = {i: (ci, co) for i, ci, co in VGG16_CONVS}
    for i in range(30):
        if i in convs:
            layers.append(nn.Conv2d(*convs[i], 3, padding=1))
        elif i in (4, 9, 16, 23):
            layers.append(nn.Identity())  # replaced by L2 pooling below
        else:
            layers.append(nn.ReLU())
    features = nn.Sequential(*layers)
    features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    a = np.hanning(5)[1:-1]
    g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
    g = g / g.sum()

    def l2pool(h: torch.Tensor) -> torch.Tensor:
        return (F.conv2d(h**2, g[None, None].repeat(h.shape[1], 1, 1, 1), stride=2, padding=1, groups=h.shape[1]) + 1e-12).sqrt()

    def feats(img: torch.Tensor) -> list[torch.Tensor]:
        h = (img - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        out = [img]
        for i, layer in enumerate(features):
            h = l2pool(h) if i in (4, 9, 16, 23) else layer(h)
            if i in (3, 8, 15, 22, 29):
                out.append(h)
        return out

    chns = [3, 64, 128, 256, 512, 512]
    w_sum = ab["alpha"].sum() + ab["beta"].sum()
    alpha, beta = torch.split(ab["alpha"] / w_sum, chns, dim=1), torch.split(ab["beta"] / w_sum, chns, dim=1)
    f0, f1 = feats(x), feats(y)
    d1 = d2 = 0
    for k in range(len(chns)):
        xm, ym = f0[k].mean([2, 3], keepdim=True), f1[k].mean([2, 3], keepdim=True)
        d1 = d1 + (alpha[k] * (2 * xm * ym + 1e-6) / (xm**2 + ym**2 + 1e-6)).sum(1, keepdim=True)
        xv, yv = ((f0[k] - xm) ** 2).mean([2, 3], keepdim=True), ((f1[k] - ym) ** 2).mean([2, 3], keepdim=True)
        cov = (f0[k] * f1[k]).mean([2, 3], keepdim=True) - xm * ym
        d2 = d2 + (beta[k] * (2 * cov + 1e-6) / (xv + yv + 1e-6)).sum(1, keepdim=True)
    return 1 - (d1 + d2).flatten()


def test_dists_loads_a_vgg16_from_torch_home_and_matches_the_reference_computation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pair: tuple[np.ndarray, np.ndarray]
) -> None:
    if DISTS_ALPHA_BETA.locate() is None:
        pytest.skip("DISTS-pytorch not installed")
    state = _fabricated_vgg16()
    _install(tmp_path, "vgg16", state, monkeypatch, dists)
    assert dists.missing_files() == []
    model = dists.Dists.from_torch_home()
    a, b = (metrics._to_tensor(x[:96, :96]) for x in pair)
    ab = torch.load(DISTS_ALPHA_BETA.require(), weights_only=True)
    with torch.inference_mode():
        ours = model(b, a)
        reference = _dists_reference(state, ab, b, a)
    assert float(ours[0]) == pytest.approx(float(reference[0]), abs=1e-5)
    assert float(model(a, a)[0]) == pytest.approx(0.0, abs=1e-5)
    table = {m.key: m for m in build_metrics(96, with_identity=False)}
    assert table["dists"].score is not None and table["dists"].score(pair[0][:96, :96], pair[1][:96, :96], 0) == pytest.approx(float(ours[0]), abs=1e-5)


def test_dists_rejects_a_backbone_that_is_not_vgg16_or_fails_its_name_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _fabricated_vgg16() | {"features.3.weight": torch.zeros(1)}
    path = _install(tmp_path, "vgg16", state, monkeypatch, dists)
    with pytest.raises(WeightsError, match="not torchvision's VGG16"):
        dists.Dists.from_torch_home()
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(WeightsError, match="sha256"):
        dists.Dists.from_torch_home()


class _Heads:
    """Stands in for the lpips wheel's heads file (the wheel is not a dependency)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def locate(self) -> Path:
        return self.path

    def require(self) -> Path:
        return self.path


def test_lpips_loads_an_alexnet_from_torch_home_and_is_zero_only_for_equal_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pair: tuple[np.ndarray, np.ndarray]
) -> None:
    g = torch.Generator().manual_seed(1)
    shapes = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
    state = {}
    for i, (co, ci, k) in shapes.items():
        state[f"features.{i}.weight"] = torch.randn(co, ci, k, k, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.zeros(co)
    _install(tmp_path, "alexnet-owt", state, monkeypatch, lpips)
    heads = tmp_path / "alex.pth"
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate((64, 192, 384, 256, 256))}, heads)
    monkeypatch.setattr(lpips, "LPIPS_ALEX_HEADS", _Heads(heads))
    assert lpips.missing_files() == []
    table = {m.key: m for m in build_metrics(192, with_identity=False)}
    score = table["lpips_alex"].score
    assert score is not None
    a, b = pair
    assert score(a, a, 0) == pytest.approx(0.0, abs=1e-6)
    assert score(a, b, 0) > 0.0


def test_metrics_without_their_weights_are_unavailable_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    table = {m.key: m for m in build_metrics(128, with_identity=False)}
    for key, needs in (("lpips_alex", "alexnet-owt-7be5be79.pth"), ("dists", "vgg16-397923af.pth")):
        assert table[key].score is None and needs in (table[key].unavailable or "")
    assert table["ms_ssim_y"].score is None and "161" in (table["ms_ssim_y"].unavailable or "")
    assert table["st_lpips"].score is not None and table["nlpd"].score is not None
