"""The model glossary: lookup key, file validation, and how definitions are mixed into class embeddings."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from zsclip.classifier import ZeroShotModel, normalize_rows
from zsclip.errors import ModelDirError
from zsclip.glossary import gloss_key, load_glossary
from zsclip.manifest import MANIFEST_NAME, load_manifest, write_manifest


def with_glossary(src: Path, tmp_path: Path, glossary, weight: float = 0.5, file_name: str = "glossary.json") -> Path:
    model = tmp_path / "model"
    shutil.copytree(src, model)
    (model / file_name).write_text(json.dumps(glossary, ensure_ascii=False), encoding="utf-8")
    manifest = load_manifest(model)
    text = dataclasses.replace(manifest.text, glossary_file=file_name, gloss_weight=weight)
    write_manifest(model, dataclasses.replace(manifest, text=text))
    return model


def test_gloss_key_normalises_case_yo_punctuation_and_spaces():
    assert gloss_key("  Морской  Конёк! ") == "морской конек"
    assert gloss_key("Рыба-клоун (Amphiprion)") == "рыба-клоун amphiprion"
    assert gloss_key("?!") == ""


def test_definitions_are_mixed_into_a_glossed_name_only(tiny_model_dir, tmp_path):
    plain = ZeroShotModel(tiny_model_dir)
    model = ZeroShotModel(with_glossary(tiny_model_dir, tmp_path, {"цвет": ["красный", "красный цвет"]}))
    got = model.build_class_embeddings(["Цвет!", "синий"])
    base = plain.build_class_embeddings(["Цвет!", "синий"])
    definitions = normalize_rows(plain.encode_texts(["красный", "красный цвет"]).mean(axis=0), "l2")
    np.testing.assert_allclose(got[0], normalize_rows(0.5 * base[0] + 0.5 * definitions, "l2"), atol=1e-6)
    np.testing.assert_allclose(got[1], base[1], atol=1e-6)  # not in the glossary: unchanged
    assert got[0][0] > base[0][0] + 0.1  # the name moved towards red


def test_a_name_the_model_cannot_read_is_rescued_by_its_definition(tiny_model_dir, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        ZeroShotModel(tiny_model_dir).build_class_embeddings(["жираф"])
    assert "'жираф' has no word the model knows" in caplog.text
    caplog.clear()
    model = ZeroShotModel(with_glossary(tiny_model_dir, tmp_path, {"жираф": ["зеленый"]}))
    with caplog.at_level("WARNING"):
        got = model.build_class_embeddings(["Жираф", "синий"])
    assert "no word the model knows" not in caplog.text
    assert got[0].argmax() == 1  # green: what its definition says


def test_zero_weight_or_empty_glossary_changes_nothing(tiny_model_dir, tmp_path):
    base = ZeroShotModel(tiny_model_dir).build_class_embeddings(["цвет", "синий"])
    model = ZeroShotModel(with_glossary(tiny_model_dir, tmp_path, {"цвет": ["красный"]}, weight=0.0))
    np.testing.assert_allclose(model.build_class_embeddings(["цвет", "синий"]), base, atol=1e-6)
    assert ZeroShotModel(tiny_model_dir).glossary == {}


def test_glossary_file_is_part_of_the_contract(tiny_model_dir, tmp_path):
    model = with_glossary(tiny_model_dir, tmp_path, {"цвет": ["красный"]})
    assert "glossary.json" in load_manifest(model).files
    (model / "glossary.json").write_text('{"цвет": ["синий"]}', encoding="utf-8")
    with pytest.raises(ModelDirError, match="glossary.json .* sha256"):
        load_manifest(model)
    (model / "glossary.json").unlink()
    with pytest.raises(ModelDirError, match="glossary.json missing"):
        load_manifest(model)


@pytest.mark.parametrize("content, message", [
    ("{not json", "unreadable glossary"),
    ('["цвет"]', "must be a JSON object"),
    ('{"цвет": "красный"}', "'цвет' must be a list of non-empty strings"),
    ('{"цвет": [""]}', "'цвет' must be a list of non-empty strings"),
])
def test_bad_glossary_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "glossary.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ModelDirError, match=message):
        load_glossary(path)


def test_gloss_weight_outside_unit_interval_is_refused(tiny_model_dir, tmp_path):
    model = with_glossary(tiny_model_dir, tmp_path, {"цвет": ["красный"]})
    data = json.loads((model / MANIFEST_NAME).read_text(encoding="utf-8"))
    data["text"]["gloss_weight"] = 1.5
    (model / MANIFEST_NAME).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ModelDirError, match="gloss_weight must be in"):
        load_manifest(model)
