"""Image decoding and preprocessing: pure PIL/numpy, driven by `PreprocessConfig`."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Tuple, Union

import numpy as np
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from zsclip.manifest import PreprocessConfig

logger = logging.getLogger(__name__)

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


class ImageDecodeError(Exception):
    """An image file could not be decoded (the caller warns and falls back)."""


# Most pixels decoded for one image (8192 x 8192; ~200 MB as RGB). A JPEG is measured after
# draft() has shrunk it, so only non-JPEG images and progressive JPEGs this large are refused.
MAX_DECODE_PIXELS = 8192 * 8192
JPEG_MAGIC = b"\xff\xd8\xff"
# A draft-decoded JPEG keeps at least this multiple of the target size on each side (PIL's draft picks the
# largest DCT scale whose output is at least the requested size): zsclip <= 1.2's value, the default of
# `PreprocessConfig.jpeg_draft_factor`.
DRAFT_FACTOR = 2
# Exact mode resizes the whole image before cropping unless it would exceed this many crops' worth of pixels.
EXACT_BOX_LIMIT = 64
EXIF_ORIENTATION = 0x0112


class _TruncationTolerantJpeg(JpegImageFile):
    """A JPEG whose premature end of file reads as an end-of-image marker.

    libjpeg then fills the missing part grey; this is what PIL's global
    `ImageFile.LOAD_TRUNCATED_IMAGES` does, without touching that global.
    """

    _ended = False

    def load_read(self, read_bytes: int) -> bytes:
        data = self.fp.read(read_bytes) if self.fp else b""
        if not data and not self._ended:
            self._ended = True
            return b"\xff\xd9"
        return data


def open_image(path: Union[str, Path]) -> Image.Image:
    """Open (not decode) an image file.

    JPEGs bypass `Image.open`, whose decompression-bomb check (a global limit) would refuse a huge
    JPEG before `draft()` can decode it at 1/8 scale; `plan_decode` bounds its memory instead.
    """
    with open(path, "rb") as handle:
        head = handle.read(len(JPEG_MAGIC))
    if head == JPEG_MAGIC:
        return _TruncationTolerantJpeg(str(path))
    return Image.open(path)


def plan_decode(image: Image.Image, target_size: int, max_pixels: int = MAX_DECODE_PIXELS, draft: int = DRAFT_FACTOR) -> None:
    """With `draft` > 0, shrink a JPEG's decode (1/2..1/8, staying >= draft x target on each side);
    refuse any decode over `max_pixels`.

    Raises:
        ImageDecodeError: the image is too large to decode in bounded memory.
    """
    width, height = image.size
    if image.format == "JPEG" and draft > 0:
        progressive = bool(image.info.get("progressive") or image.info.get("progression"))
        image.draft("RGB", (target_size * draft, target_size * draft))
        if not progressive:  # baseline: libjpeg needs only the scaled output and a row buffer
            width, height = image.size
        # progressive: libjpeg buffers every coefficient of the full-size image, so judge the full size
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{width}x{height} pixels is over the decode limit of {max_pixels} (decompression-bomb guard)"
        )


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip per the EXIF Orientation tag; a broken EXIF block is ignored."""
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(image) or image
    except Exception as exc:  # EXIF parsing raises assorted types on corrupt blocks; the pixels are still good
        logger.debug("ignoring unreadable EXIF (%s: %s)", type(exc).__name__, exc)
    return image


def load_image(
    path: Union[str, Path], target_size: int, max_pixels: int = MAX_DECODE_PIXELS, draft: int = DRAFT_FACTOR,
    rgb_conversion: str = "white_background",
) -> Image.Image:
    """Decode `path` to an RGB image, reduced early for big JPEGs.

    Handles EXIF orientation, palette/alpha (composited on white), CMYK, grayscale, 16-bit,
    animated images (first frame) and truncated JPEGs (the missing part is grey). Memory stays
    bounded: with `draft` > 0 a JPEG decodes at up to 1/8 scale (keeping >= draft x target_size); anything
    over `max_pixels` is refused (draft 0: full-size decode).
    `rgb_conversion` is `PreprocessConfig.rgb_conversion`.

    Raises:
        ImageDecodeError: the file is not a decodable image, or too large to decode safely.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning and codec chatter: sizes are checked here
            with open_image(path) as image:
                image.seek(0)
                plan_decode(image, target_size, max_pixels, draft)
                image.load()
                return to_rgb(apply_exif_orientation(image), rgb_conversion)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"too large to decode safely ({exc})") from None
    except Exception as exc:  # PIL plugins raise many types on hostile files; each becomes a warned fallback
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from None


def to_rgb(image: Image.Image, conversion: str = "white_background") -> Image.Image:
    """Convert any PIL mode to RGB.

    `white_background` (transformers' convert_to_rgb): transparent pixels become white.
    `convert` (ruCLIP's processor): PIL's own `convert("RGB")`, which drops the alpha channel.
    16-bit and float images are scaled to their maximum first in both (PIL would clip them).
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        top = max(float(array.max()), 1.0)
        return Image.fromarray((array * (255.0 / top)).clip(0, 255).astype(np.uint8)).convert("RGB")
    if conversion == "convert":
        return image.convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def resized_size(width: int, height: int, size: int, rounding: str) -> Tuple[int, int]:
    """(width, height) with the short side at `size`; the long side rounded (zsclip <= 1.2) or truncated
    (`floor`: int(size * long / short), as transformers' get_resize_output_image_size and torchvision do)."""
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short) if rounding == "floor" else max(size, round(long * (size / short)))
    return (size, new_long) if width <= height else (new_long, size)


def center_square(width: int, height: int) -> Tuple[int, int, int, int]:
    """The centre square crop box, offsets floored (torchvision RandomResizedCrop's fallback, transformers' crop)."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def resize_and_crop(image: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Resize to the tower's square input per `cfg.resize_mode` (see `PreprocessConfig`)."""
    size = cfg.image_size
    resample = _RESAMPLE[cfg.interpolation]
    gap = cfg.resize_gap
    if cfg.resize_mode == "squash":  # one resize, as in 1.2 (reducing_gap never applied here)
        return image.resize((size, size), resample)
    if cfg.resize_mode == "center_crop_resize":
        # crop first, then resize the crop alone (a resize with box= would let the filter read outside the crop)
        square = image.crop(center_square(*image.size)) if image.width != image.height else image
        return square.resize((size, size), resample, reducing_gap=gap)
    width, height = image.size
    new_w, new_h = resized_size(width, height, size, cfg.size_rounding)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    if new_w * new_h > (EXACT_BOX_LIMIT if cfg.exact else 4) * size * size:
        # Extreme aspect ratio (a 1x20000 strip would resize to 260x5200000): resample only the
        # crop's source box. Same filter positions; differs from resize-then-crop by at most 1 level on a
        # few pixels (float rounding of the box), so exact mode does it only where memory demands it.
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return image.resize((size, size), resample, box=box, reducing_gap=gap)
    image = image.resize((new_w, new_h), resample, reducing_gap=gap)
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
    return to_tensor(resize_and_crop(to_rgb(image, cfg.rgb_conversion), cfg), cfg)


def load_and_preprocess(path: Union[str, Path], cfg: PreprocessConfig) -> np.ndarray:
    """Decode and preprocess one file.

    Raises:
        ImageDecodeError: the file is not a decodable image.
    """
    image = load_image(path, cfg.image_size, draft=cfg.draft_factor, rgb_conversion=cfg.rgb_conversion)
    return preprocess_image(image, cfg)
