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

import inspect
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
from zsclip_export.strict_load import first_line, from_pretrained_strict, load_state_strict

logger = logging.getLogger(__name__)
FAMILY = "two-tower"
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
    """(vision module, whether it has its own projection, model type) of a vision checkpoint, loaded strictly.

    Raises:
        ConfigError: unreadable config, weights that do not fit it, or not a vision model.
    """
    from transformers import AutoModel, CLIPModel, CLIPVisionModel, CLIPVisionModelWithProjection

    from zsclip_export.clip_hf import ClipImageTower

    config = tower_config(folder, "vision")
    where = f"{FAMILY} vision"
    if config.model_type == "clip":
        return ClipImageTower(from_pretrained_strict(CLIPModel, folder, where, attn_implementation="eager")), True, "clip"
    if config.model_type == "clip_vision_model":
        if "CLIPVisionModelWithProjection" in (config.architectures or []):
            model = from_pretrained_strict(CLIPVisionModelWithProjection, folder, where, attn_implementation="eager")
            return ClipImageTower(model).eval(), True, config.model_type
        vision = from_pretrained_strict(CLIPVisionModel, folder, where, attn_implementation="eager")
        return (PooledVision(vision, pooling) if pooling == "cls" else vision), False, config.model_type
    model = from_pretrained_strict(AutoModel, folder, where, attn_implementation="eager")
    if "pixel_values" not in forward_inputs(model):
        raise ConfigError(f"{folder}: model_type {config.model_type!r} is not a vision model (its forward takes no "
                          f"pixel_values); the {FAMILY} vision folder needs an image tower")
    return PooledVision(model, pooling).eval(), False, config.model_type


def tower_config(folder: Path, role: str) -> Any:
    """The transformers config of a tower folder.

    Raises:
        ConfigError: no or an unreadable config.json, or a model_type transformers does not know.
    """
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{folder}: not a {FAMILY} {role} tower ({first_line(exc)})") from None


def forward_inputs(model: Any) -> Tuple[str, ...]:
    return tuple(inspect.signature(model.forward).parameters)


def tower_width(config: Any, pooling: str) -> Optional[int]:
    """The width of a tower's pooled output as its config states it (None when the config does not say)."""
    if pooling == "pooler" and isinstance(getattr(config, "pooler_output_size", None), int):
        return int(config.pooler_output_size)
    width = getattr(config, "hidden_size", None)
    if isinstance(width, int):
        return width
    sizes = getattr(config, "hidden_sizes", None)
    return int(sizes[-1]) if isinstance(sizes, (list, tuple)) and sizes else None


def load_projections(path: Path, text_width: Optional[int], image_width: Optional[int], vision_dim: Optional[int],
                     has_projection: bool) -> Tuple[torch.nn.Linear, Optional[torch.nn.Linear]]:
    """(text projection, image projection or None) from projection.safetensors, refusing any missing, unexpected or
    wrong-shaped tensor: text_projection.weight [D, text width] (+ .bias [D]); image_projection.weight
    [D, image width] (+ .bias) only when the vision model has no projection of its own, where D is the vision
    projection's width (or, with neither, the pooled image width).

    Raises:
        ConfigError: unreadable file or tensors that do not fit the towers.
    """
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types (SafetensorError, OSError); all mean "unreadable"
        raise ConfigError(f"{path}: unreadable {FAMILY} projection file ({first_line(exc)})") from None
    text_weight, image_weight = state.get("text_projection.weight"), state.get("image_projection.weight")
    use_image = not has_projection and any(key.startswith("image_projection.") for key in state)
    if has_projection:
        dim = vision_dim
    elif use_image:
        dim = next((w.shape[0] for w in (text_weight, image_weight) if w is not None and w.ndim == 2), None)
    else:
        dim = image_width

    def linear(weight: Optional[torch.Tensor], prefix: str, width: Optional[int]) -> torch.nn.Linear:
        shape = tuple(weight.shape) if weight is not None and weight.ndim == 2 else (1, 1)
        return torch.nn.Linear(width or shape[1], dim or shape[0], bias=f"{prefix}.bias" in state)

    holder = torch.nn.Module()
    holder.text_projection = linear(text_weight, "text_projection", text_width)
    if use_image:
        holder.image_projection = linear(image_weight, "image_projection", image_width)
    load_state_strict(holder, state, f"{FAMILY} projection", str(path))
    return holder.text_projection, holder.image_projection if use_image else None


def load_two_tower(folder: Path) -> SourceModel:
    """A `two_tower.json` composite folder -> SourceModel.

    Raises:
        ConfigError: bad two_tower.json, missing projection, unsupported pooling or tokenizer.
    """
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    spec = read_json(folder / TWO_TOWER_FILE)
    where = f"{folder}/{TWO_TOWER_FILE}"
    if spec.get("format") != TWO_TOWER_FORMAT or spec.get("format_version") not in (1, "1"):
        raise ConfigError(f"{where}: format must be {TWO_TOWER_FORMAT!r} version 1 (the {FAMILY} family)")
    pooling = spec.get("text_pooling", "mean")
    if pooling not in POOLINGS:
        raise ConfigError(f"{where}: text_pooling {pooling!r} is not one of {POOLINGS} (the {FAMILY} family)")
    image_pooling = spec.get("image_pooling", "pooler")
    if image_pooling not in IMAGE_POOLINGS:
        raise ConfigError(f"{where}: image_pooling {image_pooling!r} is not one of {IMAGE_POOLINGS} (the {FAMILY} family)")
    for key in ("text_model", "vision_model"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise ConfigError(f"{where}: {key} must name a folder or hub id (the {FAMILY} family)")
    text_dir = locate(folder, spec["text_model"])
    vision_dir = locate(folder, spec["vision_model"])
    text_config = tower_config(text_dir, "text")
    encoder = from_pretrained_strict(AutoModel, text_dir, f"{FAMILY} text")
    if "input_ids" not in forward_inputs(encoder) or "pixel_values" in forward_inputs(encoder):
        raise ConfigError(f"{text_dir}: model_type {text_config.model_type!r} is not a text encoder; the {FAMILY} "
                          "text folder needs one (input_ids -> hidden states)")
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(str(text_dir))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{text_dir}: no loadable tokenizer for the {FAMILY} text tower ({first_line(exc)})") from None
    vision, has_projection, vision_type = load_vision(vision_dir, image_pooling)
    vision_config = tower_config(vision_dir, "vision")
    vision_dim = getattr(vision_config, "projection_dim", None) if has_projection else None
    text_projection, image_projection = load_projections(
        folder / "projection.safetensors", tower_width(text_config, "pooler" if pooling == "pooler" else "cls"),
        None if has_projection else tower_width(vision_config, image_pooling), vision_dim, has_projection)
    if not has_projection and image_projection is None:
        logger.warning("%s has no visual projection and projection.safetensors no image_projection: "
                       "image embeddings are the pooled CLS state", vision_dir)
    context = int(spec.get("context_length") or min(getattr(encoder.config, "max_position_embeddings", 512), 512))
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    dim = int(text_projection.out_features)
    return SourceModel(
        family=FAMILY,
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
