"""Traps of `zsclip-export` on the default model: third-party quantization advice, dropping a variant, and
--check-images on an up-to-date model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("onnx")


def tiny_onnx(path: Path) -> None:
    """x [B, 4] -> MatMul with a constant 4x3 weight: something onnxruntime can quantize."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def run_quantize_with_logging(tmp_path: Path, verbose: int, capsys) -> str:
    from zsclip.cli import setup_logging
    from zsclip_export.quantize import quantize_dynamic_file

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        setup_logging(verbose, False)
        tiny_onnx(tmp_path / "m.onnx")
        quantize_dynamic_file(tmp_path / "m.onnx", tmp_path / "m.int8.onnx", ["MatMul"])
    finally:
        root.handlers, root.level = saved[0], saved[1]
    assert (tmp_path / "m.int8.onnx").is_file()
    return capsys.readouterr().err


def test_onnxruntime_advice_is_not_a_zsclip_warning(tmp_path: Path, capsys) -> None:
    err = run_quantize_with_logging(tmp_path, 0, capsys)
    assert "WARNING" not in err and "pre-processing" not in err, err


def test_onnxruntime_advice_shows_as_theirs_with_verbose(tmp_path: Path, capsys) -> None:
    err = run_quantize_with_logging(tmp_path, 1, capsys)
    assert "onnxruntime says: Please consider to run pre-processing" in err, err
    assert "WARNING" not in err


def fake_default_model(out: Path, **options) -> object:
    """A tiny model dir that `zsclip-export` takes for an up-to-date default model built with `options`."""
    import dataclasses
    import sys

    from zsclip.manifest import load_manifest, write_manifest
    from zsclip_export.default_model import ExportConfig

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tiny_model import build_tiny_model

    build_tiny_model(out, with_int8=True)
    cfg = ExportConfig(out_dir=out, **options)
    manifest = load_manifest(out)
    write_manifest(out, dataclasses.replace(manifest, provenance={**manifest.provenance, "fingerprint": cfg.fingerprint()}))
    return cfg


def no_build(*args, **kwargs):
    raise AssertionError("zsclip-export started a full rebuild")


def test_plain_export_after_quantize_is_up_to_date(tmp_path: Path, monkeypatch) -> None:
    from zsclip_export.cli import main

    fake_default_model(tmp_path / "m", quantize=True)
    monkeypatch.setattr("zsclip_export.default_build.build_into", no_build)
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_a_rebuild_that_drops_the_int8_variant_needs_force(tmp_path: Path, monkeypatch) -> None:
    from zsclip.manifest import load_manifest
    from zsclip_export.cli import main

    fake_default_model(tmp_path / "m", quantize=True)
    before = (tmp_path / "m" / "zsclip.json").read_bytes()
    monkeypatch.setattr("zsclip_export.default_build.build_into", no_build)
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "m"), "--backbone", "lite0"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "int8 variant" in result.output and "--force" in result.output and "--quantize" in result.output
    assert (tmp_path / "m" / "zsclip.json").read_bytes() == before
    assert "int8" in load_manifest(tmp_path / "m").variants


def test_check_images_on_an_up_to_date_model_runs_the_int8_gate(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image
    from zsclip.manifest import load_manifest
    from zsclip_export.cli import main
    from zsclip_export.quantize import QuantizeConfig

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    fake_default_model(tmp_path / "m", quantize=True, quantization=QuantizeConfig(image="dynamic"), check_images=photos)
    text_before = (tmp_path / "m" / "text.int8.onnx").read_bytes()
    monkeypatch.setattr("zsclip_export.default_build.build_into", no_build)
    args = ["--out", str(tmp_path / "m"), "--quantize", "--image-int8", "dynamic", "--check-images", str(photos)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "INT8 image gate on 5 images" in result.output and "int8 variant refreshed" in result.output
    manifest = load_manifest(tmp_path / "m", verify=True)
    image = manifest.variants["int8"].quantization["image"]
    assert image["kept"] and image["gate"]["n_images"] == 5 and image["gate"]["top1_agreement"] == 1.0
    assert manifest.variants["int8"].image_file == "image.int8.onnx"
    assert (tmp_path / "m" / "text.int8.onnx").read_bytes() == text_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "photos"]  # no scratch or build folder left
