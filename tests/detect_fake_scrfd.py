"""A tiny ONNX model with SCRFD's signature whose detections are known exactly.

It has InsightFace's 9-output layout (scores, box distances, keypoint distances for strides 8, 16
and 32, two anchors per location) and a dynamic 1×3×H×W input, so it runs at any input size.
It reads the faces off the picture it is given: at each anchor centre the red channel is the
score, and the green channel g sets the face's size as a fraction of the input width, so a face
keeps its size in frame pixels whatever size the frame is letterboxed to. `paint_face` draws such
a marker and `expected_face` says what a correct decoder must return for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
ANCHORS = 2
# A face's box sides and landmarks around its centre, in units of its size d.
SIDES = np.array([1.0, 1.2, 1.0, 1.3], np.float32)  # left, top, right, bottom distances
POINTS = np.array([[-0.4, -0.3], [0.4, -0.3], [0.0, 0.1], [-0.3, 0.5], [0.3, 0.5]], np.float32)
SIZE_PER_GREEN = 1.0 / 1024.0  # d = g · SIZE_PER_GREEN · input width, g the green value 0…255


@dataclass(frozen=True)
class FakeFace:
    cx: int
    cy: int
    red: int  # score = (red − 127.5) / 128
    green: int  # size d = green · SIZE_PER_GREEN · frame width (for frames wider than tall)
    radius: int = 7  # half-side of the painted marker


def expected_face(face: FakeFace, frame_width: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Box (x1, y1, x2, y2), score and landmarks (5, 2) a correct decoder finds for `face`."""
    d = face.green * SIZE_PER_GREEN * frame_width
    left, top, right, bottom = SIDES * d
    box = np.array([face.cx - left, face.cy - top, face.cx + right, face.cy + bottom], np.float32)
    points = np.array([face.cx, face.cy], np.float32) + POINTS * d
    return box, (face.red - 127.5) / 128.0, points


def paint_face(frame: np.ndarray, face: FakeFace) -> None:
    r = face.radius
    frame[face.cy - r : face.cy + r + 1, face.cx - r : face.cx + r + 1, 0] = face.red
    frame[face.cy - r : face.cy + r + 1, face.cx - r : face.cx + r + 1, 1] = face.green


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _per_anchor(nodes: list, source: str, width: int, out: str) -> None:
    """(h·w, width) rows repeated for each anchor, anchors varying fastest: (h·w·ANCHORS, width)."""
    nodes.append(helper.make_node("Concat", [source] * ANCHORS, [out + "_cat"], axis=1))
    nodes.append(_const(out + "_shape", np.array([-1, width], np.int64)))
    nodes.append(helper.make_node("Reshape", [out + "_cat", out + "_shape"], [out]))


def build_fake_scrfd(path: Path, *, keypoints: bool = True) -> Path:
    """Write the fake detector to `path` (any name; InsightFace routes it to SCRFD by its 9 outputs,
    or 6 without keypoints)."""
    nodes: list = []
    nodes.append(helper.make_node("Shape", ["input.1"], ["in_shape"]))
    nodes.append(_const("w_index", np.array(3, np.int64)))
    nodes.append(helper.make_node("Gather", ["in_shape", "w_index"], ["in_w_int"], axis=0))
    nodes.append(helper.make_node("Cast", ["in_w_int"], ["in_w"], to=TensorProto.FLOAT))
    nodes.append(_const("flat", np.array([-1, 1], np.int64)))
    nodes.append(_const("blob_std", np.array(128.0, np.float32)))
    nodes.append(_const("blob_mean", np.array(127.5, np.float32)))
    nodes.append(_const("per_green", np.array(SIZE_PER_GREEN, np.float32)))
    outputs = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        # Values at the anchor centres (row i·s, column j·s), row-major like InsightFace's anchors.
        nodes.append(_const(f"starts{s}", np.array([0, 0], np.int64)))
        nodes.append(_const(f"ends{s}", np.array([1 << 30, 1 << 30], np.int64)))
        nodes.append(_const(f"axes{s}", np.array([2, 3], np.int64)))
        nodes.append(_const(f"steps{s}", np.array([s, s], np.int64)))
        slice_inputs = ["input.1", f"starts{s}", f"ends{s}", f"axes{s}", f"steps{s}"]
        nodes.append(helper.make_node("Slice", slice_inputs, [f"grid{s}"]))
        for channel, name in ((0, "red"), (1, "green")):
            nodes.append(_const(f"{name}_lo{s}", np.array([channel], np.int64)))
            nodes.append(_const(f"{name}_hi{s}", np.array([channel + 1], np.int64)))
            nodes.append(_const(f"{name}_ax{s}", np.array([1], np.int64)))
            channel_inputs = [f"grid{s}", f"{name}_lo{s}", f"{name}_hi{s}", f"{name}_ax{s}"]
            nodes.append(helper.make_node("Slice", channel_inputs, [f"{name}{s}"]))
            nodes.append(helper.make_node("Reshape", [f"{name}{s}", "flat"], [f"{name}_flat{s}"]))
        # score: the red channel as the blob carries it, negatives (background) to zero
        nodes.append(helper.make_node("Relu", [f"red_flat{s}"], [f"score_loc{s}"]))
        _per_anchor(nodes, f"score_loc{s}", 1, f"score_{s}")
        # size d in input pixels = g · SIZE_PER_GREEN · input width; outputs are in stride units
        nodes.append(helper.make_node("Mul", [f"green_flat{s}", "blob_std"], [f"g_scaled{s}"]))
        nodes.append(helper.make_node("Add", [f"g_scaled{s}", "blob_mean"], [f"g{s}"]))
        nodes.append(helper.make_node("Mul", [f"g{s}", "per_green"], [f"g_frac{s}"]))
        nodes.append(helper.make_node("Mul", [f"g_frac{s}", "in_w"], [f"d{s}"]))
        nodes.append(_const(f"sides{s}", (SIDES / s)[None, :]))
        nodes.append(helper.make_node("Mul", [f"d{s}", f"sides{s}"], [f"bbox_loc{s}"]))
        _per_anchor(nodes, f"bbox_loc{s}", 4, f"bbox_{s}")
        nodes.append(_const(f"points{s}", (POINTS.reshape(-1) / s)[None, :]))
        nodes.append(helper.make_node("Mul", [f"d{s}", f"points{s}"], [f"kps_loc{s}"]))
        _per_anchor(nodes, f"kps_loc{s}", 10, f"kps_{s}")
        for kind in outputs:
            outputs[kind].append(f"{kind}_{s}")
    widths = {"score": 1, "bbox": 4, "kps": 10}
    kinds = ("score", "bbox", "kps") if keypoints else ("score", "bbox")
    graph = helper.make_graph(
        nodes,
        "fake_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"n_{name}", widths[kind]])
            for kind in kinds
            for name in outputs[kind]
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
