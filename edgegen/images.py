"""Image conversions and PNG writing (Pillow)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import EngineInputError


def to_unit_range(images: np.ndarray, output_range: Sequence[float]) -> np.ndarray:
    """Map a model's (B, C, H, W) output in [lo, hi] to (B, H, W, C) float32 in [0, 1], clipped."""
    lo, hi = float(output_range[0]), float(output_range[1])
    scaled = (images.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(scaled, 0.0, 1.0).transpose(0, 2, 3, 1)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(B, H, W, C) float in [0, 1] -> (B, H, W, C) uint8, rounded (as diffusers' numpy_to_pil)."""
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)


def png_bytes(image: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """Encode one (H, W, C) uint8 image (C = 1 or 3) as PNG bytes with tEXt chunks (keys and
    values as ``str``), the encoding :func:`save_png` writes and ``edgegen serve`` returns."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(str(key), str(value))
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png(path: str | Path, image: np.ndarray, text: Mapping[str, str] | None = None) -> Path:
    """Write one (H, W, C) uint8 image (C = 1 or 3) as PNG, atomically, with tEXt chunks."""
    from .atomic import write_bytes_atomic

    return write_bytes_atomic(path, png_bytes(image, text))


def grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (B, H, W, C) uint8 images into one (rows*H', cols*W', C) uint8 image."""
    b, h, w, c = images.shape
    cols = columns or int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(b):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[i]
    return out


def read_image(source) -> np.ndarray:
    """An RGB image as (N, H, W, 3) float32 in [0, 1] (img2img's ``init_image``).

    Args:
        source: a path to an image file Pillow reads (PNG, JPEG, ...; converted to RGB), a
            Pillow image (converted to RGB), or an array (H, W, 3) / (N, H, W, 3): uint8 0..255
            or float in [0, 1].
    Returns:
        (N, H, W, 3) float32 in [0, 1], a new array (N = 1 for a file or a Pillow image).
    Raises:
        EngineInputError: an unreadable file or not an image, or an array of another shape,
            dtype or range, or with NaN / Inf, naming what was given.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (str, Path)):
        try:
            with Image.open(source) as im:
                source = im.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise EngineInputError(f"init_image: expected an image file Pillow can read (PNG, JPEG, ...), "
                                   f"got '{source}' ({exc})") from None
    if isinstance(source, Image.Image):
        source = np.asarray(source.convert("RGB"))
    if not isinstance(source, np.ndarray):
        raise EngineInputError(f"init_image: expected a path, a Pillow image or an (H, W, 3) array, "
                               f"got {type(source).__name__}")
    images = source[None] if source.ndim == 3 else source
    if images.ndim != 4 or images.shape[-1] != 3 or min(images.shape) < 1 or (
            images.dtype != np.uint8 and images.dtype.kind != "f"):
        raise EngineInputError(f"init_image: expected an (H, W, 3) or (N, H, W, 3) uint8 or float array, "
                               f"got {source.dtype} {source.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise EngineInputError(f"init_image: expected float values in [0, 1] (or uint8), got values in "
                               f"[{np.nanmin(images):g}, {np.nanmax(images):g}]" + ("" if np.isfinite(images).all()
                                                                                     else " with NaN / Inf"))
    return images
