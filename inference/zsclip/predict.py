"""Predict one class per image for every dataset of a data dir and write OUT.json."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from zsclip.atomic import atomic_open
from zsclip.classifier import ZeroShotModel
from zsclip.datadir import Dataset, find_datasets
from zsclip.errors import ConfigError, InputDataError
from zsclip.fewshot import FewShotHead, few_shot_scores, fit_few_shot, knn_features, log_scores, read_support_dir
from zsclip.manifest import PreprocessConfig
from zsclip.paths import default_model_dir
from zsclip.preprocess import ImageDecodeError, load_and_preprocess
from zsclip.session import SessionConfig
from zsclip.text import clean_label
from zsclip.transduction import spread_labels
from zsclip.workers import check_worker_counts, decode_pool

logger = logging.getLogger(__name__)

Predictions = Dict[str, Dict[str, int]]


@dataclass(frozen=True)
class PredictConfig:
    """Everything one `zsclip-predict` run needs."""

    data_dir: Path
    out_path: Path
    model_dir: Path = field(default_factory=default_model_dir)
    variant: Optional[str] = None
    threads: int = 0
    batch_size: int = 32
    decode_workers: int = 0  # 0: one per CPU
    strict: bool = False
    prior_correction: Optional[float] = None  # None: the manifest's value
    support_dir: Optional[Path] = None  # few-shot photos: SUPPORT_DIR/<dataset>/<class_index>/*
    spread: bool = True  # transductive label spreading over each dataset's images (`zsclip.transduction`)
    exact: bool = False  # preprocess with every shortcut off (`PreprocessConfig.exact`)


    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError.for_field("batch_size", f"must be >= 1, got {self.batch_size}")
        check_worker_counts(self.threads, self.decode_workers)
        if self.prior_correction is not None and not 0.0 <= self.prior_correction <= 1.0:
            raise ConfigError.for_field("prior_correction", f"must be in [0, 1], got {self.prior_correction}")


@dataclass
class PredictReport:
    """What a run did: counts, failures and wall time per stage (seconds)."""

    predictions: Predictions
    n_images: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)
    timings: Dict[str, float] = field(default_factory=dict)

    def add_time(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds


def check_out_path(out_path: Path) -> None:
    """Fail before any work when OUT.json cannot be written.

    Raises:
        InputDataError: the parent is missing or not writable, or OUT is a directory.
    """
    parent = out_path.resolve().parent
    if out_path.is_dir():
        raise InputDataError(f"output path {out_path} is a directory; give a file name inside it")
    if not parent.is_dir():
        raise InputDataError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputDataError(f"output folder {parent} is not writable")
    try:  # os.access says yes to root on a read-only file system: try for real
        fd, probe = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".probe", dir=str(parent))
    except OSError as exc:
        raise InputDataError(f"output folder {parent} is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON so that a crash at any moment leaves the old file or none, never a partial one.

    File names that are not valid UTF-8 reach Python as lone surrogates; they are written as
    backslash escapes instead of failing the whole run.
    """
    with atomic_open(Path(path), "w", encoding="utf-8", errors="backslashreplace") as handle:
        json.dump(data, handle, ensure_ascii=False, sort_keys=True, indent=1)


def decoded_batches(
    paths: Sequence[Path], cfg: PreprocessConfig, batch_size: int, pool: ThreadPoolExecutor
) -> Iterator[Tuple[List[int], np.ndarray, List[Tuple[int, str]]]]:
    """Yield (indices, pixels, failures) per batch; decoding runs ahead by two batches."""

    def decode(path: Path) -> Optional[np.ndarray] | str:
        try:
            return load_and_preprocess(path, cfg)
        except ImageDecodeError as exc:
            return str(exc)

    window: List = []
    starts = list(range(0, len(paths), batch_size))
    for start in starts[:3]:
        window.append((start, [pool.submit(decode, p) for p in paths[start : start + batch_size]]))
    next_start = 3
    while window:
        start, futures = window.pop(0)
        if next_start < len(starts):
            s = starts[next_start]
            window.append((s, [pool.submit(decode, p) for p in paths[s : s + batch_size]]))
            next_start += 1
        indices, arrays, failures = [], [], []
        for offset, future in enumerate(futures):
            result = future.result()
            if isinstance(result, str):
                failures.append((start + offset, result))
            else:
                indices.append(start + offset)
                arrays.append(result)
        pixels = np.stack(arrays) if arrays else np.zeros((0, 3, cfg.image_size, cfg.image_size), np.float32)
        yield indices, pixels, failures


def predict_dataset(
    model: ZeroShotModel,
    dataset: Dataset,
    cfg: PredictConfig,
    pool: ThreadPoolExecutor,
    report: PredictReport,
    on_progress: Optional[Callable[[int], None]] = None,
    support: Optional[List[Tuple[Path, int]]] = None,
) -> Dict[str, int]:
    """Class index per image stem for one dataset. Undecodable images get the most predicted class.

    With `support` (photo, class index) pairs, scores blend zero-shot with the support photos (`zsclip.fewshot`).
    """
    started = time.perf_counter()
    check_fixed_classes(model, dataset)
    class_embeds = model.build_class_embeddings(dataset.classes)
    report.add_time("text", time.perf_counter() - started)
    alpha = cfg.prior_correction if cfg.prior_correction is not None else model.manifest.embedding.prior_correction
    head = build_few_shot_head(model, class_embeds, support, cfg, pool, alpha) if support else None
    features: List[np.ndarray] = []
    decoded: List[int] = []
    posteriors: List[np.ndarray] = []
    failed: List[int] = []
    waited = time.perf_counter()
    for indices, pixels, failures in decoded_batches(dataset.images, model.manifest.preprocess, cfg.batch_size, pool):
        now = time.perf_counter()
        report.add_time("decode_wait", now - waited)
        for index, reason in failures:
            path = dataset.images[index]
            if cfg.strict:
                raise InputDataError(f"{path}: not a decodable image ({reason})")
            logger.warning("%s: not a decodable image (%s); predicting the dataset's most common class", path, reason)
            report.failed.append((str(path), reason))
            failed.append(index)
        if len(indices):
            embeds = model.encode_images(pixels)
            posteriors.append(model.posteriors(embeds, class_embeds))
            if head is not None or cfg.spread:
                features.append(knn_features(embeds, model.manifest.embedding.norm))
            decoded.extend(indices)
        waited = time.perf_counter()
        report.add_time("image", waited - now)
        if on_progress:
            on_progress(len(indices) + len(failures))
    labels = decide(posteriors, decoded, alpha, features, head, cfg.spread)
    fallback = int(np.bincount(list(labels.values()), minlength=1).argmax()) if labels else 0
    labels.update((index, fallback) for index in failed)
    report.n_images += len(dataset.images)
    return {dataset.images[i].stem: labels[i] for i in sorted(labels)}


def check_fixed_classes(model: ZeroShotModel, dataset: Dataset) -> None:
    """A model trained for one dataset's classes (a linear probe) refuses a dataset with other classes.

    Raises:
        InputDataError: the dataset's classes differ from the model's fixed classes.
    """
    manifest = model.manifest
    fixed = manifest.fixed_classes
    if not fixed:
        return
    def key(names: Sequence[str]) -> List[str]:
        return [clean_label(n).lower().replace("ё", "е") for n in names]

    if key(fixed) != key(dataset.classes):
        raise InputDataError(
            f"model {manifest.model_id} is trained for the {len(fixed)} fixed classes {list(fixed)[:3]}...; "
            f"dataset {dataset.name} has other classes: use a zero-shot model dir"
        )


def build_few_shot_head(
    model: ZeroShotModel, class_embeds: np.ndarray, support: List[Tuple[Path, int]], cfg: PredictConfig,
    pool: ThreadPoolExecutor, alpha: float,
) -> Optional[FewShotHead]:
    """Encode the support photos (same decoding and failure rules as the images) and fit the blend.

    Raises:
        InputDataError: an undecodable support photo with `strict`.
    """
    paths = [path for path, _ in support]
    rows, posteriors, features = [], [], []
    for indices, pixels, failures in decoded_batches(paths, model.manifest.preprocess, cfg.batch_size, pool):
        for index, reason in failures:
            if cfg.strict:
                raise InputDataError(f"{paths[index]}: not a decodable support photo ({reason})")
            logger.warning("%s: not a decodable support photo (%s); skipped", paths[index], reason)
        if len(indices):
            embeds = model.encode_images(pixels)
            posteriors.append(model.posteriors(embeds, class_embeds))
            features.append(knn_features(embeds, model.manifest.embedding.norm))
            rows.extend(indices)
    if not rows:
        return None
    labels = np.array([support[i][1] for i in rows])
    zero_shot = log_scores(np.concatenate(posteriors), alpha)
    return fit_few_shot(zero_shot, np.concatenate(features), labels, len(class_embeds))


def decide(
    posteriors: List[np.ndarray], indices: List[int], alpha: float, features: Optional[List[np.ndarray]] = None,
    head: Optional[FewShotHead] = None, spread: bool = False,
) -> Dict[int, int]:
    """Image index -> class index for one dataset: zero-shot log scores after the optional prior correction,
    blended with the support photos' evidence (`head`), then spread over the dataset's own image graph
    (`spread`; `zsclip.transduction`). `features` (kNN features) are needed by `head` and `spread`."""
    if not indices:
        return {}
    probs = np.concatenate(posteriors)
    if (head is not None or spread) and not features:
        raise ValueError("few-shot blending and label spreading need the images' kNN features")
    feats = np.concatenate(features) if features else np.zeros((len(probs), 0))
    scores = few_shot_scores(head, probs, feats, alpha) if head is not None else log_scores(probs, alpha)
    if spread:
        scores = spread_labels(scores, feats)
    return dict(zip(indices, (int(i) for i in scores.argmax(axis=1))))


def predict_dir(
    cfg: PredictConfig,
    model: Optional[ZeroShotModel] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[[int], None]] = None,
) -> PredictReport:
    """Predict every image of every dataset in `cfg.data_dir` and write `cfg.out_path` atomically.

    Raises:
        InputDataError: bad data dir, classes.json or output path; an undecodable image with `strict`.
        ModelDirError: bad model directory.
    """
    started = time.perf_counter()
    check_out_path(Path(cfg.out_path))
    datasets = find_datasets(cfg.data_dir)
    if model is None:
        model = ZeroShotModel(cfg.model_dir, cfg.variant, SessionConfig(threads=cfg.threads))
    if cfg.exact:
        model.use_exact_preprocessing()
    logger.info("model %s", model.describe())
    support = read_support_dir(cfg.support_dir, datasets) if cfg.support_dir is not None else {}
    report = PredictReport(predictions={})
    report.add_time("load", time.perf_counter() - started)
    if on_start:
        on_start(sum(len(d.images) for d in datasets))
    with decode_pool(cfg.decode_workers) as pool:
        for dataset in datasets:
            report.predictions[dataset.name] = predict_dataset(
                model, dataset, cfg, pool, report, on_progress, support.get(dataset.name)
            )
    write_json_atomic(Path(cfg.out_path), report.predictions)
    report.timings["total"] = time.perf_counter() - started
    return report
