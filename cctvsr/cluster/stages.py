"""What runs on the cluster's workers, as Ray Data stages. Rows carry pickled plain data (numpy arrays
and dataclasses) in a bytes column, so that any row survives Ray's Arrow blocks unchanged.

* `detect_batch`: a CPU task per work unit (decode → gate → detect → track → select); the detector is
  built once per worker process and kept.
* `SuperResolveUnits`: an actor pool; each actor holds the generator once and super-resolves one
  face unit per call, the same list one machine passes to `SuperResolver.upscale`, so the bytes
  are the same whatever else the actor has seen (one machine's batching, unit by unit).
"""

from __future__ import annotations

import os
import pickle
import socket
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cctvsr.faces.detections import FaceDetector
    from cctvsr.jobs.options import FaceOptions, SrOptions
    from cctvsr.pipeline import PipelineOptions

_detectors: dict[Any, FaceDetector] = {}  # one per worker process and face options


def node_label() -> str:
    """This worker's host and Ray node (short): how the summary counts work per node."""
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # outside Ray (a unit run in the driver's own process)
        node = "local"
    return f"{socket.gethostname()}/{node}"


def limit_threads(threads: int) -> None:
    """One worker, its share of the cores: torch and OpenCV stop at `threads` (the detector's ONNX Runtime
    sessions are given theirs when they are made)."""
    import cv2
    import torch

    torch.set_num_threads(max(1, threads))
    cv2.setNumThreads(max(1, threads))


def detect_unit(payload: bytes, faces: FaceOptions, options: PipelineOptions, threads: int) -> bytes:
    """One pickled (WorkUnit, SourceInfo) through decode … select; the pickled UnitResult, or the
    one-line message of the error a damaged input raised."""
    from cctvsr.cluster.segment import run_unit
    from cctvsr.errors import CctvsrError

    unit, source = pickle.loads(payload)
    limit_threads(threads)
    try:
        detector = _detectors.get(faces)
        if detector is None:
            detector = _detectors[faces] = faces.create_detector(threads)[0]
        outcome: object = run_unit(unit, source, options, detector, node_label())
    except CctvsrError as exc:  # a damaged input is the user's to see, in one line; the others go on
        outcome = str(exc)
    return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)


def detect_batch(batch: dict[str, np.ndarray], faces: FaceOptions, options: PipelineOptions, threads: int) -> dict[str, np.ndarray]:
    """Ray Data `map_batches` function for the CPU stage (tasks; the detector cache is per worker process)."""
    out = [detect_unit(bytes(p), faces, options, threads) for p in batch["payload"]]
    return {"key": batch["key"], "payload": np.array(out, dtype=object)}


class SuperResolveUnits:
    """Ray Data actor: holds the generator; each row is one face unit's crops, pickled."""

    def __init__(self, sr: SrOptions, plan: str, threads: int) -> None:
        from cctvsr.errors import InputError

        limit_threads(threads)
        self.resolver = sr.resolver(None)
        self.node = node_label()
        here = self.resolver.plan.describe()
        if here != plan:
            raise InputError(
                f"the SR worker on {self.node} runs {here}, the driver {plan}: outputs would differ from one machine's; "
                "give every node the same hardware kind or pass --device/--precision explicitly"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for payload in batch["payload"]:
            crops = pickle.loads(bytes(payload))
            out.append(pickle.dumps(self.resolver.upscale(crops), protocol=pickle.HIGHEST_PROTOCOL))
        return {
            "key": batch["key"], "payload": np.array(out, dtype=object),
            "node": np.array([self.node] * len(out), dtype=object), "pid": np.array([os.getpid()] * len(out)),
        }
