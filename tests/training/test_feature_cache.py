"""The locked-image-tower feature cache: `cache-features` then `fit` from it equals `fit` decoding images, resumes
exactly, survives a kill mid-way, and refuses a cache of another tower, preprocessing or dataset."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from click.testing import CliRunner  # noqa: E402
from demo_data import prepare_demo, train_config  # noqa: E402
from zsclip_train import feature_cache_build  # noqa: E402
from zsclip_train.cli import main  # noqa: E402
from zsclip_train.feature_cache_build import FeatureCacheConfig, cache_image_features  # noqa: E402
from zsclip_train.fit import TrainConfig, fit_model  # noqa: E402
from zsclip_train.fit_log import read_metric  # noqa: E402
from zsclip_train.fit_model import ModelConfig  # noqa: E402

LOCKED = ModelConfig(image_tower="tiny", image_size=32, image_unlocked_blocks=0, text_dim=32, text_hidden=64,
                     embed_dim=32, text_dropout=0.2)
SHARD = 10  # 48 images: 5 shards, the last one short


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_demo(tmp_path_factory.mktemp("cachedata"), n_images=48, size=48, n_eval=1, shard_size=16)


def config(root, out, **kw) -> TrainConfig:
    return train_config(root, out, **{"model": LOCKED, **kw})


def write_json(path, cfg: TrainConfig):
    data = {k: str(v) if k in ("data", "out_dir", "feature_cache") and v is not None else v
            for k, v in dataclasses.asdict(cfg).items() if v is not None}
    data["eval_prompts"] = list(data["eval_prompts"])
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def cache32(prepared):
    """A float32 cache (bit-faithful storage) and the straight 6-step run trained from it."""
    cache = prepared / "cache32"
    result = cache_image_features(FeatureCacheConfig(config(prepared, prepared / "unused", feature_cache=cache),
                                                     dtype="float32", shard_size=SHARD))
    assert (result.n_images, result.dim, result.n_shards, result.computed_shards) == (48, 64, 5, 5)
    fit_model(config(prepared, prepared / "cached", feature_cache=cache))
    return cache


def final_weights(out):
    return torch.load(out / "final" / "pytorch_model.bin", weights_only=True)


def test_cached_run_equals_the_image_decoding_run(prepared, cache32, tmp_path):
    fit_model(config(prepared, tmp_path / "decoded"))
    decoded = read_metric(tmp_path / "decoded" / "metrics.csv", "loss")
    cached = read_metric(prepared / "cached" / "metrics.csv", "loss")
    assert len(decoded) == 6 and cached == pytest.approx(decoded, rel=1e-5, abs=1e-6)
    a, b = final_weights(tmp_path / "decoded"), final_weights(prepared / "cached")
    for name in a:  # the image tower is untouched; the rest follows the same trajectory
        assert torch.allclose(a[name], b[name], atol=1e-5), name
    # float16 storage (the default): the features' ~5e-4 relative rounding shows in the loss only far below 1%
    # (seen up to 1.3e-3 after six steps when the thread count changes the summation order, so 3e-3 here)
    cache16 = tmp_path / "cache16"
    cache_image_features(FeatureCacheConfig(config(prepared, tmp_path / "x", feature_cache=cache16), shard_size=SHARD))
    assert np.load(cache16 / "features-000000.npy").dtype == np.float16
    fit_model(config(prepared, tmp_path / "half", feature_cache=cache16))
    half = read_metric(tmp_path / "half" / "metrics.csv", "loss")
    assert half == pytest.approx(decoded, rel=3e-3) and half != decoded


def test_exact_resume_from_the_cache(prepared, cache32, tmp_path):
    out = tmp_path / "cut"
    assert fit_model(config(prepared, out, feature_cache=cache32, stop_at_step=3)).final_dir is None
    assert fit_model(config(prepared, out, feature_cache=cache32)).step == 6
    a = torch.load(prepared / "cached" / "checkpoints" / "step-00000006" / "state.pt", weights_only=False)
    b = torch.load(out / "checkpoints" / "step-00000006" / "state.pt", weights_only=False)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert read_metric(out / "metrics.csv", "loss") == read_metric(prepared / "cached" / "metrics.csv", "loss")


def test_killed_cache_features_resumes_without_recomputing(prepared, cache32, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cfg = FeatureCacheConfig(config(prepared, tmp_path / "run", feature_cache=cache), dtype="float32",
                             shard_size=SHARD)
    real_write, written = feature_cache_build.write_shard, []

    def killed_at_third(*args):
        if len(written) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a kill between two shards leaves behind
        real_write(*args)
        written.append(args[1])

    monkeypatch.setattr(feature_cache_build, "write_shard", killed_at_third)
    with pytest.raises(KeyboardInterrupt):
        cache_image_features(cfg)
    monkeypatch.undo()
    assert sorted(p.name for p in cache.iterdir()) == ["cache.json", "features-000000.npy", "features-000001.npy"]
    (cache / ".features-000002.npy.k1ll3d.tmp").write_bytes(b"\x93NUMPY half a shard")  # what SIGKILL mid-write leaves
    before = {n: (cache / f"features-{n:06d}.npy").stat().st_mtime_ns for n in (0, 1)}
    runner = CliRunner()  # fit refuses the incomplete cache with one line
    result = runner.invoke(main, ["fit", str(write_json(tmp_path / "run.json", cfg.train))])
    assert result.exit_code == 1 and "incomplete (3 of 5 shards missing" in result.output, result.output
    lines = []
    result = cache_image_features(cfg, progress=lines.append)
    assert result.computed_shards == 3 and len(lines) == 3 and lines[-1].startswith("cache-features: 5/5 shards")
    assert {n: (cache / f"features-{n:06d}.npy").stat().st_mtime_ns for n in (0, 1)} == before
    assert sorted(p.name for p in cache.iterdir()) == ["cache.json"] + [f"features-{n:06d}.npy" for n in range(5)]
    for n in range(5):
        assert np.array_equal(np.load(cache / f"features-{n:06d}.npy"), np.load(cache32 / f"features-{n:06d}.npy"))


def test_refuses_foreign_or_stale_caches_with_one_line(prepared, cache32, tmp_path):
    runner = CliRunner()

    def fails(cfg: TrainConfig, command: str = "fit") -> str:
        result = runner.invoke(main, [command, str(write_json(tmp_path / "c.json", cfg))])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
        return result.output

    out = tmp_path / "o"
    assert "different image tower weights" in fails(config(prepared, out, feature_cache=cache32, seed=1))
    resized = dataclasses.replace(LOCKED, image_size=40)
    assert "different image preprocessing" in fails(config(prepared, out, feature_cache=cache32, model=resized))
    other = tmp_path / "other"  # the same images, one fewer of them: another prepared dataset
    shutil.copytree(prepared / "prep", other / "prep")
    with np.load(prepared / "prep" / "index.npz") as index:
        np.savez(other / "prep" / "index.npz", **{k: index[k][:-1] for k in index.files})
    assert "prepared dataset" in fails(config(other, out, feature_cache=cache32))
    unlocked = dataclasses.replace(LOCKED, image_unlocked_blocks=-1)
    assert "fully locked image tower" in fails(config(prepared, out, feature_cache=cache32, model=unlocked))
    assert "fully locked image tower" in fails(config(prepared, out, feature_cache=tmp_path / "c", model=unlocked),
                                               "cache-features")
    assert "set feature_cache" in fails(config(prepared, out), "cache-features")
    # a shard that no longer matches the tower (the fingerprint cannot see it) is caught by the spot check
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path in cache32.iterdir():
        (tampered / path.name).write_bytes(path.read_bytes())
    rows = np.load(tampered / "features-000000.npy")
    np.save(tampered / "features-000000.npy", rows * 1.1)
    assert "differ from the image tower's features" in fails(config(prepared, out, feature_cache=tampered))
    assert not out.exists() or not (out / "final").exists()
