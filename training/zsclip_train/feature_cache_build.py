"""`zsclip-train cache-features CONFIG`: every training image's pooled features from the locked image tower, once.

    zsclip-train cache-features run.toml                                   # one process
    torchrun --nproc-per-node 8 -m zsclip_train.cli cache-features run.toml  # rank r computes shards r, r+W, ...

The output dir is the config's `feature_cache`; the format is described in zsclip_train.feature_cache.
Resumable: finished shards are skipped, so a killed run continues when re-run with the same arguments.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from zsclip.atomic import atomic_open
from zsclip.errors import ConfigError, InputDataError

from zsclip_train.data_pairs import PairDataset
from zsclip_train.feature_cache import (
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    fingerprint,
    fingerprint_difference,
    read_meta,
    require_locked_image_tower,
    shard_name,
)
from zsclip_train.fit import TrainConfig, autocast_context
from zsclip_train.fit_model import TwoTower

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class FeatureCacheConfig:
    """One `cache-features` run: the training config (model, data, `feature_cache` dir) plus storage choices."""

    train: TrainConfig
    dtype: str = "float16"  # half the disk and page cache of float32; pooled features need no more precision
    shard_size: int = 10000  # images per .npy shard (15 MB at D=768 float16)
    batch_size: Optional[int] = None  # default: the training batch_size

    @property
    def cache_dir(self) -> Path:
        return Path(self.train.feature_cache or "")  # never empty: checked below

    def __post_init__(self) -> None:
        if self.train.feature_cache is None:
            raise ConfigError("cache-features writes to the config's `feature_cache` dir: set feature_cache = \"DIR\"")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r} is not one of {DTYPES}")
        if self.shard_size < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ConfigError("shard_size and batch_size must be >= 1")


@dataclass(frozen=True)
class FeatureCacheResult:
    cache_dir: Path
    n_images: int
    dim: int
    computed_shards: int
    n_shards: int
    seconds: float

    def __str__(self) -> str:
        return (f"feature cache {self.cache_dir}: {self.n_images} images x {self.dim} features in {self.n_shards} "
                f"shards ({self.computed_shards} computed by this process in {self.seconds:.1f} s)")


class PixelItems(torch.utils.data.Dataset):
    """index -> (index, pixels), through the training dataset so the preprocessing is the training's own."""

    def __init__(self, pairs: PairDataset) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        return index, self.pairs[(0, index)][0]


def cache_image_features(cfg: FeatureCacheConfig, progress: Optional[Progress] = None) -> FeatureCacheResult:
    """Compute this process's share of the missing shards (all of them without torchrun); see the module doc.

    Raises:
        ConfigError: no feature_cache dir, or an image tower that is not fully locked.
        InputDataError: the dir holds a cache of another tower, preprocessing or dataset; unreadable data.
    """
    from zsclip_train.ddp import barrier, setup_distributed, teardown_distributed
    from zsclip_train.fit_loop import build_run, pair_dataset

    started = time.time()
    ctx = setup_distributed(cfg.train.device)
    try:
        train = dataclasses.replace(cfg.train, feature_cache=None)
        model = build_run(train, ctx).model  # exactly the tower `fit` builds (same seed, same weights)
        require_locked_image_tower(model)
        model.eval()
        pairs = pair_dataset(train, model)
        meta = start_cache(cfg, fingerprint(model, pairs, train.data), ctx.is_main, model, pairs, ctx.device)
        barrier(ctx)  # every rank sees cache.json (and its settings) before choosing shards
        meta = read_meta(cfg.cache_dir) if not ctx.is_main else meta
        mine = [n for n in range(meta["n_shards"]) if n % ctx.world_size == ctx.rank
                and not (cfg.cache_dir / shard_name(n)).is_file()]
        logger.info("rank %d: %d shards to compute", ctx.rank, len(mine))
        computed = compute_shards(cfg, meta, model, pairs, mine, ctx, progress if ctx.is_main else None)
        barrier(ctx)
        return FeatureCacheResult(cfg.cache_dir, meta["n_images"], meta["dim"], computed, meta["n_shards"],
                                  time.time() - started)
    finally:
        teardown_distributed()


def start_cache(cfg: FeatureCacheConfig, expected: Dict, is_main: bool, model: TwoTower, pairs: PairDataset,
                device: torch.device) -> Dict:
    """Check an existing cache.json against `expected`, or (rank 0) write a new one. Returns the metadata."""
    cache_dir = cfg.cache_dir
    if is_main:  # a shard being written when the last run was killed (the other ranks wait at the barrier)
        for stale in [*cache_dir.glob(".features-*.tmp"), *cache_dir.glob(".cache.json.*.tmp")]:
            stale.unlink()
    if (cache_dir / "cache.json").is_file():
        meta = read_meta(cache_dir)
        difference = fingerprint_difference(meta["fingerprint"], expected)
        if difference:
            raise InputDataError(f"{cache_dir} holds features of another run: different {difference}; remove it or set "
                                 "another feature_cache")
        if (meta["dtype"], meta["shard_size"]) != (cfg.dtype, cfg.shard_size):
            logger.warning("continuing %s with its own dtype %s and shard size %d", cache_dir, meta["dtype"],
                           meta["shard_size"])
        return meta
    if not is_main:
        return {}
    with torch.no_grad():
        dim = int(model.image_tower(pairs[(0, 0)][0][None].to(device)).shape[-1])
    n_images = len(pairs)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": expected, "dtype": cfg.dtype, "dim": dim,
            "n_images": n_images, "shard_size": cfg.shard_size, "n_shards": -(-n_images // cfg.shard_size)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(cache_dir / "cache.json", "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=2)
    return meta


def shard_batches(shards: List[int], shard_size: int, n_images: int, batch_size: int) -> Iterator[List[int]]:
    """Index batches in shard order; a batch never straddles two shards."""
    for number in shards:
        rows = range(number * shard_size, min(n_images, (number + 1) * shard_size))
        for begin in range(0, len(rows), batch_size):
            yield list(rows[begin: begin + batch_size])


def compute_shards(cfg: FeatureCacheConfig, meta: Dict, model: TwoTower, pairs: PairDataset, shards: List[int], ctx,
                   progress: Optional[Progress]) -> int:
    """Run the tower over `shards` and write each one atomically as soon as its last batch is done."""
    size, n_images = int(meta["shard_size"]), int(meta["n_images"])
    loader = torch.utils.data.DataLoader(
        PixelItems(pairs), batch_sampler=list(shard_batches(shards, size, n_images, cfg.batch_size or
                                                            cfg.train.batch_size)),
        num_workers=cfg.train.num_workers, pin_memory=ctx.device.type == "cuda")
    pending: Dict[int, List[np.ndarray]] = {}
    done, images, tick = 0, 0, time.time()
    for indices, pixels in loader:
        with torch.no_grad(), autocast_context(cfg.train, ctx.device):
            features = model.image_tower(pixels.to(ctx.device, non_blocking=True)).float().cpu().numpy()
        number = int(indices[0]) // size
        pending.setdefault(number, []).append(features)
        images += len(features)
        if int(indices[-1]) == min(n_images, (number + 1) * size) - 1:
            write_shard(cfg.cache_dir, number, np.concatenate(pending.pop(number)),
                        meta["dtype"])
            done += 1
            if progress is not None:
                on_disk = sum(1 for _ in cfg.cache_dir.glob("features-*.npy"))
                rate = images / max(1e-9, time.time() - tick)
                left = (meta["n_shards"] - on_disk) * size / max(1e-9, rate * ctx.world_size)
                eta = f"{left / 60:.0f} min" if left >= 120 else f"{left:.0f} s"
                progress(f"cache-features: {on_disk}/{meta['n_shards']} shards on disk; this rank {done}/{len(shards)}, "
                         f"{rate:.0f} images/s, about {eta} left")
    return done


def write_shard(cache_dir: Path, number: int, features: np.ndarray, dtype: str) -> None:
    """One shard, via a temporary file renamed into place. Raises InputDataError on float16 overflow."""
    stored = features.astype(dtype)
    if not np.isfinite(stored).all():
        raise InputDataError(f"shard {number}: features do not fit {dtype} (or are not finite); "
                             "use --dtype float32")
    with atomic_open(cache_dir / shard_name(number), "wb") as handle:
        np.save(handle, stored)
