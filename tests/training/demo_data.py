"""The generated demo data the training tests train on (a catalogue, downloaded into shards, prepared) and the short
fp32 CPU run the tiny-tower tests make on it."""

from __future__ import annotations

from pathlib import Path

from zsclip_train.data_demo import make_demo_catalogue
from zsclip_train.download import DownloadConfig, download_images
from zsclip_train.fit import TrainConfig
from zsclip_train.queries import PrepareConfig, prepare_dataset


def prepare_demo(root: Path, *, n_images: int, size: int, n_eval: int, shard_size: int) -> Path:
    """ROOT/cat (the demo catalogue, `size`-pixel images), ROOT/shards (downloaded, min side 32) and ROOT/prep
    (a 200-word vocabulary); returns ROOT."""
    cat = make_demo_catalogue(root / "cat", n_images=n_images, size=size, n_eval=n_eval)
    download_images(DownloadConfig(images=cat / "images.json", out_dir=root / "shards", concurrency=4, retries=0,
                                   min_side=32, resize_side=size, shard_size=shard_size))
    prepare_dataset(PrepareConfig(metadata=cat / "metadata.json", shard_dir=root / "shards", out_dir=root / "prep",
                                  vocab_size=200))
    return root


def train_config(root: Path, out: Path, **kw) -> TrainConfig:
    """6 steps of 2 x 8 pairs from ROOT/prep into OUT, fp32 on the CPU, checkpoints at steps 3 and 6; `kw` (the
    model among them) overrides."""
    base = dict(data=root / "prep", out_dir=out, batch_size=8, accum_steps=2, steps=6, warmup_steps=1, lr=3e-3,
                num_workers=0, log_every=1, checkpoint_every=3, device="cpu", precision="fp32")
    base.update(kw)
    return TrainConfig(**base)
