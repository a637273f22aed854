"""Multi-frame fusion of a face track: real detail from many frames, not invented detail (issue 16).

    result = fuse_track(crops, blur_sigma=0.5, noise_sigma=6.0, jpeg_quality=75)
    if result.ok: save(result.fused_x4); manifest["fusion"] = result.manifest()
    else: manifest["fusion"] = result.manifest()   # result.reason says why nothing was written
"""

from cctvsr.fusion.fuse import ConsistencyCheck, FrameRecord, FusionParams, FusionResult, fuse_track
from cctvsr.fusion.register import Registration, register

__all__ = ["ConsistencyCheck", "FrameRecord", "FusionParams", "FusionResult", "Registration", "fuse_track", "register"]
