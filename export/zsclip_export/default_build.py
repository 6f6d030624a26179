"""The steps of building the default model into a work folder (called by `export_default_model`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import numpy as np
import torch
from zsclip.atomic import atomic_dir
from zsclip.manifest import IOConfig, ModelManifest, PreprocessConfig, Variant, write_manifest

from zsclip_export.default_model import (
    GLOSSARY_FILE,
    ExportConfig,
    ExportReport,
    default_manifest,
    finish_manifest,
    list_images,
    load_pixels,
    sample_photos,
)
from zsclip_export.onnx_io import check_against_torch, export_image_tower, export_text_tower, run_onnx
from zsclip_export.progress import StageClock
from zsclip_export.quantize import (
    conv_and_gemm_edges,
    cosine_stats,
    quantize_dynamic_file,
    quantize_static_qdq,
    top1_agreement,
)

logger = logging.getLogger(__name__)
IO = IOConfig()
PQ_NOTE = "navec product-quantisation codes (uint8, 100 groups x 256 codewords), decoded in the graph"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_into(work: Path, cfg: ExportConfig, clock: StageClock) -> ExportReport:
    from zsclip_export.image_tower import ConceptImageTower, load_backbone

    report = ExportReport(work)
    torch.manual_seed(0)
    with clock.stage("image tower", f"image tower: EfficientNet-{cfg.backbone} with ImageNet weights from pip, to ONNX"):
        backbone, spec = load_backbone(cfg.backbone)
        image_tower = ConceptImageTower(backbone).eval()
        export_image_tower(image_tower, work / "image.onnx", spec.image_size, IO)
        report.checks["image_fp32_vs_torch"] = max(
            check_against_torch("image.onnx", image_tower, work / "image.onnx",
                                [torch.randn(n, 3, spec.image_size, spec.image_size)], [IO.image_input], 1e-4,
                                cfg.allow_mismatch)
            for n in (1, 3)
        )
        prototypes = image_tower.prototypes.numpy().copy()
        del image_tower, backbone
    align_report, phrases = build_text_tower(work, cfg, prototypes, clock)
    report.checks["text_alignment"] = align_report
    with clock.stage("glossary"):
        glossary_note = write_glossary(work, cfg, phrases, clock.say)
    preprocess = default_manifest(cfg, spec.image_size, {"fp32": Variant("image.onnx", "text.onnx")}, {}).preprocess
    variants = {"fp32": Variant("image.onnx", "text.onnx", {"method": "none", "text_vectors": PQ_NOTE})}
    if cfg.quantize:
        variants["int8"] = quantize_towers(work, cfg, phrases, preprocess, report, clock)
    provenance = {
        "image_weights": f"{spec.weights_package.replace('_', '-')}=={package_version(spec.weights_package.replace('_', '-'))}",
        "image_architecture": f"efficientnet-lite-pytorch=={package_version('efficientnet-lite-pytorch')}",
        "backbone": cfg.backbone,
        "word_vectors": f"navec_news_v1_1B_250K_300d_100q (natasha=={package_version('natasha')})",
        "word_frequencies": f"wordfreq=={package_version('wordfreq')}",
        "label_table_sha256": label_table_sha(),
        "glossary": glossary_note,
        "alignment": align_report,
        "exporter": f"zsclip-export {package_version('zsclip')}, torch {torch.__version__}",
    }
    with clock.stage("manifest"):
        finish_manifest(work, default_manifest(cfg, spec.image_size, variants, provenance))
    report.sizes_mb = {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(work.iterdir())}
    return report


def write_glossary(work: Path, cfg: ExportConfig, phrases: list, step: Callable[[str], None]) -> str:
    """`glossary.json`: Wiktionary definitions of the words the label table does not teach."""
    if not cfg.glossary_senses:
        return "none"
    from zsclip_train.glossary import GlossaryConfig

    from zsclip_export.build_cache import cached_glossary

    data = cached_glossary(phrases, GlossaryConfig(senses=cfg.glossary_senses), cfg.cache_dir)
    (work / GLOSSARY_FILE).write_bytes(data)
    glossary = json.loads(data)
    step(f"glossary: {len(glossary)} Wiktionary entries (up to {cfg.glossary_senses} senses each, "
         f"label-table names left out), weight {cfg.gloss_weight}")
    return (f"wiki-ru-wordnet=={package_version('wiki-ru-wordnet')} (Wiktionary, CC BY-SA): {len(glossary)} entries, "
            f"{cfg.glossary_senses} senses")


def label_table_sha() -> str:
    from zsclip_train.labels import default_table_path

    return hashlib.sha256(default_table_path().read_bytes()).hexdigest()


def build_text_tower(work: Path, cfg: ExportConfig, prototypes: np.ndarray, clock: StageClock) -> Tuple[Dict, list]:
    from zsclip_train.align import AlignConfig, encode_phrases, final_fit, reset_head, validation_fit
    from zsclip_train.labels import build_phrases, default_table_path, load_label_table
    from zsclip_train.text_tower import NavecTextTower
    from zsclip_train.vocab import VocabConfig, build_tokenizer, find_navec_file

    from zsclip_export import build_cache

    navec_path, vocab_cfg = find_navec_file(), VocabConfig(size=cfg.vocab_size)
    with clock.stage("vocabulary", "text tower: navec vocabulary (with inflected forms; cached in "
                     f"{cfg.cache_dir or 'no cache'}) and WordPiece tokenizer"):
        parts = build_cache.vocabulary_parts(navec_path, vocab_cfg)
        vocab, codebook = build_cache.cached_vocabulary(navec_path, vocab_cfg, cfg.cache_dir, parts)
        tokenizer = build_tokenizer(vocab)
        tokenizer.save(str(work / "tokenizer.json"))
    rows = load_label_table()
    tower = NavecTextTower(vocab.vectors, vocab.token_row, vocab.token_weight, prototypes, vocab.token_is_piece, vocab.token_length)
    align = AlignConfig(epochs=cfg.align_epochs)
    if cfg.validate:
        with clock.stage("align: held-out fit", f"text tower: held-out synonym fit ({cfg.align_epochs} epochs, --validate)"):
            validation = validation_fit(tower, tokenizer, rows, align, clock.loop("held-out fit", cfg.align_epochs))
        clock.say("held-out synonyms: " + fmt(validation))
    key = build_cache.head_key(parts, prototypes, default_table_path(), align)
    stored = None if cfg.refit_head else build_cache.find_head(key, cfg.cache_dir)
    if stored is not None:
        with clock.stage("align: stored head", f"text tower: the aligned head these inputs give, from {stored} "
                         "(--refit-head fits it again)"):
            reset_head(tower, align.seed)
            final_loss, n_phrases = build_cache.load_head(tower, stored)
            tower.eval()
    else:
        with clock.stage("align: fit", f"text tower: aligning the head with the image prototypes ({cfg.align_epochs} epochs)"):
            final_loss, n_phrases = final_fit(tower, tokenizer, rows, align, clock.loop("alignment fit", cfg.align_epochs))
            build_cache.store_head(key, build_cache.head_to_bytes(tower, final_loss, n_phrases), cfg.cache_dir)
    align_report: Dict[str, Any] = {"final_loss": round(final_loss, 4), "phrases": n_phrases}
    if cfg.validate:
        align_report.update({k: round(v, 4) for k, v in validation.items()})
    phrases = [p.text for p in build_phrases(rows)]
    with clock.stage("text tower to ONNX"):
        ids, mask = encode_phrases(tokenizer, phrases[:512], 16)
        tower.product_quantized_storage(codebook)
        del vocab
        export_text_tower(tower, work / "text.onnx", IO)
        check_against_torch("text.onnx", tower, work / "text.onnx", [ids, mask],
                            [IO.text_input_ids, IO.text_attention_mask], 1e-3, cfg.allow_mismatch)
    return align_report, phrases


def quantize_towers(work: Path, cfg: ExportConfig, phrases: list, preprocess: PreprocessConfig,
                    report: ExportReport, clock: StageClock) -> Variant:
    """INT8 text tower (dynamic) and, if it passes the gate, INT8 image tower (static QDQ)."""

    from zsclip_export import QuantizationMismatchError

    q = cfg.quantization
    info: Dict[str, Any] = {}
    step = clock.say
    with clock.stage("INT8 text tower",
                     "INT8 text tower: dynamic quantization of MatMul/Gemm (the word vectors stay navec's 8-bit codes)"):
        quantize_dynamic_file(work / "text.onnx", work / "text.int8.onnx", ["MatMul", "Gemm"])
        tokenizer_ids, mask = encode_phrases_from(work, phrases)
        feeds = {IO.text_input_ids: tokenizer_ids, IO.text_attention_mask: mask}
        reference, candidate = run_onnx(work / "text.onnx", feeds), run_onnx(work / "text.int8.onnx", feeds)
        text_gate = {"top1_agreement": top1_agreement(reference, candidate), **cosine_stats(reference, candidate),
                     "n_phrases": len(phrases)}
    step(f"INT8 text gate on {len(phrases)} label phrases: {fmt(text_gate)}")
    if text_gate["top1_agreement"] < q.min_agreement and not cfg.allow_mismatch:
        raise QuantizationMismatchError(
            f"text.int8.onnx: top-1 agreement {text_gate['top1_agreement']:.3f} < {q.min_agreement}; "
            "pass --allow-mismatch to keep it")
    info["text"] = {"method": "dynamic-int8 (MatMul, Gemm)", "text_vectors": PQ_NOTE, "gate": text_gate}
    with clock.stage("INT8 image tower"):
        info["image"] = quantize_image(work, cfg, preprocess, step)
    report.checks["int8"] = info
    image_file = "image.int8.onnx" if info["image"]["kept"] else "image.onnx"
    return Variant(image_file, "text.int8.onnx", info)


def encode_phrases_from(work: Path, phrases: list) -> Tuple[np.ndarray, np.ndarray]:
    from zsclip.manifest import TextConfig
    from zsclip.text import load_tokenizer, tokenize

    return tokenize(load_tokenizer(work / "tokenizer.json"), phrases, TextConfig(context_length=16))


def regate_image_int8(manifest: ModelManifest, cfg: ExportConfig, clock: StageClock) -> ExportReport:
    """`--quantize --check-images` on an up-to-date model: gate a fresh INT8 image tower on the check images; if it
    passes, the int8 variant takes it (the model dir is replaced atomically, its other files copied unchanged),
    otherwise the model dir is left as it was."""
    out_dir = Path(cfg.out_dir)
    report = ExportReport(out_dir)
    clock.say(f"{out_dir} is up to date; running the INT8 image-tower gate on {cfg.check_images}")
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.gate-") as scratch:
        work = Path(scratch)
        shutil.copyfile(out_dir / manifest.variants["fp32"].image_file, work / "image.onnx")
        with clock.stage("INT8 image tower"):
            image = quantize_image(work, cfg, manifest.preprocess, clock.say)
        report.regated = bool(image["kept"])
        report.checks["int8"] = {"image": image}
        if not image["kept"]:
            clock.say(f"{out_dir} is left as it was")
            return report
        with clock.stage("refresh int8 variant"), atomic_dir(out_dir) as fresh:
            for path in out_dir.iterdir():
                if path.is_file() and path.name != "image.int8.onnx":
                    shutil.copy2(path, fresh / path.name)
            shutil.move(str(work / "image.int8.onnx"), fresh / "image.int8.onnx")
            old = manifest.variants["int8"]
            variants = {**manifest.variants,
                        "int8": Variant("image.int8.onnx", old.text_file, {**old.quantization, "image": image})}
            write_manifest(fresh, dataclasses.replace(manifest, variants=variants))
    report.sizes_mb = {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(out_dir.iterdir())}
    return report


def quantize_image(work: Path, cfg: ExportConfig, preprocess: PreprocessConfig, step: Callable[[str], None]) -> Dict[str, Any]:
    q = cfg.quantization
    if q.image == "none":
        return {"method": "none (FP32)", "kept": False}
    if cfg.check_images is None:
        step("INT8 image tower: no --check-images, so it cannot be gated; the image tower stays FP32")
        return {"method": "none (FP32): no check images", "kept": False}
    check = load_pixels(list_images(cfg.check_images, cfg.max_check_images), preprocess)
    target = work / "image.int8.onnx"
    if q.image == "dynamic":
        quantize_dynamic_file(work / "image.onnx", target, ["Conv", "MatMul", "Gemm"])
        method = "dynamic-int8"
    else:
        calibration_dir = cfg.calibration_images or sample_photos()
        if calibration_dir is None:
            return {"method": "none (FP32): no calibration images (install scikit-image or pass --calib-images)",
                    "kept": False}
        calibration = load_pixels(list_images(calibration_dir, q.calibration_images), preprocess)
        keep = list(q.keep_fp32_nodes) or conv_and_gemm_edges(work / "image.onnx")
        step(f"INT8 image tower: static QDQ per-channel, {len(calibration)} calibration images, FP32 kept: {keep}")
        quantize_static_qdq(work / "image.onnx", target, IO.image_input, calibration, keep)
        method = f"static-qdq-u8s8-per-channel (fp32: {', '.join(keep)})"
    reference = np.concatenate([run_onnx(work / "image.onnx", {IO.image_input: check[i:i + 32]})
                                for i in range(0, len(check), 32)])
    candidate = np.concatenate([run_onnx(target, {IO.image_input: check[i:i + 32]})
                                for i in range(0, len(check), 32)])
    gate = {"top1_agreement": top1_agreement(reference, candidate), **cosine_stats(reference, candidate),
            "n_images": int(len(check))}
    kept = gate["top1_agreement"] >= q.min_agreement
    step(f"INT8 image gate on {len(check)} images: {fmt(gate)} -> "
         + ("kept" if kept else f"below {q.min_agreement}, the int8 variant keeps the FP32 image tower"))
    if not kept:
        target.unlink()
    return {"method": method if kept else f"none (FP32): {method} failed the gate", "kept": kept, "gate": gate}


def fmt(values: Dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
