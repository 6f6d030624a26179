import json
import shutil
from pathlib import Path

import pytest
from zsclip.errors import ModelDirError
from zsclip.manifest import MANIFEST_NAME, PreprocessConfig, load_manifest


def copy_model(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def test_roundtrip_keeps_every_field(tiny_model_dir):
    manifest = load_manifest(tiny_model_dir)
    assert manifest.embedding.dim == 3
    assert manifest.text.prompts == ("{}", "фото {}")
    assert manifest.preprocess.image_size == 16
    assert set(manifest.variants) == {"fp32", "int8"}
    assert set(manifest.files) == {"image.onnx", "text.onnx", "image.int8.onnx", "text.int8.onnx", "tokenizer.json"}


def test_fixed_classes_are_optional_and_round_trip(tiny_model_dir, tmp_path):
    """A 1.0 manifest (no fixed_classes) is an open-vocabulary model; 1.1 may pin a class list."""
    model = copy_model(tiny_model_dir, tmp_path)
    data = json.loads((model / MANIFEST_NAME).read_text())
    data.pop("fixed_classes", None)
    data["format_version"] = "1.0"
    (model / MANIFEST_NAME).write_text(json.dumps(data))
    assert load_manifest(model).fixed_classes == ()
    data["fixed_classes"] = ["кошка", "собака"]
    (model / MANIFEST_NAME).write_text(json.dumps(data, ensure_ascii=False))
    assert load_manifest(model).fixed_classes == ("кошка", "собака")


def test_missing_file_is_named(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    (model / "text.int8.onnx").unlink()
    with pytest.raises(ModelDirError, match="text.int8.onnx missing"):
        load_manifest(model)


def test_corrupt_file_fails_sha_check(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    with open(model / "image.onnx", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ModelDirError, match="image.onnx .* sha256"):
        load_manifest(model)
    load_manifest(model, verify=False)  # explicit opt-out still loads


def test_unknown_major_version_is_refused(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    data = json.loads((model / MANIFEST_NAME).read_text())
    data["format_version"] = "2.0"
    (model / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ModelDirError, match="format_version 2.0 is not supported"):
        load_manifest(model)


def test_malformed_manifest_and_missing_dir(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    (model / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelDirError, match="unreadable manifest"):
        load_manifest(model)
    data = {"format_version": "1.0", "model_id": "x"}
    (model / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ModelDirError, match="malformed manifest"):
        load_manifest(model)
    with pytest.raises(ModelDirError, match="does not exist"):
        load_manifest(tmp_path / "nope")


def test_unknown_variant_lists_the_known_ones(tiny_model_dir):
    with pytest.raises(ModelDirError, match=r"variant 'fp16' not in this model dir; it has \['fp32', 'int8'\]"):
        load_manifest(tiny_model_dir).variant("fp16")


@pytest.mark.parametrize("kwargs", [{"image_size": 2}, {"image_size": 32, "resize_mode": "pad"}, {"image_size": 32, "std": (1, 0, 1)}])
def test_preprocess_config_validates(kwargs):
    with pytest.raises(ModelDirError):
        PreprocessConfig(**kwargs)
