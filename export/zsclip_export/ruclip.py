"""ruCLIP's own checkpoint layout (config.json + pytorch_model.bin + YouTokenToMe bpe.model).

The towers re-implement ruCLIP's OpenAI-CLIP architecture with the same state-dict keys (visual.*,
transformer.*, token_embedding, positional_embedding, ln_final, text_projection, logit_scale).
The text tower pools at ruCLIP's end-of-sequence token, id 3 (not the largest id: OpenAI CLIP's
`argmax(input_ids)` trick would pool at the wrong position).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict

import torch
from torch import nn
from zsclip.errors import ConfigError
from zsclip.manifest import EmbeddingConfig, PreprocessConfig, TextConfig

from zsclip_export.families import SourceModel
from zsclip_export.hf_preprocess import UPSTREAM_DRAFT_FACTOR

logger = logging.getLogger(__name__)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONFIG_KEYS = ("embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_patch_size",
               "context_length", "vocab_size", "transformer_width", "transformer_heads", "transformer_layers")


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (as ruCLIP does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """`nn.MultiheadAttention(width, heads)` self-attention on [L, B, W] with the same parameters
    (in_proj_weight/bias, out_proj), written with -1 reshapes so the ONNX graph keeps L and B dynamic
    (torch's own implementation bakes the example's sequence length into Reshape nodes)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, attn_mask: Any = None) -> torch.Tensor:
        width = x.shape[-1]
        head_dim = width // self.heads
        q, k, v = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:  # [L, B, W] -> [B, H, L, D]
            return t.reshape(t.shape[0], -1, self.heads, head_dim).permute(1, 2, 0, 3)

        scores = split(q) @ split(k).transpose(-1, -2) * head_dim**-0.5
        if attn_mask is not None:
            scores = scores + attn_mask
        out = scores.softmax(dim=-1) @ split(v)  # [B, H, L, D]
        out = out.permute(2, 0, 1, 3).reshape(x.shape[0], -1, width)
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: Any = None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, attn_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, attn_mask: Any = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, resolution: int, patch: int, width: int, layers: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((resolution // patch) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros_like(x[:, :1, :])
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype))
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class RuClip(nn.Module):
    """ruCLIP (ai-forever/ru-clip `ruclip.model.CLIP`) with an ONNX-friendly text forward."""

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        missing = [k for k in CONFIG_KEYS if k not in config]
        if missing:
            raise ConfigError(f"ruCLIP config.json lacks {missing}")
        self.config = dict(config)
        self.eos_id = int(config.get("eos_id", EOS_ID))
        width = int(config["vision_width"])
        self.visual = VisionTransformer(config["image_resolution"], config["vision_patch_size"], width,
                                        config["vision_layers"], width // 64 or 1, config["embed_dim"])
        text_width, context = int(config["transformer_width"]), int(config["context_length"])
        self.transformer = Transformer(text_width, config["transformer_layers"], config["transformer_heads"])
        self.token_embedding = nn.Embedding(config["vocab_size"], text_width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context, text_width))
        self.ln_final = LayerNorm(text_width)
        self.text_projection = nn.Parameter(text_width**-0.5 * torch.randn(text_width, config["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.tensor(2.6592600))  # log(1/0.07)
        causal = torch.full((context, context), float("-inf")).triu(1)
        self.causal_mask: torch.Tensor
        self.register_buffer("causal_mask", causal, persistent=False)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual(pixel_values)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Causal transformer over [B, L <= context_length]; pooled at the first EOS token.

        A row without EOS (never produced by the exported tokenizer) is pooled at its last real token.
        The causal mask makes positions after EOS irrelevant, so padding to 77 is unnecessary.
        """
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        x = self.transformer(x.permute(1, 0, 2), self.causal_mask[:length, :length]).permute(1, 0, 2)
        x = self.ln_final(x)
        is_eos = input_ids == self.eos_id
        # int32 before ArgMax (as transformers does for ONNX export); positions fit easily
        first_eos = is_eos.to(torch.int32).argmax(dim=1)
        last_real = (attention_mask.to(torch.int32).sum(dim=1) - 1).clamp(min=0)
        position = torch.where(is_eos.any(dim=1), first_eos, last_real).to(torch.int64)
        pooled = x[torch.arange(x.shape[0]), position]
        return pooled @ self.text_projection


class RuClipImageTower(nn.Module):
    def __init__(self, model: RuClip) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values)


class RuClipTextTower(nn.Module):
    def __init__(self, model: RuClip) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask)


def read_ruclip(folder: Path) -> RuClip:
    """Build the module from config.json and load pytorch_model.bin (strict)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except (OSError, json.JSONDecodeError, RuntimeError) as exc:
        raise ConfigError(f"{folder}: not a ruCLIP checkpoint folder ({exc})") from None
    model = RuClip(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{folder}/pytorch_model.bin does not match ruCLIP's architecture: {exc}") from None
    return model.float().eval()


def ruclip_preprocess(config: Dict[str, Any]) -> PreprocessConfig:
    """RuCLIPProcessor's image transform: `img.convert('RGB')` (alpha dropped), torchvision
    `RandomResizedCrop(size, scale=(1, 1), ratio=(1, 1))` on a PIL image, which for a non-square image
    falls back to the centre square (offsets floored) and for a square one takes it whole, then one PIL
    bilinear resize of the crop (torchvision's default interpolation); ToTensor; Normalize(mean, std)."""
    return PreprocessConfig(
        int(config["image_resolution"]), "center_crop_resize", "bilinear",
        tuple(config.get("mean", CLIP_MEAN)), tuple(config.get("std", CLIP_STD)),  # type: ignore[arg-type]
        size_rounding="floor", rgb_conversion="convert", jpeg_draft=True, jpeg_draft_factor=UPSTREAM_DRAFT_FACTOR,
        reducing_gap=None,
    )


def load_ruclip(folder: Path) -> SourceModel:
    """A ruCLIP folder -> SourceModel with a converted YouTokenToMe tokenizer."""
    from zsclip_export.ruclip_bpe import YttmModel, read_yttm_model, ruclip_tokenizer

    folder = Path(folder)
    model = read_ruclip(folder)
    bpe: YttmModel = read_yttm_model(folder / "bpe.model")
    context = int(model.config["context_length"])
    tokenizer = ruclip_tokenizer(bpe, context)
    return SourceModel(
        family="ruclip",
        source=str(folder),
        image_tower=RuClipImageTower(model).eval(),
        text_tower=RuClipTextTower(model).eval(),
        tokenizer=tokenizer,
        reference_ids=reference_ids(folder / "bpe.model", bpe, context),
        preprocess=ruclip_preprocess(model.config),
        # Predictor.get_text_latents: template.format(label.lower().strip()); mean of raw latents, then normalised
        text=TextConfig(context_length=context, pad_id=bpe.pad_id, unk_id=bpe.unk_id,
                        label_cleaning="lower_strip", prompt_average="raw_mean"),
        embedding=EmbeddingConfig(dim=int(model.config["embed_dim"]), norm="l2",
                                  logit_scale=float(model.logit_scale.detach().exp().clamp(max=100.0)), logit_bias=0.0),
        details={
            "tokenizer": "YouTokenToMe BPE (bpe.model) converted to tokenizers BPE; text lowercased; <BOS> ... <EOS>",
            "text_pooling": f"first token == eos id {model.eos_id} (not argmax(input_ids))",
            "image_pooling": "CLS token + ln_post + proj",
            "architecture": "ruCLIP (OpenAI CLIP ViT, QuickGELU, causal text transformer)",
            "preprocess_note": "RuCLIPProcessor: convert('RGB'), centre square crop, then one bilinear PIL resize",
        },
    )


def reference_ids(path: Path, bpe: Any, context: int):  # noqa: ANN201 - a callable
    """RuCLIPProcessor.encode_text ids (without padding): youtokentome itself when installed, else the
    Python port of its encoder in `ruclip_bpe`."""
    try:
        import youtokentome as yttm
    except ImportError:
        yttm = None
        logger.warning("youtokentome is not installed: the tokenizer check uses zsclip's port of its encoder")
    from zsclip_export.ruclip_bpe import encode_like_yttm

    encoder = yttm.BPE(str(path)) if yttm is not None else None

    def ids(text: str) -> list:
        text = text.lower()
        if encoder is not None:
            tokens = encoder.encode([text], output_type=yttm.OutputType.ID, dropout_prob=0.0)[0]
        else:
            tokens = encode_like_yttm(bpe, text)
        return [bpe.bos_id] + list(tokens)[: context - 2] + [bpe.eos_id]

    return ids
