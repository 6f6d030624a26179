"""Transductive smoothing: a dataset's zero-shot decisions spread over its own image-similarity graph.

Label spreading (Zhou et al., 2004) on the images of one dataset::

    Y0 = softmax(zero-shot log scores)          (after the prior correction, if any)
    Z <- a * S @ Z + (1 - a) * Y0               (`iterations` times, from Z = Y0)
    S = D^-1/2 A D^-1/2,  A = symmetrised k-nearest-neighbour graph of the images

Photos of one class that look alike then vote together, which mends isolated zero-shot mistakes. The
kNN feature is the same as few-shot's (`zsclip.fewshot.knn_features`). k is capped by the dataset's
images per class (k <= N / C), so a small dataset of many classes is barely smoothed. It uses nothing but
the images being predicted: no labels, no other data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zsclip.classifier import softmax_rows
from zsclip.errors import ConfigError

ROW_BLOCK = 1024  # rows of the similarity matrix held at once
EDGE_BLOCK = 1 << 22  # edge x class products held at once


@dataclass(frozen=True)
class SpreadConfig:
    """Label-spreading hyper-parameters (fixed a priori; not tuned on any evaluation set)."""

    neighbours: int = 10
    alpha: float = 0.75
    iterations: int = 20

    def __post_init__(self) -> None:
        if self.neighbours < 1 or not 0.0 <= self.alpha < 1.0 or self.iterations < 1:
            raise ConfigError("label spreading needs neighbours >= 1, 0 <= alpha < 1 and iterations >= 1")


def knn_graph(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [N, k] and cosine weights [N, k] (clipped at 0) of each row's k most similar other rows."""
    n = len(features)
    index = np.zeros((n, k), dtype=np.int64)
    weight = np.zeros((n, k), dtype=np.float32)
    for start in range(0, n, ROW_BLOCK):
        sims = features[start : start + ROW_BLOCK] @ features.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # not its own neighbour
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        index[start : start + len(sims)] = top
        weight[start : start + len(sims)] = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)
    return index, weight


class SymmetricGraph:
    """(W + W^T) / 2 of a kNN graph W, kept as sorted edge lists (CSR); `graph @ z` for dense z [N, C]."""

    def __init__(self, index: np.ndarray, weight: np.ndarray) -> None:
        n, k = index.shape
        rows = np.repeat(np.arange(n), k)
        src = np.concatenate([rows, index.ravel()])
        dst = np.concatenate([index.ravel(), rows])
        order = np.argsort(src, kind="stable")
        self.columns = dst[order]
        self.values = 0.5 * np.concatenate([weight.ravel(), weight.ravel()])[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
        self.n = n

    def __matmul__(self, z: np.ndarray) -> np.ndarray:
        out = np.empty((self.n, z.shape[1]))
        rows_per_block = max(1, EDGE_BLOCK // max(1, z.shape[1] * (len(self.columns) // self.n)))
        for start in range(0, self.n, rows_per_block):
            stop = min(self.n, start + rows_per_block)
            lo, hi = self.indptr[start], self.indptr[stop]
            products = self.values[lo:hi, None] * z[self.columns[lo:hi]]
            out[start:stop] = np.add.reduceat(products, self.indptr[start:stop] - lo, axis=0)
        return out


def spread_labels(log_scores: np.ndarray, features: np.ndarray, cfg: SpreadConfig = SpreadConfig()) -> np.ndarray:
    """Smoothed class distributions [N, C] (argmax = prediction) from zero-shot log scores [N, C] and
    unit-L2 image features [N, D] of one dataset. Fewer than 2 images per class on average: unchanged."""
    n, c = log_scores.shape
    y0 = softmax_rows(log_scores.astype(np.float64))
    k = min(cfg.neighbours, n // max(c, 1), n - 1)
    if k < 2:
        return y0
    index, weight = knn_graph(features.astype(np.float32), k)
    adjacency = SymmetricGraph(index, weight.astype(np.float64))
    degree = (adjacency @ np.ones((n, 1)))[:, 0]
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    z = y0
    for _ in range(cfg.iterations):
        z = cfg.alpha * scale[:, None] * (adjacency @ (scale[:, None] * z)) + (1.0 - cfg.alpha) * y0
    return z
