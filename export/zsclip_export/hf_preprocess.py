"""Hugging Face processor settings -> the runtime's `PreprocessConfig` and `tokenizers` tokenizer.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Mapping

from zsclip.errors import ConfigError
from zsclip.manifest import PreprocessConfig

logger = logging.getLogger(__name__)

# Exports of upstream checkpoints allow the JPEG draft decode only down to 4x the input size (the legacy 2x
# moved star-field pixels by up to 0.71 normalised units); the measured bound is in export/README-hf.md.
UPSTREAM_DRAFT_FACTOR = 4

# PIL resample codes used in preprocessor_config.json
RESAMPLE_NAMES = {0: "nearest", 2: "bilinear", 3: "bicubic"}

# The identity check's sentences: mixed case, ё, digits, Latin, punctuation, emoji, odd spacing.
RUSSIAN_SENTENCES = (
    "Фотография кошки на диване",
    "ЁЖИК В ТУМАНЕ и ёлка",
    "Чёрный автомобиль BMW X5 2021 года",
    "собака породы хаски, 3 месяца!",
    "Красный   мяч\tи синий куб",
    "Ночной город 🌃 и луна 🌙",
    "iPhone 13 Pro Max — смартфон",
    "Мороженое: пломбир (ванильное) 100 г",
    "птица на ветке",
    "Самолёт Ту-154 в аэропорту Шереметьево",
    "самый-самый лучший день",
    "Ёлочные игрушки и гирлянда",
    "кот",
    "",
)


def interpolation_of(resample: Any, where: str) -> str:
    code = int(getattr(resample, "value", resample))
    if code not in RESAMPLE_NAMES:
        raise ConfigError(f"{where}: resample {resample!r} has no runtime equivalent (nearest, bilinear, bicubic)")
    return RESAMPLE_NAMES[code]


def preprocess_from_processor(settings: Mapping[str, Any], where: str) -> PreprocessConfig:
    """Translate a CLIP/SigLIP image processor's settings into a `PreprocessConfig`.

    Supported: shortest-edge resize + centre crop of the same size (CLIP), or a square resize
    without crop (SigLIP). Anything else cannot be reproduced by the runtime. The result declares
    transformers' PIL-backend geometry exactly: the long side truncated (`size_rounding="floor"`), one
    resize without `reducing_gap`, transparency composited on white; only the bounded JPEG draft decode
    stays on (`exact` turns it off).

    Raises:
        ConfigError: settings the runtime cannot reproduce exactly.
    """
    size = dict(settings.get("size") or {})
    crop = dict(settings.get("crop_size") or {})
    if not settings.get("do_resize", True):
        raise ConfigError(f"{where}: do_resize=false is not supported (the towers need a fixed size)")
    rescale = float(settings.get("rescale_factor", 1 / 255))
    if settings.get("do_rescale", True) is False or abs(rescale - 1 / 255) > 1e-9:
        raise ConfigError(f"{where}: only rescale by 1/255 is supported, got {rescale}")
    if settings.get("do_normalize", True):
        mean = tuple(float(v) for v in settings.get("image_mean", (0.5, 0.5, 0.5)))
        std = tuple(float(v) for v in settings.get("image_std", (0.5, 0.5, 0.5)))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    interpolation = interpolation_of(settings.get("resample", 3), where)
    if settings.get("do_convert_rgb") is False:
        raise ConfigError(f"{where}: do_convert_rgb=false is not supported (the runtime always converts to RGB)")
    upstream = dict(size_rounding="floor", rgb_conversion="white_background", jpeg_draft=True,
                    jpeg_draft_factor=UPSTREAM_DRAFT_FACTOR, reducing_gap=None)
    if "shortest_edge" in size:
        side = int(size["shortest_edge"])
        if not settings.get("do_center_crop", True):
            raise ConfigError(f"{where}: shortest-edge resize without a centre crop gives non-square inputs")
        crop_side = (int(crop.get("height", side)), int(crop.get("width", side)))
        if crop_side != (side, side):
            raise ConfigError(
                f"{where}: resize to {side} then crop {crop_side} is not supported; the runtime crops at the resize size"
            )
        return PreprocessConfig(side, "shortest_edge_center_crop", interpolation, mean, std, **upstream)  # type: ignore[arg-type]
    if "height" in size and "width" in size:
        if int(size["height"]) != int(size["width"]):
            raise ConfigError(f"{where}: non-square resize {size} is not supported")
        if settings.get("do_center_crop") and crop and (int(crop["height"]), int(crop["width"])) != (size["height"],) * 2:
            raise ConfigError(f"{where}: resize {size} then crop {crop} is not supported")
        return PreprocessConfig(int(size["height"]), "squash", interpolation, mean, std, **upstream)  # type: ignore[arg-type]
    raise ConfigError(f"{where}: image size {size} is not understood")


def image_processor_settings(folder: Path) -> Dict[str, Any]:
    """The image processor's full settings (defaults filled in by transformers) for a checkpoint folder.

    Raises:
        ConfigError: no image processor in the folder.
    """
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: no image processor (preprocessor_config.json): {exc}") from None
    return json.loads(json.dumps(processor.to_dict(), default=lambda v: getattr(v, "value", str(v))))


def finish_tokenizer(tokenizer: Any, context_length: int) -> Any:
    """A copy of a `tokenizers.Tokenizer` that truncates like the source and never pads (the runtime pads)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.enable_truncation(max_length=context_length)
    return copy


def backend_tokenizer(hf_tokenizer: Any, where: str) -> Any:
    """The `tokenizers.Tokenizer` behind a transformers tokenizer.

    Raises:
        ConfigError: the tokenizer has no `tokenizers` backend (e.g. a SentencePiece-only tokenizer).
    """
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError(
            f"{where}: tokenizer {type(hf_tokenizer).__name__} has no `tokenizers` backend; it cannot be exported"
        )
    return backend


def reference_ids_of(hf_tokenizer: Any, context_length: int):  # noqa: ANN201 - a callable
    """text -> the transformers tokenizer's input_ids (with its special tokens, truncated to what the model takes)."""

    def ids(text: str) -> list:
        return list(hf_tokenizer(text, truncation=True, max_length=context_length)["input_ids"])

    return ids
