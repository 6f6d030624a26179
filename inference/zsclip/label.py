"""`zsclip-label`: pseudo-labels for a folder of images, with the doubtful ones flagged "problem".

Three independent views of each image must agree, else it is a problem:

- zero-shot: the model's class after the prior correction (`zsclip-predict --no-spread`'s decision: predict's
  default label spreading is itself a neighbour vote, so it is left to the kNN view below);
- kNN: a kernel-weighted vote (the few-shot kernel) of its `k` nearest *confident* images (zero-shot confidence at or
  above the median of their predicted class), the image itself excluded;
- k-means: spherical k-means over the folder, started from each predicted class's mean feature, so
  every cluster is a class; the image's final cluster.

Features are the kNN features of `zsclip.fewshot` (cosine on L2 embeddings, on centred log-probabilities for L1 models).
Undecodable images get the most common label and are problems too.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from zsclip.atomic import atomic_open
from zsclip.classifier import ZeroShotModel, normalize_rows, softmax_rows
from zsclip.datadir import list_images, read_classes
from zsclip.errors import ConfigError, InputDataError
from zsclip.fewshot import choose_beta, knn_features, log_scores
from zsclip.paths import default_model_dir
from zsclip.predict import decoded_batches
from zsclip.session import SessionConfig
from zsclip.workers import check_worker_counts, decode_pool

logger = logging.getLogger(__name__)

CSV_FIELDS = ("file", "label", "class_name", "confidence", "zero_shot", "knn", "kmeans", "problem", "reason")


@dataclass(frozen=True)
class LabelConfig:
    """Everything one `zsclip-label` run needs."""

    img_dir: Path
    classes_path: Path
    out_path: Path
    review_dir: Optional[Path] = None
    model_dir: Path = field(default_factory=default_model_dir)
    variant: Optional[str] = None
    threads: int = 0
    batch_size: int = 32
    decode_workers: int = 0
    strict: bool = False
    neighbours: int = 5
    confident_quantile: float = 0.5
    kmeans_iterations: int = 20

    def __post_init__(self) -> None:
        for name in ("batch_size", "neighbours", "kmeans_iterations"):
            if getattr(self, name) < 1:
                raise ConfigError.for_field(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.confident_quantile < 1.0:
            raise ConfigError.for_field("confident_quantile", f"must be in [0, 1), got {self.confident_quantile}")
        check_worker_counts(self.threads, self.decode_workers)


@dataclass(frozen=True)
class ImageLabel:
    """One row of labels.csv."""

    path: Path
    label: int
    confidence: float
    zero_shot: int
    knn: int
    kmeans: int
    problem: bool
    reason: str = ""


def knn_votes(features: np.ndarray, labels: np.ndarray, confident: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """Similarity-weighted vote of each image's k nearest confident images (itself excluded)."""
    pool = np.flatnonzero(confident)
    sims = features @ features[pool].T
    sims[pool, np.arange(len(pool))] = -np.inf  # an image is not its own neighbour
    k = min(k, len(pool) - 1) if len(pool) > 1 else 0
    if k < 1:
        return labels.copy()
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    beta = choose_beta(features[pool])  # the few-shot kernel: near neighbours dominate the vote
    votes = np.zeros((len(features), n_classes))
    for column in range(k):
        index = nearest[:, column]
        weight = np.exp(beta * (sims[np.arange(len(features)), index] - 1.0)) + 1e-12
        np.add.at(votes, (np.arange(len(features)), labels[pool[index]]), weight)
    return votes.argmax(axis=1)


def kmeans_assign(features: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray:
    """Spherical k-means started from the predicted classes' mean features; returns a class per image."""
    classes = np.unique(labels)
    centres = normalize_rows(np.stack([features[labels == c].mean(axis=0) for c in classes]), "l2")
    assign = np.searchsorted(classes, labels)
    for _ in range(iterations):
        new = (features @ centres.T).argmax(axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(len(classes)):
            if (assign == j).any():  # an emptied cluster keeps its centre
                centres[j] = normalize_rows(features[assign == j].mean(axis=0, keepdims=True), "l2")[0]
    return classes[assign]


def decide_labels(posteriors: np.ndarray, features: np.ndarray, alpha: float, cfg: LabelConfig) -> List[Tuple]:
    """(label, confidence, zero_shot, knn, kmeans, problem) per decoded image."""
    scores = log_scores(posteriors, alpha)
    zero_shot = scores.argmax(axis=1)
    confidence = softmax_rows(scores)[np.arange(len(scores)), zero_shot]
    confident = np.zeros(len(scores), dtype=bool)
    for c in np.unique(zero_shot):  # per class, so that a hard class still has confident members
        members = zero_shot == c
        confident |= members & (confidence >= np.quantile(confidence[members], cfg.confident_quantile))
    knn = knn_votes(features, zero_shot, confident, cfg.neighbours, posteriors.shape[1])
    kmeans = kmeans_assign(features, zero_shot, cfg.kmeans_iterations)
    problem = (knn != zero_shot) | (kmeans != zero_shot)
    return list(zip(zero_shot.tolist(), confidence.tolist(), zero_shot.tolist(), knn.tolist(), kmeans.tolist(),
                    problem.tolist()))


def label_images(
    cfg: LabelConfig,
    model: Optional[ZeroShotModel] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[[int], None]] = None,
) -> Tuple[List[ImageLabel], Tuple[str, ...]]:
    """Label every file of `cfg.img_dir`; write labels.csv (and the review page with `cfg.review_dir`).

    Raises:
        InputDataError: bad image folder, classes.json or output path; an undecodable image with `strict`.
        ModelDirError: bad model directory.
    """
    from zsclip.predict import check_out_path

    check_out_path(Path(cfg.out_path))
    if cfg.review_dir is not None:
        from zsclip.review import prepare_review_dir

        prepare_review_dir(Path(cfg.review_dir))
    img_dir = Path(cfg.img_dir)
    if not img_dir.is_dir():
        raise InputDataError(f"image folder {img_dir} does not exist or is not a directory")
    if (img_dir / "img").is_dir():
        raise InputDataError(f"{img_dir} is a dataset folder, not an image folder: pass {img_dir / 'img'}")
    classes = read_classes(Path(cfg.classes_path))
    paths = list(list_images(img_dir))
    if not paths:
        raise InputDataError(f"image folder {img_dir} holds no files")
    if model is None:
        model = ZeroShotModel(cfg.model_dir, cfg.variant, SessionConfig(threads=cfg.threads))
    class_embeds = model.build_class_embeddings(classes)
    if on_start:
        on_start(len(paths))
    decoded, posteriors, features, failed = [], [], [], []
    with decode_pool(cfg.decode_workers) as pool:
        for indices, pixels, failures in decoded_batches(paths, model.manifest.preprocess, cfg.batch_size, pool):
            for index, reason in failures:
                if cfg.strict:
                    raise InputDataError(f"{paths[index]}: not a decodable image ({reason})")
                logger.warning("%s: not a decodable image (%s); flagged as a problem", paths[index], reason)
                failed.append((index, reason))
            if len(indices):
                embeds = model.encode_images(pixels)
                posteriors.append(model.posteriors(embeds, class_embeds))
                features.append(knn_features(embeds, model.manifest.embedding.norm))
                decoded.extend(indices)
            if on_progress:
                on_progress(len(indices) + len(failures))
    rows: List[Optional[ImageLabel]] = [None] * len(paths)
    if decoded:
        decisions = decide_labels(np.concatenate(posteriors), np.concatenate(features),
                                  model.manifest.embedding.prior_correction, cfg)
        for index, row in zip(decoded, decisions):
            rows[index] = ImageLabel(paths[index], *row)
    labels = [r.label for r in rows if r is not None]
    fallback = int(np.bincount(labels).argmax()) if labels else 0
    for index, reason in failed:
        rows[index] = ImageLabel(paths[index], fallback, 0.0, -1, -1, -1, True, f"undecodable: {reason}")
    result = [r for r in rows if r is not None]
    write_labels_csv(Path(cfg.out_path), result, classes)
    if cfg.review_dir is not None:
        from zsclip.review import write_review

        write_review(Path(cfg.review_dir), result, classes)
    return result, classes


def write_labels_csv(path: Path, rows: List[ImageLabel], classes: Tuple[str, ...]) -> None:
    """labels.csv, written atomically (UTF-8, header `CSV_FIELDS`, problems marked 1)."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for r in rows:
            writer.writerow([r.path.name, r.label, classes[r.label], f"{r.confidence:.4f}", r.zero_shot, r.knn,
                             r.kmeans, int(r.problem), r.reason or ("disagree" if r.problem else "")])
