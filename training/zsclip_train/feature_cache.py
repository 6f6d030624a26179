"""The locked-image-tower feature cache: its on-disk format, its fingerprint, and training from it.

With a fully locked image tower, the tower's pooled output for an image never changes, so
`zsclip-train cache-features CONFIG` (zsclip_train.feature_cache_build) computes it once per training image
and `fit` with `feature_cache = "DIR"` trains the projection and the text tower from it, without decoding
a single image. The image pipeline has no random augmentation (shorter side, centre crop, normalise), so
the cached features are exactly what the live tower computes, and the data order, exact resume and DDP
equivalence stay as without the cache (the sampler and the query choice are the same code).

The interface the cache needs from a model is small: `model.image_tower(pixels)` returns pooled features
[B, D] and holds every image-side parameter that is frozen; `model.image_proj` (trained) maps them into the
shared space. Layout of DIR:

    cache.json            {"format", "format_version", "fingerprint": {...}, "dtype", "dim", "n_images",
                           "shard_size", "n_shards"}
    features-NNNNNN.npy   rows [N*shard_size, (N+1)*shard_size) of the prepared index, float16 or float32,
                          each written to a temporary file and renamed into place (a kill leaves no half shard)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from zsclip.errors import ConfigError, InputDataError

from zsclip_train.data_pairs import PairDataset
from zsclip_train.fit_model import TwoTower
from zsclip_train.tower_lock import is_locked

logger = logging.getLogger(__name__)

FORMAT = "zsclip-feature-cache"
FORMAT_VERSION = 1
DTYPES = ("float16", "float32")
SPOT_CHECKS = 3  # rows recomputed by `fit` with the live tower and compared with the cache
SPOT_TOLERANCE = 2e-2  # relative to the largest feature: float16 storage, bf16 autocast, batch-size kernels


def shard_name(number: int) -> str:
    return f"features-{number:06d}.npy"


def require_locked_image_tower(model: TwoTower) -> None:
    """Raises ConfigError unless every image tower parameter is frozen (the cache would be stale otherwise)."""
    if not is_locked(model.image_tower):
        raise ConfigError("feature_cache needs a fully locked image tower: set image_unlocked_blocks = 0 (or, for "
                          "hf: towers, lock_image = true with no unlocked layers), or remove feature_cache")


def module_sha256(module: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a module's state dict (parameters and buffers)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def prepared_sha256(prepared: Path) -> str:
    """sha256 of the prepared index (image order, shards, offsets) and the shard names it points into."""
    digest = hashlib.sha256()
    with open(Path(prepared) / "index.npz", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    shards = json.loads((Path(prepared) / "shards.json").read_text(encoding="utf-8"))
    digest.update(json.dumps(shards.get("shards")).encode())
    return digest.hexdigest()


def fingerprint(model: TwoTower, dataset: PairDataset, prepared: Path) -> Dict[str, Any]:
    """What the cached features depend on: the tower (name, weights), the preprocessing, the prepared dataset."""
    return json.loads(json.dumps({  # as read back from cache.json (tuples become lists)
        "image_tower": [str(getattr(model.config, key, None)) for key in ("image_tower", "init")],
        "image_weights_sha256": module_sha256(model.image_tower),
        "preprocess": preprocessing_of(dataset),
        "prepared_sha256": prepared_sha256(prepared),
        "n_images": len(dataset),
    }))


def preprocessing_of(dataset: PairDataset) -> Dict[str, Any]:
    """The dataset's image preprocessing (`ImagePreprocess`: size, mean/std, and for hf: towers the runtime's
    `PreprocessConfig`), as JSON. It is deterministic (no random augmentation): were one added, it would have to
    be refused here, since a cache holds one view per image."""
    preprocess = dataset.preprocess
    runtime = preprocess.runtime
    return {"image_size": preprocess.size, "mean": list(preprocess.mean), "std": list(preprocess.std),
            "runtime": dataclasses.asdict(runtime) if dataclasses.is_dataclass(runtime) and not isinstance(runtime, type)
            else None if runtime is None else repr(runtime),
            "resize_mode": "shortest_edge_center_crop" if runtime is None else None, "augment": None}


def fingerprint_difference(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """'' when equal, else the parts that differ, in words."""
    words = {"image_tower": "image tower", "image_weights_sha256": "image tower weights",
             "preprocess": "image preprocessing", "prepared_sha256": "prepared dataset", "n_images": "image count"}
    return ", ".join(words.get(key, key) for key in sorted(set(stored) | set(current))
                     if stored.get(key) != current.get(key))


def read_meta(cache_dir: Path) -> Dict[str, Any]:
    """cache.json of `cache_dir`. Raises InputDataError if absent, unreadable or of another format."""
    path = Path(cache_dir) / "cache.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputDataError(f"feature cache {cache_dir} has no cache.json; run `zsclip-train cache-features "
                             "CONFIG` first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputDataError(f"cannot read {path}: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise InputDataError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} file")
    return meta


class FeatureCache:
    """Read side: memory-mapped shards (the OS page cache is shared by every rank and loader worker of a node)."""

    def __init__(self, cache_dir: Path, meta: Mapping[str, Any]) -> None:
        self.cache_dir, self.meta = Path(cache_dir), dict(meta)
        self.shard_size, self.dim = int(meta["shard_size"]), int(meta["dim"])
        missing = [shard_name(n) for n in range(int(meta["n_shards"])) if not (self.cache_dir / shard_name(n)).is_file()]
        if missing:
            raise InputDataError(f"feature cache {cache_dir} is incomplete ({len(missing)} of {meta['n_shards']} "
                                 f"shards missing, e.g. {missing[0]}); re-run `zsclip-train cache-features CONFIG`")
        self.shards: List[np.ndarray] = [np.load(self.cache_dir / shard_name(n), mmap_mode="r")
                                         for n in range(int(meta["n_shards"]))]

    def __len__(self) -> int:
        return int(self.meta["n_images"])

    def row(self, index: int) -> np.ndarray:
        shard, row = divmod(index, self.shard_size)
        return np.array(self.shards[shard][row], dtype=np.float32)  # a writable copy


def open_feature_cache(cache_dir: Path, model: TwoTower, dataset: PairDataset, prepared: Path,
                       device: torch.device) -> FeatureCache:
    """Open the cache for training `model` on `dataset`, refusing one made by another tower, preprocessing or
    prepared dataset (fingerprint) and checking a few rows against the live tower.

    Raises:
        ConfigError: the image tower is not fully locked.
        InputDataError: missing, incomplete or mismatched cache.
    """
    require_locked_image_tower(model)
    meta = read_meta(cache_dir)
    difference = fingerprint_difference(meta["fingerprint"], fingerprint(model, dataset, prepared))
    if difference:
        raise InputDataError(f"feature cache {cache_dir} does not match this run: different {difference}; re-run "
                             "`zsclip-train cache-features CONFIG` with an empty feature_cache dir")
    cache = FeatureCache(cache_dir, meta)
    spot_check(cache, model, dataset, device)
    return cache


def spot_check(cache: FeatureCache, model: TwoTower, dataset: PairDataset, device: torch.device) -> None:
    """Recompute a few rows with the live tower: catches what the fingerprint cannot see (a changed pipeline)."""
    rows = sorted({0, len(cache) // 2, len(cache) - 1})[:SPOT_CHECKS]
    was_training = model.image_tower.training
    model.image_tower.eval()
    with torch.no_grad():
        live = model.image_tower(torch.stack([dataset[(0, i)][0] for i in rows]).to(device)).float().cpu().numpy()
    model.image_tower.train(was_training)
    stored = np.stack([cache.row(i) for i in rows])
    error = float(np.abs(live - stored).max() / max(1e-6, float(np.abs(live).max())))
    if not error <= SPOT_TOLERANCE:
        raise InputDataError(f"feature cache {cache.cache_dir}: rows {rows} differ from the image tower's features "
                             f"(relative error {error:.3g}); re-run `zsclip-train cache-features CONFIG` into an "
                             "empty dir")
    logger.info("feature cache %s: %d rows match the live tower (relative error %.2g)", cache.cache_dir, len(rows),
                error)


class CachedPairDataset(PairDataset):
    """Item (epoch, index) -> (cached pooled features [D] float32, the same query `PairDataset` would pick)."""

    def __init__(self, pairs: PairDataset, cache: FeatureCache) -> None:  # pylint: disable=super-init-not-called
        # the same index, query file and seed as `pairs` (so the same queries), without re-reading them
        self.__dict__.update(pairs.__dict__)
        self.cache = cache

    def __getitem__(self, item: Tuple[int, int]) -> Tuple[torch.Tensor, str]:
        epoch, index = item
        return torch.from_numpy(self.cache.row(index)), self.pick_query(epoch, index)


class CachedFeatureForward(nn.Module):
    """The model's training forward fed cached pooled image features instead of pixels (DDP wraps this)."""

    def __init__(self, model: TwoTower) -> None:
        super().__init__()
        require_locked_image_tower(model)
        self.model = model

    def forward(self, features: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        image = F.normalize(self.model.image_proj(features), dim=-1)
        return image, self.model.encode_text(input_ids, attention_mask)
