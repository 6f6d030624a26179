"""Layout variants of the multilingual families load directly (fast; the upstream parity is test_family_parity.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")

from family_replicas import build_clip_image_repo, build_st_multilingual  # noqa: E402
from test_hf_export import onnx_text  # noqa: E402
from zsclip.manifest import load_manifest  # noqa: E402
from zsclip_export.families import detect_family  # noqa: E402
from zsclip_export.hf_export import HfExportConfig, export_hf_model  # noqa: E402

TEXTS = ["кошка", "чёрный автомобиль", "Йошкар-Ола"]


def test_sentence_transformers_0_transformer_layout_and_plain_clip_image_source(tmp_path):
    """The older layout keeps the encoder in 0_Transformer/; the image source may be the CLIPModel folder itself.
    Both give the same model as the root layout with the sentence-transformers image repo."""
    root_layout = build_st_multilingual(tmp_path / "root")
    image_repo = build_clip_image_repo(tmp_path / "image")
    sub_layout = tmp_path / "sub"
    shutil.copytree(root_layout, sub_layout)
    (sub_layout / "0_Transformer").mkdir()
    for path in list(sub_layout.iterdir()):
        if path.is_file() and path.name != "modules.json":
            shutil.move(str(path), sub_layout / "0_Transformer" / path.name)
    modules = json.loads((sub_layout / "modules.json").read_text(encoding="utf-8"))
    modules[0]["path"] = "0_Transformer"
    (sub_layout / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    assert detect_family(sub_layout) == "sentence-transformers"

    first = export_hf_model(HfExportConfig(source=str(root_layout), out_dir=tmp_path / "a", image_source=str(image_repo)))
    second = export_hf_model(HfExportConfig(source=str(sub_layout), out_dir=tmp_path / "b",
                                            image_source=str(image_repo / "0_CLIPModel")))
    manifest = load_manifest(second.out_dir)
    assert manifest.family == "sentence-transformers" and manifest.text.context_length == 128  # max_seq_length
    assert manifest.provenance["text_pooling"] == "mean -> Dense 32->16 Identity"
    assert manifest.embedding.dim == 16 and manifest.preprocess.image_size == 32
    np.testing.assert_allclose(onnx_text(first.out_dir, TEXTS), onnx_text(second.out_dir, TEXTS), rtol=0, atol=1e-6)
