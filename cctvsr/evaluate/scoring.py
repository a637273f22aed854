"""Every method on every face, scored by every metric that can run here.

A metric that cannot run (weights absent, faces too small) is carried as unavailable with its
reason, never as a number. Methods are plain callables (LR crops → ×4 images), so bicubic, torch
and ONNX models are measured alike, through the same SuperResolver path users run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from cctvsr import metrics
from cctvsr.evaluate.protocols import SCALE, EvalPair

Upscale = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class Method:
    name: str
    upscale: Upscale
    about: str = ""


def bicubic(crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The baseline every paper compares with: OpenCV's bicubic ×4."""
    return [cv2.resize(c, (c.shape[1] * SCALE, c.shape[0] * SCALE), interpolation=cv2.INTER_CUBIC) for c in crops]


BICUBIC = Method("bicubic", bicubic, "OpenCV INTER_CUBIC ×4")


@dataclass
class Metric:
    """One column of the table. `score(hr, out, index)`: index names the face, for per-face caches."""

    key: str
    label: str
    higher_is_better: bool
    score: Callable[[np.ndarray, np.ndarray, int], float] | None
    unavailable: str | None = None
    note: str = ""

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


def _tensor_metric(model: torch.nn.Module) -> Callable[[np.ndarray, np.ndarray, int], float]:
    def score(hr: np.ndarray, out: np.ndarray, index: int) -> float:
        with torch.inference_mode():
            return float(model(metrics._to_tensor(out), metrics._to_tensor(hr))[0])

    return score


def _plain(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray, int], float]:
    return lambda hr, out, index: fn(out, hr)


def _lpips() -> Metric:
    from cctvsr.perceptual import lpips

    missing = lpips.missing_files()
    if missing:
        return Metric("lpips_alex", "LPIPS-Alex", False, None, f"needs {' and '.join(missing)}")
    return Metric("lpips_alex", "LPIPS-Alex", False, _tensor_metric(lpips.LpipsAlex.from_torch_home()))


def _dists() -> Metric:
    from cctvsr.perceptual import dists

    missing = dists.missing_files()
    if missing:
        return Metric("dists", "DISTS", False, None, f"needs {' and '.join(missing)}")
    return Metric("dists", "DISTS", False, _tensor_metric(dists.Dists.from_torch_home()))


def _identity() -> Metric:
    from cctvsr.evaluate import identity

    reason = identity.unavailable_reason()
    if reason:
        return Metric("identity_dlib", "ID dist (dlib)", False, None, reason)
    model = identity.face_identity()
    references: dict[int, identity.Reference] = {}

    def score(hr: np.ndarray, out: np.ndarray, index: int) -> float:
        if index not in references:  # landmarks found once per HR face, used for every method
            ref = model.reference(hr)
            assert ref is not None  # a face crop always yields a reference
            references[index] = ref
        return model.distance(references[index], out)

    return Metric(
        "identity_dlib", "ID dist (dlib)", False, score,
        note=f"dlib ResNet descriptor distance to the HR face; ≥ {identity.DESCRIPTOR_THRESHOLD} reads as another person",
    )


def _arcface() -> Metric:
    from cctvsr.evaluate import arcface

    reason = arcface.unavailable_reason()
    if reason:
        return Metric("identity_arcface", "ID cos (ArcFace)", True, None, reason)
    model = arcface.arcface()
    references: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def score(hr: np.ndarray, out: np.ndarray, index: int) -> float:
        if index not in references:  # landmarks found once per HR face, used for every method
            marks = model.landmarks(hr)
            references[index] = (marks, model.embedding(hr, marks))
        marks, reference = references[index]
        return float(model.embedding(out, marks) @ reference)

    return Metric("identity_arcface", "ID cos (ArcFace)", True, score, note="cosine of ArcFace embeddings with the HR face")


def build_metrics(min_side: int, with_identity: bool = True) -> list[Metric]:
    """The paper's metrics plus identity, each either ready or marked unavailable with its reason."""
    table = [
        Metric("psnr_y", "PSNR-Y dB", True, _plain(metrics.psnr_y)),
        Metric("psnr_rgb", "PSNR-RGB dB", True, _plain(metrics.psnr)),
        Metric("ssim_y", "SSIM-Y", True, _plain(metrics.ssim_y)),
        Metric("ssim_rgb", "SSIM-RGB", True, _plain(metrics.ssim_rgb)),
        Metric("ms_ssim_y", "MS-SSIM-Y", True, _plain(metrics.ms_ssim_y)),
        Metric("nlpd", "NLPD", False, _plain(metrics.nlpd)),
        Metric("st_lpips", "ST-LPIPS", False, _plain(metrics.st_lpips)),
        _lpips(),
        _dists(),
    ]
    if with_identity:
        table += [_identity(), _arcface()]
    limits = {
        "ms_ssim_y": metrics.MS_SSIM_MIN_SIZE, "nlpd": metrics.NLPD_MIN_SIZE, "st_lpips": metrics.ST_LPIPS_MIN_SIZE,
        "lpips_alex": 32, "dists": 32,
    }
    for metric in table:
        need = limits.get(metric.key, 11)
        if metric.score is not None and min_side < need:
            metric.score, metric.unavailable = None, f"needs HR faces of at least {need} px (smallest here: {min_side})"
    return table


@dataclass
class MethodResult:
    method: Method
    outputs: list[np.ndarray]
    seconds: float
    scores: dict[str, list[float]] = field(default_factory=dict)  # metric key -> per face

    def mean(self, key: str) -> float | None:
        values = self.scores.get(key)
        return float(np.mean(values)) if values else None


@dataclass
class Evaluation:
    pairs: list[EvalPair]
    metrics: list[Metric]
    results: list[MethodResult]
    protocol: str


def run_methods(pairs: list[EvalPair], methods: list[Method], on_face: Callable[[], None] = lambda: None) -> list[MethodResult]:
    """Each method's ×4 outputs for every LR face, one face at a time (so progress moves)."""
    results = []
    for method in methods:
        start = time.perf_counter()
        outputs = []
        for pair in pairs:
            (out,) = method.upscale([pair.lr])
            if out.shape != pair.hr.shape:
                raise RuntimeError(f"{method.name} returned {out.shape} for an LR face of {pair.lr.shape}")
            outputs.append(out)
            on_face()
        results.append(MethodResult(method, outputs, time.perf_counter() - start))
    return results


def score_results(
    pairs: list[EvalPair], metric_list: list[Metric], results: list[MethodResult], on_face: Callable[[], None] = lambda: None
) -> None:
    """Fill each result's per-face scores for every available metric."""
    for result in results:
        for index, (pair, out) in enumerate(zip(pairs, result.outputs)):
            for metric in metric_list:
                if metric.score is not None:
                    result.scores.setdefault(metric.key, []).append(metric.score(pair.hr, out, index))
            on_face()
