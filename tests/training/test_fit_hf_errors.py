"""Bad values for the hf: tower options are one-line ConfigErrors naming the culprit (no traceback, no silently
wrong run), and hf: folders in a config file are relative to that file like every other path. Each case here
failed before its fix (a traceback, a truthy string taken as true, a training run on an all-[UNK] tokenizer, ...)."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from click.testing import CliRunner  # noqa: E402
from zsclip.errors import ConfigError  # noqa: E402
from zsclip_train.cli import main  # noqa: E402
from zsclip_train.fit import TrainConfig, load_train_config  # noqa: E402
from zsclip_train.fit_model import ModelConfig, TwoTower  # noqa: E402
from zsclip_train.hf_towers import fast_tokenizer  # noqa: E402
from zsclip_train.tiny_towers import write_text, write_vision  # noqa: E402


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    return {"vision": write_vision(root / "vision"), "text": write_text(root / "text")}


def model_config(towers, **kw) -> ModelConfig:
    base = dict(image_tower=f"hf:{towers['vision']}", text_tower=f"hf:{towers['text']}", embed_dim=16)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("key, value, message", [
    ("lock_image", "no", "[model] lock_image must be true or false, got 'no'"),  # was truthy: silently locked
    ("lock_text", 1, "[model] lock_text must be true or false, got 1"),
    ("text_unlocked_layers", 1.5, "[model] text_unlocked_layers must be an integer, got 1.5"),  # was a traceback
    ("text_unlocked_layers", "1", "[model] text_unlocked_layers must be an integer, got '1'"),
    ("image_unlocked_layers", True, "[model] image_unlocked_layers must be an integer, got True"),
    ("text_pooling", 3, "[model] text_pooling must be a string, got 3"),
])
def test_wrongly_typed_model_values_name_the_key(towers, key, value, message):
    extra = {"lock_text": True} if key == "text_unlocked_layers" else {}
    with pytest.raises(ConfigError) as err:
        model_config(towers, **{**extra, key: value})
    assert str(err.value) == message


def test_wrongly_typed_training_values_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^steps must be an integer, got 1\.5$"):
        TrainConfig.from_dict({"data": "d", "out_dir": "o", "steps": 1.5})
    with pytest.raises(ConfigError, match=r"^resume must be true or false, got 'false'$"):
        TrainConfig.from_dict({"data": "d", "out_dir": "o", "resume": "false"})


@pytest.mark.parametrize("key", ["image_tower", "text_tower", "init"])
def test_empty_hf_reference(key):
    with pytest.raises(ConfigError, match=rf'^{key} = "hf:" names no checkpoint'):
        ModelConfig(**{key: "hf:"})


def test_unlocked_layers_beyond_the_tower_name_the_key(towers):
    with pytest.raises(ConfigError, match=r"^text_unlocked_layers = 99, but BertModel has 2 blocks \(use 1\.\.2\)$"):
        TwoTower(model_config(towers, lock_text=True, text_unlocked_layers=99))
    with pytest.raises(ConfigError, match=r"^image_unlocked_layers = 9, but CLIPVisionModel has 2 blocks"):
        TwoTower(model_config(towers, image_unlocked_layers=9))


def test_a_text_model_as_image_tower(towers):
    with pytest.raises(ConfigError, match=r'^image_tower = "hf:.*text": BertModel takes no pixel_values'):
        TwoTower(model_config(towers, image_tower=f"hf:{towers['text']}"))


def test_init_with_a_tower_is_refused(towers):
    with pytest.raises(ConfigError, match="^init gives both towers: leave image_tower and text_tower unset$"):
        ModelConfig(init=f"hf:{towers['text']}", image_tower=f"hf:{towers['vision']}")


def test_a_text_folder_without_tokenizer_is_refused(towers, tmp_path):
    """transformers builds a BertTokenizer with only its special tokens from a bare config: every query was [UNK]."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(towers["text"] / name, bare / name)
    with pytest.raises(ConfigError, match=r"^hf:.*bare: the tokenizer has no vocabulary besides its 5 special tokens"):
        fast_tokenizer(str(bare))
    assert len(fast_tokenizer(str(towers["text"]))) > 50


def write_toml(path, model_lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('data = "prepared"\nout_dir = "run"\n[model]\n' + "\n".join(model_lines) + "\nembed_dim = 16\n")
    return path


def test_hf_folders_are_relative_to_the_config_file(towers, tmp_path, monkeypatch):
    home = tmp_path / "project"
    shutil.copytree(towers["vision"], home / "towers" / "vision")
    config = write_toml(home / "demo.toml", ['image_tower = "hf:towers/vision"', 'text_tower = "hf:org/some-model"'])
    monkeypatch.chdir(tmp_path)  # elsewhere: the folder is found next to the config, the hub id stays as written
    cfg = load_train_config(config)
    assert cfg.model.image_tower == f"hf:{home / 'towers' / 'vision'}" and cfg.data == home / "prepared"
    assert cfg.model.text_tower == "hf:org/some-model"


def test_fit_cli_missing_folder_is_one_error_line(tmp_path):
    config = write_toml(tmp_path / "c.toml", ['image_tower = "hf:/nonexistent"'])
    result = CliRunner().invoke(main, ["fit", str(config)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ['error: image_tower = "hf:/nonexistent": no such folder /nonexistent']
    assert not (tmp_path / "run").exists()
