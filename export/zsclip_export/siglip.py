"""Hugging Face `SiglipModel` checkpoints -> exportable towers, tokenizer and manifest sections.

SigLIP's text tower was trained on texts padded to `max_position_embeddings` (64) with no attention
mask and pools the last position, so its embedding depends on that padding. The exported text graph
therefore re-pads whatever the runtime feeds (right-padded to the batch's longest text) to the full
context with the pad id before the transformer, and ignores the mask beyond that: the ONNX output
equals `get_text_features(tokenizer(text, padding="max_length"))`.

Scores are sigmoid(scale * cos + bias); the runtime's argmax only needs the logits, which
`EmbeddingConfig(logit_scale, logit_bias)` expresses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from zsclip.manifest import EmbeddingConfig, TextConfig

from zsclip_export.families import SourceModel
from zsclip_export.hf_preprocess import finish_tokenizer, image_processor_settings, preprocess_from_processor, reference_ids_of

logger = logging.getLogger(__name__)


class SiglipImageTower(torch.nn.Module):
    """pixel_values -> the attention-pooling head's output (SigLIP has no separate projection)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.vision_model = model.vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values).pooler_output


class SiglipTextTower(torch.nn.Module):
    """(input_ids, attention_mask) -> head(last state) of the text re-padded to the full context."""

    def __init__(self, model: Any, context_length: int, pad_id: int) -> None:
        super().__init__()
        self.text_model = model.text_model
        self.context_length = context_length
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(input_ids.dtype)
        ids = input_ids * mask + self.pad_id * (1 - mask)
        padding = torch.zeros_like(ids[:, :1]).expand(-1, self.context_length) + self.pad_id
        full = torch.cat([ids, padding], dim=1)[:, : self.context_length]
        return self.text_model(input_ids=full).pooler_output


def siglip_tokenizer(folder: Path) -> Any:
    """(transformers tokenizer, tokenizers.Tokenizer): its own backend, else a conversion of SentencePiece."""
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return hf_tokenizer, backend, f"{type(hf_tokenizer).__name__} (tokenizers backend)"
    from zsclip_export.siglip_spm import convert_siglip_tokenizer

    return hf_tokenizer, convert_siglip_tokenizer(hf_tokenizer), f"{type(hf_tokenizer).__name__} (SentencePiece, converted)"


def load_siglip(folder: Path) -> SourceModel:
    """A SiglipModel folder -> SourceModel."""
    from transformers import SiglipModel

    from zsclip_export.strict_load import check_model_type, from_pretrained_strict

    check_model_type("siglip", folder, ("siglip",))
    model = from_pretrained_strict(SiglipModel, folder, "siglip", attn_implementation="eager")
    text_cfg = model.config.text_config
    context = int(text_cfg.max_position_embeddings)
    hf_tokenizer, backend, kind = siglip_tokenizer(folder)
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else int(text_cfg.pad_token_id)
    settings = image_processor_settings(folder)
    return SourceModel(
        family="siglip",
        source=str(folder),
        image_tower=SiglipImageTower(model).eval(),
        text_tower=SiglipTextTower(model, context, int(pad_id)).eval(),
        tokenizer=finish_tokenizer(backend, context),
        reference_ids=reference_ids_of(hf_tokenizer, context),
        preprocess=preprocess_from_processor(settings, f"{folder}/preprocessor_config.json"),
        # the class name goes to the tokenizer unchanged: its normaliser is the family's own
        text=TextConfig(context_length=context, pad_id=int(pad_id), unk_id=hf_tokenizer.unk_token_id,
                        label_cleaning="none", prompt_average="unit_mean"),
        embedding=EmbeddingConfig(
            dim=int(text_cfg.projection_size if getattr(text_cfg, "projection_size", None) else text_cfg.hidden_size),
            norm="l2", logit_scale=float(model.logit_scale.detach().exp()), logit_bias=float(model.logit_bias.detach()),
        ),
        details={
            "tokenizer": kind,
            "text_pooling": f"last position after padding to {context} with pad id {pad_id} (no attention mask), then head",
            "image_pooling": "multihead attention pooling head",
            "scores": "sigmoid(logit_scale * cos + logit_bias); argmax uses the logits",
            "architecture": "transformers SiglipModel",
        },
    )
