"""The sink `enhance` hands its faces to: each face's LR, bicubic and SR PNGs, then its manifest line;
and each kept track's fusion: fused_x4.png and fused_sr.png when fused, then its manifest line (why not, when not)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import cv2

from cctvsr.images import write_png
from cctvsr.output.manifest import ManifestWriter
from cctvsr.output.records import FaceRecord, FileRecord, FusionRecord, Provenance, face_file, fusion_file
from cctvsr.output.report import fusion_png_text, sr_png_text
from cctvsr.pipeline import face_size
from cctvsr.sr.engine import SCALE

if TYPE_CHECKING:
    import numpy as np

    from cctvsr.fusion.gather import TrackFusion
    from cctvsr.pipeline import FaceCandidate


class FaceWriter:
    """Writes a face's PNGs into `folder`, then appends its record to the manifest (flushed)."""

    def __init__(self, folder: Path, manifest: ManifestWriter, provenance: Provenance, model_label: str, scale: int = SCALE) -> None:
        self.folder, self.manifest, self.provenance = folder, manifest, provenance
        self.model_label, self.scale = model_label, scale
        self.sr_text = sr_png_text(model_label)

    def write(self, face: FaceCandidate, sr: np.ndarray | None) -> FaceRecord:
        """The face's LR crop, its bicubic view and (unless `sr` is None: over --sr-max-face) its SR image."""
        lr = face.crop.image
        h, w = lr.shape[:2]
        bicubic = cv2.resize(lr, (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC)
        images = [("lr", lr, None), ("bicubic", bicubic, None)] + ([("sr", sr, self.sr_text)] if sr is not None else [])
        outputs = {}
        for kind, image, text in images:
            rel = face_file(face.track_id, face.frame_index, kind)
            outputs[kind] = FileRecord(rel, write_png(self.folder / rel, image, text))
        x1, y1, x2, y2 = face.crop.box
        record = FaceRecord(
            provenance=self.provenance,
            track_id=face.track_id,
            frame_index=face.frame_index,
            pts=face.pts,
            wall_time=face.wall_time.isoformat() if face.wall_time else None,
            box=[round(float(v), 2) for v in face.box],
            crop_box=[x1, y1, x2, y2],
            crop_size=[x2 - x1, y2 - y1],
            clipped=list(face.crop.clipped),
            landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
            det_score=round(face.det_score, 4),
            quality={k: round(float(v), 4) for k, v in asdict(face.quality).items()},
            outputs=outputs,
            not_enhanced=None if sr is not None else f"already {face_size(face.box)} px",
        )
        self.manifest.append(record.to_json())
        return record

    def write_fusion(self, fusion: TrackFusion, sr: np.ndarray | None) -> FusionRecord:
        """fused_x4.png (classical, labelled as such) and fused_sr.png (AI-enhanced) when the track was
        fused, then the track's fusion line: frames used and rejected, residuals, parameters, the check."""
        record = fusion.manifest()
        outputs = {}
        if fusion.ok:
            n = len(record["frames_used"])
            images = [("fused_x4", fusion.result.fused_x4, fusion_png_text(n))]  # type: ignore[union-attr]
            if sr is not None:  # None: the fused face is over --sr-max-face
                images.append(("fused_sr", sr, sr_png_text(self.model_label, f"the multi-frame reconstruction of {n} frames (×1)")))
            for kind, image, text in images:
                rel = fusion_file(fusion.track_id, kind)
                outputs[kind] = FileRecord(rel, write_png(self.folder / rel, image, text))
        result = FusionRecord(provenance=self.provenance, track_id=fusion.track_id, fusion=record, outputs=outputs)
        self.manifest.append(result.to_json())
        return result
