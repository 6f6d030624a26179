"""The default text tower: SIF-weighted mean of navec vectors -> MLP head -> distribution over ImageNet concepts.

The head maps a phrase into the image classifier's weight space (1280-d); its cosine to each class
prototype (the classifier's normalised weight rows), scaled and softmaxed, gives the phrase's
distribution q over the 1000 concepts. The image tower gives p, the image's class probabilities;
zero-shot score = <p, q>, the probability mass the image puts on what the name means.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class NavecTextTower(nn.Module):
    """input_ids, attention_mask [B, L] -> concept distribution [B, K].

    Args:
        vectors: [W, E] word vectors (row 0 zero).
        token_row: [T] row of each token id in `vectors`.
        token_weight: [T] pooling weight of each token id.
        prototypes: [K, D] image-side class prototypes (classifier weights).
        hidden: width of the MLP head.
        temperature: initial softmax temperature over prototypes (learned).
    """

    # buffers (registered in __init__), declared for type checkers
    vectors: torch.Tensor
    token_row: torch.Tensor
    token_weight: torch.Tensor
    token_is_piece: torch.Tensor
    token_piece_ok: torch.Tensor
    prototypes: torch.Tensor
    codes: Optional[torch.Tensor]  # uint8 [W, G] when product-quantised
    codebook: Optional[torch.Tensor]  # [G * C, S]
    code_offsets: Optional[torch.Tensor]  # [G]: g * C

    def __init__(
        self,
        vectors: np.ndarray,
        token_row: np.ndarray,
        token_weight: np.ndarray,
        prototypes: np.ndarray,
        token_is_piece: Optional[np.ndarray] = None,
        token_length: Optional[np.ndarray] = None,
        split_piece_min_len: int = 0,
        hidden: int = 1024,
        temperature: float = 0.05,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        dim_in, dim_out = vectors.shape[1], prototypes.shape[1]
        self.register_buffer("vectors", torch.as_tensor(vectors, dtype=torch.float32))
        self.register_buffer("token_row", torch.as_tensor(token_row, dtype=torch.int64))
        self.register_buffer("token_weight", torch.as_tensor(token_weight, dtype=torch.float32))
        n_tokens = len(token_row)
        is_piece = np.zeros(n_tokens, np.float32) if token_is_piece is None else token_is_piece
        length = np.zeros(n_tokens, np.int64) if token_length is None else token_length
        self.register_buffer("token_is_piece", torch.as_tensor(is_piece, dtype=torch.float32))
        # 1 where a token may count inside a split word (long enough), else 0
        self.register_buffer("token_piece_ok", torch.as_tensor(length >= split_piece_min_len, dtype=torch.float32))
        for name in ("codes", "codebook", "code_offsets"):  # set by product_quantized_storage
            self.register_buffer(name, None)
        self.register_buffer("prototypes", F.normalize(torch.as_tensor(prototypes, dtype=torch.float32), dim=-1))
        self.mlp = nn.Sequential(
            nn.Linear(dim_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim_out)
        )
        self.skip = nn.Linear(dim_in, dim_out, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """SIF-weighted mean of the tokens' word vectors, L2-normalised ([B, E]; zero when nothing is known).

        Inside a word split into pieces, pieces shorter than `split_piece_min_len` get weight 0 (0: off)."""
        mask = attention_mask.to(torch.float32)
        is_piece = self.token_is_piece[input_ids] * mask
        next_is_piece = torch.cat([is_piece[:, 1:], torch.zeros_like(is_piece[:, :1])], dim=1)
        in_split_word = torch.clamp(is_piece + next_is_piece, max=1.0)
        keep = 1.0 - in_split_word * (1.0 - self.token_piece_ok[input_ids])
        weights = self.token_weight[input_ids] * mask * keep
        vectors = self.lookup(self.token_row[input_ids])
        summed = (weights.unsqueeze(-1) * vectors).sum(dim=1)
        mean = summed / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled word vector -> unit vector in the prototypes' space."""
        out = self.mlp(pooled) + self.skip(pooled)
        return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def concept_logits(self, projected: torch.Tensor) -> torch.Tensor:
        return projected @ self.prototypes.T * self.log_scale.exp()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.concept_logits(self.project(self.pool(input_ids, attention_mask))), dim=-1)

    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        """Word vectors of `rows` (any shape) -> [..., E] float32, from the dense or the product-quantised table."""
        if self.codes is None:
            return self.vectors[rows]
        assert self.codebook is not None and self.code_offsets is not None
        index = self.codes[rows].to(torch.int64) + self.code_offsets  # [..., G] rows of the flat codebook
        return self.codebook[index].flatten(-2)

    def product_quantized_storage(self, codebook: np.ndarray) -> NavecTextTower:
        """Keep the word vectors as product-quantisation codes of `codebook` ([G, C, S], G * S = E).

        navec's vectors *are* such products (100 groups of 3 dimensions, 256 codewords each), so encoding them
        against navec's own codebook is lossless: one byte per 3 dimensions, 12x smaller than float32, and
        pooling is unchanged. Row 0 only ever carries weight 0, so its code is arbitrary.

        Raises:
            ConfigError: the codebook does not fit the vectors, or does not reproduce them exactly.
        """
        from zsclip.errors import ConfigError

        if self.codes is not None:
            raise ConfigError("the word vectors are already product-quantised")
        groups, entries, width = codebook.shape
        if groups * width != self.vectors.shape[1] or entries > 256:
            raise ConfigError(f"codebook {codebook.shape} does not fit {self.vectors.shape[1]}-d vectors in uint8 codes")
        if float(self.token_weight[self.token_row == 0].abs().sum()) != 0.0:
            raise ConfigError("tokens on row 0 must weigh 0 (row 0 has no exact code)")
        vectors = self.vectors.numpy().reshape(len(self.vectors), groups, width)
        codes = np.empty((len(vectors), groups), np.uint8)
        worst = 0.0
        for g in range(groups):
            words, centres = np.ascontiguousarray(vectors[:, g, :]), codebook[g].astype(np.float32)
            codes[:, g] = nearest_codewords(words, centres)
            worst = max(worst, float(np.abs(centres[codes[1:, g]] - words[1:]).max(initial=0.0)))
        if worst > 1e-5:
            raise ConfigError(f"the word vectors are not products of the codebook (max error {worst:.2e})")
        self.vectors = torch.zeros(0, self.vectors.shape[1])
        self.codes = torch.as_tensor(codes)
        self.codebook = torch.from_numpy(codebook.reshape(groups * entries, width).astype(np.float32, copy=True))
        self.code_offsets = torch.arange(groups, dtype=torch.int64) * entries
        return self


def nearest_codewords(words: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of each word's nearest centre ([N, S] x [C, S] -> [N]): the argmin of |c|^2 - 2 w.c (first index on
    ties). Words equal to a centre bit for bit (navec's words all are) are matched by a sorted lookup of their bytes,
    taking the first of equal centres, as the argmin does; only the others pay for the [N, C] distance matrix."""
    key_type = np.dtype((np.void, centres.dtype.itemsize * centres.shape[1]))
    centre_keys = np.ascontiguousarray(centres).view(key_type).ravel()
    unique_keys, first = np.unique(centre_keys, return_index=True)
    word_keys = np.ascontiguousarray(words).view(key_type).ravel()
    slot = np.minimum(np.searchsorted(unique_keys, word_keys), len(unique_keys) - 1)
    exact = unique_keys[slot] == word_keys
    codes = first[slot]
    rest = np.flatnonzero(~exact)
    if len(rest):
        distance = (centres**2).sum(1)[None, :] - 2.0 * words[rest] @ centres.T
        codes[rest] = distance.argmin(1)
    return codes
