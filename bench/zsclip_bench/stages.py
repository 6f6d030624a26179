"""One measured configuration (model, variant, threads), run stage by stage in this process.

The pass mirrors `zsclip.predict.predict_dir` but runs its stages one after another so each can
be timed: decode -> preprocess -> image tower -> scoring (per dataset, with the prior correction and
label spreading) -> JSON. `predict_dir` overlaps decoding
with the image tower on a thread pool; on the contest's single core that overlap buys nothing,
so the sequential sum is the honest 1-thread number (and an upper bound with more cores).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from zsclip.classifier import ZeroShotModel
from zsclip.datadir import Dataset, find_datasets
from zsclip.fewshot import knn_features
from zsclip.predict import decide
from zsclip.preprocess import ImageDecodeError, load_image, preprocess_image
from zsclip.session import SessionConfig

from zsclip_bench.job import TORCH, Job

STAGES = ("decode", "preprocess", "image", "score", "json")
COLD_STAGES = ("load", "text")

Encoder = Callable[[np.ndarray], np.ndarray]


class StageClock:
    """Accumulates wall time per stage."""

    def __init__(self, stages: Sequence[str] = STAGES) -> None:
        self.totals: Dict[str, float] = dict.fromkeys(stages, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - started


def select_images(datasets: Sequence[Dataset], limit: int) -> List[Tuple[int, Path]]:
    """(dataset index, path) of every image, or of `limit` evenly spaced ones (deterministic)."""
    items = [(d, path) for d, dataset in enumerate(datasets) for path in dataset.images]
    if limit and limit < len(items):
        picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
        items = [items[i] for i in picks]
    return items


def batches_per_dataset(items: Sequence[Tuple[int, Path]], size: int) -> Iterator[Tuple[int, List[Path]]]:
    """Batches never span datasets (each has its own class embeddings), as in predict_dir."""
    by_dataset: Dict[int, List[Path]] = {}
    for d, path in items:
        by_dataset.setdefault(d, []).append(path)
    for d, paths in by_dataset.items():
        for start in range(0, len(paths), size):
            yield d, paths[start : start + size]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: VmHWM from /proc/self/status, because `getrusage(RUSAGE_SELF).ru_maxrss` survives
    execve, so a worker started from a big parent would report the parent's peak. Elsewhere
    ru_maxrss (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass  # not Linux: fall through to getrusage
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def make_encoder(model: ZeroShotModel, variant: str, threads: int) -> Encoder:
    """The image tower as a function; opens its session now so that `load` pays for it."""
    if variant == TORCH:
        from zsclip_bench.torch_baseline import build_torch_encoder

        return build_torch_encoder(model.manifest, threads)
    _ = model.image_session
    return model.encode_images


@dataclass
class DatasetScores:
    """What the timed pass keeps of one dataset until its decision: stems, posteriors, kNN features."""

    stems: List[str] = field(default_factory=list)
    posteriors: List[np.ndarray] = field(default_factory=list)
    features: List[np.ndarray] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)


def run_batch(
    model: ZeroShotModel, encoder: Encoder, class_embeds: np.ndarray, paths: Sequence[Path], clock: StageClock,
    kept: DatasetScores,
) -> int:
    """Encode and score one batch into `kept`, charging each stage to `clock`. Returns its failures."""
    cfg = model.manifest.preprocess
    arrays, stems, failed = [], [], []
    for path in paths:
        with clock.stage("decode"):
            try:
                image = load_image(path, cfg.image_size, draft=cfg.draft_factor, rgb_conversion=cfg.rgb_conversion)
            except ImageDecodeError:
                image = None
        if image is None:  # predict_dir would guess the commonest class; -1 counts it wrong in top-1
            failed.append(path.stem)
            continue
        with clock.stage("preprocess"):
            arrays.append(preprocess_image(image, cfg))
        stems.append(path.stem)
    kept.failed.extend(failed)
    if not arrays:
        return len(failed)
    with clock.stage("preprocess"):
        pixels = np.stack(arrays)
    with clock.stage("image"):
        embeds = encoder(pixels)
    with clock.stage("score"):
        kept.posteriors.append(model.posteriors(embeds, class_embeds))
        kept.features.append(knn_features(embeds, model.manifest.embedding.norm))
        kept.stems.extend(stems)
    return len(failed)


def decide_dataset(model: ZeroShotModel, kept: DatasetScores) -> Dict[str, int]:
    """predict_dir's decision for one dataset (prior correction, label spreading); failures get -1."""
    alpha = model.manifest.embedding.prior_correction
    decided = decide(kept.posteriors, list(range(len(kept.stems))), alpha, kept.features, spread=True)
    return {**dict.fromkeys(kept.failed, -1), **{kept.stems[i]: c for i, c in decided.items()}}


def run_job(job: Job, out_dir: Optional[Path] = None) -> Dict:
    """Cold start, warm-up (not counted), then one timed pass over the images. Returns the raw result."""
    cold = StageClock(COLD_STAGES)
    with cold.stage("load"):
        text_variant = "fp32" if job.variant == TORCH else job.variant  # torch baseline: ONNX fp32 text tower
        model = ZeroShotModel(Path(job.model_dir), text_variant, SessionConfig(threads=job.threads))
        _ = model.text_session
        encoder = make_encoder(model, job.variant, job.threads)
    datasets = find_datasets(Path(job.data_dir))
    with cold.stage("text"):
        class_embeds = [model.build_class_embeddings(d.classes) for d in datasets]
    items = select_images(datasets, job.limit)
    warm, warmup_images = StageClock(), 0
    for count, (d, paths) in enumerate(batches_per_dataset(items, job.batch_size)):
        if count >= job.warmup_batches:
            break
        run_batch(model, encoder, class_embeds[d], paths, warm, DatasetScores())
        warmup_images += len(paths)
    clock, batch_ms, failed = StageClock(), [], 0
    predictions: Dict[str, Dict[str, int]] = {d.name: {} for d in datasets}
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        from zsclip.predict import write_json_atomic

        started = time.perf_counter()
        kept = [DatasetScores() for _ in datasets]
        for d, paths in batches_per_dataset(items, job.batch_size):
            batch_started = time.perf_counter()
            failed += run_batch(model, encoder, class_embeds[d], paths, clock, kept[d])
            batch_ms.append((time.perf_counter() - batch_started) * 1000 / len(paths))
        with clock.stage("score"):
            for d, dataset in enumerate(datasets):
                predictions[dataset.name] = decide_dataset(model, kept[d])
        with clock.stage("json"):
            write_json_atomic(Path(tmp) / "out.json", predictions)
        total = time.perf_counter() - started
    result = {
        "cold": cold.totals,
        "stages": clock.totals,
        "total_s": total,
        "n_images": len(items),
        "n_failed": failed,
        "warmup_images": warmup_images,
        # per batch: its wall time / its images; p95 shows batches with 12 MP photos
        "batch_ms_per_image_p50": float(np.percentile(batch_ms, 50)) if batch_ms else 0.0,
        "batch_ms_per_image_p95": float(np.percentile(batch_ms, 95)) if batch_ms else 0.0,
        "peak_rss_mb": peak_rss_mb(),
    }
    if job.return_predictions:
        result["predictions"] = predictions
    return result
