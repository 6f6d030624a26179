"""`zsclip-export --source` on a `two_tower.json` folder (the two-tower family, also `zsclip-train fit`'s hand-off)
refuses a folder that does not fit: one `error:` line naming the family, the folder and the first keys, exit 1, no
traceback, nothing written.

Before strict two-tower loading, a text/ or vision/ folder with missing or unexpected weights exported a partly
random model (transformers only warns), an extra or wrong-shaped projection tensor was ignored or died with a
traceback while tracing, and a text model in vision/ died with a TypeError traceback.
"""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from test_hf_export import build_clip, build_two_tower, vision_config, write_images  # noqa: E402
from test_hf_refusal import refused  # noqa: E402
from zsclip_export.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """"with": a CLIP vision tower with its own projection; "without": a plain CLIPVisionModel + image_projection
    (the layout `zsclip-train fit` hands off)."""
    root = tmp_path_factory.mktemp("two-tower-refusal")
    with_projection = build_two_tower(root / "with", build_clip(root / "clip"))
    without = root / "without"
    shutil.copytree(with_projection, without)
    shutil.rmtree(without / "vision")
    torch.manual_seed(5)
    transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**vision_config())).save_pretrained(without / "vision")
    shutil.copy(with_projection / "vision/preprocessor_config.json", without / "vision/preprocessor_config.json")
    projections = load_file(str(with_projection / "projection.safetensors"))
    projections.update({"image_projection.weight": torch.randn(16, 32), "image_projection.bias": torch.zeros(16)})
    save_file(projections, str(without / "projection.safetensors"))
    return {"with": with_projection, "without": without, "images": write_images(root / "images")}


def variant(sources, tmp_path, name="with"):
    folder = tmp_path / f"src-{name}"
    shutil.copytree(sources[name], folder)
    return folder


def edit_weights(path, edit):
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def assert_names(line, folder, *keys):
    assert "two-tower" in line and str(folder) in line, line
    for key in keys:
        assert key in line, line


@pytest.mark.parametrize("name", ["with", "without"])
def test_a_fitting_two_tower_exports(sources, tmp_path, name):
    result = CliRunner().invoke(main, ["--source", str(sources[name]), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "zsclip.json").is_file()


def test_text_weight_missing(sources, tmp_path):
    source = variant(sources, tmp_path)
    edit_weights(source / "text/model.safetensors", lambda s: s.pop("encoder.layer.1.output.dense.weight"))
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "text", "two-tower text checkpoint", "1 missing weights (encoder.layer.1.output.dense.weight)")


def test_text_weight_unexpected(sources, tmp_path):
    source = variant(sources, tmp_path)
    edit_weights(source / "text/model.safetensors", lambda s: s.update({"extra_head.weight": torch.zeros(2, 2)}))
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "text", "1 unexpected weights (extra_head.weight)")


def test_text_weights_of_another_config(sources, tmp_path):
    """config.json says hidden 32, the weights are a hidden-16 BERT's: the first keys of another shape."""
    source = variant(sources, tmp_path)
    config = json.loads((source / "text/config.json").read_text(encoding="utf-8"))
    small = transformers.BertModel(transformers.BertConfig(
        vocab_size=config["vocab_size"], hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=config["max_position_embeddings"]))
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(source / "text/model.safetensors"))
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "text", "weights of another shape (embeddings.")


def test_vision_weight_missing(sources, tmp_path):
    source = variant(sources, tmp_path, "without")
    key = next(k for k in load_file(str(source / "vision/model.safetensors")) if k.endswith("post_layernorm.weight"))
    edit_weights(source / "vision/model.safetensors", lambda s: s.pop(key))
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "vision", "two-tower vision checkpoint", "1 missing weights (", "post_layernorm.weight)")


def test_vision_projection_missing(sources, tmp_path):
    source = variant(sources, tmp_path, "with")
    edit_weights(source / "vision/model.safetensors", lambda s: s.pop("visual_projection.weight"))
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "vision", "1 missing weights (visual_projection.weight)")


def test_vision_folder_holding_a_text_model(sources, tmp_path):
    source = variant(sources, tmp_path)
    shutil.rmtree(source / "vision")
    shutil.copytree(source / "text", source / "vision")
    shutil.copy(sources["with"] / "vision/preprocessor_config.json", source / "vision/preprocessor_config.json")
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "vision", "model_type 'bert' is not a vision model")


def test_text_folder_holding_a_vision_model(sources, tmp_path):
    source = variant(sources, tmp_path, "without")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / "vision" / name, source / "text" / name)
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "text", "is not a text encoder")


@pytest.mark.parametrize("name, edit, expected", [
    ("with", lambda s: s.pop("text_projection.weight"), "1 missing weights (text_projection.weight)"),
    ("with", lambda s: s.update({"text_projection.scale": torch.ones(1)}), "1 unexpected weights (text_projection.scale)"),
    ("with", lambda s: s.update({"image_projection.weight": torch.zeros(16, 16)}), "1 unexpected weights (image_projection.weight)"),
    ("with", lambda s: s.update({"text_projection.weight": torch.zeros(16, 31)}), "weights of another shape (text_projection.weight)"),
    ("with", lambda s: s.update({"text_projection.weight": torch.zeros(8, 32), "text_projection.bias": torch.zeros(8)}),
     "2 weights of another shape (text_projection.bias, text_projection.weight)"),
    ("without", lambda s: s.pop("image_projection.weight"), "1 missing weights (image_projection.weight)"),
    ("without", lambda s: s.pop("image_projection.bias"), None),  # a projection without bias is a fitting one
    ("without", lambda s: s.update({"image_projection.weight": torch.zeros(16, 20)}),
     "weights of another shape (image_projection.weight)"),
    ("without", lambda s: s.update({"image_projection.weight": torch.zeros(12, 32)}),
     "1 weights of another shape (image_projection.weight)"),
])
def test_projection_that_does_not_fit(sources, tmp_path, name, edit, expected):
    source = variant(sources, tmp_path, name)
    edit_weights(source / "projection.safetensors", edit)
    if expected is None:
        result = CliRunner().invoke(main, ["--source", str(source), "--out", str(tmp_path / "out"), "-q"])
        assert result.exit_code == 0, result.output
        return
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "projection.safetensors", "two-tower projection", expected)


def test_unreadable_projection(sources, tmp_path):
    source = variant(sources, tmp_path)
    (source / "projection.safetensors").write_bytes(b"not a safetensors file")
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "projection.safetensors", "unreadable")


@pytest.mark.parametrize("edit, expected", [
    ({"text_pooling": "max"}, "text_pooling 'max' is not one of"),
    ({"image_pooling": "mean"}, "image_pooling 'mean' is not one of"),
    ({"format_version": "two"}, "format must be"),
    ({"text_model": None}, "text_model must name a folder"),
])
def test_two_tower_json_that_does_not_fit(sources, tmp_path, edit, expected):
    source = variant(sources, tmp_path)
    spec = json.loads((source / "two_tower.json").read_text(encoding="utf-8"))
    (source / "two_tower.json").write_text(json.dumps({**spec, **edit}), encoding="utf-8")
    line = refused(["--source", str(source)], tmp_path / "out")
    assert_names(line, source / "two_tower.json", expected)
