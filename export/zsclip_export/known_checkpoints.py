"""Known Russian-capable checkpoints for `zsclip-export --source` (`zsclip-export --list`).

Sizes are the ONNX files the export writes: measured on full-size random-init exports for the sentence-transformers
and open_clip rows, else estimated from the architecture's parameter counts (FP32: 4 bytes per parameter; INT8: the
weight MatMul/Gemm matrices, and the text tower's embedding tables, at 1 byte, the rest FP32), which is within 0.5 MB
of the measured HF-CLIP and DistilBERT towers (open_clip's image tower INT8 came out 111.9 MB, not 91: its
nn.MultiheadAttention in-projection does not quantize like HF's separate q/k/v Linear layers).
Times: `zsclip-bench` on random-init exports of the architecture (1137 images projected, INT8 variant, threads 1 / 2)
on a 2-core machine shared with other jobs (see export/README-hf.md); "—" where the architecture was not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class KnownCheckpoint:
    hub_id: str
    family: str
    image_size: int
    fp32_mb: Tuple[float, float]  # image, text
    int8_mb: Tuple[float, float]
    architecture: str
    image_source: Optional[str] = None
    note: str = ""


# architecture -> projected seconds for 1137 images (INT8; 1 thread, 2 threads), from zsclip-bench (README-hf.md).
# CLIP-text rows: the 2026-11-30 runs; the two multilingual rows: 2026-12-03 under load average 8-10 on 2 cores
# (the same B/32 image tower took 58 ms/image there against 14.6 ms on the quieter 11-30 run), so compare only within a run.
MEASURED_1137_S = {
    "ViT-B/32@224 + CLIP text": (20.6, 28.3),
    "ViT-B/32@224 + DistilBERT-multilingual": (80.7, 151.8),
    "ViT-B/32@224 (open_clip) + XLM-R base": (89.8, 141.4),
    "ViT-L/14@224 + CLIP text": (401.0, 470.9),
    "ViT-L/14@336 + CLIP text": (1055.8, 546.7),
}

KNOWN_CHECKPOINTS = (
    KnownCheckpoint("ai-forever/ruclip-vit-base-patch32-224", "ruclip", 224, (335.1, 242.0), (91.0, 60.7),
                    "ViT-B/32@224 + CLIP text"),
    KnownCheckpoint("ai-forever/ruclip-vit-base-patch32-384", "ruclip", 384, (335.4, 242.0), (91.3, 60.7),
                    "ViT-B/32@384 + CLIP text"),
    KnownCheckpoint("ai-forever/ruclip-vit-base-patch16-224", "ruclip", 224, (328.8, 242.0), (84.7, 60.7),
                    "ViT-B/16@224 + CLIP text"),
    KnownCheckpoint("ai-forever/ruclip-vit-base-patch16-384", "ruclip", 384, (329.9, 242.0), (85.8, 60.7),
                    "ViT-B/16@384 + CLIP text"),
    KnownCheckpoint("ai-forever/ruclip-vit-large-patch14-224", "ruclip", 224, (1159.5, 471.7), (293.3, 118.6),
                    "ViT-L/14@224 + CLIP text"),
    KnownCheckpoint("ai-forever/ruclip-vit-large-patch14-336", "ruclip", 336, (1160.8, 471.7), (294.5, 118.6),
                    "ViT-L/14@336 + CLIP text"),
    KnownCheckpoint("sentence-transformers/clip-ViT-B-32-multilingual-v1", "sentence-transformers", 224, (334.9, 515.4),
                    (91.3, 129.2), "ViT-B/32@224 + DistilBERT-multilingual", image_source="sentence-transformers/clip-ViT-B-32"),
    KnownCheckpoint("M-CLIP/XLM-Roberta-Large-Vit-B-32", "mclip", 224, (335.1, 2137.8), (91.0, 535.4),
                    "ViT-B/32@224 + XLM-R large", image_source="openai/clip-vit-base-patch32",
                    note="FP32 text tower > 2 GiB: beyond one ONNX protobuf file; untested"),
    KnownCheckpoint("M-CLIP/XLM-Roberta-Large-Vit-L-14", "mclip", 224, (1159.5, 2139.8), (293.3, 535.9),
                    "ViT-L/14@224 + XLM-R large", image_source="openai/clip-vit-large-patch14",
                    note="FP32 text tower > 2 GiB: beyond one ONNX protobuf file; untested"),
    KnownCheckpoint("M-CLIP/LABSE-Vit-L-14", "mclip", 224, (1159.5, 1798.7), (293.3, 450.1),
                    "ViT-L/14@224 + LaBSE", image_source="openai/clip-vit-large-patch14"),
    KnownCheckpoint("laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k", "open-clip", 224, (335.2, 1061.3),
                    (111.9, 266.1), "ViT-B/32@224 (open_clip) + XLM-R base",
                    note="hf_model_name xlm-roberta-base: its config and tokenizer are fetched from the hub"),
    KnownCheckpoint("google/siglip-base-patch16-256-multilingual", "siglip", 256, (354.5, 1059.3), (91.3, 265.2),
                    "SigLIP B/16@256 + multilingual text"),
)


def format_known_checkpoints() -> str:
    """The table `zsclip-export --list` prints (markdown)."""
    lines = ["| hub id | family | --image-source | image px | FP32 MB image/text | INT8 MB image/text | architecture | "
             "1137 images s (INT8, 1/2 threads) |",
             "|---|---|---|---|---|---|---|---|"]
    for item in KNOWN_CHECKPOINTS:
        one, two = MEASURED_1137_S.get(item.architecture, (None, None))
        timing = f"{one:.0f} / {two:.0f}" if one is not None and two is not None else "—"
        note = f" ({item.note})" if item.note else ""
        lines.append(f"| {item.hub_id} | {item.family} | {item.image_source or ''} | {item.image_size} | "
                     f"{item.fp32_mb[0]:.0f} / {item.fp32_mb[1]:.0f} | {item.int8_mb[0]:.0f} / {item.int8_mb[1]:.0f} | "
                     f"{item.architecture}{note} | {timing} |")
    return "\n".join(lines)
