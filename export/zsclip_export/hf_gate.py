"""The fidelity gate of an HF-family export: INT8 vs FP32 embeddings and zero-shot top-1 agreement."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from zsclip.manifest import IOConfig, PreprocessConfig, TextConfig

from zsclip_export.quantize import cosine_stats, top1_agreement

logger = logging.getLogger(__name__)

# A generic Russian class list for the zero-shot agreement check (everyday objects, animals, scenes).
GATE_CLASSES_RU = (
    "кошка", "собака", "птица", "лошадь", "корова", "рыба", "бабочка", "медведь", "слон", "жираф",
    "автомобиль", "грузовик", "автобус", "велосипед", "мотоцикл", "самолёт", "корабль", "поезд", "ракета",
    "дом", "мост", "церковь", "город ночью", "лес", "горы", "море", "пляж", "поле", "небо с облаками",
    "человек", "ребёнок", "космонавт", "футболист", "портрет женщины",
    "чашка кофе", "тарелка супа", "пицца", "торт", "яблоко", "банан", "цветок", "дерево",
    "стул", "стол", "диван", "телефон", "ноутбук", "часы", "книга", "гитара", "мяч",
    "монеты", "текст", "рисунок", "карта", "кирпичная стена", "снег", "камни", "звёзды",
)


def open_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed_images(path: Path, pixels: np.ndarray, io: IOConfig, batch: int = 16) -> np.ndarray:
    session = open_session(path)
    parts = [session.run([io.image_output], {io.image_input: pixels[i : i + batch]})[0] for i in range(0, len(pixels), batch)]
    return np.concatenate(parts).astype(np.float32)


def embed_texts(path: Path, tokenizer: Any, texts: Sequence[str], text: TextConfig, io: IOConfig, batch: int = 64) -> np.ndarray:
    from zsclip.text import tokenize

    session = open_session(path)
    parts = []
    for start in range(0, len(texts), batch):
        ids, mask = tokenize(tokenizer, texts[start : start + batch], text)
        parts.append(session.run([io.text_output], {io.text_input_ids: ids, io.text_attention_mask: mask})[0])
    return np.concatenate(parts).astype(np.float32)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def class_embeddings(text_embeds: np.ndarray, n_classes: int, rule: str = "unit_mean") -> np.ndarray:
    """Per class: the prompt embeddings averaged per `TextConfig.prompt_average` (as the runtime does)."""
    from zsclip.classifier import average_prompts

    return average_prompts(text_embeds, n_classes, rule)


def measure_gate(
    files: Dict[str, Dict[str, Path]], pixels: np.ndarray, tokenizer: Any, text: TextConfig, io: IOConfig,
    classes: Sequence[str] = GATE_CLASSES_RU,
) -> Dict[str, Any]:
    """INT8 vs FP32 on `pixels` and the class prompts.

    files: {"fp32": {"image": path, "text": path}, "int8": {...}}.
    Returns cosine stats per tower and the zero-shot top-1 agreement of the INT8 pair (and of each
    INT8 tower alone) with the FP32 pair.
    """
    from zsclip.text import expand_prompts

    prompts = [p for name in classes for p in expand_prompts(name, text.prompts, text.label_cleaning)]
    image = {k: embed_images(v["image"], pixels, io) for k, v in files.items()}
    texts = {k: embed_texts(v["text"], tokenizer, prompts, text, io) for k, v in files.items()}
    cls = {k: class_embeddings(v, len(classes), text.prompt_average) for k, v in texts.items()}
    logits = {(i, t): unit(image[i]) @ cls[t].T for i in image for t in cls}
    reference = logits[("fp32", "fp32")]
    return {
        "image": cosine_stats(image["fp32"], image["int8"]),
        "text": cosine_stats(texts["fp32"], texts["int8"]),
        "top1_agreement": top1_agreement(reference, logits[("int8", "int8")]),
        "top1_agreement_image_int8_only": top1_agreement(reference, logits[("int8", "fp32")]),
        "top1_agreement_text_int8_only": top1_agreement(reference, logits[("fp32", "int8")]),
        "n_images": int(len(pixels)),
        "n_classes": len(classes),
        "n_prompts": len(prompts),
    }


def gate_images(folder: Optional[Path], limit: int, cfg: PreprocessConfig) -> np.ndarray:
    """Preprocessed calibration images: `folder`, else scikit-image's sample photos.

    Raises:
        ConfigError: no folder given and scikit-image missing, or no decodable image.
    """
    from zsclip.errors import ConfigError

    from zsclip_export.default_model import list_images, load_pixels, sample_photos

    chosen = folder or sample_photos()
    if chosen is None:
        raise ConfigError("the INT8 gate needs images: pass --calib-images DIR (or pip install scikit-image)")
    paths: List[Path] = list_images(Path(chosen), limit)
    if not paths:
        raise ConfigError(f"no images in {chosen} for the INT8 gate; pass --calib-images DIR")
    return load_pixels(paths, cfg)


def format_gate(gate: Dict[str, Any]) -> str:
    image, text = gate["image"], gate["text"]
    return (
        f"image cos mean {image['mean_cosine']:.5f} min {image['min_cosine']:.5f}; "
        f"text cos mean {text['mean_cosine']:.5f} min {text['min_cosine']:.5f}; "
        f"top-1 agreement {gate['top1_agreement']:.4f} (image-only int8 {gate['top1_agreement_image_int8_only']:.4f}, "
        f"text-only int8 {gate['top1_agreement_text_int8_only']:.4f}) on {gate['n_images']} images x {gate['n_classes']} classes"
    )
