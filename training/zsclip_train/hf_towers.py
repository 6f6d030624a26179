"""Towers from Hugging Face checkpoints (`image_tower = "hf:PATH_OR_ID"`, `text_tower = "hf:..."`, `init = "hf:..."`).

Each tower exposes `features(...)` -> pooled features [B, width] *before* any projection (the two-tower model
owns the projections as separate `nn.Linear` modules), plus `width` and `module` (the transformers model that
`save_pretrained` writes into the hand-off). Loading goes through transformers' `from_pretrained`: a local
folder, or a hub id (downloaded by transformers; zsclip never downloads on its own).

Image side: any vision model with a pooled output (CLIPVisionModel(/WithProjection), SiglipVisionModel,
ViTModel, ...) or a whole CLIP / SigLIP checkpoint (its vision tower is taken). Preprocessing comes from the
checkpoint's image processor config (`preprocess_of`), never from constants here.
Text side: any encoder with a fast (`tokenizers`-backed) tokenizer; pooling `cls`, `mean` (masked), `eos`
(CLIP text: the pooled EOS state) or `pooler` (the model's own pooler), per family by default.
`init`: a whole CLIPModel checkpoint (both towers, both projections, the logit scale).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Optional, Tuple

import torch
from torch import nn
from zsclip.errors import ConfigError

logger = logging.getLogger(__name__)

HF_PREFIX = "hf:"
TEXT_POOLINGS = ("auto", "cls", "mean", "eos", "pooler")
IMAGE_POOLINGS = ("auto", "pooler", "cls")
WHOLE_MODELS = ("clip", "siglip")  # whole dual-encoder checkpoints whose towers we can take apart
DEFAULT_TEXT_POOLING = {"clip_text_model": "eos", "clip": "eos", "bert": "cls", "xlm-roberta": "mean", "roberta": "mean"}
# SigLIP's text tower pools the last position, which moves with padding (the runtime pads to the longest text)
UNSUPPORTED_TEXT = ("siglip", "siglip_text_model")


def hf_reference(value: str) -> Optional[str]:
    """"hf:PATH_OR_ID" -> "PATH_OR_ID"; anything else -> None."""
    return value[len(HF_PREFIX):] if value.startswith(HF_PREFIX) else None


HF_KEYS = ("image_tower", "text_tower", "init")


def resolve_hf_paths(model: Any, base: Path) -> Any:
    """A config's [model] table with `hf:` folders made relative to the config file's folder `base`, like every
    other path of the config: "hf:X" becomes "hf:BASE/X" when that is a folder. A reference that is a path by its
    form ("/...", "./...", "../...", "~...") must exist; other ones that are no folder under BASE stay as written
    (a hub id, or a folder relative to the working directory, as transformers reads them).

    Raises:
        ConfigError: a path-form reference that is not a folder.
    """
    if not isinstance(model, dict):
        return model
    model = dict(model)
    for key in HF_KEYS:
        reference = hf_reference(model[key]) if isinstance(model.get(key), str) else None
        if not reference:
            continue
        local = Path(base) / Path(reference).expanduser()
        if local.is_dir():
            model[key] = HF_PREFIX + str(local)
        elif reference.startswith(("/", "./", "../", "~")) or reference in (".", ".."):
            raise ConfigError(f"{key} = \"hf:{reference}\": no such folder {local}")
    return model


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (transformers' hub errors span several)."""
    return " ".join(str(exc).split())


def load_config(reference: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(reference)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"hf:{reference}: not a loadable transformers checkpoint ({one_line(exc)})") from None


def load_pretrained_model(cls: Any, reference: str, **kwargs: Any) -> Any:
    try:
        return cls.from_pretrained(reference, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"hf:{reference}: cannot load as {cls.__name__} ({one_line(exc)})") from None


def vision_model_of(reference: str) -> Any:
    """The vision model of `reference`: a vision checkpoint as is, or the vision tower of a whole CLIP / SigLIP."""
    from transformers import AutoModel, CLIPModel, CLIPVisionModel, SiglipModel, SiglipVisionModel

    config = load_config(reference)
    if config.model_type in WHOLE_MODELS:
        whole_cls, vision_cls = (CLIPModel, CLIPVisionModel) if config.model_type == "clip" else (SiglipModel,
                                                                                                  SiglipVisionModel)
        return split_tower(load_pretrained_model(whole_cls, reference), "vision", vision_cls)
    if config.model_type == "clip_vision_model":  # also CLIPVisionModelWithProjection: its projection is dropped
        return load_pretrained_model(CLIPVisionModel, reference)
    model = load_pretrained_model(AutoModel, reference)
    if "pixel_values" not in inspect.signature(model.forward).parameters:
        raise ConfigError(f"image_tower = \"hf:{reference}\": {type(model).__name__} takes no pixel_values; an image "
                          "tower must be a vision model")
    return model


def split_tower(whole: Any, part: str, tower_cls: Any) -> Any:
    """The `part` ("vision" or "text") tower of a whole model as a standalone `tower_cls` model (transformers >= 5
    holds one already)."""
    inner = getattr(whole, f"{part}_model")
    if isinstance(inner, tower_cls):
        return inner
    tower = tower_cls(getattr(whole.config, f"{part}_config"))
    setattr(tower, f"{part}_model", inner)
    return tower


def text_model_of(reference: str) -> Any:
    """The text model of `reference`: an encoder checkpoint as is, or the text tower of a whole CLIP / SigLIP."""
    from transformers import AutoModel, CLIPModel, CLIPTextModel

    config = load_config(reference)
    if config.model_type in UNSUPPORTED_TEXT:
        raise ConfigError(f"hf:{reference}: a SigLIP text tower is not supported (it pools the last position, "
                          "which depends on padding); use a CLIP text model or an encoder such as BERT / XLM-RoBERTa")
    if config.model_type == "clip":
        return split_tower(load_pretrained_model(CLIPModel, reference), "text", CLIPTextModel)
    return load_pretrained_model(AutoModel, reference)


def fast_tokenizer(reference: str) -> Any:
    """The checkpoint's transformers tokenizer with the query normalisation in front (`normalize_like_queries`);
    it must have a `tokenizers` backend (the runtime uses tokenizer.json)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(reference)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"hf:{reference}: no loadable tokenizer ({one_line(exc)})") from None
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        raise ConfigError(f"hf:{reference}: the tokenizer has no vocabulary besides its {len(tokenizer)} special tokens "
                          "(no tokenizer.json / vocab file in the checkpoint?)")
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ConfigError(f"hf:{reference}: tokenizer {type(tokenizer).__name__} has no `tokenizers` backend "
                          "(tokenizer.json); the runtime cannot reproduce it")
    return normalize_like_queries(tokenizer)


def normalize_like_queries(tokenizer: Any) -> Any:
    """Put `prepare`'s query normalisation (NFKC, lower case, ё -> е) in front of the tokenizer's own normaliser.

    Training text went through it (queries.txt); class names at zero-shot time did not (the runtime keeps ё and
    case, leaving normalisation to tokenizer.json). With it inside the tokenizer that the hand-off saves, a class
    name like «зелёный» meets the tower as the «зеленый» it was trained on. Idempotent."""
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    steps = [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace("ё", "е")]
    if backend.normalizer is not None:
        steps.append(backend.normalizer)
    backend.normalizer = normalizers.Sequence(steps)
    return tokenizer


def hidden_width(config: Any) -> int:
    width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if not width:
        raise ConfigError(f"cannot read the hidden size of {type(config).__name__}")
    return int(width)


def disable_unused_pooler(model: nn.Module, pooling: str) -> None:
    """A pooler layer the chosen pooling does not use gets no gradient: freeze it (DDP requires it)."""
    pooler = getattr(model, "pooler", None)
    if pooling != "pooler" and isinstance(pooler, nn.Module):
        pooler.requires_grad_(False)


class HfImageTower(nn.Module):
    """pixels [B, 3, S, S] -> pooled features [B, width] of a transformers vision model (no projection)."""

    def __init__(self, model: Any, pooling: str = "auto") -> None:
        super().__init__()
        if pooling not in IMAGE_POOLINGS:
            raise ConfigError(f"image_pooling {pooling!r} is not one of {IMAGE_POOLINGS}")
        self.module = model
        self.pooling = "pooler" if pooling == "auto" else pooling
        self.width = hidden_width(model.config)

    def freeze_unused(self) -> None:
        disable_unused_pooler(self.module, self.pooling)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.module(pixel_values=pixels)
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        if getattr(out, "pooler_output", None) is None:
            raise ConfigError(f"{type(self.module).__name__} has no pooled output; set image_pooling = \"cls\"")
        return out.pooler_output

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(pixels)


class HfTextTower(nn.Module):
    """input_ids, attention_mask [B, L] -> pooled features [B, width] of a transformers text encoder."""

    def __init__(self, model: Any, pooling: str = "auto") -> None:
        super().__init__()
        if pooling not in TEXT_POOLINGS:
            raise ConfigError(f"text_pooling {pooling!r} is not one of {TEXT_POOLINGS}")
        kind = model.config.model_type
        self.module = model
        self.pooling = DEFAULT_TEXT_POOLING.get(kind, "mean") if pooling == "auto" else pooling
        if self.pooling == "eos" and kind not in ("clip_text_model", "clip"):
            raise ConfigError(f"text_pooling \"eos\" needs a CLIP text model (its pooled output is the EOS state), "
                              f"not {kind!r}; use cls, mean or pooler")
        self.width = hidden_width(model.config)

    def freeze_unused(self) -> None:
        disable_unused_pooler(self.module, self.pooling)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.module(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling in ("eos", "pooler"):
            return out.pooler_output
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        weights = attention_mask.to(out.last_hidden_state.dtype).unsqueeze(-1)
        return (out.last_hidden_state * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.features(input_ids, attention_mask)

    @property
    def export_pooling(self) -> str:
        """The pooling name `zsclip_export.hf_two_tower` reads: CLIP's EOS state is its `pooler` output."""
        return "pooler" if self.pooling == "eos" else self.pooling


def load_init_checkpoint(reference: str) -> Tuple[Any, Any, nn.Linear, nn.Linear, float]:
    """A whole CLIPModel checkpoint -> (vision model, text model, image projection, text projection, log logit scale)."""
    from transformers import CLIPModel, CLIPTextModel, CLIPVisionModel

    config = load_config(reference)
    if config.model_type != "clip":
        raise ConfigError(f"init = \"hf:{reference}\": model_type {config.model_type!r} is not a whole CLIPModel "
                          "checkpoint; use image_tower / text_tower for single towers")
    whole = load_pretrained_model(CLIPModel, reference)
    return (split_tower(whole, "vision", CLIPVisionModel), split_tower(whole, "text", CLIPTextModel),
            whole.visual_projection, whole.text_projection, float(whole.logit_scale.detach()))


def image_preprocess_of(reference: str) -> Any:
    """The runtime `PreprocessConfig` of a checkpoint's image processor (a folder or hub id): exactly the
    preprocessing zsclip-export will write into the manifest (one implementation, no drift).

    Raises:
        ConfigError: no image processor, or one the runtime cannot reproduce.
    """
    from zsclip_export.hf_preprocess import image_processor_settings, preprocess_from_processor

    try:
        settings = image_processor_settings(Path(reference))
    except ConfigError as exc:
        raise ConfigError(one_line(exc)) from None
    return preprocess_from_processor(settings, f"hf:{reference} image processor")


def portable_tokenizer(tokenizer: Any) -> Any:
    """A `PreTrainedTokenizerFast` over the exact `tokenizers` backend of `tokenizer` (same special tokens).

    transformers >= 5 rebuilds a BertTokenizer's normaliser from its config on load, dropping the query
    normalisation; saved as a generic fast tokenizer, tokenizer.json is loaded as written."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()), **specials)
