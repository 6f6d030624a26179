"""Training-free few-shot: zero-shot scores blended with a kernel density over a few labelled photos.

For an image x and a class c with support photos S_c::

    score_c(x) = zs_c(x) + w * (e_c(x) - mean over supported classes c' of e_c'(x))
    e_c(x)     = log mean_{s in S_c} exp(beta * (cos(f(x), f(s)) - 1))

- zs_c(x) is the zero-shot log posterior (after the dataset's prior correction, if any).
- f is the kNN feature: the L2-normalised embedding for L2 (CLIP) models; for L1 (concept
  distribution) models the centred log of the distribution, i.e. the image classifier's logits up to
  a shift (a linear view of the backbone's features). It sees how an image resembles *every* concept,
  so two photos of a thing the classifier has no class for still come out close, where the square root of
  the distribution (Hellinger geometry, the earlier choice) looks mostly at the top few concepts. On a real-photo
  proxy (Tux Paint photo stamps, 11 categories, 229 photos) it lifted label spreading from 0.638 to 0.681
  and 3-shot blending from 0.656 to 0.785.
- A class without support photos keeps its zero-shot score (its e term is absent), and the centring
  keeps the supported classes, as a group, from gaining on it.
- beta (kernel sharpness) is the inverse median distance 1 - cos of each support photo to its nearest
  other support photo (a bandwidth rule, no tuning); w is the one blending weight, chosen by
  leave-one-out accuracy on the support set itself (ties: lower leave-one-out NLL), never on the
  images being predicted. w = 0 is on the grid, so a useless support set falls back to zero-shot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsclip.classifier import normalize_rows
from zsclip.datadir import Dataset, list_images
from zsclip.errors import InputDataError

logger = logging.getLogger(__name__)

WEIGHT_GRID = (0.0,) + tuple(float(x) for x in np.round(2.0 ** np.arange(-5, 4.5, 0.5), 4))
DEFAULT_BETA = 10.0
BETA_RANGE = (1.0, 100.0)
LOG_FLOOR = 1e-30


def knn_features(embeds: np.ndarray, norm: str) -> np.ndarray:
    """Unit-L2 features for cosine kNN: the embedding (L2 models), or the centred log of the distribution
    (L1 models: the classifier's logits up to a per-image shift; mass below 1e-30 counts as 1e-30)."""
    if norm == "l1":
        logs = np.log(np.maximum(normalize_rows(np.maximum(embeds, 0.0), "l1"), LOG_FLOOR))
        return normalize_rows(logs - logs.mean(axis=1, keepdims=True), "l2")
    return normalize_rows(embeds, "l2")


def log_scores(posteriors: np.ndarray, alpha: float) -> np.ndarray:
    """Zero-shot log scores; with alpha > 0 the dataset's prior correction (see `correct_prior`)."""
    from zsclip.classifier import correct_prior

    if alpha > 0:
        return correct_prior(posteriors, alpha)
    return np.log(np.maximum(posteriors, 1e-12))


def choose_beta(features: np.ndarray) -> float:
    """Inverse median distance (1 - cos) of each support photo to its nearest other support photo."""
    if len(features) < 2:
        return DEFAULT_BETA
    sims = features @ features.T
    np.fill_diagonal(sims, -np.inf)
    distance = 1.0 - sims.max(axis=1)
    median = float(np.median(distance))
    return float(np.clip(1.0 / max(median, 1e-6), *BETA_RANGE))


def class_evidence(
    sims: np.ndarray, labels: np.ndarray, n_classes: int, beta: float, exclude_self: bool = False
) -> Tuple[np.ndarray, np.ndarray]:
    """Centred log kernel density per class, and which classes have support, for each query.

    Args:
        sims: cosine similarities [Q, S] of queries to support photos.
        labels: class index of each support photo [S].
        exclude_self: queries are the support photos themselves (Q == S); leave each one out.

    Returns:
        (evidence [Q, C], supported [Q, C] bool); evidence is 0 where not supported.
    """
    kernel = np.exp(beta * (sims - 1.0))
    if exclude_self:
        np.fill_diagonal(kernel, 0.0)
    onehot = np.zeros((len(labels), n_classes))
    onehot[np.arange(len(labels)), labels] = 1.0
    counts = np.broadcast_to(onehot.sum(axis=0), (sims.shape[0], n_classes)).copy()
    if exclude_self:
        counts[np.arange(len(labels)), labels] -= 1.0
    supported = counts > 0
    mass = kernel @ onehot
    density = np.where(supported, np.log(np.maximum(mass, 1e-300) / np.maximum(counts, 1.0)), 0.0)
    n_supported = np.maximum(supported.sum(axis=1, keepdims=True), 1)
    centre = density.sum(axis=1, keepdims=True) / n_supported
    return np.where(supported, density - centre, 0.0), supported


@dataclass(frozen=True)
class FewShotHead:
    """Support features of one dataset and the blend chosen for them."""

    features: np.ndarray  # [S, D] unit L2
    labels: np.ndarray  # [S]
    n_classes: int
    beta: float
    weight: float
    loo_accuracy: float
    zero_shot_loo_accuracy: float

    def scores(self, zero_shot: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Blended scores [Q, C] from zero-shot log scores [Q, C] and query features [Q, D]."""
        if self.weight == 0.0 or len(features) == 0:
            return zero_shot
        evidence, _ = class_evidence(features @ self.features.T, self.labels, self.n_classes, self.beta)
        return zero_shot + self.weight * evidence


def _loo_metrics(scores: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    accuracy = float((scores.argmax(axis=1) == labels).mean())
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    nll = float((log_norm - shifted[np.arange(len(labels)), labels]).mean())
    return accuracy, nll


def fit_few_shot(
    support_zero_shot: np.ndarray, support_features: np.ndarray, labels: np.ndarray, n_classes: int,
    grid: Sequence[float] = WEIGHT_GRID,
) -> FewShotHead:
    """Choose the blending weight by leave-one-out on the support set.

    Args:
        support_zero_shot: zero-shot log scores of the support photos [S, C].
        support_features: their kNN features [S, D].
        labels: their class indices [S].
    """
    labels = np.asarray(labels, dtype=np.int64)
    beta = choose_beta(support_features)
    evidence, _ = class_evidence(support_features @ support_features.T, labels, n_classes, beta, exclude_self=True)
    table = [(w, *_loo_metrics(support_zero_shot + w * evidence, labels)) for w in grid]
    weight, accuracy, _ = max(table, key=lambda row: (row[1], -row[2]))
    logger.info(
        "few-shot: %d support photos in %d classes, beta %.2f, weight %.3g (leave-one-out accuracy %.3f, "
        "zero-shot %.3f)", len(labels), len(set(labels.tolist())), beta, weight, accuracy, table[0][1],
    )
    return FewShotHead(support_features, labels, n_classes, beta, weight, accuracy, table[0][1])


# ---- the support folder --------------------------------------------------------------------


def read_support_dir(support_dir: Path, datasets: Sequence[Dataset]) -> Dict[str, List[Tuple[Path, int]]]:
    """SUPPORT_DIR/<dataset>/<class_index>/* -> {dataset: [(photo, class index)]}.

    Any subset of classes may be present. Unknown dataset folders are skipped with a warning; a
    support photo whose stem is also an image of the dataset being predicted is warned about.

    Raises:
        InputDataError: SUPPORT_DIR is missing, or a class folder is not a valid class index.
    """
    support_dir = Path(support_dir)
    if not support_dir.is_dir():
        raise InputDataError(f"support dir {support_dir} does not exist or is not a directory")
    by_name = {d.name: d for d in datasets}
    if len(datasets) == 1 and not (support_dir / datasets[0].name).is_dir():
        folders = {datasets[0].name: support_dir}  # SUPPORT_DIR may be the one dataset's folder
    else:
        folders = {p.name: p for p in support_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    support: Dict[str, List[Tuple[Path, int]]] = {}
    for name, folder in sorted(folders.items()):
        if name not in by_name:
            logger.warning("support folder %s matches no dataset of the data dir; skipped", folder)
            continue
        n_classes = len(by_name[name].classes)
        stems = {p.stem for p in by_name[name].images}
        photos = []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not class_dir.name.isdigit() or int(class_dir.name) >= n_classes:
                raise InputDataError(
                    f"support folder {class_dir}: the name must be a class index 0..{n_classes - 1} of {name}"
                )
            for path in list_images(class_dir):
                if path.stem in stems:
                    logger.warning("support photo %s is also an image of %s being predicted", path, name)
                photos.append((path, int(class_dir.name)))
        if photos:
            support[name] = photos
    return support


def summarize_support(photos: List[Tuple[Path, int]]) -> str:
    counts = np.bincount([c for _, c in photos])
    shots = counts[counts > 0]
    return f"{len(photos)} photos, {len(shots)} classes, {int(shots.min())}-{int(shots.max())} per class"


def few_shot_scores(
    head: Optional[FewShotHead], posteriors: np.ndarray, features: np.ndarray, alpha: float
) -> np.ndarray:
    """Final scores of a dataset's images: zero-shot (with the prior correction), plus the support blend."""
    zero_shot = log_scores(posteriors, alpha)
    return zero_shot if head is None else head.scores(zero_shot, features)
