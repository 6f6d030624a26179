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


def test_probe_out_file_with_force_is_one_error_line_before_any_work(tiny_model_dir, tmp_path, monkeypatch):
    import zsclip_train.probe as probe

    def no_embedding(*args, **kwargs):
        raise AssertionError("encoded before checking --out")

    monkeypatch.setattr(probe, "embed_dir", no_embedding)
    train = make_labelled(tmp_path / "train")
    out = tmp_path / "probe.json"
    out.write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(main, ["probe", "--data", str(train), "--model", str(tiny_model_dir), "--out", str(out),
                                       "--force"])
    assert result.exit_code == 1 and result.output.startswith("error: ") and str(out) in result.output
    assert out.read_text(encoding="utf-8") == "{}"


def test_probe_embeddings_of_other_data_name_both_sides(tiny_model_dir, tmp_path):
    from zsclip.embed import EmbedConfig, embed_dir

    train = make_labelled(tmp_path / "train")
    other = tmp_path / "other" / "datasets" / "unrelated"
    (other / "img").mkdir(parents=True)
    (other / "classes.json").write_text(json.dumps(["a", "b"]), encoding="utf-8")
    for image in (train / "datasets" / "colours" / "img").iterdir():
        (other / "img" / image.name).write_bytes(image.read_bytes())
    npz = tmp_path / "other.npz"
    embed_dir(EmbedConfig(other.parent, npz, tiny_model_dir))
    result = CliRunner().invoke(main, ["probe", "--data", str(train), "--model", str(tiny_model_dir),
                                       "--out", str(tmp_path / "p"), "--embeddings", str(npz)])
    assert result.exit_code == 1
    assert "'unrelated'" in result.output and "'colours'" in result.output and "choose one" not in result.output


def test_probe_bad_threads_names_the_option(tiny_model_dir, tmp_path):
    train = make_labelled(tmp_path / "train")
    result = CliRunner().invoke(main, ["probe", "--data", str(train), "--model", str(tiny_model_dir),
                                       "--out", str(tmp_path / "probe"), "--threads", "-1"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == "Error: Invalid value for '--threads': must be >= 1, got -1"
