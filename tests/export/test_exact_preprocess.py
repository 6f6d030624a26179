"""The runtime's preprocessing against the upstream processors, pixel for pixel (no model needed).

Each of these failed before the manifest could declare the upstream geometry (format 1.3): the long side was
rounded instead of truncated, big JPEGs were draft-decoded and resized with reducing_gap, and ruCLIP's
crop-then-resize was done as resize-then-crop.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("skimage")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from upstream_replicas import (  # noqa: E402
    CLIP_B32_PREPROCESSOR,
    RUCLIP_B32_384,
    SIGLIP_B16_PREPROCESSOR,
    ruclip_image_transform,
    write_photos,
)
from zsclip.manifest import PreprocessConfig  # noqa: E402
from zsclip.preprocess import load_and_preprocess  # noqa: E402
from zsclip_export.hf_preprocess import preprocess_from_processor  # noqa: E402
from zsclip_export.ruclip import ruclip_preprocess  # noqa: E402

# The JPEG draft decode of an exported checkpoint (down to >= 4x the input size, the non-exact default) vs the
# exact path, in normalised units (pixel / 255 - mean) / std. Measured on these photos (CLIP B/32 settings):
# max 0.030, mean <= 0.0013 per photo. The legacy 2x gave max 0.705 / mean 0.028 (the star field, 1001 x 999).
DRAFT_MAX_ABS = 0.05
DRAFT_MAX_MEAN = 0.002


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


def upstream_processor(kind, folder):
    import json

    from transformers import AutoImageProcessor

    settings = CLIP_B32_PREPROCESSOR if kind == "clip" else SIGLIP_B16_PREPROCESSOR
    (folder / "preprocessor_config.json").write_text(json.dumps(settings), encoding="utf-8")
    return AutoImageProcessor.from_pretrained(str(folder))


def runtime_config(processor) -> PreprocessConfig:
    import json

    settings = json.loads(json.dumps(processor.to_dict(), default=lambda v: getattr(v, "value", str(v))))
    return preprocess_from_processor(settings, "test")


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_exact_pixels_equal_transformers_processor(kind, photos, tmp_path):
    processor = upstream_processor(kind, tmp_path)
    cfg = dataclasses.replace(runtime_config(processor), exact=True)
    assert cfg.size_rounding == "floor" and cfg.reducing_gap is None
    for path in photos:
        with Image.open(path) as image:
            theirs = processor(images=image, return_tensors="np")["pixel_values"][0]
        ours = load_and_preprocess(path, cfg)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 1e-5, path.name


def test_exact_pixels_equal_ruclip_processor(photos):
    class Processor:  # RuCLIPProcessor.from_pretrained's attributes for this config
        image_size = RUCLIP_B32_384["image_resolution"]
        mean = [0.48145466, 0.4578275, 0.40821073]
        std = [0.26862954, 0.26130258, 0.27577711]

    transform = ruclip_image_transform(Processor)
    cfg = dataclasses.replace(ruclip_preprocess(RUCLIP_B32_384), exact=True)
    assert cfg.resize_mode == "center_crop_resize" and cfg.rgb_conversion == "convert"
    for path in photos:
        with Image.open(path) as image:
            theirs = transform(image).numpy()
        assert np.abs(load_and_preprocess(path, cfg) - theirs).max() < 1e-5, path.name


def test_default_fast_path_stays_within_the_stated_bound(photos, tmp_path):
    """The default (non-exact) path of an exported model: only the JPEG draft decode differs from exact."""
    cfg = runtime_config(upstream_processor("clip", tmp_path))
    assert cfg.jpeg_draft and cfg.jpeg_draft_factor == 4 and not cfg.exact
    worst_max, worst_mean = 0.0, 0.0
    for path in photos:
        diff = np.abs(load_and_preprocess(path, cfg) - load_and_preprocess(path, dataclasses.replace(cfg, exact=True)))
        worst_max, worst_mean = max(worst_max, float(diff.max())), max(worst_mean, float(diff.mean()))
    assert worst_max <= DRAFT_MAX_ABS and worst_mean <= DRAFT_MAX_MEAN, (worst_max, worst_mean)
    assert worst_max > 0  # the 12 MP photos are draft-decoded: the bound is measured, not vacuous
