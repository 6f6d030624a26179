"""The default text tower: SIF-weighted mean of navec vectors -> MLP head -> distribution over ImageNet concepts.

The head maps a phrase into the image classifier's weight space (1280-d); its cosine to each class
prototype (the classifier's normalised weight rows), scaled and softmaxed, gives the phrase's
distribution q over the 1000 concepts. The image tower gives p, the image's class probabilities;
zero-shot score = <p, q>, the probability mass the image puts on what the name means.
"""

from __future__ import annotations

import math

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

    def __init__(
        self,
        vectors: np.ndarray,
        token_row: np.ndarray,
        token_weight: np.ndarray,
        prototypes: np.ndarray,
        hidden: int = 1024,
        temperature: float = 0.05,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        dim_in, dim_out = vectors.shape[1], prototypes.shape[1]
        self.register_buffer("vectors", torch.as_tensor(vectors, dtype=torch.float32))
        self.register_buffer("token_row", torch.as_tensor(token_row, dtype=torch.int64))
        self.register_buffer("token_weight", torch.as_tensor(token_weight, dtype=torch.float32))
        self.register_buffer("prototypes", F.normalize(torch.as_tensor(prototypes, dtype=torch.float32), dim=-1))
        self.mlp = nn.Sequential(
            nn.Linear(dim_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim_out)
        )
        self.skip = nn.Linear(dim_in, dim_out, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """SIF-weighted mean of the tokens' word vectors, L2-normalised ([B, E]; zero when nothing is known)."""
        weights = self.token_weight[input_ids] * attention_mask.to(torch.float32)
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
