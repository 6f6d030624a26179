"""A two-tower composite: any Hugging Face text encoder (+ a linear projection) with any vision tower that has a
pooled output (CLIP vision, SigLIP vision, ViT, ...).

Source layout (`save_two_tower` writes it; so does `zsclip-train fit` for runs with hf: towers)::

    two_tower.json          {"format": "zsclip-hf-two-tower", "format_version": 1,
                             "text_model": "text", "vision_model": "vision",   (sub-folders or hub ids)
                             "text_pooling": "mean" | "cls" | "pooler",
                             "image_pooling": "pooler" | "cls",   (optional, default pooler; non-CLIP vision)
                             "logit_scale": 100.0, "logit_bias": 0.0, "context_length": 64}
    text/                   AutoModel + AutoTokenizer (save_pretrained; a `tokenizers`-backed tokenizer)
    vision/                 CLIPModel, CLIPVisionModel(WithProjection) or any AutoModel vision model with a pooled
                            output + preprocessor_config.json
    projection.safetensors  text_projection.weight [D, H] (+ .bias [D]); image_projection.* when the
                            vision model has no projection of its own
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from zsclip.errors import ConfigError
from zsclip.manifest import EmbeddingConfig, TextConfig

from zsclip_export.families import TWO_TOWER_FILE, TWO_TOWER_FORMAT, SourceModel, read_json, resolve_source
from zsclip_export.hf_preprocess import (
    backend_tokenizer,
    finish_tokenizer,
    image_processor_settings,
    preprocess_from_processor,
    reference_ids_of,
)

logger = logging.getLogger(__name__)
POOLINGS = ("mean", "cls", "pooler")
IMAGE_POOLINGS = ("pooler", "cls")


def linear_from(state: Dict[str, torch.Tensor], prefix: str) -> Optional[torch.nn.Linear]:
    weight = state.get(f"{prefix}.weight")
    if weight is None:
        return None
    bias = state.get(f"{prefix}.bias")
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class CompositeImageTower(torch.nn.Module):
    """A CLIP vision tower -> its own projection's output (image_embeds) or pooled CLS -> the composite's projection."""

    def __init__(self, vision: Any, projection: Optional[torch.nn.Module]) -> None:
        super().__init__()
        self.vision = vision
        self.projection = projection if projection is not None else torch.nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.vision(pixel_values=pixel_values)
        pooled = out if isinstance(out, torch.Tensor) else out.pooler_output
        return self.projection(pooled)


class CompositeTextTower(torch.nn.Module):
    """Any encoder: masked mean / first token / pooler output -> linear projection."""

    def __init__(self, encoder: Any, projection: torch.nn.Module, pooling: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            pooled = out.pooler_output
        elif self.pooling == "cls":
            pooled = out.last_hidden_state[:, 0]
        else:
            weights = attention_mask.to(out.last_hidden_state.dtype).unsqueeze(-1)
            pooled = (out.last_hidden_state * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.projection(pooled)


class PooledVision(torch.nn.Module):
    """Any transformers vision model -> its pooled output or its first (CLS) token state."""

    def __init__(self, model: Any, pooling: str) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        return out.last_hidden_state[:, 0] if self.pooling == "cls" else out.pooler_output


def load_vision(folder: Path, pooling: str = "pooler") -> Tuple[Any, bool, str]:
    """(vision module, whether it has its own projection, model type) of a vision checkpoint."""
    from transformers import AutoConfig, AutoModel, CLIPModel, CLIPVisionModel, CLIPVisionModelWithProjection

    from zsclip_export.clip_hf import ClipImageTower

    config = AutoConfig.from_pretrained(str(folder))
    if config.model_type == "clip":
        return ClipImageTower(CLIPModel.from_pretrained(str(folder), attn_implementation="eager")).eval(), True, "clip"
    if config.model_type == "clip_vision_model":
        if "CLIPVisionModelWithProjection" in (config.architectures or []):
            model = CLIPVisionModelWithProjection.from_pretrained(str(folder), attn_implementation="eager")
            return ClipImageTower(model).eval(), True, config.model_type
        vision = CLIPVisionModel.from_pretrained(str(folder), attn_implementation="eager").eval()
        return (PooledVision(vision, pooling) if pooling == "cls" else vision), False, config.model_type
    try:
        model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: vision model_type {config.model_type!r} does not load ({exc})") from None
    return PooledVision(model, pooling).eval(), False, config.model_type


def load_two_tower(folder: Path) -> SourceModel:
    """A `two_tower.json` composite folder -> SourceModel.

    Raises:
        ConfigError: bad two_tower.json, missing projection, unsupported pooling or tokenizer.
    """
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    spec = read_json(folder / TWO_TOWER_FILE)
    if spec.get("format") != TWO_TOWER_FORMAT or int(spec.get("format_version", 0)) != 1:
        raise ConfigError(f"{folder}/{TWO_TOWER_FILE}: format must be {TWO_TOWER_FORMAT!r} version 1")
    pooling = spec.get("text_pooling", "mean")
    if pooling not in POOLINGS:
        raise ConfigError(f"{folder}/{TWO_TOWER_FILE}: text_pooling {pooling!r} is not one of {POOLINGS}")
    image_pooling = spec.get("image_pooling", "pooler")
    if image_pooling not in IMAGE_POOLINGS:
        raise ConfigError(f"{folder}/{TWO_TOWER_FILE}: image_pooling {image_pooling!r} is not one of {IMAGE_POOLINGS}")
    text_dir = locate(folder, spec["text_model"])
    vision_dir = locate(folder, spec["vision_model"])
    try:
        projections = load_file(str(folder / "projection.safetensors"))
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"{folder}/projection.safetensors unreadable ({exc})") from None
    text_projection = linear_from(projections, "text_projection")
    if text_projection is None:
        raise ConfigError(f"{folder}/projection.safetensors has no text_projection.weight")
    encoder = AutoModel.from_pretrained(str(text_dir)).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(str(text_dir))
    vision, has_projection, vision_type = load_vision(vision_dir, image_pooling)
    image_projection = None if has_projection else linear_from(projections, "image_projection")
    if not has_projection and image_projection is None:
        logger.warning("%s has no visual projection and projection.safetensors no image_projection: "
                       "image embeddings are the pooled CLS state", vision_dir)
    context = int(spec.get("context_length") or min(getattr(encoder.config, "max_position_embeddings", 512), 512))
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    dim = int(text_projection.out_features)
    return SourceModel(
        family="two-tower",
        source=str(folder),
        image_tower=CompositeImageTower(vision, image_projection).eval(),
        text_tower=CompositeTextTower(encoder, text_projection, pooling).eval(),
        tokenizer=finish_tokenizer(backend_tokenizer(hf_tokenizer, str(text_dir)), context),
        reference_ids=reference_ids_of(hf_tokenizer, context),
        preprocess=preprocess_from_processor(image_processor_settings(vision_dir), f"{vision_dir}/preprocessor_config.json"),
        text=TextConfig(context_length=context, pad_id=int(pad_id), unk_id=hf_tokenizer.unk_token_id),
        embedding=EmbeddingConfig(dim=dim, norm="l2", logit_scale=float(spec.get("logit_scale", 100.0)),
                                  logit_bias=float(spec.get("logit_bias", 0.0))),
        details={
            "tokenizer": f"{type(hf_tokenizer).__name__} (tokenizers backend)",
            "text_model": f"{spec['text_model']} ({encoder.config.model_type})",
            "vision_model": f"{spec['vision_model']} ({vision_type})",
            "text_pooling": f"{pooling} -> text_projection",
            "image_pooling": ("CLS state" if image_pooling == "cls" else "pooled output") + " -> "
            + ("visual_projection" if has_projection else "image_projection"),
            "architecture": "two-tower composite",
        },
    )


def locate(folder: Path, reference: str) -> Path:
    local = folder / reference
    return local if local.is_dir() else resolve_source(reference)


def save_two_tower(out: Path, text_model: Any, tokenizer: Any, vision_model: Any, image_processor: Any,
                   text_projection: torch.nn.Linear, pooling: str = "mean", logit_scale: float = 100.0,
                   logit_bias: float = 0.0, context_length: Optional[int] = None,
                   image_projection: Optional[torch.nn.Linear] = None, image_pooling: str = "pooler") -> Path:
    """Write a composite source folder (e.g. after LiT-style training of the projection)."""
    from safetensors.torch import save_file

    out = Path(out)
    text_model.save_pretrained(out / "text")
    tokenizer.save_pretrained(out / "text")
    vision_model.save_pretrained(out / "vision")
    image_processor.save_pretrained(out / "vision")
    tensors = {f"text_projection.{k}": v.detach().contiguous() for k, v in text_projection.state_dict().items()}
    if image_projection is not None:
        tensors.update({f"image_projection.{k}": v.detach().contiguous() for k, v in image_projection.state_dict().items()})
    save_file(tensors, str(out / "projection.safetensors"))
    spec = {"format": TWO_TOWER_FORMAT, "format_version": 1, "text_model": "text", "vision_model": "vision",
            "text_pooling": pooling, "logit_scale": logit_scale, "logit_bias": logit_bias}
    if image_pooling != "pooler":
        spec["image_pooling"] = image_pooling
    if context_length:
        spec["context_length"] = context_length
    (out / TWO_TOWER_FILE).write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return out
