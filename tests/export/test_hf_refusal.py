"""`zsclip-export --source` refuses what is not the family: one `error:` line naming the family and the first
missing / unexpected keys, exit 1, no traceback, nothing written.

Before strict loading, `--family clip` on a DistilBERT folder with a preprocessor_config.json wrote a randomly
initialised CLIP (transformers only warns about missing weights) and exited 0, and `--family clip` on a SigLIP
folder died with a RuntimeError traceback.
"""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402
from family_replicas import build_clip_image_repo, build_mclip, build_open_clip_xlmr, build_st_multilingual  # noqa: E402
from test_hf_export import build_clip, build_siglip  # noqa: E402
from zsclip.errors import ConfigError  # noqa: E402
from zsclip_export.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusal")
    clip = build_clip(root / "clip")
    distilbert = build_st_multilingual(root / "st-text")
    shutil.copy(clip / "preprocessor_config.json", distilbert / "preprocessor_config.json")
    folders = {"clip": clip, "siglip": build_siglip(root / "siglip"), "st-text": distilbert,
               "st-image": build_clip_image_repo(root / "st-image"), "mclip": build_mclip(root / "mclip")}
    try:
        folders["open-clip"] = build_open_clip_xlmr(root / "open-clip")
    except ConfigError:  # open_clip_torch not installed (.ci/run installs it)
        pass
    return folders


def needs(folders, name):
    if name not in folders:
        pytest.skip("open_clip_torch is not installed (pip install --no-deps open_clip_torch)")
    return folders[name]


def refused(args, out):
    """The CLI's result for a refused export: the one error line (asserting exit 1, no traceback, nothing written)."""
    result = CliRunner().invoke(main, args + ["--out", str(out), "-q"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output and not out.exists()
    return lines[0]


def test_clip_family_on_a_distilbert_folder_is_refused(folders, tmp_path):
    line = refused(["--source", str(folders["st-text"]), "--family", "clip"], tmp_path / "out")
    assert "model_type 'distilbert' is not a clip checkpoint" in line


def test_clip_family_on_a_siglip_folder_is_refused(folders, tmp_path):
    line = refused(["--source", str(folders["siglip"]), "--family", "clip"], tmp_path / "out")
    assert "model_type 'siglip' is not a clip checkpoint" in line


def test_clip_config_with_foreign_weights_names_the_first_missing_keys(folders, tmp_path):
    """config.json says clip, the weights are DistilBERT's: every CLIP weight is missing."""
    source = tmp_path / "clip-with-distilbert-weights"
    shutil.copytree(folders["clip"], source)
    shutil.copy(folders["st-text"] / "model.safetensors", source / "model.safetensors")
    line = refused(["--source", str(source), "--family", "clip"], tmp_path / "out")
    assert "is not a clip checkpoint" in line and "missing weights (" in line and "unexpected weights (embeddings." in line


def test_a_missing_weight_is_refused(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    source = tmp_path / "clip-missing"
    shutil.copytree(folders["clip"], source)
    state = load_file(str(source / "model.safetensors"))
    del state["text_projection.weight"]
    save_file(state, str(source / "model.safetensors"))
    line = refused(["--source", str(source)], tmp_path / "out")
    assert "1 missing weights (text_projection.weight)" in line and "clip" in line


@pytest.mark.parametrize("family, source", [
    ("siglip", "clip"), ("ruclip", "clip"), ("mclip", "clip"), ("open-clip", "clip"), ("sentence-transformers", "clip"),
    ("two-tower", "clip"), ("clip", "mclip"), ("siglip", "open-clip"),
])
def test_wrong_family_is_one_line(folders, tmp_path, family, source):
    line = refused(["--source", str(needs(folders, source)), "--family", family], tmp_path / "out")
    assert family.replace("ruclip", "ruCLIP") in line or "two_tower.json" in line


def test_mclip_with_an_unexpected_weight_is_refused(folders, tmp_path):
    source = tmp_path / "mclip-extra"
    shutil.copytree(folders["mclip"], source)
    state = torch.load(source / "pytorch_model.bin", weights_only=True)
    state["LinearTransformation2.weight"] = torch.zeros(2, 2)
    torch.save(state, source / "pytorch_model.bin")
    line = refused(["--source", str(source), "--image-source", str(folders["st-image"])], tmp_path / "out")
    assert "not a mclip checkpoint: 1 unexpected weights (LinearTransformation2.weight)" in line


def test_open_clip_with_a_missing_weight_is_refused(folders, tmp_path):
    source = tmp_path / "open-clip-missing"
    shutil.copytree(needs(folders, "open-clip"), source)
    state = torch.load(source / "open_clip_pytorch_model.bin", weights_only=True)
    del state["logit_scale"]
    torch.save(state, source / "open_clip_pytorch_model.bin")
    line = refused(["--source", str(source)], tmp_path / "out")
    assert "not a open-clip checkpoint: 1 missing weights (logit_scale)" in line


def test_sentence_transformers_dense_of_another_shape_is_refused(folders, tmp_path):
    source = tmp_path / "st-dense"
    shutil.copytree(folders["st-text"], source)
    config = json.loads((source / "2_Dense/config.json").read_text(encoding="utf-8"))
    (source / "2_Dense/config.json").write_text(json.dumps({**config, "out_features": 8}), encoding="utf-8")
    line = refused(["--source", str(source), "--image-source", str(folders["st-image"])], tmp_path / "out")
    assert "weights of another shape (linear.weight)" in line


def test_text_only_families_need_the_image_source(folders, tmp_path):
    line = refused(["--source", str(folders["st-text"])], tmp_path / "out")
    assert "--image-source sentence-transformers/clip-ViT-B-32" in line
    line = refused(["--source", str(folders["mclip"])], tmp_path / "out")
    assert "--image-source openai/clip-vit-base-patch32" in line
    line = refused(["--source", str(folders["clip"]), "--image-source", str(folders["st-image"])], tmp_path / "out")
    assert "has its own image tower" in line
    line = refused(["--source", str(folders["st-text"]), "--image-source", str(folders["siglip"])], tmp_path / "out")
    assert "is not a CLIP model" in line
    line = refused(["--source", str(folders["st-image"])], tmp_path / "out")
    assert "pass it as --image-source" in line


def test_list_shows_known_russian_checkpoints():
    result = CliRunner().invoke(main, ["--list"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| ") and "hub id" not in line]
    families = {row.split("|")[2].strip() for row in rows}
    assert {"ruclip", "sentence-transformers", "mclip", "open-clip", "siglip"} <= families
    assert any("clip-ViT-B-32-multilingual-v1" in row and "sentence-transformers/clip-ViT-B-32" in row for row in rows)
