"""The training stream over a prepared dir: a seeded global order, one slice per rank, one query per image per step.

The data position is the micro-step counter alone: epoch e's order is a permutation seeded by
(seed, e), micro-step m takes the m-th run of `global_batch` indices from it, and each image's
query is drawn from an RNG seeded by (seed, epoch, index). So the stream from any position is
reproducible, whatever the number of loader workers, and resuming needs only the counter.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from zsclip.errors import InputDataError


def load_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def image_to_tensor(image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Shorter side to `size` (bicubic), centre crop, [0, 1], normalise: [3, size, size] float32."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    array = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    normalised = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(normalised.transpose(2, 0, 1).astype(np.float32))


class ImagePreprocess:
    """PIL image -> [3, S, S] float32: the runtime's `PreprocessConfig` preprocessing for hf: towers (exactly what
    the exported model dir will do), `image_to_tensor` for tiny / effnet-lite0. Picklable (loader workers)."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], runtime: Optional[Any] = None) -> None:
        self.size, self.mean, self.std, self.runtime = size, tuple(mean), tuple(std), runtime

    @classmethod
    def of_model(cls, model: Any) -> ImagePreprocess:
        """The preprocessing a `TwoTower` was built for."""
        if model.preprocess is not None:
            return cls(model.preprocess.image_size, model.preprocess.mean, model.preprocess.std, model.preprocess)
        mean, std = model.config.mean_std
        return cls(model.config.image_size, mean, std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.runtime is None:
            return image_to_tensor(image, self.size, self.mean, self.std)
        from zsclip.preprocess import preprocess_image

        return torch.from_numpy(preprocess_image(image, self.runtime))


class PairDataset(torch.utils.data.Dataset):
    """Item (epoch, index) -> (pixels [3, S, S], one of the image's queries)."""

    def __init__(self, prepared: Path, preprocess: ImagePreprocess, seed: int) -> None:
        prepared = Path(prepared)
        try:
            index = np.load(prepared / "index.npz")
            shards = json.loads((prepared / "shards.json").read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputDataError(f"{prepared} is not a prepared dir ({exc}); run `zsclip-train prepare`") from None
        self.columns = {k: index[k] for k in index.files}
        self.shard_paths = [Path(shards["shard_dir"]) / name for name in shards["shards"]]
        self.queries_path = prepared / "queries.txt"
        self.preprocess, self.seed = preprocess, seed

    def __len__(self) -> int:
        return len(self.columns["shard"])

    def read(self, path: Path, offset: int, size: int) -> bytes:
        with open(path, "rb") as handle:  # one open per read: safe in forked loader workers
            handle.seek(offset)
            return handle.read(size)

    def queries(self, index: int) -> List[str]:
        c = self.columns
        return self.read(self.queries_path, int(c["text_offset"][index]), int(c["text_size"][index])) \
            .decode("utf-8").split("\t")

    def __getitem__(self, item: Tuple[int, int]) -> Tuple[torch.Tensor, str]:
        epoch, index = item
        c = self.columns
        data = self.read(self.shard_paths[int(c["shard"][index])], int(c["jpg_offset"][index]),
                         int(c["jpg_size"][index]))
        pixels = self.preprocess(load_image(data))
        return pixels, self.pick_query(epoch, index)

    def pick_query(self, epoch: int, index: int) -> str:
        """The image's query for `epoch`: drawn from an RNG seeded by (seed, epoch, index)."""
        options = self.queries(index)
        return options[np.random.default_rng([self.seed, epoch, index]).integers(len(options))]


class GlobalBatchSampler:
    """This rank's batches of (epoch, index), from micro-step `start` to `stop` (exclusive)."""

    def __init__(self, n_items: int, batch_size: int, rank: int, world_size: int, seed: int, start: int,
                 stop: int) -> None:
        self.global_batch = batch_size * world_size
        if n_items < self.global_batch:
            raise InputDataError(f"{n_items} images is less than one global batch ({self.global_batch})")
        self.per_epoch = n_items // self.global_batch  # the incomplete tail of each epoch is dropped
        self.n_items, self.batch_size, self.rank, self.seed = n_items, batch_size, rank, seed
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def epoch_of(self, micro_step: int) -> int:
        return micro_step // self.per_epoch

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        order, order_epoch = None, -1
        for step in range(self.start, self.stop):
            epoch, position = divmod(step, self.per_epoch)
            if epoch != order_epoch:
                order, order_epoch = np.random.default_rng([self.seed, epoch]).permutation(self.n_items), epoch
            assert order is not None
            begin = position * self.global_batch + self.rank * self.batch_size
            yield [(epoch, int(i)) for i in order[begin: begin + self.batch_size]]


class Collate:
    """Stacks pixels and tokenises queries to a fixed context length (`QueryTokenizer`)."""

    def __init__(self, tokenizer: QueryTokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, batch: Sequence[Tuple[torch.Tensor, str]]) -> Tuple[torch.Tensor, ...]:
        pixels = torch.stack([p for p, _ in batch])
        ids, mask = self.tokenizer([q for _, q in batch])
        return pixels, ids, mask


class QueryTokenizer:
    """texts -> (input_ids, attention_mask) int64 [N, context_length], padded with `pad_id`, as the runtime
    tokenises (tokenizer.json truncates, keeping special tokens). Holds the tokenizer as its JSON text, so it
    pickles cheaply into loader workers; the `tokenizers.Tokenizer` is built lazily."""

    def __init__(self, tokenizer_json: str, context_length: int, pad_id: int = 0) -> None:
        self.tokenizer_json, self.context_length, self.pad_id = tokenizer_json, context_length, pad_id
        self._tokenizer: Any = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokenizer": None}

    @classmethod
    def from_file(cls, path: Path, context_length: int) -> QueryTokenizer:
        """The prepared WordPiece tokenizer ([PAD] = 0)."""
        return cls(Path(path).read_text(encoding="utf-8"), context_length, 0)

    @classmethod
    def from_transformers(cls, hf_tokenizer: Any, context_length: int) -> QueryTokenizer:
        """A fast transformers tokenizer's backend, truncating like zsclip-export's tokenizer.json."""
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        backend.no_padding()
        backend.enable_truncation(max_length=context_length)
        pad = hf_tokenizer.pad_token_id
        return cls(backend.to_str(), context_length, int(pad) if pad is not None else 0)

    def tokenizer(self) -> Any:  # -> tokenizers.Tokenizer
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return self._tokenizer

    def __call__(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        return tokenize(self.tokenizer(), texts, self.context_length, self.pad_id)


def tokenize(tokenizer, texts: Sequence[str], context_length: int, pad_id: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask, int64 [N, context_length]."""
    ids = torch.full((len(texts), context_length), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(texts), context_length), dtype=torch.int64)
    for row, encoding in enumerate(tokenizer.encode_batch(list(texts))):
        tokens = encoding.ids[:context_length]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
        mask[row, : len(tokens)] = 1
    return ids, mask
