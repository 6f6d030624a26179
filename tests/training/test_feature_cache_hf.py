"""The feature cache with a transformers image tower (tiny random CLIPVisionModel saved locally, locked, LiT with an
hf: text tower): the cached run's loss curve equals the image-decoding run's; an unlocked hf: tower is refused."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")
pytest.importorskip("zsclip_train.tiny_towers", reason="needs the hf: towers of branch issue16-towers")

from demo_data import prepare_demo  # noqa: E402
from zsclip.errors import ConfigError  # noqa: E402
from zsclip_train.feature_cache_build import FeatureCacheConfig, cache_image_features  # noqa: E402
from zsclip_train.fit import TrainConfig, fit_model  # noqa: E402
from zsclip_train.fit_log import read_metric  # noqa: E402
from zsclip_train.fit_model import ModelConfig  # noqa: E402
from zsclip_train.tiny_towers import write_tiny_towers  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return prepare_demo(tmp_path_factory.mktemp("hfcache"), n_images=48, size=40, n_eval=1, shard_size=16)


def config(root, out, model: ModelConfig, **kw) -> TrainConfig:
    base = dict(data=root / "prep", out_dir=out, model=model, batch_size=8, steps=4, warmup_steps=1, lr=3e-3,
                num_workers=0, log_every=1, checkpoint_every=4, device="cpu", precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def test_locked_hf_image_tower_trains_from_the_cache(root, tmp_path):
    towers = write_tiny_towers(tmp_path / "towers", image_size=32)
    model = ModelConfig(image_tower=f"hf:{towers['vision']}", text_tower=f"hf:{towers['text']}", lock_image=True,
                        embed_dim=32, context_length=16)
    cache = tmp_path / "cache"
    result = cache_image_features(FeatureCacheConfig(config(root, tmp_path / "x", model, feature_cache=cache),
                                                     dtype="float32", shard_size=20))
    assert (result.n_images, result.n_shards) == (48, 3)
    fit_model(config(root, tmp_path / "decoded", model))
    fit_model(config(root, tmp_path / "cached", model, feature_cache=cache))
    decoded = read_metric(tmp_path / "decoded" / "metrics.csv", "loss")
    assert len(decoded) == 4 and read_metric(tmp_path / "cached" / "metrics.csv", "loss") == pytest.approx(
        decoded, rel=1e-5, abs=1e-6)
    unlocked = config(root, tmp_path / "u", dataclasses.replace(model, lock_image=False), feature_cache=cache)
    with pytest.raises(ConfigError, match="fully locked image tower"):
        cache_image_features(FeatureCacheConfig(unlocked))
