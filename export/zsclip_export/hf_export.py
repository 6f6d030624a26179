"""`zsclip-export --source`: a CLIP-family checkpoint -> a zsclip model directory (FP32, gated INT8)."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from zsclip.atomic import atomic_dir
from zsclip.errors import ConfigError
from zsclip.manifest import IOConfig, ModelManifest, Variant, write_manifest

from zsclip_export import ExportMismatchError, QuantizationMismatchError
from zsclip_export.families import FAMILIES, SourceModel, check_tokenizer_identity, load_source
from zsclip_export.onnx_io import OPSET, export_image_tower, max_relative_error, run_onnx

logger = logging.getLogger(__name__)
IO = IOConfig()
IMAGE_OPS = ("MatMul", "Gemm")
TEXT_OPS = ("MatMul", "Gemm", "Gather")


@dataclass(frozen=True)
class HfExportConfig:
    """One `zsclip-export --source` run.

    force: write the INT8 variant even when the fidelity gate fails.
    allow_mismatch: keep FP32 graphs / tokenizers that differ from the source.
    """

    source: str
    out_dir: Path
    family: str = "auto"
    quantize: bool = False
    calibration_images: Optional[Path] = None
    max_images: int = 64
    min_agreement: float = 0.99
    prompts: Tuple[str, ...] = ("{}",)
    tolerance: float = 1e-4
    force: bool = False
    allow_mismatch: bool = False
    model_id: Optional[str] = None
    image_source: Optional[str] = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError.for_field("family", f"{self.family!r} is not one of {FAMILIES}")
        if not 0.0 < self.min_agreement <= 1.0:
            raise ConfigError.for_field("min_agreement", f"must be in (0, 1], got {self.min_agreement}")
        if self.max_images < 1:
            raise ConfigError.for_field("max_images", f"must be >= 1, got {self.max_images}")
        if self.tolerance <= 0:
            raise ConfigError.for_field("tolerance", f"must be > 0, got {self.tolerance}")
        if not self.prompts or any("{}" not in p for p in self.prompts):
            raise ConfigError.for_field("prompts", "(every template) must contain '{}'")
        if self.calibration_images is not None and not Path(self.calibration_images).is_dir():
            raise ConfigError.for_field("calibration_images", f"{self.calibration_images} is not a folder")


@dataclass
class HfExportReport:
    out_dir: Path
    seconds: float = 0.0
    sizes_mb: Dict[str, float] = field(default_factory=dict)
    checks: Dict[str, Any] = field(default_factory=dict)


def export_text_graph(module: torch.nn.Module, path: Path, ids: torch.Tensor, mask: torch.Tensor) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (ids, mask), str(path), input_names=[IO.text_input_ids, IO.text_attention_mask],
            output_names=[IO.text_output],
            dynamic_axes={IO.text_input_ids: {0: "batch", 1: "sequence"}, IO.text_attention_mask: {0: "batch", 1: "sequence"},
                          IO.text_output: {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )


def text_inputs(model: SourceModel, texts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Token inputs exactly as the runtime builds them (right-padded with pad_id to the longest text)."""
    from zsclip.text import tokenize

    ids, mask = tokenize(model.tokenizer, texts, model.text)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def compare(module: torch.nn.Module, path: Path, inputs: Dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        reference = module(*inputs.values()).numpy()
    return max_relative_error(reference, run_onnx(path, {k: v.numpy() for k, v in inputs.items()}))


def export_towers(model: SourceModel, work: Path, cfg: HfExportConfig, step: Callable[[str], None]) -> Dict[str, Any]:
    """FP32 ONNX of both towers, each checked against PyTorch at two batch sizes.

    Raises:
        ExportMismatchError: max relative error above cfg.tolerance (unless allow_mismatch).
    """
    from zsclip_export.hf_preprocess import RUSSIAN_SENTENCES

    size = model.preprocess.image_size
    export_image_tower(model.image_tower, work / "image.onnx", size, IO)
    sentences = [s for s in RUSSIAN_SENTENCES if s]
    export_text_graph(model.text_tower, work / "text.onnx", *text_inputs(model, sentences[:2]))
    generator = torch.Generator().manual_seed(0)
    errors = {
        "image": max(compare(model.image_tower, work / "image.onnx", {IO.image_input: torch.randn(n, 3, size, size, generator=generator)})
                     for n in (1, 3)),
        "text": max(compare(model.text_tower, work / "text.onnx", dict(zip((IO.text_input_ids, IO.text_attention_mask),
                                                                        text_inputs(model, batch))))
                    for batch in (sentences[:1], sentences)),
    }
    step(f"FP32 ONNX vs PyTorch, max relative error (batch 1 and {len(sentences)}): "
         f"image {errors['image']:.2e}, text {errors['text']:.2e} (tolerance {cfg.tolerance:.0e})")
    for tower, error in errors.items():
        if error > cfg.tolerance and not cfg.allow_mismatch:
            raise ExportMismatchError(
                f"{tower}.onnx differs from PyTorch by {error:.2e} (> {cfg.tolerance:.0e}); pass --allow-mismatch to keep it")
    return errors


def check_tokenizer(model: SourceModel, cfg: HfExportConfig, step: Callable[[str], None]) -> Dict[str, Any]:
    from zsclip_export.hf_preprocess import RUSSIAN_SENTENCES

    result = check_tokenizer_identity(model, list(RUSSIAN_SENTENCES))
    step(f"tokenizer.json vs source tokenizer on {result['sentences']} Russian sentences: {result['mismatches']} mismatches")
    if result["mismatches"] and not cfg.allow_mismatch:
        first = result["first"][0]
        raise ExportMismatchError(
            f"tokenizer.json tokenizes {first['text']!r} as {first['exported']} but the source gives {first['source']}; "
            "pass --allow-mismatch to keep it")
    return result


def quantize_and_gate(model: SourceModel, work: Path, cfg: HfExportConfig, step: Callable[[str], None]) -> Variant:
    """INT8 towers + the fidelity gate.

    Raises:
        QuantizationMismatchError: top-1 agreement below cfg.min_agreement (unless cfg.force).
    """
    from zsclip_export.hf_gate import format_gate, gate_images, measure_gate
    from zsclip_export.hf_quantize import quantize_tower

    step("INT8: dynamic quantization of weight MatMul/Gemm (text: + embedding tables); patch Conv stays FP32")
    image_info = quantize_tower(work / "image.onnx", work / "image.int8.onnx", IMAGE_OPS)
    text_info = quantize_tower(work / "text.onnx", work / "text.int8.onnx", TEXT_OPS)
    pixels = gate_images(cfg.calibration_images, cfg.max_images, model.preprocess)
    files = {k: {"image": work / f"image{s}.onnx", "text": work / f"text{s}.onnx"} for k, s in (("fp32", ""), ("int8", ".int8"))}
    gate = measure_gate(files, pixels, model.tokenizer, model.text, IO)
    step(f"INT8 gate: {format_gate(gate)}")
    towers = choose_int8_towers(gate, cfg.min_agreement, cfg.force)
    if not towers:
        raise QuantizationMismatchError(
            f"INT8 refused: zero-shot top-1 agreement with FP32 is {gate['top1_agreement']:.4f} with both towers INT8, "
            f"{gate['top1_agreement_image_int8_only']:.4f} image-only, {gate['top1_agreement_text_int8_only']:.4f} text-only "
            f"(< {cfg.min_agreement}) on {gate['n_images']} images; nothing was written. Re-run with --force to write it "
            "anyway, or without --quantize for FP32 only")
    agreement = AGREEMENT_KEY[towers]
    step(f"INT8 variant: {towers} tower(s) INT8, top-1 agreement {gate[agreement]:.4f} (min {cfg.min_agreement})"
         + (" [--force]" if gate[agreement] < cfg.min_agreement else ""))
    for tower in ("image", "text"):
        if towers not in ("both", tower):
            (work / f"{tower}.int8.onnx").unlink()
    info = {"image": image_info if towers in ("both", "image") else {"method": "none (FP32): failed the gate alone"},
            "text": text_info if towers in ("both", "text") else {"method": "none (FP32): failed the gate alone"},
            "int8_towers": towers, "gate": {**gate, "min_agreement": cfg.min_agreement, "forced": bool(cfg.force)}}
    return Variant("image.int8.onnx" if towers in ("both", "image") else "image.onnx",
                   "text.int8.onnx" if towers in ("both", "text") else "text.onnx", info)


AGREEMENT_KEY = {"both": "top1_agreement", "image": "top1_agreement_image_int8_only", "text": "top1_agreement_text_int8_only"}


def choose_int8_towers(gate: Dict[str, Any], min_agreement: float, force: bool) -> Optional[str]:
    """Per-tower decision by measurement: both towers INT8 if that passes, else the one INT8 tower that
    passes alone (the better one), else None. `force` takes both regardless."""
    if force or gate["top1_agreement"] >= min_agreement:
        return "both"
    alone = [(gate[AGREEMENT_KEY[t]], t) for t in ("image", "text") if gate[AGREEMENT_KEY[t]] >= min_agreement]
    return max(alone)[1] if alone else None


def versions() -> Dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("zsclip", "torch", "transformers", "tokenizers", "onnx", "onnxruntime"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def default_model_id(source: str, family: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", source.rstrip("/").split("/")[-1]).strip("-") or "model"
    return f"{family}-{stem}"


def build_into(work: Path, cfg: HfExportConfig, step: Callable[[str], None]) -> HfExportReport:
    report = HfExportReport(work)
    model = load_source(cfg.source, cfg.family, cfg.image_source)
    model.text = dataclasses.replace(model.text, prompts=tuple(cfg.prompts))
    step(f"{cfg.source}: family {model.family}, image {model.preprocess.image_size}px "
         f"({model.preprocess.resize_mode}, {model.preprocess.interpolation}), embedding dim {model.embedding.dim}")
    report.checks["tokenizer"] = check_tokenizer(model, cfg, step)
    model.tokenizer.save(str(work / "tokenizer.json"))
    report.checks["fp32_vs_torch"] = export_towers(model, work, cfg, step)
    variants = {"fp32": Variant("image.onnx", "text.onnx", {"method": "none"})}
    if cfg.quantize:
        variants["int8"] = quantize_and_gate(model, work, cfg, step)
        report.checks["int8"] = dict(variants["int8"].quantization)
    provenance = {"source": cfg.source, "family": model.family, **model.details,
                  **({"image_source": cfg.image_source} if cfg.image_source else {}),
                  "checks": report.checks, "exporter": versions()}
    manifest = ModelManifest(
        model_id=cfg.model_id or default_model_id(cfg.source, model.family), family=model.family,
        embedding=model.embedding, preprocess=model.preprocess, text=model.text, variants=variants, io=IO,
        provenance=provenance,
    )
    write_manifest(work, manifest)
    report.sizes_mb = {p.name: round(p.stat().st_size / 2**20, 2) for p in sorted(work.iterdir())}
    return report


def export_hf_model(cfg: HfExportConfig, on_step: Optional[Callable[[str], None]] = None) -> HfExportReport:
    """Export `cfg.source` into the model directory `cfg.out_dir` (built in a temporary folder, renamed into place).

    Raises:
        ConfigError: unreadable source, unsupported family or preprocessing, no gate images.
        InputDataError: unusable `out_dir` (a file, a folder that is not a model dir, read-only).
        ExportMismatchError: ONNX or tokenizer differs from the source (unless allow_mismatch).
        QuantizationMismatchError: INT8 fails the gate (unless force); nothing is written.
    """
    from zsclip_export.default_model import check_out_dir

    started = time.perf_counter()
    step = on_step or (lambda message: logger.info("%s", message))
    out_dir = Path(cfg.out_dir).expanduser()
    check_out_dir(out_dir)
    with atomic_dir(out_dir) as work:
        torch.manual_seed(0)
        np.random.seed(0)
        report = build_into(work, cfg, step)
    report.out_dir = out_dir
    report.seconds = time.perf_counter() - started
    return report
