"""The feature cache under torchrun (2 gloo processes on 127.0.0.1): `cache-features` splits the shards between
the ranks and writes the same cache as one process; `fit` from it with `local_loss = true` matches one process
on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from demo_data import prepare_demo  # noqa: E402
from test_ddp import free_port  # noqa: E402
from zsclip_train.fit_log import read_metric  # noqa: E402

STEPS = 12


def write_config(root, name: str, batch_size: int, cache: str):
    cfg = {"data": str(root / "prep"), "out_dir": str(root / name), "batch_size": batch_size, "steps": STEPS,
           "warmup_steps": 2, "lr": 3e-3, "num_workers": 0, "log_every": 1, "checkpoint_every": STEPS,
           "device": "cpu", "precision": "fp32", "local_loss": True, "feature_cache": str(root / cache),
           "model": {"image_tower": "tiny", "image_size": 32, "image_unlocked_blocks": 0, "text_dim": 32,
                     "text_hidden": 64, "embed_dim": 32, "text_dropout": 0.0}}
    path = root / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def run(nproc: int, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONWARNINGS="ignore")
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    result = subprocess.run([*launcher, "-m", "zsclip_train.cli", *args], env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_rank_cache_and_local_loss_fit_match_one_process(tmp_path):
    prepare_demo(tmp_path, n_images=64, size=48, n_eval=1, shard_size=32)
    ddp_config = write_config(tmp_path, "ddp", batch_size=8, cache="cache2")
    cached = run(2, "cache-features", str(ddp_config), "--dtype", "float32", "--shard-size", "10")
    assert "64 images x 64 features in 7 shards (4 computed by this process" in cached.stdout, cached.stdout
    assert "cache-features: " in cached.stderr  # the progress line
    run(1, "cache-features", str(write_config(tmp_path, "single", batch_size=16, cache="cache1")), "--dtype",
        "float32", "--shard-size", "10")
    for n in range(7):
        name = f"features-{n:06d}.npy"
        assert np.array_equal(np.load(tmp_path / "cache2" / name), np.load(tmp_path / "cache1" / name)), name
    run(2, "fit", str(ddp_config))
    run(1, "fit", str(write_config(tmp_path, "single", batch_size=16, cache="cache2")))
    ddp, single = read_metric(tmp_path / "ddp" / "metrics.csv", "loss"), read_metric(tmp_path / "single" /
                                                                                      "metrics.csv", "loss")
    assert len(ddp) == STEPS and ddp == pytest.approx(single, rel=1e-4)
    a = torch.load(tmp_path / "ddp" / "final" / "pytorch_model.bin", weights_only=True)
    b = torch.load(tmp_path / "single" / "final" / "pytorch_model.bin", weights_only=True)
    for name in a:
        assert torch.allclose(a[name], b[name], atol=2e-5, rtol=1e-5), name
