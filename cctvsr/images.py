"""Still-image input and output: decoding any common format to uint8 RGB, and atomic PNG writes."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cctvsr.errors import InputError
from cctvsr.evidence import require_regular_file
from cctvsr.fsutil import atomic_path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
MAX_IMAGE_PIXELS = 100_000_000  # 100 MP: above any camera frame; a header claiming more is a bomb or damage


@dataclass(frozen=True)
class DecodedImage:
    """An image split into what the generator sees (RGB) and what it must carry through."""

    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8, or None
    grey: bool  # the source had one colour channel


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    raise InputError(f"unsupported pixel type {image.dtype}")


def check_pixel_count(label: object, width: int, height: int) -> None:
    """Refuse absurd dimensions before anything is allocated for them."""
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(
            f"{label}: claims {width}×{height} pixels, over the {MAX_IMAGE_PIXELS // 1_000_000} MP limit "
            "(a damaged file or a decompression bomb); not decoded"
        )


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the file header alone (no pixels decoded), where Pillow knows the format."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError:
        return (MAX_IMAGE_PIXELS + 1, 1)
    except Exception:  # noqa: BLE001 - not a format Pillow reads: OpenCV decides below
        return None


def read_image(path: Path) -> DecodedImage:
    """Decode a still image; a one-line InputError when it is not one or claims absurd dimensions."""
    require_regular_file(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    size = _header_size(data.tobytes()) if data.size else None
    if size is not None:
        check_pixel_count(path, *size)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:
        image = None
    if image is None:
        raise InputError(f"{path}: not a readable image")
    image = _to_uint8(image)
    if image.ndim == 2 or image.shape[2] == 1:
        grey = image.reshape(image.shape[:2])
        return DecodedImage(np.repeat(grey[..., None], 3, axis=2), None, True)
    if image.shape[2] == 4:
        return DecodedImage(cv2.cvtColor(image, cv2.COLOR_BGRA2RGB), image[..., 3].copy(), False)
    return DecodedImage(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None, False)


def compose_output(sr_rgb: np.ndarray, source: DecodedImage) -> np.ndarray:
    """The super-resolved image in the source's own channel layout: grey stays grey, and an alpha
    channel is resized (linear) beside the generator's RGB output."""
    if source.grey:
        return cv2.cvtColor(sr_rgb, cv2.COLOR_RGB2GRAY)
    if source.alpha is not None:
        h, w = sr_rgb.shape[:2]
        alpha = cv2.resize(source.alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.dstack([sr_rgb, alpha])
    return sr_rgb


def encode_png(image: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """Grey, RGB or RGBA as PNG bytes; `text` becomes iTXt chunks (provenance that travels with the file)."""
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", pnginfo=info, compress_level=3)
        return buffer.getvalue()
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise InputError("PNG encoding failed")
    return encoded.tobytes()


def write_png(path: Path, image: np.ndarray, text: dict[str, str] | None = None) -> str:
    """Write a PNG via a temporary file and a rename (never a half-written file); its sha256."""
    data = encode_png(image, text)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
