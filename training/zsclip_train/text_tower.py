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
        vectors = self.vectors[self.token_row[input_ids]].to(torch.float32)
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

    def half_storage(self) -> NavecTextTower:
        """Store word vectors as float16 (halves the ONNX file; pooling still runs in float32)."""
        self.vectors = self.vectors.to(torch.float16)
        return self
