"""Hugging Face `CLIPModel` checkpoints -> exportable towers, tokenizer and manifest sections."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from zsclip.manifest import EmbeddingConfig, TextConfig

from zsclip_export.families import SourceModel
from zsclip_export.hf_preprocess import (
    backend_tokenizer,
    finish_tokenizer,
    image_processor_settings,
    preprocess_from_processor,
    reference_ids_of,
)

logger = logging.getLogger(__name__)


class ClipImageTower(torch.nn.Module):
    """pixel_values -> visual_projection(pooled CLS state)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = model.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)


class ClipTextTower(torch.nn.Module):
    """(input_ids, attention_mask) -> text_projection(state at the EOS token, as CLIPTextTransformer pools)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.text_model = model.text_model
        self.text_projection = model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.text_projection(out.pooler_output)


def load_clip_model(folder: Path) -> Any:
    """A CLIPModel whose every weight comes from the checkpoint.

    Raises:
        ConfigError: config.json is not a CLIP config, or any weight is missing, unexpected or of another shape.
    """
    from transformers import CLIPModel

    from zsclip_export.strict_load import check_model_type, from_pretrained_strict

    check_model_type("clip", folder, ("clip",))
    return from_pretrained_strict(CLIPModel, folder, "clip", attn_implementation="eager")


def load_clip(folder: Path) -> SourceModel:
    """A CLIPModel folder -> SourceModel (pooling at the EOS token as the checkpoint's config says)."""
    from transformers import AutoTokenizer

    model = load_clip_model(folder)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    text_cfg = model.config.text_config
    context = int(text_cfg.max_position_embeddings)
    tokenizer = finish_tokenizer(backend_tokenizer(hf_tokenizer, str(folder)), context)
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else int(text_cfg.eos_token_id)
    eos_id = int(text_cfg.eos_token_id)
    pooling = "argmax(input_ids) (legacy eos_token_id=2)" if eos_id == 2 else f"first token == eos_token_id {eos_id}"
    settings = image_processor_settings(folder)
    return SourceModel(
        family="clip",
        source=str(folder),
        image_tower=ClipImageTower(model).eval(),
        text_tower=ClipTextTower(model).eval(),
        tokenizer=tokenizer,
        reference_ids=reference_ids_of(hf_tokenizer, context),
        preprocess=preprocess_from_processor(settings, f"{folder}/preprocessor_config.json"),
        # the class name goes to the tokenizer unchanged: its normaliser is the family's own
        text=TextConfig(context_length=context, pad_id=int(pad_id), unk_id=hf_tokenizer.unk_token_id,
                        label_cleaning="none", prompt_average="unit_mean"),
        embedding=EmbeddingConfig(
            dim=int(model.config.projection_dim), norm="l2",
            logit_scale=float(model.logit_scale.detach().exp().clamp(max=100.0)), logit_bias=0.0,
        ),
        details={
            "tokenizer": f"{type(hf_tokenizer).__name__} (tokenizers backend, byte-level BPE)",
            "text_pooling": pooling,
            "image_pooling": "CLS token + post-layernorm + visual_projection",
            "architecture": "transformers CLIPModel",
        },
    )
