"""`zsclip-train probe` end to end on the tiny model: labelled dir in, model dir zsclip-predict accepts out."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402
from test_probe import make_labelled  # noqa: E402
from zsclip.cli import predict_main  # noqa: E402
from zsclip_train.cli import main  # noqa: E402


def test_probe_command(tiny_model_dir, tmp_path):
    train = make_labelled(tmp_path / "train")
    out = tmp_path / "probe"
    result = CliRunner().invoke(main, ["probe", "--data", str(train), "--model", str(tiny_model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "cross-validated accuracy" in result.output
    pred = tmp_path / "pred.json"
    result = CliRunner().invoke(predict_main, [str(train / "datasets"), str(pred), "--model", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(pred.read_text())["colours"] == json.loads((train / "gt.json").read_text())["colours"]
    again = CliRunner().invoke(main, ["probe", "--data", str(train), "--model", str(tiny_model_dir), "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output


def test_probe_help():
    assert CliRunner().invoke(main, ["probe", "--help"]).exit_code == 0
