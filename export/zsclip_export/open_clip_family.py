"""open_clip checkpoints: `open_clip_config.json` + `open_clip_model.safetensors` / `open_clip_pytorch_model.bin`.

The model is built by open_clip itself (pip `open_clip_torch`, imported through `open_clip_import`, export time
only) from the config's `model_cfg`: `CLIP` for open_clip's own text transformer (SimpleTokenizer BPE, pad 0,
pooled as `text_cfg.pool_type` says, default argmax = EOS), `CustomTextCLIP` for a Hugging Face text tower
(`text_cfg.hf_model_name`, e.g. XLM-RoBERTa: pooled as `hf_pooler_type`, default mean over ids != pad, then
`hf_proj_type`, default an MLP). Context length: `text_cfg.context_length` (default 77). The weights are loaded
strictly. `hf_model_name` / `hf_tokenizer_name` are looked up as a folder inside the checkpoint (or an absolute
folder) first, else as hub ids (only the config and tokenizer files are fetched: the weights are the checkpoint's).
Preprocessing: `preprocess_cfg` (size, mean, std, interpolation, resize_mode shortest/squash).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import torch
from zsclip.errors import ConfigError
from zsclip.manifest import EmbeddingConfig, PreprocessConfig, TextConfig

from zsclip_export.families import OPEN_CLIP_CONFIG, UPSTREAM_TEXT, SourceModel, manifest_fields, read_json
from zsclip_export.hf_preprocess import UPSTREAM_DRAFT_FACTOR, backend_tokenizer, finish_tokenizer
from zsclip_export.open_clip_import import import_open_clip
from zsclip_export.strict_load import load_state_strict, read_state_dict

logger = logging.getLogger(__name__)
FAMILY = "open-clip"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = {"shortest": "shortest_edge_center_crop", "squash": "squash"}
CLEANINGS = ("whitespace", "lower")


@contextlib.contextmanager
def mha_fastpath_off() -> Iterator[None]:
    """open_clip's towers use nn.MultiheadAttention, whose inference fast path (aten::_native_multi_head_attention)
    has no ONNX export; the regular path computes the same function."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


class OpenClipImageTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with mha_fastpath_off():
            return self.model.encode_image(pixel_values)


class OpenClipTextTower(torch.nn.Module):
    """(input_ids, attention_mask) -> encode_text of the ids re-padded with pad_id; open_clip's own text transformer
    adds all `context_length` positional embeddings, so it gets the full padded context as upstream tokenizes it."""

    def __init__(self, model: Any, pad_id: int, context_length: int, full_context: bool) -> None:
        super().__init__()
        self.model = model
        self.pad_id = pad_id
        self.context_length = context_length
        self.full_context = full_context

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(input_ids.dtype)
        ids = input_ids * mask + self.pad_id * (1 - mask)
        if self.full_context:
            padding = torch.zeros_like(ids[:, :1]).expand(-1, self.context_length) + self.pad_id
            ids = torch.cat([ids, padding], dim=1)[:, : self.context_length]
        with mha_fastpath_off():
            return self.model.encode_text(ids)


def local_or_hub(folder: Path, name: str) -> str:
    for candidate in (folder / name, Path(name).expanduser()):
        if candidate.is_dir():
            return str(candidate)
    return name


def read_open_clip_config(folder: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(model_cfg, preprocess_cfg) of open_clip_config.json.

    Raises:
        ConfigError: no model_cfg, or an architecture this exporter does not handle (CoCa, timm towers).
    """
    if not (folder / OPEN_CLIP_CONFIG).is_file():
        raise ConfigError(f"{folder} is not a {FAMILY} checkpoint: no {OPEN_CLIP_CONFIG}; pass the right --family")
    config = read_json(folder / OPEN_CLIP_CONFIG)
    model_cfg = config.get("model_cfg")
    if not isinstance(model_cfg, dict) or not isinstance(model_cfg.get("vision_cfg"), dict) or "text_cfg" not in model_cfg:
        raise ConfigError(f"{folder}/{OPEN_CLIP_CONFIG}: no model_cfg with vision_cfg and text_cfg")
    if "multimodal_cfg" in model_cfg:
        raise ConfigError(f"{folder}/{OPEN_CLIP_CONFIG}: CoCa (multimodal_cfg) is not supported")
    if model_cfg["vision_cfg"].get("timm_model_name"):
        raise ConfigError(f"{folder}/{OPEN_CLIP_CONFIG}: timm image towers are not supported (timm does not import "
                          "beside torch 2.13.0 here)")
    return model_cfg, dict(config.get("preprocess_cfg") or {})


def build_model(folder: Path, model_cfg: Dict[str, Any]) -> Any:
    """open_clip's CLIP / CustomTextCLIP from model_cfg, every weight loaded strictly from the checkpoint.

    Raises:
        ConfigError: the config does not build, or the weights do not fit it.
    """
    open_clip = import_open_clip()
    cfg = json.loads(json.dumps(model_cfg))
    custom_text = bool(cfg.pop("custom_text", False))
    text_cfg = cfg["text_cfg"]
    if text_cfg.get("hf_model_name"):
        text_cfg["hf_model_name"] = local_or_hub(folder, text_cfg["hf_model_name"])
        text_cfg["hf_model_pretrained"] = False  # the weights are the checkpoint's
    cls = open_clip.CustomTextCLIP if custom_text or text_cfg.get("hf_model_name") else open_clip.CLIP
    try:
        model = cls(**cfg)
    except (TypeError, ValueError, OSError, KeyError) as exc:
        raise ConfigError(f"{folder}/{OPEN_CLIP_CONFIG}: open_clip cannot build {cls.__name__} from model_cfg "
                          f"({str(exc).splitlines()[0][:200]})") from None
    load_state_strict(model, read_state_dict(folder, WEIGHT_FILES, FAMILY), FAMILY, str(folder))
    if getattr(getattr(model, "text", None), "transformer", None) is not None:
        model.text.transformer.config._attn_implementation = "eager"
    return model.eval()


def preprocess_of(folder: Path, model_cfg: Dict[str, Any], settings: Dict[str, Any]) -> PreprocessConfig:
    """Raises: ConfigError for a resize mode or size the runtime does not reproduce."""
    size = settings.get("size", model_cfg["vision_cfg"].get("image_size", 224))
    sizes = size if isinstance(size, (list, tuple)) else (size, size)
    mode = settings.get("resize_mode", "shortest")
    if len(set(sizes)) != 1 or mode not in RESIZE_MODES:
        raise ConfigError(f"{folder}/{OPEN_CLIP_CONFIG}: preprocessing size {size} / resize_mode {mode!r} is not "
                          f"supported (a square size; resize_mode {tuple(RESIZE_MODES)})")
    # open_clip's eval transform: image.convert("RGB"), torchvision Resize (long side truncated, one PIL resize),
    # CenterCrop; only the bounded JPEG draft decode (>= 4x the input size) stays on
    upstream = manifest_fields(PreprocessConfig, size_rounding="floor", rgb_conversion="convert", jpeg_draft=True,
                               jpeg_draft_factor=UPSTREAM_DRAFT_FACTOR, reducing_gap=None)
    return PreprocessConfig(image_size=int(sizes[0]), resize_mode=RESIZE_MODES[mode],  # type: ignore[arg-type]
                            interpolation=settings.get("interpolation", "bicubic"),
                            mean=tuple(settings.get("mean", OPENAI_MEAN)), std=tuple(settings.get("std", OPENAI_STD)),
                            **upstream)


LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st",
             "\ufb06": "st", "\u0132": "IJ", "\u0133": "ij", "\u01c4": "D\u017d", "\u01c5": "D\u017e", "\u01c6": "d\u017e",
             "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz"}
HTML_ENTITIES = {"&quot;": '"', "&#39;": "'", "&#x27;": "'", "&lt;": "<", "&gt;": ">", "&nbsp;": "\u00a0"}


def cleaning_normalizers(clean: str) -> list:
    """open_clip's text cleaning (`basic_clean`: ftfy.fix_text, html.unescape twice, strip; then whitespace runs ->
    one space; "lower" also lowercases) as `tokenizers` normalizers. Reproduced from ftfy: curly quotes ->
    straight, Latin ligatures, full-width ASCII and U+3000 -> ASCII, NFC; from html.unescape: &amp; (twice) and the
    common named entities. Not reproduced: ftfy's mojibake repair and rarer entities (the exporter's tokenizer check
    compares ids with open_clip's own tokenizer)."""
    from tokenizers import Regex, normalizers

    steps: List[Any] = [normalizers.Replace(Regex("[\u02bc\u2018-\u201b]"), "'"), normalizers.Replace(Regex("[\u201c-\u201f]"), '"')]
    steps += [normalizers.Replace(k, v) for k, v in LIGATURES.items()]
    steps += [normalizers.Replace(chr(code), chr(code - 0xFEE0)) for code in range(0xFF01, 0xFF5F)]
    steps += [normalizers.Replace("\u3000", " "), normalizers.NFC()]
    for _ in range(2):  # html.unescape(html.unescape(text))
        steps += [normalizers.Replace(k, v) for k, v in HTML_ENTITIES.items()] + [normalizers.Replace("&amp;", "&")]
    steps += [normalizers.Strip(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    return steps + ([normalizers.Lowercase()] if clean == "lower" else [])


def hf_text_tokenizer(folder: Path, text_cfg: Dict[str, Any], context: int) -> Tuple[Any, Any, int, str]:
    """(exported tokenizer, reference ids, pad id, kind) for a Hugging Face text tower."""
    from tokenizers import normalizers

    open_clip = import_open_clip()
    name = local_or_hub(folder, text_cfg.get("hf_tokenizer_name") or text_cfg["hf_model_name"])
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    clean = kwargs.get("clean", "whitespace")
    if clean not in CLEANINGS or kwargs.get("strip_sep_token") or kwargs.get("tokenizer_mode"):
        raise ConfigError(f"{folder}/{OPEN_CLIP_CONFIG}: tokenizer_kwargs {kwargs} are not supported (clean {CLEANINGS})")
    try:
        upstream = open_clip.tokenizer.HFTokenizer(name, context_length=context, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: no loadable tokenizer {name!r} ({str(exc).splitlines()[0][:200]})") from None
    tokenizer = finish_tokenizer(backend_tokenizer(upstream.tokenizer, name), context)
    existing = [tokenizer.normalizer] if tokenizer.normalizer is not None else []
    tokenizer.normalizer = normalizers.Sequence(cleaning_normalizers(clean) + existing)
    pad = int(upstream.tokenizer.pad_token_id)
    return tokenizer, upstream, pad, f"{type(upstream.tokenizer).__name__} (tokenizers backend) + open_clip '{clean}' cleaning"


def simple_tokenizer(context: int) -> Tuple[Any, Any, int, str]:
    """(exported tokenizer, reference, pad id 0, kind) for open_clip's own byte-level BPE (OpenAI CLIP's vocabulary)."""
    from tokenizers import normalizers
    from transformers import CLIPTokenizer

    open_clip = import_open_clip()
    upstream = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    merges = sorted(upstream.bpe_ranks, key=upstream.bpe_ranks.get)
    vocab = {("<|startoftext|>" if t == "<start_of_text>" else "<|endoftext|>" if t == "<end_of_text>" else t): i
             for t, i in upstream.encoder.items()}
    hf = CLIPTokenizer(vocab=vocab, merges=merges)
    tokenizer = finish_tokenizer(hf.backend_tokenizer, context)
    tokenizer.normalizer = normalizers.Sequence(cleaning_normalizers("lower"))
    return tokenizer, upstream, 0, "open_clip SimpleTokenizer (byte-level BPE, converted) + 'lower' cleaning"


def load_open_clip(folder: Path) -> SourceModel:
    """An open_clip checkpoint folder -> SourceModel.

    Raises:
        ConfigError: unsupported architecture or preprocessing, weights that do not fit, no tokenizer.
    """
    model_cfg, settings = read_open_clip_config(folder)
    model = build_model(folder, model_cfg)
    text_cfg = model_cfg["text_cfg"]
    context = int(text_cfg.get("context_length", 77))
    hf_text = bool(text_cfg.get("hf_model_name"))
    tokenizer, upstream, pad_id, kind = hf_text_tokenizer(folder, text_cfg, context) if hf_text else simple_tokenizer(context)

    def reference_ids(text: str) -> list:
        ids = upstream([text], context_length=context)[0].tolist()
        while ids and ids[-1] == pad_id:
            ids.pop()
        return ids

    logit_bias = getattr(model, "logit_bias", None)
    pooling = (f"{text_cfg.get('hf_pooler_type', 'mean_pooler')} over ids != pad {pad_id} -> {text_cfg.get('hf_proj_type', 'mlp')} "
               "projection" if hf_text else f"{text_cfg.get('pool_type', 'argmax')} (EOS) after padding to {context} with 0")
    return SourceModel(
        family=FAMILY,
        source=str(folder),
        image_tower=OpenClipImageTower(model).eval(),
        text_tower=OpenClipTextTower(model, pad_id, context, full_context=not hf_text).eval(),
        tokenizer=tokenizer,
        reference_ids=reference_ids,
        preprocess=preprocess_of(folder, model_cfg, settings),
        text=TextConfig(context_length=context, pad_id=pad_id, unk_id=None, **manifest_fields(TextConfig, **UPSTREAM_TEXT)),
        embedding=EmbeddingConfig(dim=int(model_cfg["embed_dim"]), norm="l2",
                                  logit_scale=float(model.logit_scale.detach().exp().clamp(max=100.0)),
                                  logit_bias=float(logit_bias.detach()) if logit_bias is not None else 0.0),
        details={
            "tokenizer": kind,
            "text_model": text_cfg.get("hf_model_name", "open_clip TextTransformer"),
            "text_pooling": pooling,
            "image_pooling": "open_clip VisionTransformer (encode_image)",
            "architecture": f"open_clip {type(model).__name__}",
        },
    )
