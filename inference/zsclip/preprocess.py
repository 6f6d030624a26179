"""Image decoding and preprocessing: pure PIL/numpy, driven by `PreprocessConfig`."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from zsclip.manifest import PreprocessConfig

logger = logging.getLogger(__name__)

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


class ImageDecodeError(Exception):
    """An image file could not be decoded (the caller warns and falls back)."""


def load_image(path: Union[str, Path], target_size: int) -> Image.Image:
    """Decode `path` to an RGB image, reduced early for big JPEGs.

    Handles EXIF orientation, palette/alpha (composited on white), CMYK, grayscale, 16-bit
    and animated images (first frame).

    Raises:
        ImageDecodeError: the file is not a decodable image.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                if image.format == "JPEG":
                    # Decode at a reduced scale (1/2..1/8) while staying >= 2x the target.
                    image.draft("RGB", (target_size * 2, target_size * 2))
                image.seek(0)
                image.load()
                return to_rgb(ImageOps.exif_transpose(image) or image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as exc:
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels become white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = max(float(array.max()), 1.0)
        image = Image.fromarray((array * (255.0 / top)).clip(0, 255).astype(np.uint8))
    return image.convert("RGB")


def resize_and_crop(image: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Resize to the tower's square input per `cfg.resize_mode`."""
    size = cfg.image_size
    resample = _RESAMPLE[cfg.interpolation]
    if cfg.resize_mode == "squash":
        return image.resize((size, size), resample)
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), resample, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_tensor(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """RGB image of the tower's size -> normalised float32 CHW array."""
    array = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    array = (array - mean) / std
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def preprocess_image(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Any RGB PIL image -> the tower's CHW float32 input."""
    return to_tensor(resize_and_crop(to_rgb(image), cfg), cfg)


def load_and_preprocess(path: Union[str, Path], cfg: PreprocessConfig) -> np.ndarray:
    """Decode and preprocess one file.

    Raises:
        ImageDecodeError: the file is not a decodable image.
    """
    return preprocess_image(load_image(path, cfg.image_size), cfg)
