"""Manifest format 1.3: exact preprocessing and per-family text handling, with 1.2 behaviour by default."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from zsclip.classifier import ZeroShotModel, average_prompts, normalize_rows
from zsclip.errors import ModelDirError
from zsclip.manifest import MANIFEST_NAME, PreprocessConfig, load_manifest, manifest_from_dict, manifest_to_dict
from zsclip.preprocess import load_image, resize_and_crop, resized_size
from zsclip.text import expand_prompts

NBSP, THIN, BREVE = "\u00a0", "\u2009", "\u0306"


def test_a_1_2_manifest_loads_with_the_old_behaviour(tiny_model_dir):
    data = manifest_to_dict(load_manifest(tiny_model_dir))
    for key in ("size_rounding", "rgb_conversion", "jpeg_draft", "jpeg_draft_factor", "reducing_gap", "exact"):
        data["preprocess"].pop(key)
    for key in ("label_cleaning", "prompt_average"):
        data["text"].pop(key)
    data["format_version"] = "1.2"
    manifest = manifest_from_dict(data)
    pre, text = manifest.preprocess, manifest.text
    assert (pre.size_rounding, pre.rgb_conversion, pre.jpeg_draft, pre.jpeg_draft_factor, pre.reducing_gap, pre.exact) == (
        "round", "white_background", True, 2, 3.0, False)
    assert pre.draft_factor == 2
    assert (text.label_cleaning, text.prompt_average) == ("nfc_collapse", "unit_mean")


def test_1_3_fields_round_trip_and_bad_values_are_refused(tiny_model_dir):
    data = manifest_to_dict(load_manifest(tiny_model_dir))
    data["preprocess"].update(resize_mode="center_crop_resize", size_rounding="floor", reducing_gap=None, exact=True)
    data["text"].update(label_cleaning="lower_strip", prompt_average="raw_mean")
    manifest = manifest_from_dict(json.loads(json.dumps(data)))
    assert manifest.preprocess.resize_mode == "center_crop_resize" and manifest.preprocess.resize_gap is None
    assert not manifest.preprocess.uses_draft and manifest.text.prompt_average == "raw_mean"
    for section, key, value in [("preprocess", "size_rounding", "ceil"), ("preprocess", "rgb_conversion", "black"),
                                ("preprocess", "reducing_gap", 0.5), ("preprocess", "jpeg_draft_factor", 1),
                                ("text", "label_cleaning", "upper"),
                                ("text", "prompt_average", "median")]:
        bad = json.loads(json.dumps(data))
        bad[section][key] = value
        with pytest.raises(ModelDirError, match=key):
            manifest_from_dict(bad)


def test_the_resized_long_side_is_truncated_as_transformers_and_torchvision_do():
    # 451 x 300 -> short side 224: long side 336.75
    assert resized_size(451, 300, 224, "floor") == (336, 224)
    assert resized_size(300, 451, 224, "floor") == (224, 336)
    assert resized_size(451, 300, 224, "round") == (337, 224)  # zsclip <= 1.2
    array = np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    cfg = PreprocessConfig(224, size_rounding="floor", reducing_gap=None)
    expected = image.resize((336, 224), Image.Resampling.BICUBIC).crop((56, 0, 280, 224))
    assert np.array_equal(np.asarray(resize_and_crop(image, cfg)), np.asarray(expected))


def test_center_crop_resize_crops_the_square_first():
    """ruCLIP: the centre square of the original, then one resize; not resize-then-crop."""
    array = np.random.default_rng(1).integers(0, 256, (200, 500, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    cfg = PreprocessConfig(64, "center_crop_resize", "bilinear", reducing_gap=None)
    expected = image.crop((150, 0, 350, 200)).resize((64, 64), Image.Resampling.BILINEAR)
    ours = np.asarray(resize_and_crop(image, cfg))
    assert np.array_equal(ours, np.asarray(expected))
    legacy = np.asarray(resize_and_crop(image, PreprocessConfig(64, "shortest_edge_center_crop", "bilinear")))
    assert not np.array_equal(ours, legacy)


def test_rgb_conversion_convert_drops_alpha_as_pil_does():
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    white = PreprocessConfig(8, "squash")
    pil = dataclasses.replace(white, rgb_conversion="convert")
    from zsclip.preprocess import preprocess_image

    assert np.allclose(preprocess_image(rgba, white), 1.0)  # (255 / 255 - 0.5) / 0.5
    assert np.allclose(preprocess_image(rgba, pil)[0], (10 / 255 - 0.5) / 0.5, atol=1e-6)


def test_exact_turns_the_jpeg_draft_off(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1600), (200, 100, 50)).save(path, quality=90)
    assert load_image(path, 224).size == (1000, 800)  # draft: 1/2 scale (1/4 would give 400 < 2 x 224)
    assert load_image(path, 224, draft=4).size == (2000, 1600)  # 1/2 would give 800 < 4 x 224
    assert load_image(path, 224, draft=0).size == (2000, 1600)
    cfg = PreprocessConfig(224, exact=True, jpeg_draft_factor=4)
    assert cfg.draft_factor == 0 and cfg.resize_gap is None


def test_label_cleaning_per_family():
    name = f"{NBSP}Кои{BREVE}ка{THIN}и{NBSP}ЁЖ "
    # ruCLIP's Predictor: label.lower().strip() and nothing else (NBSP inside, thin space and «й» decomposed stay)
    assert expand_prompts(name, ("фото {}",), "lower_strip") == [f"фото кои{BREVE}ка{THIN}и{NBSP}ёж"]
    assert expand_prompts(name, ("{}",), "none") == [name]  # CLIP / SigLIP: the tokenizer normalises
    assert expand_prompts(name, ("{}",)) == ["Койка и ЁЖ"]  # zsclip <= 1.2: NFC + collapsed whitespace


def test_raw_mean_differs_from_unit_mean():
    raw = np.array([[10.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # 2 classes x 2 prompts
    assert np.allclose(average_prompts(raw, 2, "raw_mean"), normalize_rows(np.array([[5.0, 0.5], [0.5, 0.5]]), "l2"))
    assert np.allclose(average_prompts(raw, 2, "unit_mean"), normalize_rows(np.array([[0.5, 0.5], [0.5, 0.5]]), "l2"))


def model_with(tiny_model_dir, tmp_path, **text):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    data = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    data["text"].update(text)
    (model_dir / MANIFEST_NAME).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return ZeroShotModel(model_dir)


def test_class_embeddings_follow_the_prompt_average_rule(tiny_model_dir, tmp_path):
    model = model_with(tiny_model_dir, tmp_path, prompt_average="raw_mean")
    names = ["красный", "зелёный синий"]
    raw = model.encode_texts_raw([t for n in names for t in expand_prompts(n, model.manifest.text.prompts)])
    expected = normalize_rows(raw.reshape(2, len(model.manifest.text.prompts), -1).mean(axis=1), "l2")
    assert np.allclose(model.build_class_embeddings(names), expected, atol=1e-6)


def test_exact_option_of_predict_and_embed(tiny_model_dir, tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import make_data_dir
    from zsclip import preprocess
    from zsclip.cli import embed_main, predict_main

    data, _ = make_data_dir(tmp_path / "data")
    seen = []
    real = preprocess.load_image

    def spy(path, target_size, max_pixels=preprocess.MAX_DECODE_PIXELS, draft=2, rgb_conversion="white_background"):
        seen.append(draft)
        return real(path, target_size, max_pixels, draft, rgb_conversion)

    monkeypatch.setattr(preprocess, "load_image", spy)
    for command, args in [(predict_main, [data, tmp_path / "out.json"]), (embed_main, [data, "--out", tmp_path / "e.npz"])]:
        seen.clear()
        result = CliRunner().invoke(command, [str(a) for a in args] + ["--model", str(tiny_model_dir), "--exact", "-q"])
        assert result.exit_code == 0, result.output
        assert seen and not any(seen)
        seen.clear()
        result = CliRunner().invoke(command, [str(a) for a in args] + ["--model", str(tiny_model_dir), "-q"])
        assert result.exit_code == 0 and seen and all(seen)
