"""`zsclip-embed`: image and class-name embeddings of a data dir, saved to one `.npz`, resumable.

The file (`np.load(path)`, no pickle) holds::

    image_embeds      float32 [N, D]  L2-normalised image embeddings (one row per decoded image)
    image_embeds_l1   float32 [N, D]  only for models with embedding.norm "l1": the L1-normalised
                                      embeddings the model scores with (concept distributions)
    dataset, filename, stem           str [N]  where each row comes from
    failed_dataset, failed_filename, failed_reason   str [F]  undecodable images
    class_embeds      float32 [M, D]  class-name embeddings in the model's norm (as scored), all datasets
    class_dataset, class_name         str [M]
    class_index       int64 [M]
    meta              str: JSON with model_id, variant, manifest and format

Images are encoded with the same decode path and batches as `zsclip-predict`, so
`decisions_from_embeddings` reproduces its zero-shot OUT.json. A run writes finished chunks to
`OUT.partial/`; re-running the same command resumes from them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from zsclip.atomic import atomic_open
from zsclip.classifier import ZeroShotModel, normalize_rows
from zsclip.datadir import Dataset, find_datasets
from zsclip.errors import ConfigError, InputDataError
from zsclip.fewshot import knn_features
from zsclip.manifest import manifest_from_dict, manifest_to_dict
from zsclip.paths import default_model_dir
from zsclip.predict import Predictions, check_out_path, decide, decoded_batches
from zsclip.session import SessionConfig
from zsclip.workers import check_worker_counts, decode_pool

logger = logging.getLogger(__name__)

FORMAT = "zsclip-embeddings/1"


@dataclass(frozen=True)
class EmbedConfig:
    """Everything one `zsclip-embed` run needs."""

    data_dir: Path
    out_path: Path
    model_dir: Path = field(default_factory=default_model_dir)
    variant: Optional[str] = None
    threads: int = 0
    batch_size: int = 32
    decode_workers: int = 0  # 0: one per CPU
    strict: bool = False
    chunk_images: int = 512  # images per resumable chunk
    exact: bool = False  # preprocess with every shortcut off (`PreprocessConfig.exact`)

    def __post_init__(self) -> None:
        for name in ("batch_size", "chunk_images"):
            if getattr(self, name) < 1:
                raise ConfigError.for_field(name, f"must be >= 1, got {getattr(self, name)}")
        check_worker_counts(self.threads, self.decode_workers)


@dataclass(frozen=True)
class Embeddings:
    """The contents of an embeddings file (see the module docstring)."""

    image_embeds: np.ndarray
    scoring_embeds: np.ndarray  # the model's norm; the same array as image_embeds for L2 models
    dataset: np.ndarray
    filename: np.ndarray
    stem: np.ndarray
    failed_dataset: np.ndarray
    failed_filename: np.ndarray
    failed_reason: np.ndarray
    class_embeds: np.ndarray
    class_dataset: np.ndarray
    class_index: np.ndarray
    class_name: np.ndarray
    meta: Dict

    def rows(self, dataset: str) -> np.ndarray:
        """Row indices of one dataset's decoded images, in file order."""
        return np.flatnonzero(self.dataset == dataset)

    def classes(self, dataset: str) -> Tuple[np.ndarray, Tuple[str, ...]]:
        """(class embeddings [C, D], class names) of one dataset, in class-index order."""
        rows = np.flatnonzero(self.class_dataset == dataset)
        rows = rows[np.argsort(self.class_index[rows], kind="stable")]
        return self.class_embeds[rows], tuple(str(n) for n in self.class_name[rows])

    def dataset_names(self) -> List[str]:
        return sorted(set(self.class_dataset.tolist()))


def _strings(values: List[str]) -> np.ndarray:
    return np.asarray(values, dtype=np.str_) if values else np.zeros(0, dtype="<U1")


def save_embeddings(path: Path, emb: Embeddings) -> None:
    """Write an embeddings file atomically (a crash leaves the old file or none)."""
    path = Path(path)
    arrays = {
        "image_embeds": emb.image_embeds, "dataset": emb.dataset, "filename": emb.filename, "stem": emb.stem,
        "failed_dataset": emb.failed_dataset, "failed_filename": emb.failed_filename, "failed_reason": emb.failed_reason,
        "class_embeds": emb.class_embeds, "class_dataset": emb.class_dataset, "class_index": emb.class_index,
        "class_name": emb.class_name, "meta": np.asarray(json.dumps(emb.meta, ensure_ascii=False)),
    }
    if emb.meta["norm"] != "l2":
        arrays[f"image_embeds_{emb.meta['norm']}"] = emb.scoring_embeds
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool


def load_embeddings(path: Path) -> Embeddings:
    """Read a file written by `zsclip-embed`.

    Raises:
        InputDataError: missing, unreadable or not an embeddings file.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as exc:
        raise InputDataError(f"{path}: not a zsclip-embed file ({exc}); re-run zsclip-embed") from None
    if meta.get("format") != FORMAT:
        raise InputDataError(f"{path}: format {meta.get('format')!r} is not {FORMAT}; re-run zsclip-embed")
    scoring = arrays.pop(f"image_embeds_{meta['norm']}", arrays["image_embeds"])
    return Embeddings(scoring_embeds=scoring, meta=meta, **arrays)


def decisions_from_embeddings(
    emb: Embeddings, prior_correction: Optional[float] = None, spread: bool = True
) -> Predictions:
    """The zero-shot OUT.json `zsclip-predict` writes (same `spread` default), recomputed from saved
    embeddings (no ONNX run)."""
    manifest = manifest_from_dict(emb.meta["manifest"])
    alpha = manifest.embedding.prior_correction if prior_correction is None else prior_correction
    scorer = ZeroShotModel.__new__(ZeroShotModel)  # scoring needs only the manifest, not the towers
    scorer.manifest = manifest
    out: Predictions = {}
    for name in emb.dataset_names():
        rows = emb.rows(name)
        class_embeds, _ = emb.classes(name)
        embeds = emb.scoring_embeds[rows]
        posteriors = [scorer.posteriors(embeds, class_embeds)] if len(rows) else []
        features = [knn_features(embeds, manifest.embedding.norm)] if len(rows) else []
        decided = decide(posteriors, list(range(len(rows))), alpha, features, spread=spread)
        labels = {int(i): c for i, c in decided.items()}
        files = [(str(f), lab) for f, lab in zip(emb.filename[rows], (labels[i] for i in range(len(rows))))]
        failed = [str(f) for d, f in zip(emb.failed_dataset, emb.failed_filename) if d == name]
        fallback = int(np.bincount(list(labels.values()), minlength=1).argmax()) if labels else 0
        files += [(f, fallback) for f in failed]
        # zsclip-predict keys by stem in sorted file order: on a shared stem the later file wins
        out[name] = {Path(f).stem: lab for f, lab in sorted(files)}
    return out


# ---- resumable encoding --------------------------------------------------------------------


def _partial_dir(out_path: Path) -> Path:
    return Path(out_path).with_name(Path(out_path).name + ".partial")


def _run_identity(model: ZeroShotModel, cfg: EmbedConfig) -> Dict:
    variant = model.variant
    return {
        "format": FORMAT, "model_id": model.manifest.model_id, "variant": model.variant_name,
        "image_sha256": model.manifest.files.get(variant.image_file, ""), "batch_size": cfg.batch_size,
        "data_dir": str(Path(cfg.data_dir).resolve()),
        **({"exact": True} if model.manifest.preprocess.exact else {}),
    }


def open_partial(cfg: EmbedConfig, identity: Dict) -> Tuple[Path, List[Dict[str, np.ndarray]]]:
    """The chunk folder of this run and the chunks already written there.

    Raises:
        InputDataError: the folder belongs to another model, variant or data dir.
    """
    folder = _partial_dir(cfg.out_path)
    meta_path = folder / "run.json"
    if folder.is_dir() and meta_path.is_file():
        previous = json.loads(meta_path.read_text(encoding="utf-8"))
        if previous != identity:
            raise InputDataError(
                f"{folder} holds an unfinished run with another model, variant, batch size or data dir; "
                f"delete it to start over, or repeat that run's options to resume it"
            )
    else:
        folder.mkdir(exist_ok=True)
        meta_path.write_text(json.dumps(identity, ensure_ascii=False), encoding="utf-8")
    chunks = []
    for path in sorted(folder.glob("chunk-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            chunks.append({key: data[key] for key in data.files})
    if chunks:
        logger.info("resuming from %d chunk(s) in %s", len(chunks), folder)
    return folder, chunks


class ChunkWriter:
    """Buffers encoded rows and writes them as numbered chunk files, each atomically."""

    def __init__(self, folder: Path, first_index: int, every: int, done: Dict[Tuple[str, str], object]) -> None:
        self.folder, self.index, self.every, self.done = folder, first_index, every, done
        self.rows: List[Tuple[str, str, np.ndarray]] = []
        self.failed: List[Tuple[str, str, str]] = []

    def add(self, dataset: str, file: str, embed: np.ndarray) -> None:
        self.rows.append((dataset, file, embed))
        if len(self.rows) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.rows and not self.failed:
            return
        dim = self.rows[0][2].shape[0] if self.rows else 0
        chunk = {
            "dataset": _strings([r[0] for r in self.rows]), "filename": _strings([r[1] for r in self.rows]),
            "embeds": np.stack([r[2] for r in self.rows]) if self.rows else np.zeros((0, dim), np.float32),
            "failed_dataset": _strings([f[0] for f in self.failed]),
            "failed_filename": _strings([f[1] for f in self.failed]),
            "failed_reason": _strings([f[2] for f in self.failed]),
        }
        tmp = self.folder / f".chunk-{self.index:05d}.tmp"
        with open(tmp, "wb") as handle:
            np.savez(handle, **chunk)  # type: ignore[arg-type]
        os.replace(tmp, self.folder / f"chunk-{self.index:05d}.npz")
        self.done.update(_done_keys([chunk]))
        self.index += 1
        self.rows, self.failed = [], []


def _done_keys(chunks: List[Dict[str, np.ndarray]]) -> Dict[Tuple[str, str], object]:
    done: Dict[Tuple[str, str], object] = {}
    for chunk in chunks:
        for d, f, e in zip(chunk["dataset"], chunk["filename"], chunk["embeds"]):
            done[(str(d), str(f))] = e
        for d, f, r in zip(chunk["failed_dataset"], chunk["failed_filename"], chunk["failed_reason"]):
            done[(str(d), str(f))] = str(r)
    return done


def encode_dataset(
    model: ZeroShotModel, dataset: Dataset, cfg: EmbedConfig, pool: ThreadPoolExecutor, writer: ChunkWriter,
    done: Dict[Tuple[str, str], object], on_progress: Optional[Callable[[int], None]] = None,
) -> None:
    """Encode the images of `dataset` not in `done`, handing each row (or failure) to `writer`."""
    todo = [p for p in dataset.images if (dataset.name, p.name) not in done]
    if on_progress and len(todo) < len(dataset.images):
        on_progress(len(dataset.images) - len(todo))
    for indices, pixels, failures in decoded_batches(todo, model.manifest.preprocess, cfg.batch_size, pool):
        for index, reason in failures:
            if cfg.strict:
                raise InputDataError(f"{todo[index]}: not a decodable image ({reason})")
            logger.warning("%s: not a decodable image (%s); recorded as failed", todo[index], reason)
            writer.failed.append((dataset.name, todo[index].name, reason))
        if len(indices):
            for index, embed in zip(indices, model.encode_images(pixels)):
                writer.add(dataset.name, todo[index].name, embed)
        if on_progress:
            on_progress(len(indices) + len(failures))
    writer.flush()


def assemble(
    model: ZeroShotModel, datasets: List[Dataset], done: Dict[Tuple[str, str], object], identity: Dict
) -> Embeddings:
    """All rows in data-dir order (datasets sorted, files sorted), plus the class embeddings."""
    rows: List[np.ndarray] = []
    names, files, failed = [], [], []
    class_rows, class_names, class_sets, class_index = [], [], [], []
    for dataset in datasets:
        for path in dataset.images:
            value = done[(dataset.name, path.name)]
            if isinstance(value, np.ndarray):
                rows.append(value)
                names.append(dataset.name)
                files.append(path.name)
            else:
                failed.append((dataset.name, path.name, str(value)))
        class_rows.append(model.build_class_embeddings(dataset.classes))
        class_names += list(dataset.classes)
        class_sets += [dataset.name] * len(dataset.classes)
        class_index += list(range(len(dataset.classes)))
    norm = model.manifest.embedding.norm
    dim = model.manifest.embedding.dim
    scoring = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    meta = dict(identity, norm=norm, manifest=manifest_to_dict(model.manifest))
    return Embeddings(
        image_embeds=normalize_rows(scoring, "l2") if norm != "l2" else scoring, scoring_embeds=scoring,
        dataset=_strings(names), filename=_strings(files), stem=_strings([Path(f).stem for f in files]),
        failed_dataset=_strings([f[0] for f in failed]), failed_filename=_strings([f[1] for f in failed]),
        failed_reason=_strings([f[2] for f in failed]),
        class_embeds=np.concatenate(class_rows).astype(np.float32), class_dataset=_strings(class_sets),
        class_index=np.asarray(class_index, dtype=np.int64), class_name=_strings(class_names), meta=meta,
    )


def embed_dir(
    cfg: EmbedConfig,
    model: Optional[ZeroShotModel] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[[int], None]] = None,
) -> Embeddings:
    """Embed every image and class name of `cfg.data_dir`; write `cfg.out_path`; resume a killed run.

    Raises:
        InputDataError: bad data dir, classes.json or output path, a foreign partial run, or an
            undecodable image with `strict`.
        ModelDirError: bad model directory.
    """
    check_out_path(Path(cfg.out_path))
    datasets = find_datasets(cfg.data_dir)
    if model is None:
        model = ZeroShotModel(cfg.model_dir, cfg.variant, SessionConfig(threads=cfg.threads))
    if cfg.exact:
        model.use_exact_preprocessing()
    logger.info("model %s", model.describe())
    identity = _run_identity(model, cfg)
    folder, chunks = open_partial(cfg, identity)
    done = _done_keys(chunks)
    if on_start:
        on_start(sum(len(d.images) for d in datasets))
    writer = ChunkWriter(folder, len(chunks), cfg.chunk_images, done)
    with decode_pool(cfg.decode_workers) as pool:
        for dataset in datasets:
            encode_dataset(model, dataset, cfg, pool, writer, done, on_progress)
    embeddings = assemble(model, datasets, done, identity)
    save_embeddings(Path(cfg.out_path), embeddings)
    shutil.rmtree(folder)
    return embeddings
