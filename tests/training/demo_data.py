"""The generated demo data the training tests train on: a catalogue, downloaded into shards, prepared."""

from __future__ import annotations

from pathlib import Path

from zsclip_train.data_demo import make_demo_catalogue
from zsclip_train.download import DownloadConfig, download_images
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
